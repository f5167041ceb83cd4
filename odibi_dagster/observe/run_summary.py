"""What a run did, per step, read back from Dagster's event log (the CLI's summary, the
pipeline hooks' event data)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg


def headline(message: str) -> str:
    """The line of an error that says what went wrong (DuckDB puts hints on later lines)."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def summarize_run(instance: dg.DagsterInstance, run_id: str, step_names: Mapping[str, str]) -> list[dict[str, Any]]:
    """Per step (named as in the config: ``step_names`` maps op names to them): status, and the
    error message of failures, read from the run's event log."""
    names = step_names
    out: dict[str, dict[str, Any]] = {}
    for record in instance.all_logs(run_id):
        ev = record.dagster_event
        if ev is None or not ev.step_key:
            continue
        name = names.get(ev.step_key, ev.step_key)
        if ev.event_type_value == "STEP_SUCCESS":
            out[name] = {"step": name, "status": "success", "error": None, "interrupted": False}
        elif ev.event_type_value == "STEP_FAILURE":
            err = ev.event_specific_data.error
            while err is not None and err.cause is not None:
                err = err.cause
            interrupted = err is not None and err.cls_name == "DagsterExecutionInterruptedError"
            msg = "interrupted (SIGINT/SIGTERM)" if interrupted else (err.message.strip() if err else "failed")
            out[name] = {
                "step": name,
                "status": "failed",
                "error": headline(msg) or "failed",
                "interrupted": interrupted,
            }
        elif ev.event_type_value == "STEP_SKIPPED":
            out.setdefault(name, {"step": name, "status": "skipped", "error": None, "interrupted": False})
    return list(out.values())
