"""Spark medallion benchmark: raw PySpark vs the same work through odibi_dagster's Spark engine.

    python bench/spark_medallion.py --rows 5000000

Generates (once, cached under ``bench/data/``) a sales CSV with string amounts, some of them
invalid or negative, then runs bronze -> silver -> gold on ``local[2]``:

(a) ``run_raw``: a plain PySpark script: read CSV -> filter/cast -> write Parquet -> read ->
    group-by -> write Parquet;
(b) ``run_odibi``: the same as an odibi_dagster pipeline config, built with
    ``build_definitions`` and run through Dagster on the Spark engine.

Every run is a fresh Python process (so a fresh JVM), in the order raw, odibi (copy), odibi
(reference), raw (``--rounds N`` repeats the odibi runs and a raw run N times); the best time of
each is kept. ``copy`` persists the ingested CSV as a bronze dataset (the default); ``reference``
is ``ingest_mode: reference``, where the bronze dataset is a manifest of the CSV. Prints wall times (whole process,
JVM start included) and pipeline times (after the session is up), and the ratios odibi/raw.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE / "data"
OUT_DIR = HERE / "out"
MASTER = os.environ.get("ODIBI_BENCH_MASTER", "local[2]")

SILVER_SQL = """
SELECT sale_id,
       store,
       CAST(amount AS DOUBLE) AS amount,
       to_date(sale_date) AS sale_date
FROM bronze
WHERE TRY_CAST(amount AS DOUBLE) > 0
"""

GOLD_SQL = """
SELECT store, sale_date, COUNT(*) AS sales, SUM(amount) AS total, AVG(amount) AS avg_amount
FROM silver
GROUP BY store, sale_date
"""


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------


def generate_csv(rows: int, chunk: int = 1_000_000) -> Path:
    """``bench/data/spark_sales_<rows>.csv`` (cached): sale_id, store, amount (string), sale_date."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    path = DATA_DIR / f"spark_sales_{rows}.csv"  # bench/medallion.py owns sales_*.csv
    if path.exists():
        return path
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    rng = np.random.default_rng(42)
    stores = np.array([f"S{i:03d}" for i in range(50)])
    days = np.datetime64("2024-01-01") + np.arange(365)
    invalid = np.array(["n/a", "", "abc", "12.5.1"])
    schema = pa.schema(
        [("sale_id", pa.int64()), ("store", pa.string()), ("amount", pa.string()), ("sale_date", pa.string())]
    )
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    with tmp.open("wb") as sink:
        sink.write(b"sale_id,store,amount,sale_date\n")
        with pacsv.CSVWriter(sink, schema, write_options=options) as writer:
            for start in range(0, rows, chunk):
                n = min(chunk, rows - start)
                amount = np.round(rng.gamma(2.0, 40.0, n), 2).astype(str)
                negative = rng.random(n) < 0.05
                amount[negative] = np.char.add("-", amount[negative])
                bad = rng.random(n) < 0.03
                amount[bad] = rng.choice(invalid, bad.sum())
                columns = {
                    "sale_id": np.arange(start, start + n, dtype=np.int64),
                    "store": rng.choice(stores, n),
                    "amount": amount,
                    "sale_date": rng.choice(days, n).astype(str),
                }
                writer.write_table(pa.table(columns, schema=schema))
    tmp.rename(path)
    return path


# --------------------------------------------------------------------------------------
# (a) raw PySpark
# --------------------------------------------------------------------------------------


def run_raw(csv_path: str, out_dir: str) -> dict[str, Any]:
    """The medallion as a plain PySpark script. Returns timings and row counts."""
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    t0 = time.perf_counter()
    spark = SparkSession.builder.master(MASTER).appName("bench-raw").config("spark.ui.enabled", "false").getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    t1 = time.perf_counter()
    bronze = spark.read.option("header", "true").option("inferSchema", "true").csv(csv_path)
    silver = bronze.where(F.expr("TRY_CAST(amount AS DOUBLE) > 0")).select(
        "sale_id",
        "store",
        F.col("amount").cast("double").alias("amount"),
        F.to_date("sale_date").alias("sale_date"),
    )
    silver.write.mode("overwrite").parquet(f"{out_dir}/silver")
    silver = spark.read.parquet(f"{out_dir}/silver")
    gold = silver.groupBy("store", "sale_date").agg(
        F.count(F.lit(1)).alias("sales"), F.sum("amount").alias("total"), F.avg("amount").alias("avg_amount")
    )
    gold.write.mode("overwrite").parquet(f"{out_dir}/gold")
    t2 = time.perf_counter()
    result = {
        "session_s": t1 - t0,
        "pipeline_s": t2 - t1,
        "silver_rows": spark.read.parquet(f"{out_dir}/silver").count(),
        "gold_rows": spark.read.parquet(f"{out_dir}/gold").count(),
    }
    spark.stop()
    return result


# --------------------------------------------------------------------------------------
# (b) odibi_dagster: the pipeline config through Dagster on the Spark engine
# --------------------------------------------------------------------------------------


