"""Loading definitions stays lean: a code server (``dagster dev``, the daemon's sensors,
``dagster definitions validate``) imports neither pandas nor pyarrow, nor DuckDB (some 14 MB
resident), unless the user's own function modules do. They load when a step first runs, makes
or samples a frame."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROBE = """
import json, sys
from odibi_dagster import build_definitions
defs = build_definitions(sys.argv[1])
defs.resolve_job_def("lean")
print(json.dumps(sorted(m for m in ("pandas", "pyarrow", "numpy", "duckdb") if m in sys.modules)))
"""


def test_building_definitions_imports_no_pandas_pyarrow_or_duckdb(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id,value\n1,10\n2,200\n")
    cfg = tmp_path / "lean.json"
    cfg.write_text(
        json.dumps(
            {
                "pipeline": "lean",
                "steps": [
                    {"layer": "ingest", "name": "read", "value": "in.csv", "outputs": {"data": "raw"}},
                    {
                        "layer": "transform",
                        "name": "big",
                        "type": "sql",
                        "value": "SELECT * FROM raw WHERE value > 100",
                        "inputs": {"raw": "raw"},
                        "outputs": {"data": "big"},
                        "checks": [{"not_null": ["id"]}],
                    },
                    {"layer": "store", "name": "save", "value": "out/big.parquet", "inputs": {"data": "big"}},
                ],
            }
        )
    )
    proc = subprocess.run([sys.executable, "-c", PROBE, str(cfg)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
