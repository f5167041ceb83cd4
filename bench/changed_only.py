"""``odibi-dagster run --changed-only``: the rerun of an unchanged pipeline against its first run.

    python bench/changed_only.py --rows 10000000 --repeat 3

A 20-step pipeline (one ingest of a sales CSV, 17 SQL steps over it, two stores) runs with
``--changed-only`` on a fresh project (everything is missing: every step runs), then again with
nothing changed (every step fresh: the sources are observed, Dagster's stale-status resolver
finds nothing stale, and no run starts). Each is a fresh ``odibi-dagster`` process, timed from
start to exit, paired per repeat. Prints both, and the rerun as a share of the first run.
Data is generated once under bench/data/ and reused.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from medallion import make_csv  # noqa: E402 - the medallion bench's sales CSV generator

ODIBI = str(Path(sys.executable).parent / "odibi-dagster")


def steps(csv: Path) -> list[dict]:
    """1 ingest, 17 SQL steps (filters, casts, group-bys and joins over millions of rows), 2 stores."""
    sql = {
        "clean": "SELECT CAST(sale_id AS BIGINT) AS sale_id, store, CAST(amount AS DOUBLE) AS amount, "
        "CAST(quantity AS INTEGER) AS quantity, CAST(sale_date AS DATE) AS sale_date FROM raw "
        "WHERE amount IS NOT NULL AND TRY_CAST(amount AS DOUBLE) > 0",
        "priced": "SELECT *, amount * quantity AS total, amount / quantity AS unit FROM clean",
        "big": "SELECT * FROM priced WHERE total > 500",
        "small": "SELECT * FROM priced WHERE total <= 500",
        "by_day": "SELECT sale_date, SUM(total) AS revenue, COUNT(*) AS sales FROM priced GROUP BY sale_date",
        "by_store": "SELECT store, SUM(total) AS revenue, AVG(unit) AS avg_unit FROM priced GROUP BY store",
        "by_day_store": "SELECT sale_date, store, SUM(total) AS revenue FROM priced GROUP BY sale_date, store",
        "big_by_store": "SELECT store, COUNT(*) AS n, SUM(total) AS revenue FROM big GROUP BY store",
        "small_by_store": "SELECT store, COUNT(*) AS n, SUM(total) AS revenue FROM small GROUP BY store",
        "ranked": "SELECT sale_id, store, total, row_number() OVER (PARTITION BY store ORDER BY total DESC) AS rk "
        "FROM big",
        "top": "SELECT * FROM ranked WHERE rk <= 1000",
        "enriched": "SELECT p.*, d.revenue AS day_revenue FROM priced p JOIN by_day d USING (sale_date)",
        "share": "SELECT sale_id, store, total / day_revenue AS share FROM enriched",
        "share_stats": "SELECT store, AVG(share) AS avg_share, MAX(share) AS max_share FROM share GROUP BY store",
        "weekly": "SELECT date_trunc('week', sale_date) AS week, SUM(revenue) AS revenue FROM by_day GROUP BY 1",
        "mix": "SELECT b.store, b.revenue AS big_revenue, s.revenue AS small_revenue "
        "FROM big_by_store b JOIN small_by_store s USING (store)",
        "report": "SELECT m.*, t.avg_share FROM mix m JOIN share_stats t USING (store) ORDER BY store",
    }
    out: list[dict] = [{"layer": "ingest", "name": "read_sales", "value": str(csv), "outputs": {"data": "raw"}}]
    for name, text in sql.items():
        refs = [t for t in ("raw", *sql) if t != name and f" {t} " in f" {text} "]  # the tables it reads
        out.append(
            {
                "layer": "transform",
                "name": name,
                "type": "sql",
                "value": text,
                "inputs": {t: t for t in refs},
                "outputs": {"data": name},
            }
        )
    out.append({"layer": "store", "name": "save_report", "value": "out/report.parquet", "inputs": {"data": "report"}})
    out.append(
        {"layer": "store", "name": "save_enriched", "value": "out/enriched.parquet", "inputs": {"data": "enriched"}}
    )
    return out


def run(config: Path, cwd: Path) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "ODIBI_BASE_DIR")}
    started = time.perf_counter()
    proc = subprocess.run(
        [ODIBI, "run", str(config), "--changed-only"], cwd=cwd, env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"odibi-dagster failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    csv = make_csv(args.rows)
    pipeline = steps(csv)
    assert len(pipeline) == 20, len(pipeline)
    size = csv.stat().st_size / 1e6
    print(f"pipeline: 20 steps (1 ingest, 17 SQL, 2 stores) over {args.rows:,} rows ({size:.0f} MB CSV)")
    print(f"{'repeat':>6} {'first run':>10} {'unchanged rerun':>16} {'rerun/first':>12}")
    ratios = []
    for i in range(1, args.repeat + 1):
        with tempfile.TemporaryDirectory(prefix="odibi-changed-only-") as tmp:
            root = Path(tmp)
            config = root / "bench.yaml"
            config.write_text(yaml.safe_dump({"pipeline": "bench", "steps": pipeline}, sort_keys=False))
            first, out = run(config, root)
            assert "20 step(s) stale or missing" in out, out
            rerun, out = run(config, root)
            assert "nothing changed, 20 step(s) fresh (cached); no run" in out, out
            shutil.rmtree(root / ".odibi", ignore_errors=True)
        ratios.append(rerun / first)
        print(f"{i:>6} {first:>9.2f}s {rerun:>15.2f}s {rerun / first:>11.1%}", flush=True)
    print(f"median rerun/first: {statistics.median(ratios):.1%} (target: <= 10%)")


if __name__ == "__main__":
    main()
