"""The pandas benchmark still runs end to end (tiny data): every variant produces the same
gold rows and the report has a ratio line per variant."""

from __future__ import annotations

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
