"""Polling / incremental sensors over a real SQLite source: the watermark in the cursor, one run
per new range, the range reaching the ingest step's query as SQL literals."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from triggers_support import build, evaluate_sensor, launch, write_yaml

from odibi_dagster.config.errors import ConfigValidationError

SENSOR = "orders__poll_ingest_orders"
# The ingest query reads only the range a sensor run hands it, and everything in a manual run.
RANGE_QUERY = (
    "SELECT * FROM orders WHERE ({{ watermark_start }} IS NULL OR {col} > {{ watermark_start }}) "
    "AND ({{ watermark_end }} IS NULL OR {col} <= {{ watermark_end }}) ORDER BY order_id"
)


def make_db(path: Path, rows: list[tuple[int, str, float, str]]) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS orders (order_id INTEGER, customer TEXT, amount REAL, updated_at TEXT)"
        )
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)", rows)
    return path


def order(i: int, customer: str = "acme") -> tuple[int, str, float, str]:
    return (i, customer, 10.0 * i, f"2024-01-01 10:{i:02d}:00")


def orders_pipeline(
    root: Path, *, sensor: dict[str, Any] | None = None, column: str = "order_id", **extra: Any
) -> Path:
    return write_yaml(
        root / "orders.yaml",
        {
            "pipeline": "orders",
            "story": {"enabled": False},
            "sensors": [
                {
                    "type": "incremental",
                    "source": "orders_db",
                    "table": "orders",
                    "watermark_column": column,
                    "step": "ingest_orders",
                    "min_interval_seconds": 30,
                    **(sensor or {}),
                }
            ],
            **extra,
            "steps": [
                {"layer": "connect", "name": "orders_db", "value": "sqlite:///src.db"},
                {
                    "layer": "ingest",
                    "name": "ingest_orders",
                    "type": "sql",
                    "value": RANGE_QUERY.replace("{col}", column),
                    "params": {"connection": "orders_db"},
                    "outputs": {"data": "new_orders"},
                },
                {
                    "layer": "store",
                    "name": "append_orders",
                    "value": "out/orders.csv",
                    "params": {"mode": "append"},
                    "inputs": {"data": "new_orders"},
                },
            ],
        },
    )


def loaded(root: Path) -> list[int]:
    return pd.read_csv(root / "out" / "orders.csv")["order_id"].tolist()


def test_each_new_range_starts_one_run_that_reads_only_those_rows(project: Path, instance: dg.DagsterInstance) -> None:
    make_db(project / "src.db", [order(i) for i in range(1, 6)])
    defs = build(orders_pipeline(project, sensor={"start_value": 2}))
    sensor = defs.resolve_sensor_def(SENSOR)
    assert sensor.minimum_interval_seconds == 30 and sensor.job_name == "orders"

    first = evaluate_sensor(defs, SENSOR, instance)
    (request,) = first.run_requests
    assert request.run_config == {
        "ops": {"orders__ingest_orders": {"config": {"watermark_start": 2, "watermark_end": 5}}}
    }
    assert request.tags["odibi/watermark_start"] == "2" and request.tags["odibi/watermark_end"] == "5"
    assert request.tags["odibi/new_rows"] == "3"
    assert json.loads(first.cursor) == {"v": 1, "watermark": 5}
    assert launch(defs, "orders", instance, request).success
    assert loaded(project) == [3, 4, 5]

    idle = evaluate_sensor(defs, SENSOR, instance, first.cursor)
    assert idle.run_requests == [] and "no rows with order_id past 5" in idle.skip_message

    make_db(project / "src.db", [order(i) for i in range(6, 9)])
    second = evaluate_sensor(defs, SENSOR, instance, first.cursor)
    (request,) = second.run_requests
    assert request.run_key == "order_id:5..8"
    assert launch(defs, "orders", instance, request).success
    assert loaded(project) == [3, 4, 5, 6, 7, 8]  # every row exactly once
    assert json.loads(second.cursor)["watermark"] == 8


def test_no_start_value_reads_from_the_beginning_and_manual_runs_read_everything(
    project: Path, instance: dg.DagsterInstance
) -> None:
    make_db(project / "src.db", [order(i) for i in range(1, 4)])
    defs = build(orders_pipeline(project))
    (request,) = evaluate_sensor(defs, SENSOR, instance).run_requests
    cfg = request.run_config["ops"]["orders__ingest_orders"]["config"]
    assert cfg == {"watermark_start": None, "watermark_end": 3}
    assert launch(defs, "orders", instance, request).success
    assert loaded(project) == [1, 2, 3]
    # Without a sensor (Materialize in the UI, the CLI): no range, the whole table.
    assert defs.resolve_job_def("orders").execute_in_process(instance=instance).success
    assert loaded(project) == [1, 2, 3, 1, 2, 3]


def test_no_new_range_while_the_previous_run_is_in_progress(project: Path, instance: dg.DagsterInstance) -> None:
    from dagster._core.storage.dagster_run import DagsterRun

    make_db(project / "src.db", [order(1)])
    defs = build(orders_pipeline(project))
    instance.add_run(
        DagsterRun(
            job_name="orders",
            run_id="a" * 36,
            status=dg.DagsterRunStatus.STARTED,
            tags={"odibi/sensor": SENSOR},
        )
    )
    busy = evaluate_sensor(defs, SENSOR, instance)
    assert busy.run_requests == [] and "still in progress" in busy.skip_message
    instance.report_run_failed(instance.get_run_by_id("a" * 36))
    assert len(evaluate_sensor(defs, SENSOR, instance).run_requests) == 1


def test_text_watermarks_with_quotes_cannot_inject(project: Path, instance: dg.DagsterInstance) -> None:
    evil = "z'); DROP TABLE orders; --"
    make_db(project / "src.db", [(1, "a", 1.0, "a"), (2, "b", 2.0, "b"), (3, evil, 3.0, evil)])
    defs = build(orders_pipeline(project, column="customer", sensor={"start_value": "a"}))
    tick = evaluate_sensor(defs, SENSOR, instance)
    (request,) = tick.run_requests
    assert request.run_config["ops"]["orders__ingest_orders"]["config"]["watermark_end"] == evil
    assert launch(defs, "orders", instance, request).success
    assert loaded(project) == [2, 3]
    with sqlite3.connect(project / "src.db") as conn:  # the table is still there
        conn.execute("INSERT INTO orders VALUES (4, ?, 4.0, 'x')", (evil + "!",))
    (request,) = evaluate_sensor(defs, SENSOR, instance, tick.cursor).run_requests
    assert launch(defs, "orders", instance, request).success
    assert loaded(project) == [2, 3, 4]


def test_url_source_with_a_query_and_a_timestamp_watermark(project: Path, instance: dg.DagsterInstance) -> None:
    make_db(project / "src.db", [order(i, "acme" if i % 2 else "x:y") for i in range(1, 7)])
    defs = build(
        orders_pipeline(
            project,
            column="updated_at",
            sensor={
                "source": "sqlite:///src.db",
                "table": None,
                # A ':' inside the query is text, not a bind parameter.
                "query": "SELECT * FROM orders WHERE customer <> 'x:y'",
                "start_value": "2024-01-01 10:01:00",
            },
        )
    )
    tick = evaluate_sensor(defs, SENSOR, instance)
    (request,) = tick.run_requests
    assert request.tags["odibi/new_rows"] == "2"  # 3 and 5 (1 is not past the start, evens are filtered)
    assert json.loads(tick.cursor)["watermark"] == "2024-01-01 10:05:00"


def test_time_partitioned_pipeline_polls_into_the_latest_partition(project: Path, instance: dg.DagsterInstance) -> None:
    make_db(project / "src.db", [order(1)])
    defs = build(orders_pipeline(project, partitions={"type": "daily", "start": "2024-01-01", "end": "2024-01-05"}))
    (request,) = evaluate_sensor(defs, SENSOR, instance).run_requests
    assert request.partition_key == "2024-01-04"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"partitions": {"type": "static", "values": ["a"]}}, "needs an unpartitioned or time-partitioned"),
        ({"sensor": {"source": "nowhere"}}, "neither a URL nor a connect step"),
        ({"sensor": {"step": "append_orders"}}, "must be an ingest step"),
    ],
)
def test_polling_sensor_validation(project: Path, change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigValidationError, match=message):
        build(orders_pipeline(project, **change))
