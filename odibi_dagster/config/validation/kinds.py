"""Step kinds: valid layers, engines and types, and what each layer needs (inputs, outputs,
a value)."""

from __future__ import annotations

from odibi_dagster.config.models import DATA_LAYERS, SINK_LAYERS, VALID_ENGINES, VALID_LAYERS, VALID_TYPES, Step
from odibi_dagster.config.validation.collector import Collector, case_hint


def _invalid(step: str, what: str, value: str, valid: tuple[str, ...]) -> str:
    # ODIBI's wording ("Step 'x' has invalid layer: 'y'"), the valid values and a hint for 'Ingest'.
    return f"Step '{step}' has invalid {what}: '{value}' (valid: {', '.join(valid)})" + case_hint(value, valid, what)


def _check_values(s: Step, col: Collector) -> None:
    if s.layer not in VALID_LAYERS:
        col.add(s, "layer", _invalid(s.name, "layer", s.layer, VALID_LAYERS))
    # An invalid pipeline engine is reported once, at the pipeline, not again for every step.
    if s.engine is not None and s.engine not in VALID_ENGINES:
        col.add(s, "engine", _invalid(s.name, "engine", s.engine, VALID_ENGINES))
    if s.type not in VALID_TYPES:
        col.add(s, "type", _invalid(s.name, "type", s.type, VALID_TYPES))


def _check_layer_rules(s: Step, col: Collector) -> None:
    defaulted = (
        " (the step has no 'layer', so ODIBI's default 'transform' applies)" if s.name in col.layer_defaulted else ""
    )
    if s.layer == "transform":
        if not s.inputs:
            col.add(s, "inputs", "transform step has no inputs" + defaulted)
        if s.type not in ("sql", "function") and s.type in VALID_TYPES:
            col.add(s, "type", f"transform step must be of type 'sql' or 'function', not '{s.type}'" + defaulted)
    if s.layer in DATA_LAYERS and not s.outputs:
        col.add(s, "outputs", f"{s.layer} step has no outputs")
    if s.layer == "ingest" and not s.value.strip():
        col.add(s, "value", "ingest step has an empty value (expected a source path, URL or table)")
    if s.layer in SINK_LAYERS:
        if not s.inputs:
            col.add(s, "inputs", f"{s.layer} step has no inputs")
        if not s.value.strip():
            col.add(s, "value", f"{s.layer} step has an empty value (expected a target path or table)")
    if s.layer == "connect":
        if not s.value.strip():
            col.add(s, "value", "connect step has an empty value (expected a connection string)")
        if s.inputs or s.outputs:
            col.add(s, "inputs" if s.inputs else "outputs", "connect steps take no inputs or outputs")
    if s.layer in SINK_LAYERS and s.outputs:
        col.add(s, "outputs", f"{s.layer} steps write a target and produce no datasets; remove 'outputs'")


def check_step_kinds(steps: list[Step], col: Collector) -> None:
    """Layer, engine and type of each step are known, and the step has what its layer needs."""
    for s in steps:
        _check_values(s, col)
        if not col.has_bad(s, "layer"):  # a layer of the wrong type: a guessed layer's rules are noise
            _check_layer_rules(s, col)
