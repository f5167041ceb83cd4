"""Where odibi_dagster's time goes: inclusive time per named function, for one bench scenario.

    python bench/profile_odibi.py definitions --steps 5000            # load of definitions_scale's project
    python bench/profile_odibi.py many_steps --steps 300              # many_steps' chain, run in process
    python bench/profile_odibi.py file_watch --files 10000            # one file-watch tick (dynamic)
    python bench/profile_odibi.py medallion --mode reference          # medallion.py's odibi variant, 20 M rows
    python bench/profile_odibi.py imports                             # what importing odibi_dagster loads

Wraps the functions listed in ``PHASES`` (``module:qualname``) with timers: wall and CPU time
(this thread), calls, and inclusive of what they call (a recursive call counts once). The
wrappers cost about a microsecond a call, so the figures are the real ones, unlike cProfile's,
which slows pure-Python code unevenly. ``--cprofile FILE`` also writes a cProfile dump (for
snakeviz / pstats) of the same scenario. ``imports`` lists the heavy packages odibi loads that
plain Dagster code does not, with their import time (from ``-X importtime``).

Run it in a quiet moment: the figures are one process's, not paired like the benches'.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _harness import child_env, proc_status  # noqa: E402

PHASES = {
    "definitions": [
        "odibi_dagster.translate.definitions:build_definitions",
        "odibi_dagster.translate.definitions:load_configs",
        "odibi_dagster.config.loaders:discover",
        "odibi_dagster.config.loaders.discovery:_looks_like_config",
        "odibi_dagster.config.loaders:read_raw",
        "odibi_dagster.config.validation:validate_raw",
        "odibi_dagster.config.validation.document:parse_document",
        "odibi_dagster.config.validation.steps:check_step_details",
        "odibi_dagster.config.validation.sql:check_sql",
        "odibi_dagster.config.sql:parse_sql",
        "odibi_dagster.config.templating:render_sql",
        "odibi_dagster.config.validation.pipeline:check_pipeline",
        "odibi_dagster.translate.definitions:build_plans",
        "odibi_dagster.translate.definitions:definitions_from_plans",
        "odibi_dagster.translate.assets:build_step_assets",
        "odibi_dagster.translate.sources:build_source_assets",
        "odibi_dagster.translate.translator:OdibiTranslator.get_asset_spec",
        "odibi_dagster.translate.translator:OdibiTranslator.get_metadata",
        "odibi_dagster.translate.translator:OdibiTranslator.get_code_version",
        "odibi_dagster.translate.translator:OdibiTranslator.get_description",
        "dagster:multi_asset",
        "dagster:define_asset_job",
        "odibi_dagster.triggers.build:build_triggers",
        "dagster:Definitions",
        "dagster._core.definitions.repository_definition.repository_definition:RepositoryDefinition.load_all_definitions",
    ],
    "many_steps": [
        "odibi_dagster.translate.data_steps:run_data_step",
        "odibi_dagster.translate.data_steps:_frames",
        "odibi_dagster.translate.data_steps:_persist",
        "odibi_dagster.translate.data_steps:_described",
        "odibi_dagster.translate.data_steps:_sql_lineage",
        "odibi_dagster.translate.assets:_inputs",
        "odibi_dagster.translate.assets:_upstream_keys",
        "odibi_dagster.translate.assets:_reusable",
        "odibi_dagster.translate.runtime:StepExecution.update_story",
        "odibi_dagster.translate.runtime:publish_story",
        "odibi_dagster.translate.runtime:StepExecution._publish_due",
        "odibi_dagster.observe.tracker:RunTracker.start_step",
        "odibi_dagster.observe.tracker:RunTracker.end_step",
        "odibi_dagster.observe.tracker:RunTracker.export_lineage",
        "odibi_dagster.observe.story.generator:StoryGenerator.render",
        "odibi_dagster.observe.snapshot:snapshot_ref",
        "odibi_dagster.observe.lineage:sql_lineage",
        "odibi_dagster.observe.lineage:table_column_lineage",
        "odibi_dagster.observe.metadata:dataset_metadata",
        "odibi_dagster.engines.versions:content_version",
        "odibi_dagster.io.dataset_store:DatasetLayout.persist",
        "odibi_dagster.io.dataset_store:DatasetLayout.load",
        "odibi_dagster.translate.runtime:StepExecution.render_value",
        "odibi_dagster.translate.runtime:StepExecution.params",
        "odibi_dagster.translate.runtime:engine_context",
        "odibi_dagster.engines.pandas_duckdb:PandasDuckDBEngine.context",
        "odibi_dagster.engines.pandas_duckdb:PandasDuckDBContext.execute_sql",
        "odibi_dagster.engines.pandas_duckdb:PandasDuckDBContext.register_temp",
        "odibi_dagster.engines.pandas_duckdb:persist_frame",
        "odibi_dagster.observe.events:emit",
        "odibi_dagster.checks:run_check",
    ],
    "medallion": [
        "odibi_dagster.translate.definitions:build_definitions",
        "odibi_dagster.translate.data_steps:run_data_step",
        "odibi_dagster.translate.sink_steps:run_sink_step",
        "odibi_dagster.translate.data_steps:_frames",
        "odibi_dagster.translate.data_steps:_reference_manifest",
        "odibi_dagster.translate.data_steps:_persist",
        "odibi_dagster.translate.data_steps:_described",
        "odibi_dagster.translate.data_steps:_sql_lineage",
        "odibi_dagster.translate.runtime:publish_story",
        "odibi_dagster.observe.snapshot:snapshot_ref",
        "odibi_dagster.engines.versions:content_version",
        "odibi_dagster.engines.formats.csv:csv_row_count",
        "odibi_dagster.engines.pandas_duckdb:PandasDuckDBContext.snapshot",
        "odibi_dagster.engines.pandas_duckdb:PandasDuckDBContext.source_snapshot",
        "odibi_dagster.engines.pandas_duckdb:PandasDuckDBContext.write",
        "odibi_dagster.engines.pandas_duckdb:persist_frame",
        "odibi_dagster.engines.source_ref:verified_manifest",
        "odibi_dagster.engines.source_ref:encode_sample",
        "odibi_dagster.observe.metadata:dataset_metadata",
        "odibi_dagster.observe.tracker:RunTracker.end_step",
    ],
    "file_watch": [
        "odibi_dagster.triggers.sensors:scan_files",
        "odibi_dagster.triggers.sensors:FileWatchCursor.parse",
        "odibi_dagster.triggers.sensors:FileWatchCursor.advance",
        "odibi_dagster.triggers.sensors:FileWatchCursor.dumps",
        "odibi_dagster.triggers.sensors.common:run_in_flight",
        "dagster._core.instance.instance:DagsterInstance.get_dynamic_partitions",
        "dagster._core.instance.instance:DagsterInstance.has_dynamic_partition",
        "dagster._core.definitions.sensor_definition:SensorDefinition.resolve_run_requests",
    ],
}


class Timers:
    """Inclusive wall/CPU time and calls per wrapped function (outermost call only)."""

    def __init__(self) -> None:
        self.stats: dict[str, list[float]] = {}
        self.depth: dict[str, int] = {}

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        stats = self.stats.setdefault(name, [0.0, 0.0, 0])
        import inspect

        if inspect.isgeneratorfunction(getattr(fn, "__wrapped__", fn)):
            return fn  # a context manager's generator: timed through its caller

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            outer = self.depth.get(name, 0) == 0
            self.depth[name] = self.depth.get(name, 0) + 1
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.depth[name] -= 1
                if outer:
                    stats[0] += time.perf_counter() - wall
                    stats[1] += time.thread_time() - cpu
                    stats[2] += 1

        return timed

    def install(self, targets: list[str]) -> None:
        """Replace each target in its module or class, and in every loaded module that imported it by name."""
        for target in targets:
            module_name, qualname = target.split(":")
            module = importlib.import_module(module_name)
            owner: Any = module
            *path, attr = qualname.split(".")
            for part in path:
                owner = getattr(owner, part)
            original = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
            if isinstance(original, staticmethod | classmethod):
                continue
            # A class (dg.Definitions) is replaced by a timed factory where it is looked up
            # (``dg.Definitions(...)``); its own module keeps the class for isinstance checks.
            wrapped = self.wrap(target, original)
            setattr(owner, attr, wrapped)
            if not isinstance(owner, type):
                for other in list(sys.modules.values()):
                    if (
                        getattr(other, "__name__", "").startswith("odibi_dagster")
                        and getattr(other, attr, None) is original
                    ):
                        setattr(other, attr, wrapped)

    def report(self, title: str, total_wall: float) -> None:
        print(f"\n{title}: total {total_wall:.2f} s wall")
        print(f"{'function':<100} {'calls':>7} {'wall s':>8} {'cpu s':>8} {'% wall':>7} {'ms/call':>8}")
        for name, (wall, cpu, calls) in sorted(self.stats.items(), key=lambda kv: -kv[1][0]):
            if calls:
                print(
                    f"{name:<100} {int(calls):>7} {wall:>8.3f} {cpu:>8.3f} {100 * wall / total_wall:>6.1f}% "
                    f"{1000 * wall / calls:>8.2f}"
                )


def scenario_definitions(args: argparse.Namespace) -> Callable[[], Any]:
    from definitions_scale import make_project

    root = make_project(args.steps, args.format)

    def run() -> Any:
        import importlib.util

        spec = importlib.util.spec_from_file_location("bench_defs", root / "odibi_defs.py")
        mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
        repo = mod.defs.get_repository_def()
        repo.load_all_definitions()
        return repo.get_all_jobs()

    return run


def scenario_many_steps(args: argparse.Namespace) -> Callable[[], Any]:
    from many_steps import make_csv, run_odibi

    csv = make_csv()
    out = Path(tempfile.mkdtemp(prefix="profile_many_steps_", dir=HERE / "data"))
    return lambda: run_odibi(args.steps, csv, out)


def scenario_file_watch(args: argparse.Namespace) -> Callable[[], Any]:
    import dagster as dg
    from file_watch import _apply, _evaluate, make_files, odibi_defs

    root = Path(tempfile.mkdtemp(prefix="profile_file_watch_", dir=HERE / "data"))
    folder = root / "incoming"
    make_files(folder, 0, args.files, age_s=3600)
    (root / "home").mkdir()
    instance = dg.DagsterInstance.local_temp(str(root / "home"))
    defs, sensor = odibi_defs(root, folder, "dynamic")
    first = _evaluate(defs, sensor, instance, None)
    _apply(instance, first)
    make_files(folder, args.files, 10, age_s=120)
    _evaluate(defs, sensor, instance, first.cursor)  # warm
    return lambda: [_evaluate(defs, sensor, instance, first.cursor) for _ in range(5)]


def scenario_medallion(args: argparse.Namespace) -> Callable[[], Any]:
    from medallion import make_csv, run_odibi

    csv = make_csv(args.rows)
    out = Path(tempfile.mkdtemp(prefix="profile_medallion_", dir=HERE / "data"))
    return lambda: run_odibi(csv, out, args.mode)


def imports_report() -> None:
    """Heavy packages importing odibi_dagster's definitions path loads, beyond dagster's own."""
    code = (
        "import sys, time; t=time.perf_counter(); import dagster; d=time.perf_counter();"
        "base=set(sys.modules); from odibi_dagster import build_definitions; o=time.perf_counter();"
        "new=sorted({m.split('.')[0] for m in set(sys.modules)-base});"
        "import json; print(json.dumps({'dagster_s': d-t, 'odibi_s': o-d, 'new': new}))"
    )
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, env=child_env(), check=True
    )
    info = json.loads(out.stdout.strip().splitlines()[-1])
    cumulative: dict[str, int] = {}
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cum, name = (p.strip() for p in line[len("import time:") :].split("|"))
        if name.split(".")[0] in info["new"] and "." not in name.strip():
            cumulative[name.strip()] = int(cum)
    print(f"import dagster: {info['dagster_s']:.2f} s; then odibi_dagster.build_definitions: {info['odibi_s']:.2f} s")
    print("top-level packages odibi adds (cumulative import time, -X importtime):")
    for name, us in sorted(cumulative.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<30} {us / 1e6:7.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=("definitions", "many_steps", "file_watch", "medallion", "imports"))
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=20_000_000, help="medallion: rows of the CSV")
    parser.add_argument("--mode", default="copy", choices=("copy", "reference"), help="medallion: ingest mode")
    parser.add_argument("--format", default="yaml", choices=("yaml", "json"))
    parser.add_argument("--cprofile", help="also write a cProfile dump of the scenario here")
    args = parser.parse_args()
    if args.scenario == "imports":
        imports_report()
        return
    run = {
        "definitions": scenario_definitions,
        "many_steps": scenario_many_steps,
        "file_watch": scenario_file_watch,
        "medallion": scenario_medallion,
    }[args.scenario](args)
    import odibi_dagster.translate.assets
    import odibi_dagster.translate.definitions
    import odibi_dagster.translate.runtime  # noqa: F401

    timers = Timers()
    timers.install(PHASES[args.scenario])
    started = time.perf_counter()
    if args.cprofile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.runcall(run)
        profiler.dump_stats(args.cprofile)
    else:
        run()
    total = time.perf_counter() - started
    timers.report(f"{args.scenario} ({args.steps if args.scenario != 'file_watch' else args.files})", total)
    status = proc_status()
    print(f"process: RSS {status['rss_mb']:.0f} MB, peak {status['peak_mb']:.0f} MB, CPU {status['cpu_s']:.2f} s")
    print("pandas imported:", "pandas" in sys.modules)


if __name__ == "__main__":
    main()
