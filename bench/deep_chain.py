"""Deep chains: does a chain of N dependent steps build, or is it rejected with a clear message?

    python bench/deep_chain.py --steps 5000,10001

For each size, in a fresh process, a single pipeline (an ingest step, then ``N - 1`` SQL steps
each reading the previous one) goes through everything a code location does with it:

* validation (``load_pipelines``), ``build_definitions``;
* the repository and its jobs (``load_all_definitions``, ``get_all_jobs``);
* the pipeline job's execution plan (``create_execution_plan``: what a run walks first);
* the repository snapshot a code server sends the webserver (``RepositorySnap.from_def``)
  and the job's snapshot, serialized.

The same chain as hand-written ``@dg.asset`` code goes through the same stages, side by side
(``hand``: with the recursion limit raised as odibi raises it; ``hand_default_limit``: Python's
default limit, where plain Dagster code ends in ``RecursionError`` past about 1,000 steps).
Prints, per size and side, the outcome (``built``, ``rejected: <message>``, or the exception
that escaped: never acceptable for odibi) and the time of each stage. ``--run`` also executes
the chain in process (about 60 ms a step). Target (issue 15): a 5,000-step chain builds or is
rejected by validation with a message naming the limit; it never ends in a traceback.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _harness import print_table, proc_status, run_child  # noqa: E402

DATA = HERE / "data"
STAGES = ("validate_s", "definitions_s", "jobs_s", "plan_s", "snapshot_s", "run_s")


def chain_config(steps: int, csv: Path) -> dict[str, Any]:
    chain: list[dict[str, Any]] = [
        {"layer": "ingest", "name": "s00000", "value": str(csv), "outputs": {"data": "d00000"}}
    ]
    for i in range(1, steps):
        chain.append(
            {
                "layer": "transform",
                "name": f"s{i:05d}",
                "type": "sql",
                "value": f"SELECT id, v + 1 AS v FROM prev WHERE v >= {i % 10}",
                "inputs": {"prev": f"d{i - 1:05d}"},
                "outputs": {"data": f"d{i:05d}"},
            }
        )
    return {"pipeline": "deep_chain", "steps": chain}


def _odibi_defs(steps: int, out: Path, marks: dict[str, float]):
    from odibi_dagster import build_definitions
    from odibi_dagster.config.validation import load_pipelines

    csv = out / "input.csv"
    csv.write_text("id,v\n1,1\n2,2\n")
    cfg = out / "deep_chain.json"
    cfg.write_text(json.dumps(chain_config(steps, csv)))
    started = time.perf_counter()
    load_pipelines(cfg)  # validation alone (build_definitions validates again: subtracted below)
    marks["validate_s"] = time.perf_counter() - started
    started = time.perf_counter()
    defs = build_definitions(cfg, base_dir=out)
    marks["definitions_s"] = time.perf_counter() - started - marks["validate_s"]
    return defs


def _hand_defs(steps: int, out: Path, marks: dict[str, float], raise_limit: bool = True):
    import dagster as dg
    import duckdb

    marks["validate_s"] = 0.0
    # Dagster walks the graph recursively: plain Dagster code needs the limit odibi sets itself
    # (see odibi_dagster.translate.definitions._allow_deep_graphs), or it ends in RecursionError.
    if raise_limit:
        sys.setrecursionlimit(max(sys.getrecursionlimit(), 2_000 + 4 * steps))
    started = time.perf_counter()

    def make(i: int) -> dg.AssetsDefinition:
        target = out / f"d{i:05d}.parquet"
        src = (
            "SELECT 1 AS id, 1 AS v"
            if i == 0
            else f"SELECT id, v + 1 AS v FROM read_parquet('{out / f'd{i - 1:05d}.parquet'}')"
        )

        @dg.asset(name=f"d{i:05d}", deps=[f"d{i - 1:05d}"] if i else [])
        def compute() -> None:
            duckdb.sql(f"COPY ({src}) TO '{target}' (FORMAT parquet)")

        return compute

    defs = dg.Definitions(
        assets=[make(i) for i in range(steps)], jobs=[dg.define_asset_job("deep_chain", selection="*")]
    )
    marks["definitions_s"] = time.perf_counter() - started
    return defs


def child(side: str, steps: int, run: bool) -> dict[str, Any]:
    import dagster as dg
    from dagster._core.execution.api import create_execution_plan
    from dagster._core.remote_representation.external_data import RepositorySnap
    from dagster._serdes import serialize_value

    out = Path(tempfile.mkdtemp(prefix=f"deep_chain_{side}_", dir=DATA))
    marks: dict[str, float] = {}
    stage = "definitions"
    try:
        if side == "odibi":
            defs = _odibi_defs(steps, out, marks)
        else:
            defs = _hand_defs(steps, out, marks, raise_limit=side == "hand")
        stage = "jobs"
        started = time.perf_counter()
        repo = defs.get_repository_def()
        repo.load_all_definitions()
        job = repo.get_job("deep_chain")
        marks["jobs_s"] = time.perf_counter() - started
        stage = "execution plan"
        started = time.perf_counter()
        create_execution_plan(job)
        marks["plan_s"] = time.perf_counter() - started
        stage = "snapshot"
        started = time.perf_counter()
        size = len(serialize_value(RepositorySnap.from_def(repo))) + len(serialize_value(job.get_job_snapshot()))
        marks["snapshot_s"] = time.perf_counter() - started
        marks["snapshot_mb"] = size / 2**20
        if run:
            stage = "run"
            started = time.perf_counter()
            assert job.execute_in_process(instance=dg.DagsterInstance.ephemeral()).success
            marks["run_s"] = time.perf_counter() - started
        outcome = "built"
    except Exception as exc:  # what a user would see: a clear validation error, or a traceback
        from odibi_dagster.config.errors import ConfigValidationError

        if isinstance(exc, ConfigValidationError):
            outcome = "rejected: " + str(exc).strip().splitlines()[-1].strip()
        else:
            last = traceback.format_exception_only(exc)[-1].strip()
            outcome = f"TRACEBACK in {stage}: {last[:200]}"
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"outcome": outcome, **marks, **proc_status()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="5000,10001", help="comma-separated chain lengths")
    parser.add_argument("--run", action="store_true", help="also run the chain in process")
    parser.add_argument("--sides", default="odibi,hand", help="of odibi, hand, hand_default_limit")
    parser.add_argument("--json", action="store_true", help="also print one JSON line with every figure")
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        side, steps, run = args.child
        print(json.dumps(child(side, int(steps), run == "run")))
        return
    DATA.mkdir(parents=True, exist_ok=True)
    lines, results = [], {}
    for steps in (int(s) for s in args.steps.split(",")):
        for side in args.sides.split(","):
            r = run_child(__file__, [side, str(steps), "run" if args.run else "norun"])
            results[f"{steps}/{side}"] = r
            print(f"  {steps:>6} steps, {side:<5}: {r['outcome']}", flush=True)
            lines.append(
                [
                    f"{steps} {side}",
                    r["outcome"][:60],
                    *(f"{r[s]:.2f}" if s in r else "-" for s in STAGES),
                    f"{r['proc_s']:.2f}",
                    f"{r['peak_mb']:.0f}",
                ]
            )
    print_table(
        "deep chains (one fresh process each)",
        ["chain", "outcome", "validate s", "defs s", "jobs s", "plan s", "snapshot s", "run s", "process s", "peak MB"],
        lines,
    )
    failed = [k for k, r in results.items() if k.endswith("/odibi") and r["outcome"].startswith("TRACEBACK")]
    print("target: no odibi traceback -", "ok" if not failed else f"FAILED for {', '.join(failed)}")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
