"""``odibi-dagster``: validate | run | story | lineage | schema."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from odibi_dagster.config.errors import ConfigValidationError


def _cmd_validate(args: argparse.Namespace) -> int:
    from odibi_dagster.config.loaders import discover
    from odibi_dagster.config.validation import load_pipelines
    from odibi_dagster.engines.preflight import check_data

    failed = False
    names: dict[str, str] = {}
    # File by file: the valid configs of a folder are listed even when others fail.
    files = [f for path in args.paths for f in ((Path(path).is_dir() and discover(path)) or [path])]
    for path in files:
        try:
            pipelines = load_pipelines(path, project=args.project, enabled_only=not args.all_rows)
            check_data(pipelines, remote=args.check_sources)  # sources exist, SQL binds to their columns
        except ConfigValidationError as exc:
            failed = True
            for problem in exc.problems:
                print(problem)
            continue
        for p in pipelines:
            source = str(p.source or path)
            if names.get(p.name) == source:
                continue  # the same file named twice
            if p.name in names:  # `run` and build_definitions load the paths together: a clash fails there
                failed = True
                print(f"{source}: pipeline: pipeline: pipeline name '{p.name}' is also used by {names[p.name]}")
                continue
            names[p.name] = source
            print(f"{source}: ok: pipeline '{p.name}', {len(p.steps)} steps{_root_note(p)}")
            for step, field, message in p.compatibility_warnings:
                print(f"{source}: {f'step {step!r}' if step else 'pipeline'}: {field}: warning: {message}")
    return 1 if failed else 0


def _root_note(pipeline: Any) -> str:
    """Where relative paths resolve, when that is not the config's own folder or is ambiguous."""
    root, alternatives = pipeline.data_root.resolve(), pipeline.data_root_alternatives
    if root == pipeline.config_dir.resolve() and not alternatives:
        return ""
    note = f"; relative paths resolve against {root} (ODIBI project root)"
    if alternatives:
        note += f"; {', '.join(str(a) for a in alternatives)} holds the same sources (use --base-dir to choose)"
    return note


def _cmd_schema(args: argparse.Namespace) -> int:
    from odibi_dagster.config.models import PipelineConfig

    schema = PipelineConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "ODIBI pipeline document (odibi_dagster)"
    print(json.dumps(schema, indent=2))
    return 0