def run_odibi(csv_path: str, out_dir: str) -> dict[str, Any]:
    """The medallion as an odibi_dagster pipeline (config -> build_definitions -> Dagster run).

    ingest CSV -> silver (SQL) -> gold (SQL), datasets persisted as Parquet by the dataset store,
    the same jars as the raw script (no Delta). Returns ``pipeline_s`` (the Dagster run) and
    ``session_s`` (imports, definitions and Spark start-up), and row counts.
    """
    import dagster as dg

    from odibi_dagster import OdibiDatasetStore, SparkEngine, build_definitions

    t0 = time.perf_counter()
    cfg = Path(out_dir) / "bench_spark.json"
    cfg.write_text(
        json.dumps(
            {
                "pipeline": "bench_spark",
                "engine": "spark",
                "story": {"sample_rows": 5},
                "ingest_mode": os.environ.get("ODIBI_BENCH_INGEST_MODE", "copy"),
                "steps": [
                    {"layer": "ingest", "name": "ingest", "value": csv_path, "outputs": {"data": "bronze"}},
                    {
                        "layer": "transform",
                        "name": "clean",
                        "type": "sql",
                        "value": SILVER_SQL,
                        "inputs": {"bronze": "bronze"},
                        "outputs": {"data": "silver"},
                    },
                    {
                        "layer": "transform",
                        "name": "aggregate",
                        "type": "sql",
                        "value": GOLD_SQL,
                        "inputs": {"silver": "silver"},
                        "outputs": {"data": "gold"},
                    },
                ],
            }
        )
    )
    engine = SparkEngine(master=MASTER, app_name="bench-odibi", delta=False, spark_conf={"spark.ui.enabled": "false"})
    engine.spark_session.sparkContext.setLogLevel("ERROR")
    defs = build_definitions(
        cfg,
        base_dir=out_dir,
        resources={
            "odibi_spark": engine,
            "odibi_datasets": OdibiDatasetStore(spark_format="parquet"),
        },
    )
    job = defs.resolve_job_def("bench_spark")
    t1 = time.perf_counter()
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
    t2 = time.perf_counter()
    rows = {
        m.materialization.asset_key.path[-1]: m.materialization.metadata["dagster/row_count"].value
        for m in result.get_asset_materialization_events()
    }
    engine.stop()
    return {"session_s": t1 - t0, "pipeline_s": t2 - t1, "silver_rows": rows["silver"], "gold_rows": rows["gold"]}


RUNNERS = {"raw": run_raw, "odibi": run_odibi}


# --------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------


def _run_child(kind: str, csv_path: Path, out_dir: Path) -> dict[str, Any]:
    """Run one variant in a fresh interpreter (fresh JVM); wall time measured from outside."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    runner, _, mode = kind.partition(":")
    cmd = [sys.executable, __file__, "--child", runner, "--csv", str(csv_path), "--out", str(out_dir)]
    env = {**os.environ, "ODIBI_BENCH_INGEST_MODE": mode or "copy"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{kind} run failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(lines[-1][len("RESULT ") :])
    result["wall_s"] = wall
    return result


def main(argv: list[str] | None = None) -> int:
    """Parse args; either run one child variant or the whole raw/odibi/raw comparison."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument(
        "--rounds", type=int, default=1, help="odibi runs per mode; raw runs before and after each round (best kept)"
    )
    parser.add_argument(
        "--ingest-mode",
        choices=["copy", "reference", "both"],
        default="both",
        help="the odibi pipeline's ingest_mode (copy: bronze persisted; reference: read in place)",
    )
    parser.add_argument("--child", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    parser.add_argument("--csv", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        result = RUNNERS[args.child](args.csv, args.out)
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    modes = ["copy", "reference"] if args.ingest_mode == "both" else [args.ingest_mode]
    t0 = time.perf_counter()
    csv_path = generate_csv(args.rows)
    size_mb = csv_path.stat().st_size / 1e6
    print(f"data: {csv_path} ({args.rows:,} rows, {size_mb:.0f} MB, ready in {time.perf_counter() - t0:.1f}s)")
    print(f"master: {MASTER}, odibi ingest_mode: {', '.join(modes)}")
    order = ["raw"]
    for _ in range(max(1, args.rounds)):
        order += [f"odibi:{m}" for m in modes] + ["raw"]
    runs: list[tuple[str, dict[str, Any]]] = []
    for kind in order:
        result = _run_child(kind, csv_path, OUT_DIR / f"spark_medallion_{kind.partition(':')[0]}")
        runs.append((kind, result))
        nan = float("nan")
        print(
            f"  {kind:<15} wall {result['wall_s']:7.2f}s  session {result.get('session_s', nan):6.2f}s  "
            f"pipeline {result.get('pipeline_s', nan):7.2f}s  "
            f"silver {result.get('silver_rows', '?')}  gold {result.get('gold_rows', '?')}",
            flush=True,
        )
    raws = [r for k, r in runs if k == "raw"]
    best_raw = min(raws, key=lambda r: r["wall_s"])
    best_raw_pipe = min(r["pipeline_s"] for r in raws)
    print(f"raw (best of {len(raws)}): wall {best_raw['wall_s']:.2f}s, pipeline {best_raw_pipe:.2f}s")
    for mode in modes:
        mine = [r for k, r in runs if k == f"odibi:{mode}"]
        best = min(mine, key=lambda r: r["wall_s"])
        if any(best[k] != best_raw[k] for k in ("silver_rows", "gold_rows")):
            print(f"MISMATCH: odibi ({mode}) and raw produced different row counts", file=sys.stderr)
            return 1
        best_pipe = min(r["pipeline_s"] for r in mine)
        print(
            f"odibi ingest_mode={mode} (best of {len(mine)}): wall {best['wall_s']:.2f}s, pipeline "
            f"{best_pipe:.2f}s; ratio odibi/raw: wall {best['wall_s'] / best_raw['wall_s']:.3f}, "
            f"pipeline {best_pipe / best_raw_pipe:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
