"""The benchmarks still run end to end at tiny sizes: the pandas medallion (every variant
produces the same gold rows and the report has a ratio line per variant), and the scale
benches of issue 15 (definitions, many steps, file watch, deep chain), each printing both
sides and their ratios."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_medallion_bench_runs_every_variant_and_prints_ratios() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "medallion.py"), "--rows", "20000"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    golds = set(re.findall(r"gold rows (\d+)", proc.stdout))
    assert len(golds) == 1 and int(golds.pop()) > 0, proc.stdout
    table = {
        line.split()[0]: line.split()[1:]
        for line in proc.stdout.splitlines()
        if re.match(r"^(raw_duckdb|dagster_duckdb|dagster_pandas|odibi_dagster|odibi_reference)\s+\d", line)
    }
    assert set(table) == {"raw_duckdb", "dagster_duckdb", "dagster_pandas", "odibi_dagster", "odibi_reference"}
    assert table["raw_duckdb"][3:6] == ["1.00", "1.00", "1.00"]  # wall x, pipe x, mem x of the baseline
    assert table["dagster_duckdb"][6:] == ["1.00", "1.00", "1.00"]  # the same against the Dagster floor
    assert all(float(v) > 0 for row in table.values() for v in row)


def _bench(name: str, *args: str) -> tuple[str, dict]:
    """Run ``bench/<name>.py`` with ``--json``; its output and the JSON figures of its last line."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / f"{name}.py"), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(proc.stdout.strip().splitlines()[-1])


def test_definitions_scale_bench_loads_both_sides_and_a_code_location() -> None:
    out, figures = _bench("definitions_scale", "--steps", "30", "--repeat", "1")
    assert "definitions, 30 steps" in out
    for figure in ("load_s", "rss_mb", "location_s", "server_rss_mb", "snapshot_mb"):
        part = "location" if figure in ("location_s", "server_rss_mb", "snapshot_mb") else "load"
        pair = figures[f"30/{part}/{figure}"]
        assert pair["odibi"] > 0 and pair["hand"] > 0 and pair["ratio"] > 0, (figure, pair)
        cold = figures[f"30/{part}/{figure}/cold"]  # the first load, with an empty SQL-check cache
        assert cold["odibi_cold"] > 0 and cold["ratio"] > 0, (figure, cold)
    assert "load: load s, cold cache" in out


def test_many_steps_bench_runs_both_chains_and_reports_the_per_step_cost() -> None:
    out, figures = _bench("many_steps", "--steps", "3,6", "--repeat", "1")
    assert "per step (3->6) ms" in out
    for size in (3, 6):
        assert figures[f"{size}/proc_s"]["ratio"] > 0 and figures[f"{size}/peak_mb"]["hand"] > 0
    assert set(figures["per_step_ms"]) == {"odibi", "hand", "extra"}


def test_file_watch_bench_times_both_sensors_and_the_waiting_cursor() -> None:
    out, figures = _bench("file_watch", "--files", "40", "--new", "3", "--repeat", "1", "--ticks", "1")
    assert "file-watch tick, 40 files, 3 new" in out
    for mode in ("dynamic", "unpartitioned"):
        assert figures[mode]["tick_ms"]["odibi"] > 0 and figures[mode]["tick_ms"]["hand"] > 0
    assert figures["waiting_cursor_kb"] > 0


def test_deep_chain_bench_builds_a_chain_and_rejects_one_past_the_limit() -> None:
    from odibi_dagster.config.validation import MAX_CHAIN_DEPTH

    out, results = _bench("deep_chain", "--steps", f"20,{MAX_CHAIN_DEPTH + 1}", "--sides", "odibi")
    assert results["20/odibi"]["outcome"] == "built", out
    rejected = results[f"{MAX_CHAIN_DEPTH + 1}/odibi"]["outcome"]
    assert rejected.startswith("rejected:") and f"at most {MAX_CHAIN_DEPTH:,}" in rejected, rejected
