"""A raw document as models: the pipeline settings and each step, every shape problem
collected (a broken field is dropped so the rest of its step is still checked)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from odibi_dagster.config.loaders import RawPipeline
from odibi_dagster.config.models import PipelineConfig, Step
from odibi_dagster.config.validation.collector import Collector, loc_to_field, pydantic_message, short


def _strings_in(value: Any) -> set[str]:
    """Dataset names a malformed ``outputs`` value may have meant."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return {v for v in value.values() if isinstance(v, str)}
    if isinstance(value, list | tuple):
        return {v for v in value if isinstance(v, str)}
    return set()


def _step_label(item: Any, index: int) -> str:
    if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"].strip():
        return item["name"]
    return f"#{index + 1}"


def _parse_settings(raw: RawPipeline, doc: dict[str, Any], col: Collector) -> PipelineConfig | None:
    if raw.default_name and "pipeline" not in doc:
        doc["pipeline"] = raw.default_name
    try:
        return PipelineConfig.model_validate({**doc, "steps": []})
    except ValidationError as exc:
        for err in exc.errors():
            col.add(None, loc_to_field(err["loc"]), pydantic_message(err))
        external = doc.get("external_inputs")
        if isinstance(external, dict):  # inputs naming them are not "not produced" on top
            col.maybe_produced |= {k for k in external if isinstance(k, str)}
    return None


def _validate_step(item: dict[str, Any], label: str, line: int | None, col: Collector) -> tuple[Step | None, set[Any]]:
    """The step as a model, without the fields whose shape is wrong; and those fields."""
    bad_fields: set[Any] = set()
    if "line" in item:  # set by the loader, not by users
        col.add(label, "line", "unknown key 'line'", line, shape=True)
        bad_fields.add("line")
    try:
        return Step.model_validate({k: v for k, v in item.items() if k not in bad_fields}), bad_fields
    except ValidationError as exc:
        for err in exc.errors():
            col.add(label, loc_to_field(err["loc"]), pydantic_message(err), line, shape=True)
            if err["loc"]:
                bad_fields.add(err["loc"][0])
    # Drop the broken fields and keep checking the rest of the step, so one
    # typo does not hide the step's other problems.
    try:
        return Step.model_validate({k: v for k, v in item.items() if k not in bad_fields}), bad_fields
    except ValidationError:
        return None, bad_fields


def _parse_step(raw: RawPipeline, index: int, item: Any, col: Collector) -> Step | None:
    """One step of the document (None when it cannot be checked further)."""
    label = _step_label(item, index)
    line = raw.lines.get(index)
    if line is not None:
        col.step_lines.setdefault(label, line)
    if not isinstance(item, dict):
        col.add(label, None, f"a step must be a mapping, got {type(item).__name__}: {short(item)}", line)
        return None
    step, bad_fields = _validate_step(item, label, line, col)
    if step is None or "outputs" in bad_fields:
        col.maybe_produced |= _strings_in(item.get("outputs"))
    if step is None:
        return None
    col.bad_fields.setdefault(step.name, set()).update(str(f) for f in bad_fields)
    if "layer" not in item and "layer" not in bad_fields:
        col.layer_defaulted.add(step.name)
    if not step.name.strip():
        col.add(label, "name", "name must not be empty", line)
        return None
    step.line = line
    return step


def parse_document(raw: RawPipeline, col: Collector) -> tuple[PipelineConfig | None, list[Step]]:
    """The pipeline settings (None if they are invalid) and its enabled steps."""
    doc = dict(raw.document or {})
    steps_raw = doc.pop("steps", None)
    pipeline = _parse_settings(raw, doc, col)
    if steps_raw is None:
        col.add(None, "steps", "missing required field 'steps'")
        return pipeline, []
    if not isinstance(steps_raw, list):
        col.add(None, "steps", "steps must be a list")
        return pipeline, []
    if not steps_raw:
        col.add(None, "steps", "Config is empty - no steps found")
        return pipeline, []
    steps: list[Step] = []
    for i, item in enumerate(steps_raw):
        step = _parse_step(raw, i, item, col)
        if step is None:
            continue
        if step.enabled:
            steps.append(step)
        else:
            for dataset in step.outputs.values():
                col.disabled_outputs.setdefault(dataset, step.name)
    return pipeline, steps
