"""Metrics from lineage; Prometheus text exposition format."""

from __future__ import annotations

import json
import re

from odibi_dagster.observe.metrics import metrics_from_lineage, to_prometheus, write_metrics

LINEAGE = {
    "pipeline": "sales",
    "run_id": "r1",
    "steps": [
        {
            "step_name": "ingest",
            "layer": "ingest",
            "status": "success",
            "duration_ms": 500.0,
            "before_snapshot": None,
            "after_snapshot": {"row_count": 1000},
        },
        {
            "step_name": 'we"ird\\name\nx',
            "layer": "transform",
            "status": "failed",
            "duration_ms": 0,
            "before_snapshot": {"row_count": 1000},
            "after_snapshot": None,
        },
        {"step_name": "pending", "layer": "store", "status": "running", "duration_ms": None},
    ],
    "summary": {
        "total_steps": 3,
        "success_count": 1,
        "failed_count": 1,
        "running_count": 1,
        "total_duration_ms": 500.0,
        "rows_in": 1000,
        "rows_out": 0,
    },
}

# name{labels} value  -- label values: any char except unescaped " \ newline
SAMPLE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*",?)*\} '
    r"(?:[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|Inf)|NaN)$"
)


def test_metrics_from_lineage():
    metrics = metrics_from_lineage(LINEAGE)
    assert metrics["pipeline"] == "sales" and metrics["run_id"] == "r1"
    assert metrics["steps"]["ingest"] == {
        "layer": "ingest",
        "status": "success",
        "duration_ms": 500.0,
        "rows": 1000,
        "rows_per_second": 2000.0,
    }
    weird = metrics["steps"]['we"ird\\name\nx']
    assert weird["rows"] == 1000 and weird["rows_per_second"] is None  # zero duration
    assert metrics["steps"]["pending"]["duration_ms"] is None and metrics["steps"]["pending"]["rows"] is None
    assert metrics["summary"]["rows_in"] == 1000


def test_prometheus_format():
    text = to_prometheus(metrics_from_lineage(LINEAGE), "sales")
    assert text.endswith("\n")
    families: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in families, f"duplicate family {name}"
            families[name] = ""
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert name in families and kind == "gauge"
            families[name] = kind
        else:
            assert SAMPLE.match(line), line
            assert line.split("{")[0] in families  # every sample follows its HELP/TYPE
    assert 'odibi_step_duration_seconds{pipeline="sales",step="ingest"} 0.5' in text
    assert 'odibi_step_rows{pipeline="sales",step="ingest"} 1000' in text
    assert 'odibi_step_rows_per_second{pipeline="sales",step="ingest"} 2000' in text
    assert 'odibi_step_status{pipeline="sales",step="we\\"ird\\\\name\\nx",status="failed"} 1' in text
    assert 'odibi_pipeline_steps{pipeline="sales",status="running"} 1' in text
    assert 'odibi_pipeline_duration_seconds{pipeline="sales"} 0.5' in text
    assert 'odibi_pipeline_rows_out{pipeline="sales"} 0' in text
    # a step without a duration has no duration sample
    assert 'odibi_step_duration_seconds{pipeline="sales",step="pending"}' not in text


def test_prometheus_empty():
    assert to_prometheus(metrics_from_lineage({"steps": []}), "p") == ""


def test_write_metrics(tmp_path):
    json_path, prom_path = write_metrics(tmp_path / "metrics", LINEAGE)
    assert json_path.name == "metrics.json" and prom_path.name == "metrics.prom"
    assert json.loads(json_path.read_text())["steps"]["ingest"]["rows"] == 1000
    assert 'pipeline="sales"' in prom_path.read_text()
