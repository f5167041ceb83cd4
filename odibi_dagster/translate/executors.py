"""The executor each pipeline's job runs with (the pipeline's ``executor:`` setting).

``in_process`` (the default) runs every step in the run's own process. ``multiprocess``
is Dagster's multiprocess executor with two things added so a step process starts
cheaply (Dagster re-imports and rebuilds the code location in every step process):

* the ``forkserver`` start method, preloading Dagster, odibi_dagster and the engines'
  libraries, so a step process is a fork of a warm interpreter instead of a fresh one;
* the job's :class:`PipelinePlan`, shared with its step processes through a file named by
  ``$ODIBI_STEP_PLANS``, so ``build_definitions`` in a step process builds that pipeline
  from the plan instead of loading, validating and building every pipeline of the location.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import tempfile
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster import Field, Selector
from dagster._core.definitions.executor_definition import (
    IN_PROC_CONFIG,
    MULTI_PROC_CONFIG,
    _core_in_process_executor_creation,
    _get_default_executor_requirements,
)
from dagster._core.execution.retries import RetryMode
from dagster._core.execution.step_dependency_config import StepDependencyConfig
from dagster._core.executor.multiprocess import MultiprocessExecutor

from odibi_dagster.config.models import ExecutorConfig

if TYPE_CHECKING:
    from odibi_dagster.plan import PipelinePlan

#: ``<pid of the run process>:<file>``: the plans a run process shares with its step processes.
STEP_PLANS_ENV = "ODIBI_STEP_PLANS"
#: What the forkserver imports once, so that step processes start warm.
PRELOAD_MODULES = ("dagster", "odibi_dagster.translate.step_process")


def executor_for(config: ExecutorConfig, plans: Collection[PipelinePlan]) -> dg.ExecutorDefinition:
    """The executor for an ``executor:`` setting.

    Like Dagster's default executor, run config picks ``in_process`` or ``multiprocess``
    (``execution: {config: {multiprocess: {...}}}``, in the UI's launchpad too); the setting
    only decides the default. Multiprocess runs share ``plans`` (the plans of the jobs the
    executor may run; a live collection is read when a run starts) with their step processes.
    """
    default: dict[str, Any] = (
        {"in_process": {}}
        if config.type == "in_process"
        else {"multiprocess": {"max_concurrent": config.max_concurrent}}
    )
    shared = plans

    @dg.executor(
        name="odibi_executor",
        config_schema=Field(
            Selector({"multiprocess": MULTI_PROC_CONFIG, "in_process": IN_PROC_CONFIG}), default_value=default
        ),
        requirements=_get_default_executor_requirements,
    )
    def _create(init_context: dg.InitExecutorContext) -> Any:
        cfg = init_context.executor_config
        if "multiprocess" in cfg:
            return _PlanSharingExecutor(shared, cfg["multiprocess"])  # type: ignore[arg-type]
        return _core_in_process_executor_creation(cfg["in_process"])  # type: ignore[arg-type]

    return _create


# Every plan this process built definitions for, by job name: what the default executors share.
_KNOWN_PLANS: dict[str, PipelinePlan] = {}
_DEFAULT_EXECUTORS: dict[tuple[str, int | None], dg.ExecutorDefinition] = {}


def default_executor(plans: Sequence[PipelinePlan]) -> dg.ExecutorDefinition:
    """The executor of runs that are not a pipeline's job (the UI's "Materialize" on a selection).

    In-process while every pipeline is; otherwise multiprocess, with the smallest
    ``max_concurrent`` the multiprocess pipelines ask for. One executor object per setting in a
    process: ``Definitions.merge`` accepts two executors only if they are the same object, and a
    dg project may hold several odibi components.
    """
    _KNOWN_PLANS.update({plan.job_name: plan for plan in plans})
    wanted = [p.pipeline.executor for p in plans if p.pipeline.executor.type == "multiprocess"]
    limits = [c.max_concurrent for c in wanted if c.max_concurrent is not None]
    config = ExecutorConfig(type="multiprocess", max_concurrent=min(limits) if limits else None) if wanted else None
    key = (config.type, config.max_concurrent) if config is not None else ("in_process", None)
    if key not in _DEFAULT_EXECUTORS:
        _DEFAULT_EXECUTORS[key] = executor_for(config or ExecutorConfig(), _KNOWN_PLANS.values())
    return _DEFAULT_EXECUTORS[key]


class _PlanSharingExecutor(MultiprocessExecutor):
    """Dagster's multiprocess executor, sharing the job's plan with its step processes."""

    def __init__(self, plans: Collection[PipelinePlan], config: Mapping[str, Any]) -> None:
        # forkserver unless the run config picks another start method
        start = config.get("start_method") or {"forkserver": {"preload_modules": list(PRELOAD_MODULES)}}
        start_method, start_cfg = next(iter(start.items()))
        super().__init__(
            retries=RetryMode.from_config(config["retries"]),  # type: ignore[arg-type]
            max_concurrent=config.get("max_concurrent"),
            tag_concurrency_limits=config.get("tag_concurrency_limits"),
            start_method=start_method,
            explicit_forkserver_preload=(start_cfg or {}).get("preload_modules"),
            step_dependency_config=StepDependencyConfig.from_config(config.get("step_dependency_config")),
        )
        self._plans = plans

    def execute(self, plan_context: Any, execution_plan: Any) -> Iterator[dg.DagsterEvent]:
        with sharing_plans(self._plans):
            if self._start_method == "forkserver":
                _forkserver_with_current_environment()
            yield from super().execute(plan_context, execution_plan)


_FORKSERVER_ENV: tuple[tuple[str, str], ...] | None = None


def _forkserver_with_current_environment() -> None:
    """Restart the process's forkserver if the environment changed since it started.

    Forked step processes inherit the forkserver's environment, not the run process's: a
    process that runs several jobs (a test session, a script calling ``execute_job``) would
    otherwise hand later runs' steps the variables of the first. A run worker runs one job,
    so this costs nothing there.
    """
    from multiprocessing import forkserver

    global _FORKSERVER_ENV
    server = forkserver._forkserver  # type: ignore[attr-defined]
    env = tuple(sorted(os.environ.items()))
    if server._forkserver_pid is not None and env != _FORKSERVER_ENV:
        server._stop()
    _FORKSERVER_ENV = env


_SHARED_FILE: Path | None = None


@contextlib.contextmanager
def sharing_plans(new: Sequence[PipelinePlan]) -> Iterator[None]:
    """Publish the plans ``new`` for the step processes started inside the block.

    One file per run process holds every plan it shared (a process that runs several jobs,
    such as a test session, keeps the forkserver it started with the first one, and with it
    the environment of that moment: so the variable never changes, only the file's contents).
    The variable is set only while the block runs, so processes started later (a webserver a
    test starts, say) never see it.
    """
    global _SHARED_FILE
    if _SHARED_FILE is None:
        fd, name = tempfile.mkstemp(prefix=f"odibi-step-plans-{os.getpid()}-", suffix=".pkl")
        os.close(fd)
        _SHARED_FILE = Path(name)
        atexit.register(_SHARED_FILE.unlink, missing_ok=True)
    plans = _read_plans(_SHARED_FILE) or {}
    plans.update({plan.job_name: plan for plan in new})
    tmp = _SHARED_FILE.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(plans))
    tmp.replace(_SHARED_FILE)
    previous = os.environ.get(STEP_PLANS_ENV)
    os.environ[STEP_PLANS_ENV] = f"{os.getpid()}:{_SHARED_FILE}"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(STEP_PLANS_ENV, None)
        else:
            os.environ[STEP_PLANS_ENV] = previous


def _read_plans(path: Path) -> dict[str, PipelinePlan] | None:
    try:
        data = pickle.loads(path.read_bytes())
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError):
        return None
    return data if isinstance(data, dict) else None


def shared_plans() -> list[PipelinePlan] | None:
    """In a step process: the plans its run process shared; ``None`` anywhere else."""
    value = os.environ.get(STEP_PLANS_ENV)
    if not value or ":" not in value:
        return None
    pid, _, path = value.partition(":")
    if pid == str(os.getpid()):
        return None  # the run process itself builds its definitions as usual
    plans = _read_plans(Path(path))
    return list(plans.values()) if plans else None
