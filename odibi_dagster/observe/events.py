"""ODIBI's EventBus: deliver lifecycle events to the functions named in ``hooks:``.

Node events are emitted by the step itself (so they fire however the asset is
launched: its job, "Materialize" in the UI, a sensor or a backfill). Pipeline events
come from run-status sensors (see ``triggers.hooks``) and from ``odibi-dagster run``.
Hooks run high before medium before low priority; a hook that raises is logged and
never fails the run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from odibi_dagster.config.imports import resolve_callable
from odibi_dagster.config.models import HookConfig, PipelineConfig

PRIORITY_ORDER = {"high": 0, "medium": 1, "low": 2}
_log = logging.getLogger("odibi_dagster.events")


def hooks_for(pipeline: PipelineConfig, event: str, step: str | None = None) -> list[HookConfig]:
    """The pipeline's hooks for ``event`` in priority order (stable within a priority)."""
    chosen = [h for h in pipeline.hooks if h.event == event and (step is None or not h.steps or step in h.steps)]
    return sorted(chosen, key=lambda h: PRIORITY_ORDER[h.priority])


def deliver(
    pipeline: PipelineConfig,
    event: str,
    data: dict[str, Any],
    *,
    log: Callable[[str], Any] | None = None,
    step: str | None = None,
) -> list[str]:
    """Call every hook of ``event`` with ODIBI's event data; returns the errors of hooks that raised."""
    payload = {"event": event, "pipeline_name": pipeline.name, **data}
    errors: list[str] = []
    for hook in hooks_for(pipeline, event, step):
        try:
            fn = resolve_callable(hook.function, pipeline.module_dirs)
            fn(dict(payload))
        except Exception as exc:  # a broken hook must not fail the pipeline
            msg = f"odibi hook {hook.function} for {event} raised {type(exc).__name__}: {exc}"
            errors.append(msg)
            (log or _log.warning)(msg)
    return errors


def emit(execution: Any, event: str, data: dict[str, Any]) -> None:
    """Emit a node event from inside a running step."""
    pipeline = execution.plan.pipeline
    if not pipeline.hooks:
        return
    data = execution.redactor.redact(dict(data, run_id=execution.context.run_id, partition_key=execution.partition_key))
    deliver(pipeline, event, data, log=execution.context.log.warning, step=execution.step.name)
