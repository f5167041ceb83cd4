"""Partitions from the pipeline config, partition variables in steps, one file per partition,
partition mappings, backfill policies and the CLI's --partition (real Dagster, real DuckDB)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
from odibi_triggers_lib import (
    ODIBI_CLI,
    build,
    daily_pipeline,
    days,
    materializations,
    write_csv,
    write_daily_data,
    write_yaml,
)

from odibi_dagster.config.errors import ConfigValidationError
from odibi_dagster.config.models import PartitionsConfig
from odibi_dagster.config.partitions import (
    build_partitions_def,
    file_from_partition_key,
    file_partition_key,
    partition_for_path,
)
from odibi_dagster.config.templating import render_sql
from odibi_dagster.io.dataset_store import partition_file_stem

INJECTION = "x'; DROP TABLE t; --"


def _pdef(**cfg) -> dg.PartitionsDefinition:
    out = build_partitions_def(PartitionsConfig(**cfg), "p")
    assert out is not None
    return out


def test_time_partitions_from_config_honour_start_end_and_timezone() -> None:
    daily = _pdef(type="daily", start="2024-01-01", end="2024-01-08", timezone="America/New_York")
    assert isinstance(daily, dg.DailyPartitionsDefinition)
    assert daily.get_partition_keys() == days("2024-01-01", 7)
    window = daily.time_window_for_partition_key("2024-01-03")
    assert window.start.isoformat() == "2024-01-03T00:00:00-05:00"  # midnight in New York, not UTC

    hourly = _pdef(type="hourly", start="2024-03-10", end="2024-03-10T05:00:00", timezone="Europe/Amsterdam")
    assert hourly.get_partition_keys()[:2] == ["2024-03-10-00:00", "2024-03-10-01:00"]
    assert len(hourly.get_partition_keys()) == 5

    weekly = _pdef(type="weekly", start="2024-01-07", end="2024-02-04")
    assert weekly.get_partition_keys() == ["2024-01-07", "2024-01-14", "2024-01-21", "2024-01-28"]
    monthly = _pdef(type="monthly", start="2024-01-01", end="2024-04-01")
    assert monthly.get_partition_keys() == ["2024-01-01", "2024-02-01", "2024-03-01"]


def test_static_and_dynamic_partitions_from_config() -> None:
    static = _pdef(type="static", values=["north", "south"])
    assert static.get_partition_keys() == ["north", "south"]
    dynamic = _pdef(type="dynamic", name="landing_files")
    assert isinstance(dynamic, dg.DynamicPartitionsDefinition) and dynamic.name == "landing_files"
    with pytest.raises(ValueError, match="not unique"):
        _pdef(type="static", values=["a", "a"])


def test_bad_partition_settings_fail_validation(project: Path) -> None:
    path = daily_pipeline(project, "bad")
    text = path.read_text().replace("end: '2024-01-11'", "end: '2023-01-01'")
    path.write_text(text)
    with pytest.raises(ConfigValidationError, match="not after start"):
        build(path)


def test_partition_variables_reach_sql_and_paths(project: Path, instance: dg.DagsterInstance) -> None:
    write_daily_data(project, days("2024-01-01", 3))
    defs = build(daily_pipeline(project))
    job = defs.resolve_job_def("daily")
    result = job.execute_in_process(instance=instance, partition_key="2024-01-02")
    assert result.success
    out = pd.read_csv(project / "out" / "2024-01-02.csv")
    assert out.to_dict("records") == [
        {
            "pk": "2024-01-02",
            "ps": "2024-01-02T00:00:00+00:00",
            "pe": "2024-01-03T00:00:00+00:00",
            "n": 6,
            "revenue": round(sum(10 + i * 1.5 for i in range(6)), 2),
        }
    ]
    # Partitioned assets report the partition's rows.
    mats = materializations(instance, dg.AssetKey(["daily", "bronze"]))
    assert [(m.partition, m.metadata["dagster/partition_row_count"].value) for m in mats] == [("2024-01-02", 6)]


def test_one_file_per_partition_and_rerun_replaces_only_that_partition(
    project: Path, instance: dg.DagsterInstance
) -> None:
    write_daily_data(project, days("2024-01-01", 3))
    defs = build(daily_pipeline(project))
    job = defs.resolve_job_def("daily")
    assert job.execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": "2024-01-01",
            "dagster/asset_partition_range_end": "2024-01-03",
        },
    ).success
    folder = project / ".odibi" / "datasets" / "daily" / "bronze"
    files = sorted(p.name for p in folder.iterdir())
    assert files == [f"partition={d}.parquet" for d in days("2024-01-01", 3)]
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}

    # New data for the 2nd day only, then re-run that partition.
    write_csv(
        project / "data" / "daily" / "2024-01-02" / "sales.csv",
        ["sale_id", "store", "amount", "sale_date"],
        [[1, "north", 1.0, "2024-01-02"]],
    )
    assert job.execute_in_process(instance=instance, partition_key="2024-01-02").success
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}
    assert after["partition=2024-01-01.parquet"] == before["partition=2024-01-01.parquet"]
    assert after["partition=2024-01-03.parquet"] == before["partition=2024-01-03.parquet"]
    assert after["partition=2024-01-02.parquet"] != before["partition=2024-01-02.parquet"]
    assert duckdb.sql(f"SELECT COUNT(*) FROM '{folder}/partition=2024-01-02.parquet'").fetchall() == [(1,)]
    assert pd.read_csv(project / "out" / "2024-01-01.csv")["n"].tolist() == [5]


def test_window_partition_mapping_reads_trailing_partitions(project: Path, instance: dg.DagsterInstance) -> None:
    write_daily_data(project, days("2024-01-01", 4), rows_per_day=lambda i: 1)
    path = daily_pipeline(
        project,
        extra_steps=[
            {
                "layer": "transform",
                "name": "trailing",
                "type": "sql",
                "partition_mapping": {"type": "window", "start_offset": -2},
                "value": "SELECT {{ partition_key }} AS pk, COUNT(*) AS days, MIN(pk) AS first_day FROM s",
                "inputs": {"s": "summary"},
                "outputs": {"data": "trailing"},
            }
        ],
    )
    job = build(path).resolve_job_def("daily")
    # A single run over the range: the window of each day is read from the run's own partitions.
    result = job.execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": "2024-01-01",
            "dagster/asset_partition_range_end": "2024-01-04",
        },
    )
    assert result.success
    folder = project / ".odibi" / "datasets" / "daily" / "trailing"
    rows = duckdb.sql(f"SELECT pk, days, first_day FROM '{folder}/*.parquet' ORDER BY pk").fetchall()
    assert rows == [
        ("2024-01-01", 1, "2024-01-01"),
        ("2024-01-02", 2, "2024-01-01"),
        ("2024-01-03", 3, "2024-01-01"),
        ("2024-01-04", 3, "2024-01-02"),
    ]


def test_reference_ingest_keeps_one_manifest_per_partition_and_windows_read_them(
    project: Path, instance: dg.DagsterInstance
) -> None:
    write_daily_data(project, days("2024-01-01", 3), rows_per_day=lambda i: i + 1)
    path = daily_pipeline(
        project,
        ingest_mode="reference",
        extra_steps=[
            {
                "layer": "transform",
                "name": "trailing",
                "type": "sql",
                "partition_mapping": {"type": "window", "start_offset": -1},
                "value": "SELECT {{ partition_key }} AS pk, COUNT(*) AS n FROM b",
                "inputs": {"b": "bronze"},
                "outputs": {"data": "trailing"},
            }
        ],
    )
    job = build(path).resolve_job_def("daily")
    for day in days("2024-01-01", 3):  # one run per partition: the window reads earlier runs' manifests
        assert job.execute_in_process(instance=instance, partition_key=day).success
    bronze = project / ".odibi" / "datasets" / "daily" / "bronze"
    assert sorted(p.name for p in bronze.iterdir()) == [
        f"{partition_file_stem(d)}.source.json" for d in days("2024-01-01", 3)
    ]
    folder = project / ".odibi" / "datasets" / "daily" / "trailing"
    rows = duckdb.sql(f"SELECT pk, n FROM '{folder}/*.parquet' ORDER BY pk").fetchall()
    assert rows == [("2024-01-01", 1), ("2024-01-02", 3), ("2024-01-03", 5)]
    counts = [
        m.metadata["dagster/partition_row_count"].value
        for m in materializations(instance, dg.AssetKey(["daily", "bronze"]))
    ]
    assert sorted(counts) == [1, 2, 3]


def test_missing_upstream_partition_fails_clearly_without_retrying(project: Path, instance: dg.DagsterInstance) -> None:
    write_daily_data(project, days("2024-01-01", 2))
    path = daily_pipeline(project, retry={"max_retries": 3, "delay_seconds": 0})
    job = build(path).resolve_job_def("daily")
    selection = [dg.AssetKey(["daily", "summary"])]
    result = job.execute_in_process(
        instance=instance, partition_key="2024-01-02", asset_selection=selection, raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "has not been materialized for partition(s) 2024-01-02" in str(failure.event_specific_data.error)
    assert "STEP_UP_FOR_RETRY" not in {e.event_type_value for e in result.all_events}


@pytest.mark.parametrize("policy", ["single_run", "multi_run"])
def test_backfill_policy_from_config(project: Path, policy: str) -> None:
    defs = build(daily_pipeline(project, backfill={"policy": policy, "max_partitions_per_run": 3}))
    # every step's asset (the ingest's source files are an observable source asset: no backfills)
    for assets_def in [a for a in defs.assets if isinstance(a, dg.AssetsDefinition)]:
        bp = assets_def.backfill_policy
        assert bp is not None
        assert bp.max_partitions_per_run == (None if policy == "single_run" else 3)


def test_single_run_over_a_range_materializes_every_partition(project: Path, instance: dg.DagsterInstance) -> None:
    write_daily_data(project, days("2024-01-01", 4))
    keys_step = {
        "layer": "transform",
        "name": "keys",
        "type": "sql",
        "inputs": {"s": "summary"},
        "outputs": {"data": "keys"},
        "value": "SELECT {{ partition_key }} AS pk, len(list_value{{ partition_keys }}) AS n_keys, "
        "list_min(list_value{{ partition_keys }}) AS first_key FROM s",
    }
    path = daily_pipeline(project, backfill={"policy": "single_run"}, extra_steps=[keys_step])
    job = build(path).resolve_job_def("daily")
    result = job.execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": "2024-01-01",
            "dagster/asset_partition_range_end": "2024-01-04",
        },
    )
    assert result.success
    assert sorted(p.name for p in (project / "out").iterdir()) == [f"{d}.csv" for d in days("2024-01-01", 4)]
    mats = materializations(instance, dg.AssetKey(["daily", "summary"]))
    assert sorted(m.partition for m in mats) == days("2024-01-01", 4)
    assert pd.read_csv(project / "out" / "2024-01-04.csv")["n"].tolist() == [8]
    # partition_keys holds the whole range of the run, partition_key the one being computed.
    stored = project / ".odibi" / "datasets" / "daily" / "keys"
    rows = duckdb.sql(f"SELECT pk, n_keys, first_key FROM '{stored}/*.parquet' ORDER BY pk").fetchall()
    assert rows == [(d, 4, "2024-01-01") for d in days("2024-01-01", 4)]


def _injection_pipeline(project: Path, partitions: dict) -> Path:
    key_file = project / "data" / "by_key" / f"{INJECTION}.csv"
    write_csv(key_file, ["region", "amount"], [[INJECTION, 1], [INJECTION, 2], ["north", 5]])
    write_csv(project / "data" / "by_key" / "north.csv", ["region", "amount"], [["north", 5]])
    return write_yaml(
        project / "keys.yaml",
        {
            "pipeline": "keys",
            "partitions": partitions,
            "steps": [
                {
                    "layer": "ingest",
                    "name": "ingest",
                    "value": "data/by_key/{{ partition_key }}.csv",
                    "outputs": {"data": "raw"},
                },
                # The input is registered as `t`: an injected DROP TABLE t would remove it.
                {
                    "layer": "transform",
                    "name": "pick",
                    "type": "sql",
                    "value": "SELECT {{ partition_key }} AS key, SUM(amount) AS total, COUNT(*) AS n FROM t "
                    "WHERE region = {{ partition_key }}",
                    "inputs": {"t": "raw"},
                    "outputs": {"data": "picked"},
                },
                {
                    "layer": "transform",
                    "name": "again",
                    "type": "sql",
                    "value": "SELECT key, total, (SELECT COUNT(*) FROM t) AS rows_in_t FROM p",
                    "inputs": {"p": "picked", "t": "raw"},
                    "outputs": {"data": "checked"},
                },
                {
                    "layer": "store",
                    "name": "save",
                    "value": "out/{{ partition_key }}.parquet",
                    "inputs": {"data": "checked"},
                },
            ],
        },
    )


@pytest.mark.parametrize("kind", ["static", "dynamic"])
def test_injection_through_partition_keys_cannot_change_the_query(
    project: Path, instance: dg.DagsterInstance, kind: str
) -> None:
    partitions = (
        {"type": "static", "values": ["north", INJECTION]} if kind == "static" else {"type": "dynamic", "name": "keys"}
    )
    defs = build(_injection_pipeline(project, partitions))
    if kind == "dynamic":
        instance.add_dynamic_partitions("keys", [INJECTION, "north"])
    result = defs.resolve_job_def("keys").execute_in_process(instance=instance, partition_key=INJECTION)
    assert result.success
    out = pd.read_parquet(project / "out" / f"{INJECTION}.parquet")
    assert out.to_dict("records") == [{"key": INJECTION, "total": 3, "rows_in_t": 3}]
    # The dataset file of that partition is named safely, and only that partition exists.
    stored = os.listdir(project / ".odibi" / "datasets" / "keys" / "picked")
    assert stored == [f"{partition_file_stem(INJECTION)}.parquet"]
    assert "/" not in stored[0] and "'" not in stored[0]


def test_partition_keys_render_as_sql_literals() -> None:
    sql = render_sql(
        "SELECT * FROM t WHERE k = {{ partition_key }} AND k IN {{ partition_keys }}",
        {"partition_key": INJECTION, "partition_keys": [INJECTION, "b"]},
    )
    assert sql == ("SELECT * FROM t WHERE k = 'x''; DROP TABLE t; --' AND k IN ('x''; DROP TABLE t; --', 'b')")
    assert duckdb.sql(sql.replace("FROM t", "FROM (SELECT 'x''; DROP TABLE t; --' AS k) t")).fetchall() == [
        (INJECTION,)
    ]


@pytest.mark.parametrize(
    "rel",
    [
        "a.csv",
        "sub/dir/b c.csv",
        "x'; DROP TABLE t; --.csv",
        "données été 日本.csv",
        "odd...name.csv",
        "tab\there.csv",
        "100%.csv",
        "%2E...%25.csv",
    ],
)
def test_file_partition_keys_are_valid_and_reversible(rel: str) -> None:
    key = file_partition_key(rel)
    from dagster._core.definitions.partitions.utils.base import INVALID_PARTITION_SUBSTRINGS

    assert not any(bad in key for bad in INVALID_PARTITION_SUBSTRINGS)
    assert file_from_partition_key(key) == rel
    if "%" not in rel and "..." not in rel and "\t" not in rel:
        assert key == rel  # readable in the UI


def test_long_partition_keys_get_bounded_file_names() -> None:
    key = "landing/" + "é" * 300 + ".csv"
    stem = partition_file_stem(key)
    assert len(stem) < 200
    assert stem != partition_file_stem(key[:-4] + ".tsv")


def test_partition_for_path() -> None:
    daily = _pdef(type="daily", start="2024-01-01", end="2024-02-01")
    assert partition_for_path(daily, "2024-01-02/sales_2024-01-05.csv") == "2024-01-05"
    assert partition_for_path(daily, "sales_2024-13-45.csv") is None
    assert partition_for_path(daily, "sales_2023-12-31.csv") is None  # before the first partition
    assert partition_for_path(daily, "sales.csv") is None
    hourly = _pdef(type="hourly", start="2024-01-01", end="2024-01-02")
    assert partition_for_path(hourly, "dump_2024-01-01-05:00.json") == "2024-01-01-05:00"
    static = _pdef(type="static", values=["north", "south"])
    assert partition_for_path(static, "south/day1.csv") == "south"
    assert partition_for_path(static, "north.csv") == "north"
    assert partition_for_path(static, "east.csv") is None


def test_cli_runs_one_partition_and_a_range(project: Path) -> None:
    write_daily_data(project, days("2024-01-01", 4))
    path = daily_pipeline(project, backfill={"policy": "single_run"})
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "ODIBI_BASE_DIR")}
    one = subprocess.run(
        [ODIBI_CLI, "run", str(path), "--partition", "2024-01-02"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert one.returncode == 0, one.stdout + one.stderr
    assert "partition 2024-01-02" in one.stdout
    assert sorted(p.name for p in (project / "out").iterdir()) == ["2024-01-02.csv"]
    rng = subprocess.run(
        [ODIBI_CLI, "run", str(path), "--partition", "2024-01-01...2024-01-04"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert rng.returncode == 0, rng.stdout + rng.stderr
    assert sorted(p.name for p in (project / "out").iterdir()) == [f"{d}.csv" for d in days("2024-01-01", 4)]
    bad = subprocess.run(
        [ODIBI_CLI, "run", str(path), "--partition", "2030-01-01"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 2 and "not a partition" in bad.stderr


def test_hourly_partitions_run_with_date_only_start(project: Path, instance: dg.DagsterInstance) -> None:
    write_csv(project / "data" / "h.csv", ["v"], [[1], [2]])
    path = write_yaml(
        project / "hourly.yaml",
        {
            "pipeline": "hourly",
            "partitions": {
                "type": "hourly",
                "start": "2024-01-01",
                "end": "2024-01-02",
                "timezone": "Asia/Tokyo",
            },
            "steps": [
                {"layer": "ingest", "name": "ingest", "value": "data/h.csv", "outputs": {"data": "raw"}},
                {
                    "layer": "transform",
                    "name": "stamp",
                    "type": "sql",
                    "value": "SELECT {{ partition_start }} AS s, {{ partition_end }} AS e, COUNT(*) AS n FROM raw",
                    "inputs": {"raw": "raw"},
                    "outputs": {"data": "stamped"},
                },
            ],
        },
    )
    job = build(path).resolve_job_def("hourly")
    assert job.execute_in_process(instance=instance, partition_key="2024-01-01-09:00").success
    stored = project / ".odibi" / "datasets" / "hourly" / "stamped"
    (row,) = duckdb.sql(f"SELECT s, e, n FROM '{stored}/*.parquet'").fetchall()
    start = dt.datetime.fromisoformat(row[0])
    assert row[0] == "2024-01-01T09:00:00+09:00" and row[1] == "2024-01-01T10:00:00+09:00" and row[2] == 2
    assert start.utcoffset() == dt.timedelta(hours=9)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (
            {"policy": "single_run"},
            [
                {
                    "dagster/asset_partition_range_start": "2024-01-02",
                    "dagster/asset_partition_range_end": "2024-01-06",
                }
            ],
        ),
        (
            {"policy": "multi_run", "max_partitions_per_run": 2},
            [
                {
                    "dagster/asset_partition_range_start": "2024-01-02",
                    "dagster/asset_partition_range_end": "2024-01-03",
                },
                {
                    "dagster/asset_partition_range_start": "2024-01-04",
                    "dagster/asset_partition_range_end": "2024-01-05",
                },
                {"dagster/partition": "2024-01-06"},
            ],
        ),
        (None, [{"dagster/partition": d} for d in days("2024-01-02", 5)]),
    ],
)
def test_backfill_run_tags_follow_the_policy(policy: dict | None, expected: list[dict[str, str]]) -> None:
    from odibi_dagster.config.models import BackfillConfig
    from odibi_dagster.triggers.backfill import backfill_run_tags

    pdef = _pdef(type="daily", start="2024-01-01", end="2024-01-10")
    cfg = BackfillConfig(**policy) if policy is not None else None
    assert backfill_run_tags(pdef, cfg, "2024-01-02", "2024-01-06") == expected
    with pytest.raises(ValueError, match="not a partition"):
        backfill_run_tags(pdef, cfg, "2024-01-02", "2030-01-01")