def _instance(executor: str, plan: Any, changed_only: bool):
    """The instance of a run: ``$DAGSTER_HOME``'s; else the pipeline's own persistent one
    (``.odibi/dagster/``, created by ``--changed-only``, used by every run once it exists);
    else an ephemeral one (a temporary home for the multiprocess executor)."""
    import dagster as dg

    from odibi_dagster.translate.changed_only import instance_home

    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get(), None
    home = instance_home(plan, create=changed_only)
    if home is not None:
        return dg.DagsterInstance.from_config(home), None
    if changed_only:
        raise ValueError(
            f"--changed-only compares with the runs a Dagster instance recorded, and the work dir "
            f"{plan.work_dir} is remote: set DAGSTER_HOME to a persistent instance"
        )
    if executor == "in_process":
        return dg.DagsterInstance.ephemeral(), None
    home = tempfile.mkdtemp(prefix="odibi-dagster-home-")
    Path(home, "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return dg.DagsterInstance.from_config(home), home


def _cmd_run(args: argparse.Namespace) -> int:

    from odibi_dagster.translate import cli_run

    os.environ[cli_run.PATHS_ENV] = json.dumps([str(Path(p).resolve()) for p in args.paths])
    if args.executor:
        os.environ[cli_run.EXECUTOR_ENV] = args.executor
    if args.base_dir:
        os.environ["ODIBI_BASE_DIR"] = str(Path(args.base_dir).resolve())
    from odibi_dagster.engines.preflight import check_data

    try:
        defs = cli_run.cli_definitions()
        # A missing source or column stops the run before it starts.
        check_data([cli_run.plan_for(job).pipeline for job in cli_run.pipeline_jobs()])
    except ConfigValidationError as exc:
        for problem in exc.problems:
            print(problem)
        return 1
    jobs = cli_run.pipeline_jobs()
    if args.pipeline:
        jobs = [j for j in jobs if j == args.pipeline or cli_run.plan_for(j).name == args.pipeline]
        if not jobs:
            print(f"error: no pipeline named '{args.pipeline}'", file=sys.stderr)
            return 2
    if len(jobs) > 1 and args.select:
        print(
            f"error: --select names steps of one pipeline; {len(jobs)} pipelines found ({', '.join(jobs)}): "
            "choose one with --pipeline",
            file=sys.stderr,
        )
        return 2
    # Every pipeline the paths hold, one after the other (each its own job and runs), as ODIBI
    # runs every enabled row of a config table.
    outcomes: dict[str, int] = {}
    for job_name in jobs:
        code = _run_pipeline(argparse.Namespace(**vars(args)), defs, job_name)
        outcomes[cli_run.plan_for(job_name).name] = code
        if code >= 128:  # interrupted: run nothing more
            break
    if len(jobs) > 1:
        parts = [
            f"'{name}' "
            + ("succeeded" if code == 0 else "FAILED" if code == 1 else "not run" if code == 2 else "interrupted")
            for name, code in outcomes.items()
        ]
        print(
            f"odibi-dagster: {len(outcomes)} of {len(jobs)} pipelines: {', '.join(parts)}",
            file=sys.stdout if all(c == 0 for c in outcomes.values()) else sys.stderr,
        )
    return max(outcomes.values(), default=0)


def _run_pipeline(args: argparse.Namespace, defs: Any, job_name: str) -> int:
    """Run one pipeline of the CLI's paths: 0 success, 1 failed, 2 usage error, 128+N interrupted."""
    from odibi_dagster.translate import cli_run

    os.environ[cli_run.JOB_ENV] = job_name
    job = defs.resolve_job_def(job_name)
    try:
        selection = cli_run.selection_for(defs, job_name, args.select)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    plan = cli_run.plan_for(job_name)
    args.executor = args.executor or plan.pipeline.executor.type
    temp_home = None
    try:
        instance, temp_home = _instance(args.executor, plan, args.changed_only)
        with instance:
            if job.partitions_def is not None and args.partition is None:
                # Fail before a run exists: a run without a key cannot render {{ partition_key }}.
                print(f"error: {cli_run.describe_partitions(plan, job, instance)}", file=sys.stderr)
                return 2
            partition = args.partition if job.partitions_def is not None else None
            tag_sets = cli_run.run_tag_sets(job, plan, partition, instance)
            runs = cli_run.planned_runs(defs, job, plan, instance, tag_sets, selection, args.changed_only)
            return _run_all(args, plan, job, runs, instance)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if temp_home is not None:
            shutil.rmtree(temp_home, ignore_errors=True)


def _run_all(args: argparse.Namespace, plan: Any, job: Any, runs: list[Any], instance: Any) -> int:
    """One Dagster run per tag set (one unless a range is split by the backfill policy)."""
    from odibi_dagster.translate import cli_run

    if instance.is_persistent:
        for run_id in cli_run.fail_orphaned_runs(instance):
            print(
                f"odibi-dagster: run {run_id} was left STARTED by a killed odibi-dagster run; marked FAILURE",
                file=sys.stderr,
            )
    session = cli_run.cli_run_tags(uuid.uuid4().hex)
    try:
        return _run_each(args, job, plan, runs, instance, session)
    except KeyboardInterrupt:
        # Outside Dagster's own interrupt handling (between runs, before or after one): leave
        # no run of this invocation STARTED.
        for run_id in cli_run.cancel_unfinished_runs(instance, session, _signal_name()):
            print(f"odibi-dagster: run {run_id} marked CANCELED", file=sys.stderr)
        raise


def _partition_label(tags: dict[str, str]) -> str:
    """The partition (or range) a run's tags name, for the progress line."""
    if tags.get("dagster/partition"):
        return tags["dagster/partition"]
    if "dagster/asset_partition_range_start" in tags:
        return f"{tags['dagster/asset_partition_range_start']}...{tags['dagster/asset_partition_range_end']}"
    return ""


def _execute(executor: str, job: Any, selection: Any, tags: dict[str, str], instance: Any) -> Any:
    """One Dagster run of ``job``: in this process, or through Dagster's multiprocess executor."""
    import dagster as dg

    from odibi_dagster.translate import cli_run

    if executor == "in_process":
        return job.execute_in_process(
            instance=instance,
            asset_selection=selection,
            tags=tags,
            run_config=cli_run.RUN_CONFIG,
            raise_on_error=False,
        )
    return dg.execute_job(
        dg.reconstructable(cli_run.reconstruct_job),
        instance=instance,
        asset_selection=selection,
        tags=tags,
        run_config=cli_run.RUN_CONFIG,
        raise_on_error=False,
    )


def _report_run(
    args: argparse.Namespace, plan: Any, run_id: str, success: bool, summary: list[dict[str, Any]], elapsed: float
) -> list[dict[str, Any]]:
    """ODIBI's end event, the steps never started and the story of one run; returns its failed steps."""
    from odibi_dagster.translate import cli_run

    failed = [s for s in summary if s["status"] == "failed"]
    cli_run.pipeline_event(
        plan,
        "pipeline_complete" if success else "pipeline_error",
        {
            "run_id": run_id,
            "success_count": sum(s["status"] == "success" for s in summary),
            "failed_count": len(failed),
            "duration_ms": round(elapsed, 3),
            **({"error_message": failed[0]["error"]} if failed else {}),
        },
    )
    if not success:
        ran = {s["step"] for s in summary}
        for step in cli_run.planned_steps(plan, args.select):
            if step not in ran:  # Dagster emits no event for steps it never started
                print(f"  skip  {step:<32} (not run: an upstream step failed)", flush=True)
    story = cli_run.story_for(plan, run_id)
    if story:
        print(f"story: {story}")
    return failed


def _run_each(
    args: argparse.Namespace, job: Any, plan: Any, runs: list[Any], instance: Any, session: dict[str, str]
) -> int:
    from odibi_dagster.observe.run_summary import summarize_run
    from odibi_dagster.translate import cli_run

    failures = 0
    for index, run in enumerate(runs):
        tags = {**run.tags, **session}
        label = _partition_label(tags)
        where = f", partition {label}" if label else ""
        if run.change is not None and not run.selection:
            print(f"odibi-dagster: pipeline '{plan.name}'{where}: nothing changed, {run.cached_note()}; no run")
            continue
        print(f"odibi-dagster: running pipeline '{plan.name}' ({args.executor}){where}{run.plan_note()}", flush=True)
        cli_run.pipeline_event(plan, "pipeline_start", {"start_time": time.strftime("%Y-%m-%dT%H:%M:%S")})
        started = time.perf_counter()
        result = _execute(args.executor, job, run.selection, tags, instance)
        run_id, success = result.run_id, result.success
        for line in cli_run.record_cached(plan, instance, run_id, run):
            print(line, flush=True)
        summary = summarize_run(instance, run_id, plan.steps_by_op)
        elapsed = (time.perf_counter() - started) * 1000
        failed = _report_run(args, plan, run_id, success, summary, elapsed)
        if success:
            print(f"odibi-dagster: pipeline '{plan.name}' succeeded in {elapsed:.0f} ms (run {run_id})")
            continue
        failures += 1
        if any(s["interrupted"] for s in failed) or _received():
            # Dagster turned SIGINT/SIGTERM into a failed run; stop here rather than start the next.
            left = len(runs) - index - 1
            print(
                f"odibi-dagster: pipeline '{plan.name}' interrupted by {_signal_name()}: run {run_id} marked "
                f"FAILURE" + (f"; {left} later run(s) of the range not started" if left else ""),
                file=sys.stderr,
            )
            return _interrupt_exit_code()
        names = ", ".join(f"'{s['step']}'" for s in failed) or "(unknown)"
        print(f"odibi-dagster: pipeline '{plan.name}' FAILED at step {names} (run {run_id})", file=sys.stderr)
        for s in failed:
            print(f"  {s['step']}: {s['error']}", file=sys.stderr)
    return 1 if failures else 0


# Signals this process received. Dagster's handler, installed while a run executes, does not
# say which signal it got; the wakeup fd does (Python writes every signal's number to it).
_INTERRUPTED: list[int] = []
_WAKEUP: list[int] = []


def _received() -> list[int]:
    if _WAKEUP:
        with contextlib.suppress(BlockingIOError, OSError):
            _INTERRUPTED.extend(s for s in os.read(_WAKEUP[0], 64) if s in (signal.SIGINT, signal.SIGTERM))
    return _INTERRUPTED


def _signal_name() -> str:
    return signal.Signals(_received()[-1]).name if _received() else "SIGINT or SIGTERM"


def _interrupt_exit_code() -> int:
    return 128 + (_received()[-1] if _received() else signal.SIGINT)


def _on_signal(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _install_signal_handlers() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt, so runs end FAILURE/CANCELED, never STARTED.

    While a run executes, Dagster swaps in its own handler for both (it fails the run as
    interrupted); this one covers the rest. A signal the parent set to be ignored (``nohup``,
    a background job) stays ignored.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _on_signal)
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    _WAKEUP.append(read_end)


def _cmd_story(args: argparse.Namespace) -> int:
    from odibi_dagster.observe.story.generator import latest_story

    roots: list[Path] = []
    if os.environ.get("ODIBI_BASE_DIR"):
        roots.append(Path(os.environ["ODIBI_BASE_DIR"]) / ".odibi" / "stories")
    for p in args.path or ["."]:
        p = Path(p)
        base = p if p.is_dir() else p.parent
        roots.append(base / ".odibi" / "stories")
    found = [s for r in roots if r.is_dir() for s in [latest_story(r, args.run_id)] if s is not None]
    if not found:
        what = f"run {args.run_id}" if args.run_id else "any run"
        print(f"error: no story found for {what} under {', '.join(str(r) for r in roots)}", file=sys.stderr)
        return 1
    print(max(found, key=lambda s: s.stat().st_mtime))
    return 0


def _cmd_lineage(args: argparse.Namespace) -> int:
    from odibi_dagster.translate.config_lineage import column_path

    if args.base_dir:
        os.environ["ODIBI_BASE_DIR"] = str(Path(args.base_dir).resolve())
    try:
        lines = column_path(args.path, args.column, pipeline=args.pipeline, project=args.project)
    except LookupError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="odibi-dagster", description="Run ODIBI CORE config pipelines on Dagster.")
    sub = parser.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="validate configs; one line per problem, exit 1 if any")
    v.add_argument("paths", nargs="+", help="config files or directories (JSON, YAML, SQLite, CSV)")
    v.add_argument("--project", help="SQLite/CSV: only rows of this project")
    v.add_argument("--all-rows", action="store_true", help="SQLite/CSV: include rows with enabled = 0")
    v.add_argument(
        "--check-sources",
        action="store_true",
        help="also check that remote sources (abfs://, s3://, ...) exist (local ones always are)",
    )
    v.set_defaults(fn=_cmd_validate)

    r = sub.add_parser("run", help="run a pipeline through Dagster")
    r.add_argument("paths", nargs="+", help="config file(s) or directory")
    r.add_argument(
        "--executor",
        choices=["in_process", "multiprocess"],
        help="how steps execute (default: the pipeline's `executor:` setting, in_process)",
    )
    r.add_argument("--select", help="comma-separated step names to run (their datasets must exist upstream)")
    r.add_argument("--partition", help="a partition key, or a range START...END")
    r.add_argument("--pipeline", help="which pipeline, when the paths hold several")
    r.add_argument("--base-dir", help="resolve relative paths and keep working files here")
    r.add_argument(
        "--changed-only",
        action="store_true",
        help="run only the steps Dagster calls stale or missing (code, upstream data or source changed) "
        "and what depends on them; the others are CACHED (instance: $DAGSTER_HOME, else .odibi/dagster/)",
    )
    r.set_defaults(fn=_cmd_run)

    s = sub.add_parser("story", help="print the path of a run's HTML story (default: the latest)")
    s.add_argument("run_id", nargs="?", help="run id (default: latest)")
    s.add_argument("--path", action="append", help="config file or directory whose .odibi/ to search (default .)")
    s.set_defaults(fn=_cmd_story)

    li = sub.add_parser(
        "lineage", help="print where a dataset's column comes from, step by step down to the source's columns"
    )
    li.add_argument("path", help="config file or directory")
    li.add_argument("column", metavar="DATASET.COLUMN", help="a dataset (or store/publish step) and one of its columns")
    li.add_argument("--pipeline", help="which pipeline, when the path holds several")
    li.add_argument("--project", help="SQLite/CSV: only rows of this project")
    li.add_argument("--base-dir", help="resolve relative paths and find persisted datasets here")
    li.set_defaults(fn=_cmd_lineage)

    sc = sub.add_parser("schema", help="print the JSON Schema of the pipeline document")
    sc.set_defaults(fn=_cmd_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``odibi-dagster`` console script."""
    for stream in (sys.stdout, sys.stderr):
        # A message may quote config text that no terminal encoding can show (a lone
        # surrogate from a JSON "\ud800", say): print it escaped instead of crashing.
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    if args.command == "run":
        _install_signal_handlers()
    try:
        return int(args.fn(args))
    except ConfigValidationError as exc:
        for problem in exc.problems:
            print(problem)
        return 1
    except KeyboardInterrupt:
        print(f"odibi-dagster: interrupted by {_signal_name()}", file=sys.stderr)
        return _interrupt_exit_code()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
