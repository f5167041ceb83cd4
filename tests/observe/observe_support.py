"""A small tracked run full of hostile values, shared by the story and browser tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from odibi_dagster.observe.snapshot import snapshot_frame_pandas
from odibi_dagster.observe.tracker import RunTracker

IMG_PAYLOAD = "<img src=x onerror=\"document.title='pwned'\">"
SCRIPT_PAYLOAD = "<script>document.title='pwned'</script>"
EVIL_STEP = "<script>alert(1)</script>"


def build_story_run(tmp_path: Path) -> dict[str, Any]:
    """A run of four steps (success, success, failed, never started) with XSS payloads in a
    sample cell, a column name, a step name, the SQL, the explanation and the error."""
    stories = tmp_path / "stories"
    tracker = RunTracker(stories, "sales_medallion", "0f3c2a9e-1111-4e5b-9c1d-abcdef012345")
    raw = pd.DataFrame(
        {
            "sale_id": [1, 2, 3, 4, 5, 6],
            "customer": ["Ada", IMG_PAYLOAD, SCRIPT_PAYLOAD, "Grace", "Linus", "Guido"],
            "amount": [120.5, -3.0, 99.99, None, 15.0, 8.25],
            "note": ["x" * 300, "a|b", "multi\nline", "", None, "ok"],
        }
    )
    tracker.start_step(
        "ingest_sales",
        "ingest",
        inputs={},
        outputs={"data": "bronze_sales"},
        explanation="Reads the daily sales CSV files.",
    )
    tracker.end_step("ingest_sales", "success", after=snapshot_frame_pandas(raw))

    clean = raw[raw["amount"].fillna(0) > 0].rename(columns={"note": IMG_PAYLOAD})
    clean = clean.assign(amount_eur=clean["amount"] * 0.9).drop(columns=["sale_id"])
    clean["amount"] = clean["amount"].astype("float32")
    tracker.start_step(
        EVIL_STEP,
        "transform",
        inputs={"bronze": "bronze_sales"},
        outputs={"data": "silver_sales"},
        sql=f"SELECT *, amount * 0.9 AS amount_eur\nFROM bronze\nWHERE amount > 0 -- {SCRIPT_PAYLOAD}",
        explanation=f"Drops refunds. {IMG_PAYLOAD}",
        before=snapshot_frame_pandas(raw),
    )
    tracker.end_step(EVIL_STEP, "success", after=snapshot_frame_pandas(clean))

    tracker.start_step("save_silver", "store", inputs={"data": "silver_sales"}, before=snapshot_frame_pandas(clean))
    tracker.end_step("save_silver", "failed", error_message=f"PermissionError: {IMG_PAYLOAD}\n  at write()")

    graph = {
        "nodes": [
            {"name": "ingest_sales", "layer": "ingest"},
            {"name": EVIL_STEP, "layer": "transform"},
            {"name": "save_silver", "layer": "store"},
            {"name": "publish_report", "layer": "publish"},
        ],
        "edges": [
            ["ingest_sales", EVIL_STEP],
            [EVIL_STEP, "save_silver"],
            [EVIL_STEP, "publish_report"],
        ],
    }
    return {"tracker": tracker, "lineage": tracker.export_lineage(), "graph": graph, "stories": stories}
