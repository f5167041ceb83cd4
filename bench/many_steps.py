"""Many small steps: a chain of tiny SQL steps, odibi_dagster vs hand-written Dagster assets.

    python bench/many_steps.py --steps 80,300 --repeat 3

Both sides run the same chain in process, each in a fresh process: step 0 reads a small CSV
(1,000 rows) and persists it as Parquet; each next step runs ``SELECT ... FROM prev`` in DuckDB
over the previous step's Parquet file and persists its result as Parquet, so any step can read
its input from any process (what odibi's dataset store does).

* **odibi**: one pipeline document (an ingest step and ``steps - 1`` SQL transforms), run as
  ``build_definitions(...)`` + ``resolve_job_def(<pipeline>).execute_in_process(instance=
  DagsterInstance.ephemeral())`` (the library path; ``odibi-dagster run`` adds its progress
  logger and summary on top), with odibi's tracker, story, metadata and lineage as configured
  by default.
* **hand**: ``steps`` ``@dg.asset`` functions built by a loop, each opening DuckDB and running
  ``COPY (<same SQL over read_parquet(prev)>) TO '<step>.parquet'``; one asset job, run the
  same way.

Per repeat the two sides are paired; prints the whole process's wall time, the run time after
imports (definitions + instance + run), peak RSS, the per-step marginal cost (the slope of
run time between the smallest and the largest size) and the ratios. Targets (issue 15): wall
<= 1.15x, per-step overhead <= 10 ms over the hand-written side's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _harness import median, paired, print_table, proc_status, run_child  # noqa: E402

DATA = HERE / "data"
SIDES = ("odibi", "hand")
WALL_TARGET, STEP_TARGET_MS = 1.15, 10.0
ROWS = 1_000


def step_sql(i: int, src: str) -> str:
    """Step ``i``'s SQL over the previous step's dataset ``src`` (the same columns every step)."""
    return f"SELECT id, grp, v + {i} AS v, upper(label) AS label FROM {src} WHERE v >= 0"


def make_csv() -> Path:
    import duckdb

    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"many_steps_{ROWS}.csv"
    if not path.exists():
        tmp = path.with_suffix(".tmp.csv")
        duckdb.sql(
            f"COPY (SELECT i AS id, i % 7 AS grp, i * 1.5 AS v, 'row ' || i AS label FROM range({ROWS}) t(i)) "
            f"TO '{tmp}' (HEADER, DELIMITER ',')"
        )
        tmp.rename(path)
    return path


def odibi_config(steps: int, csv: Path) -> dict[str, Any]:
    chain: list[dict[str, Any]] = [
        {"layer": "ingest", "name": "s0000", "value": str(csv), "outputs": {"data": "d0000"}},
    ]
    for i in range(1, steps):
        chain.append(
            {
                "layer": "transform",
                "name": f"s{i:04d}",
                "type": "sql",
                "value": step_sql(i, "prev"),
                "inputs": {"prev": f"d{i - 1:04d}"},
                "outputs": {"data": f"d{i:04d}"},
            }
        )
    return {"pipeline": "many_steps", "steps": chain}


def run_odibi(steps: int, csv: Path, out: Path) -> dict[str, Any]:
    started = time.perf_counter()
    import dagster as dg

    from odibi_dagster import build_definitions

    imported = time.perf_counter()
    cfg = out / "many_steps.json"
    cfg.write_text(json.dumps(odibi_config(steps, csv)))
    defs = build_definitions(cfg, base_dir=out)
    job = defs.resolve_job_def("many_steps")
    built = time.perf_counter()
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    last = out / ".odibi" / "datasets" / "many_steps" / f"d{steps - 1:04d}" / "data.parquet"
    return _finish(started, imported, built, last)


def run_hand(steps: int, csv: Path, out: Path) -> dict[str, Any]:
    started = time.perf_counter()
    import dagster as dg
    import duckdb

    imported = time.perf_counter()

    def path(i: int) -> str:
        return str(out / f"d{i:04d}.parquet")

    def make(i: int) -> dg.AssetsDefinition:
        src = f"read_csv('{csv}', header=true)" if i == 0 else f"read_parquet('{path(i - 1)}')"
        sql = f"SELECT * FROM {src}" if i == 0 else step_sql(i, src)
        target = path(i)

        @dg.asset(name=f"d{i:04d}", deps=[f"d{i - 1:04d}"] if i else [])
        def compute() -> None:
            with duckdb.connect() as con:
                con.sql(f"COPY ({sql}) TO '{target}' (FORMAT parquet)")

        return compute

    defs = dg.Definitions(
        assets=[make(i) for i in range(steps)], jobs=[dg.define_asset_job("many_steps", selection="*")]
    )
    job = defs.resolve_job_def("many_steps")
    built = time.perf_counter()
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    return _finish(started, imported, built, Path(path(steps - 1)))


def _finish(started: float, imported: float, built: float, last: Path) -> dict[str, Any]:
    import duckdb

    done = time.perf_counter()
    rows = duckdb.sql(f"SELECT COUNT(*) FROM read_parquet('{last}')").fetchall()[0][0]
    return {
        "import_s": imported - started,
        "build_s": built - imported,
        "run_s": done - built,
        "after_import_s": done - imported,
        "rows": rows,
        **proc_status(),
    }


RUNNERS = {"odibi": run_odibi, "hand": run_hand}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="80,300", help="comma-separated chain lengths")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="also print one JSON line with every figure")
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        side, steps, csv, out = args.child
        print(json.dumps(RUNNERS[side](int(steps), Path(csv), Path(out))))
        return
    csv = make_csv()
    sizes = [int(s) for s in args.steps.split(",")]
    rows: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
    for rep in range(args.repeat):
        for n in sizes:
            row: dict[str, Any] = {}
            for side in SIDES if rep % 2 == 0 else SIDES[::-1]:
                out = Path(tempfile.mkdtemp(prefix=f"many_steps_{side}_", dir=DATA))
                try:
                    row[side] = run_child(__file__, [side, str(n), str(csv), str(out)])
                finally:
                    shutil.rmtree(out, ignore_errors=True)
            assert row["odibi"]["rows"] == row["hand"]["rows"] == ROWS, row
            rows[n].append(row)
            o, h = row["odibi"], row["hand"]
            print(
                f"  {n:>4} steps, repeat {rep + 1}: wall {o['proc_s']:.2f} vs {h['proc_s']:.2f} s "
                f"({o['proc_s'] / h['proc_s']:.2f}x), run {o['run_s']:.2f} vs {h['run_s']:.2f} s, "
                f"peak {o['peak_mb']:.0f} vs {h['peak_mb']:.0f} MB",
                flush=True,
            )
    lines = []
    summary: dict[str, Any] = {}
    for n in sizes:
        for field, label in (
            ("proc_s", "wall s"),
            ("after_import_s", "after imports s"),
            ("build_s", "definitions s"),
            ("run_s", "run s"),
            ("cpu_s", "process CPU s"),
            ("peak_mb", "peak MB"),
        ):
            p = paired(rows[n], field)
            target = WALL_TARGET if field == "proc_s" else None
            verdict = "" if target is None else ("ok" if p["ratio"] <= target else f"> {target}x")
            lines.append([f"{n} steps: {label}", p["odibi"], p["hand"], f"{p['ratio']:.2f}x", verdict])
            summary[f"{n}/{field}"] = p
    if len(sizes) > 1:
        lo, hi = min(sizes), max(sizes)
        # Per repeat: the slope of run time between the two sizes (same repeat, same machine state).
        slopes = {
            side: [
                (rows[hi][i][side]["run_s"] - rows[lo][i][side]["run_s"]) / (hi - lo) * 1000 for i in range(args.repeat)
            ]
            for side in SIDES
        }
        so, sh = median(slopes["odibi"]), median(slopes["hand"])
        extra = median([a - b for a, b in zip(slopes["odibi"], slopes["hand"], strict=True)])
        verdict = "ok" if extra <= STEP_TARGET_MS else f"> +{STEP_TARGET_MS:.0f} ms"
        lines.append([f"per step ({lo}->{hi}) ms", so, sh, f"+{extra:.1f} ms", verdict])
        summary["per_step_ms"] = {"odibi": so, "hand": sh, "extra": extra}
    print_table(
        f"chain of tiny SQL steps ({ROWS:,} rows), in process (median of {args.repeat}, ratios paired per repeat)",
        ["figure", "odibi", "hand-written", "ratio", "target"],
        lines,
    )
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
