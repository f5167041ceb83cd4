"""The entry points: validate one raw config, or load and validate files, directories and
in-memory configs, raising one :class:`ConfigValidationError` with every problem found."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from odibi_dagster.config.errors import ConfigValidationError, Problem
from odibi_dagster.config.load_cache import load_cache
from odibi_dagster.config.loaders import RawPipeline, discover, read_raw
from odibi_dagster.config.models import PipelineConfig, Step
from odibi_dagster.config.names import dagster_name
from odibi_dagster.config.roots import odibi_project_root
from odibi_dagster.config.validation.collector import Collector
from odibi_dagster.config.validation.dependencies import check_external_inputs, check_inputs_and_cycles
from odibi_dagster.config.validation.document import parse_document
from odibi_dagster.config.validation.kinds import check_step_kinds
from odibi_dagster.config.validation.names import check_names_and_outputs
from odibi_dagster.config.validation.pipeline import check_pipeline
from odibi_dagster.config.validation.steps import check_step_details


def validate_raw(raw: RawPipeline) -> tuple[PipelineConfig | None, list[Problem]]:
    """Validate one raw config; returns the model (when valid) and every problem found."""
    col = Collector(raw)
    if raw.document is None:
        return None, col.problems
    pipeline, steps = parse_document(raw, col)
    source = Path(raw.file) if raw.file and not raw.file.startswith("<") else None
    check_names_and_outputs(steps, col)
    check_step_kinds(steps, col)
    check_inputs_and_cycles(steps, col, pipeline.external_inputs if pipeline is not None else ())
    if pipeline is not None:
        pipeline = pipeline.model_copy(update={"steps": steps}).with_source(source)
        if raw.odibi_format:
            root, others = odibi_project_root(pipeline)
            pipeline.with_data_root(root, tuple(others))
        check_step_details(pipeline, steps, col)
        check_pipeline(pipeline, steps, col)
        check_external_inputs(pipeline, steps, col)
    if raw.document.get("steps") and not steps and not col.problems:
        col.add(None, "steps", "Config is empty - no enabled steps found")
    if pipeline is not None and raw.odibi_format:
        pipeline.with_odibi_origin(raw.disabled_csv_rows)
    if col.problems:
        return None, col.problems
    return pipeline, []


def _config_files(paths: tuple[str | Path, ...], problems: list[Problem]) -> list[Path]:
    """The config files at ``paths``, each once (a file named itself and by its directory)."""
    files: list[Path] = []
    seen_files: set[Path] = set()
    for p in paths:
        try:
            found_files = discover(p)
        except OSError as exc:  # an unreadable directory
            problems.append(Problem(str(p), None, None, f"cannot read: {exc}"))
            continue
        if not found_files:
            problems.append(Problem(str(p), None, None, "no config files found"))
        for f in found_files:
            key = f.resolve() if f.exists() else f
            if key not in seen_files:
                seen_files.add(key)
                files.append(f)
    return files


def _check_pipeline_names(pipelines: list[PipelineConfig], problems: list[Problem]) -> None:
    """Pipeline names, and the Dagster job names they become, are distinct across files."""
    seen: dict[str, str] = {}
    seen_safe: dict[str, str] = {}
    for p in pipelines:
        if p.name in seen:
            problems.append(
                Problem(str(p.source), None, "pipeline", f"pipeline name '{p.name}' is also used by {seen[p.name]}")
            )
        elif seen_safe.get(dagster_name(p.name), p.name) != p.name:
            other = seen_safe[dagster_name(p.name)]
            problems.append(
                Problem(
                    str(p.source),
                    None,
                    "pipeline",
                    f"pipeline names '{p.name}' and '{other}' ({seen[other]}) both become "
                    f"the Dagster job '{dagster_name(p.name)}'; rename one",
                )
            )
        seen.setdefault(p.name, str(p.source))
        seen_safe.setdefault(dagster_name(p.name), p.name)


def load_pipelines(*paths: str | Path, project: str | None = None, enabled_only: bool = True) -> list[PipelineConfig]:
    """Load and validate every config at ``paths`` (files or directories).

    Raises :class:`ConfigValidationError` listing every problem of every file.
    """
    problems: list[Problem] = []
    pipelines: list[PipelineConfig] = []
    with load_cache():
        for f in _config_files(paths, problems):
            try:
                for raw in read_raw(f, project=project, enabled_only=enabled_only):
                    pipeline, found = validate_raw(raw)
                    problems.extend(found)
                    if pipeline is not None:
                        pipelines.append(pipeline)
            except Exception as exc:  # a bug of ours must still be one line naming the file, not a traceback
                problems.append(Problem(str(f), None, None, f"cannot validate: {type(exc).__name__}: {exc}"))
    _check_pipeline_names(pipelines, problems)
    if problems:
        raise ConfigValidationError(problems)
    return pipelines


def load_pipeline(path: str | Path, *, project: str | None = None, enabled_only: bool = True) -> PipelineConfig:
    """Load and validate one pipeline config file (JSON, YAML, SQLite or CSV)."""
    pipelines = load_pipelines(path, project=project, enabled_only=enabled_only)
    if len(pipelines) != 1:
        names = ", ".join(p.name for p in pipelines)
        raise ConfigValidationError(
            [Problem(str(path), None, "project", f"holds {len(pipelines)} pipelines ({names}); pass project=...")]
        )
    return pipelines[0]


def validate_pipeline(
    config: PipelineConfig | list[dict[str, Any]] | dict[str, Any] | list[Step], file: str = "<config>"
) -> PipelineConfig:
    """Validate an in-memory config: a PipelineConfig, a document dict, or a list of steps."""
    lines: dict[int, int] = {}
    if isinstance(config, PipelineConfig):
        source = config.source
        doc = config.model_dump(exclude_none=True, exclude_defaults=False)
        doc["steps"] = [s.model_dump(exclude_none=True) for s in config.steps]
        # Keep each step's line in its file (``line`` is not part of the dump).
        lines = {i: s.line for i, s in enumerate(config.steps) if s.line is not None}
        file = str(source) if source is not None else file
        default = config.name
    else:
        if isinstance(config, list | tuple):
            config = {"steps": [s.model_dump(exclude_none=True) if isinstance(s, Step) else s for s in config]}
        if not isinstance(config, dict):
            message = f"a config must be a list of steps or a pipeline mapping, got {type(config).__name__}"
            raise ConfigValidationError([Problem(file, None, None, message)])
        doc = config
        source = None
        default = "pipeline"
    with load_cache():
        pipeline, problems = validate_raw(RawPipeline(file, doc, lines=lines, default_name=default))
    if problems:
        raise ConfigValidationError(problems)
    assert pipeline is not None
    return pipeline.with_source(source)
