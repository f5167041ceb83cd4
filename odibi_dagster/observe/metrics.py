"""ODIBI's MetricsManager exports: per-step metrics JSON and Prometheus text format.

Metrics are derived from a run's lineage (``RunTracker.export_lineage()``), so they
cover steps that ran in any process. ``metrics.prom`` follows the Prometheus text
exposition format (0.0.4) and can be picked up by node_exporter's textfile collector.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from odibi_dagster.observe._util import atomic_write_text, dumps

__all__ = ["metrics_from_lineage", "to_prometheus", "write_metrics"]


def _rows(step: Mapping[str, Any]) -> int | None:
    for key in ("after_snapshot", "before_snapshot"):
        snapshot = step.get(key)
        if isinstance(snapshot, Mapping) and isinstance(snapshot.get("row_count"), int):
            return int(snapshot["row_count"])
    return None


def metrics_from_lineage(lineage: Mapping[str, Any]) -> dict[str, Any]:
    """Per-step and per-run metrics of a run.

    ``{"pipeline", "run_id", "steps": {step: {"layer", "status", "duration_ms", "rows",
    "rows_per_second"}}, "summary": {...}}``. ``rows`` is the step's output row count
    (its input's for steps without output); ``rows_per_second`` is ``None`` when either
    is unknown or the duration is zero. ``summary`` is the tracker's (``cache_hits``: steps
    reused, status ``cached``; ``cache_misses``: steps that ran).
    """
    steps: dict[str, dict[str, Any]] = {}
    for step in lineage.get("steps") or []:
        if not isinstance(step, Mapping):
            continue
        duration = step.get("duration_ms")
        duration_ms = float(duration) if isinstance(duration, int | float) else None
        rows = _rows(step)
        rps = None
        if rows is not None and duration_ms:
            rps = round(rows / (duration_ms / 1000.0), 3)
        steps[str(step.get("step_name"))] = {
            "layer": step.get("layer"),
            "status": step.get("status"),
            "duration_ms": duration_ms,
            "rows": rows,
            "rows_per_second": rps,
        }
    return {
        "pipeline": lineage.get("pipeline"),
        "run_id": lineage.get("run_id"),
        "steps": steps,
        "summary": dict(lineage.get("summary") or {}),
    }


def _escape_label(value: Any) -> str:
    # Exposition format: backslash, double quote and newline are escaped in label values.
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _labels(**labels: Any) -> str:
    return "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items()) + "}"


class _Gauge(NamedTuple):
    """A gauge family: its name, help text, the value's key and the factor to its unit."""

    name: str
    help: str
    key: str
    scale: float = 1.0


_STEP_GAUGES = (
    _Gauge(
        "odibi_step_duration_seconds", "Wall-clock duration of the step execution in seconds.", "duration_ms", 0.001
    ),
    _Gauge("odibi_step_rows", "Rows the step produced (its input rows when it produced no dataset).", "rows"),
    _Gauge("odibi_step_rows_per_second", "Step throughput in rows per second.", "rows_per_second"),
)
_PIPELINE_GAUGES = (
    _Gauge("odibi_pipeline_duration_seconds", "Sum of step durations in seconds.", "total_duration_ms", 0.001),
    _Gauge("odibi_pipeline_rows_in", "Rows read by the pipeline's source steps.", "rows_in"),
    _Gauge("odibi_pipeline_rows_out", "Rows written by the pipeline's sink steps.", "rows_out"),
    _Gauge("odibi_pipeline_cache_hits", "Steps the run reused without running them (ODIBI's CACHED).", "cache_hits"),
    _Gauge("odibi_pipeline_cache_misses", "Steps the run executed.", "cache_misses"),
)
_STATUSES = ("success", "failed", "running", "cached")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _family(lines: list[str], name: str, help_text: str) -> None:
    lines.append(f"# HELP {name} {_escape_help(help_text)}")
    lines.append(f"# TYPE {name} gauge")


def to_prometheus(metrics: Mapping[str, Any], pipeline: str) -> str:
    """``metrics`` (from :func:`metrics_from_lineage`) in Prometheus text exposition format.

    Gauges labelled ``pipeline`` and ``step``: ``odibi_step_duration_seconds``,
    ``odibi_step_rows``, ``odibi_step_rows_per_second``, ``odibi_step_status`` (1 for the
    step's current status); and per pipeline ``odibi_pipeline_steps{status}``,
    ``odibi_pipeline_duration_seconds``, ``odibi_pipeline_rows_in``/``_rows_out``,
    ``odibi_pipeline_cache_hits``/``_cache_misses``.
    """
    steps: Mapping[str, Mapping[str, Any]] = metrics.get("steps") or {}
    lines: list[str] = []
    for gauge in _STEP_GAUGES:
        samples = [(step, values[gauge.key]) for step, values in steps.items() if _is_number(values.get(gauge.key))]
        if samples:
            _family(lines, gauge.name, gauge.help)
        for step, value in samples:
            lines.append(f"{gauge.name}{_labels(pipeline=pipeline, step=step)} {_number(float(value) * gauge.scale)}")

    if steps:
        _family(lines, "odibi_step_status", "1 for the step's status in the latest run (success, failed, running).")
        for step, values in steps.items():
            status = str(values.get("status") or "unknown")
            lines.append(f"odibi_step_status{_labels(pipeline=pipeline, step=step, status=status)} 1")

    summary: Mapping[str, Any] = metrics.get("summary") or {}
    if summary:
        _family(lines, "odibi_pipeline_steps", "Steps of the latest run by status.")
        for status in _STATUSES:
            count = summary.get(f"{status}_count", 0)
            lines.append(f"odibi_pipeline_steps{_labels(pipeline=pipeline, status=status)} {_number(float(count))}")
        for gauge in _PIPELINE_GAUGES:
            value = summary.get(gauge.key)
            if _is_number(value):
                _family(lines, gauge.name, gauge.help)
                lines.append(f"{gauge.name}{_labels(pipeline=pipeline)} {_number(float(value) * gauge.scale)}")
    return "\n".join(lines) + "\n" if lines else ""


def write_metrics(directory: str | os.PathLike[str], lineage: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``metrics.json`` and ``metrics.prom`` for a run into ``directory`` (atomically).

    Returns the two paths. The pipeline label is the lineage's ``pipeline``.
    """
    out = Path(directory)
    written = [atomic_write_text(out / name, text) for name, text in metrics_texts(lineage).items()]
    return written[0], written[1]


def metrics_texts(lineage: Mapping[str, Any]) -> dict[str, str]:
    """``{"metrics.json": ..., "metrics.prom": ...}``: a run's metrics as the files' texts."""
    metrics = metrics_from_lineage(lineage)
    pipeline = str(lineage.get("pipeline") or lineage.get("pipeline_id") or "pipeline")
    return {"metrics.json": dumps(metrics, indent=2), "metrics.prom": to_prometheus(metrics, pipeline)}
