"""Whole pipelines through every reader and writer of the pandas+DuckDB engine, SQL and
function transforms, multi-output steps and connect steps as resources."""

from __future__ import annotations

import json
import sqlite3

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake
from translate_support import (
    HIGH_VALUE_IDS,
    Project,
    failure_message,
    materialization_metadata,
    run_pipeline,
    sample_frame,
    sqlite_rows,
    step_events,
)

from odibi_dagster import OdibiConnection, build_definitions


def write_sources(project: Project) -> pd.DataFrame:
    """The sample in every readable format."""
    df = sample_frame()
    data = project.path("data")
    data.mkdir(parents=True, exist_ok=True)
    df.to_csv(data / "items.csv", index=False)
    df.to_csv(data / "items.tsv", index=False, sep="\t")
    df.to_json(data / "items.json", orient="records")
    df.to_json(data / "items.jsonl", orient="records", lines=True)
    df.to_parquet(data / "items.parquet", index=False)
    (data / "parts").mkdir()
    df.iloc[:4].to_parquet(data / "parts" / "a.parquet", index=False)
    df.iloc[4:].to_parquet(data / "parts" / "b.parquet", index=False)
    write_deltalake(str(data / "items_delta"), df)
    conn = sqlite3.connect(data / "shop.db")
    df.to_sql("items", conn, index=False)
    conn.close()
    return df


def dataset(project: Project, pipeline: str, name: str) -> pd.DataFrame:
    return pd.read_parquet(project.datasets_dir(pipeline) / name / "data.parquet")


def same_rows(a: pd.DataFrame, b: pd.DataFrame, columns: list[str] | None = None) -> None:
    cols = columns or list(b.columns)
    left = a[cols].sort_values("id").reset_index(drop=True)
    right = b[cols].sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(left, right, check_dtype=False)


# ----------------------------------------------------------------------------- readers


def test_every_reader_in_one_pipeline(project: Project) -> None:
    expected = write_sources(project)
    readers = {
        "csv": {"value": "data/items.csv"},
        "tsv": {"value": "data/items.tsv"},
        "csv_glob": {"value": "data/item*.csv", "params": {"format": "csv"}},
        "json": {"value": "data/items.json"},
        "jsonl": {"value": "data/items.jsonl"},
        "parquet": {"value": "data/items.parquet", "params": {"engine": "pyarrow"}},
        "parquet_dir": {"value": "data/parts"},
        "delta": {"value": "data/items_delta", "params": {"format": "delta"}},
        "delta_detected": {"value": "data/items_delta"},
        "sqlite_table": {"value": "data/shop.db", "params": {"source_type": "sqlite", "table": "items"}},
        "sqlite_query": {
            "value": "data/shop.db",
            "params": {"source_type": "sqlite", "query": "SELECT * FROM items WHERE value > 100"},
        },
        "sqlalchemy_url": {"value": "sqlite:///data/shop.db", "params": {"table": "items"}},
        "sqlalchemy_conn_string": {
            "value": "items_source",
            "params": {
                "source_type": "sql",
                "connection_string": f"sqlite:///{project.path('data/shop.db')}",
                "query": "SELECT id, name, value, category FROM items",
            },
        },
    }
    steps = [{"layer": "ingest", "name": f"read_{k}", **v, "outputs": {"data": k}} for k, v in readers.items()]
    path = project.pipeline("readers", steps)
    result = run_pipeline(path, job="readers")
    assert result.success
    for name in readers:
        got = dataset(project, "readers", name)
        if name == "sqlite_query":
            assert sorted(got["id"]) == HIGH_VALUE_IDS
            continue
        assert len(got) == 10, name
        same_rows(got, expected)
        md = materialization_metadata(result, dg.AssetKey(["readers", name]))
        assert md["dagster/row_count"].value == (10)
        assert [c.name for c in md["dagster/column_schema"].schema.columns] == list(expected.columns)


def test_csv_columns_are_typed_as_pandas_would(project: Project) -> None:
    project.write(
        "data/t.csv",
        "id,flag,day,ts,amount,label\n1,True,2024-01-01,2024-01-01T08:00:00,1.5,x\n"
        "2,False,2024-01-02,2024-01-02T08:00:00,2,y\n",
    )
    path = project.pipeline(
        "typed",
        [
            {"layer": "ingest", "name": "read", "value": "data/t.csv", "outputs": {"data": "raw"}},
            {
                "layer": "ingest",
                "name": "read_dates",
                "value": "data/t.csv",
                "params": {"parse_dates": ["ts"]},
                "outputs": {"data": "with_dates"},
            },
        ],
    )
    assert run_pipeline(path, job="typed").success
    ours = pq.read_table(project.datasets_dir("typed") / "raw" / "data.parquet")
    odibi = pa.Table.from_pandas(pd.read_csv(project.path("data/t.csv")))  # ODIBI's PandasEngineContext.read
    assert [str(t) for t in ours.schema.types] == ["int64", "bool", "string", "string", "double", "string"]
    assert [str(t) for t in ours.schema.types] == [str(t).replace("large_", "") for t in odibi.schema.types]
    assert ours.to_pylist() == odibi.to_pylist()
    assert str(dataset(project, "typed", "with_dates")["ts"].dtype).startswith("datetime64")


# ----------------------------------------------------------------------------- writers


WRITERS: dict[str, dict[str, object]] = {
    "csv": {"value": "out/items.csv"},
    "tsv": {"value": "out/items.tsv"},
    "json": {"value": "out/items.json"},
    "jsonl": {"value": "out/items.jsonl"},
    "parquet": {"value": "out/items.parquet"},
    "parquet_zstd": {"value": "out/items_zstd.parquet", "params": {"compression": "zstd"}},
    "parquet_dir": {"value": "out/items_dir/", "params": {"format": "parquet"}},
    "delta": {"value": "out/items_delta", "params": {"format": "delta"}},
    "sqlite": {"value": "out/shop.db", "params": {"table": "items"}},
    "sqlalchemy": {"value": "sqlite:///out/url.db", "params": {"table": "items"}},
}


def read_target(project: Project, kind: str) -> pd.DataFrame:
    out = project.path("out")
    if kind == "csv":
        return pd.read_csv(out / "items.csv")
    if kind == "tsv":
        return pd.read_csv(out / "items.tsv", sep="\t")
    if kind == "json":
        return pd.DataFrame(json.loads((out / "items.json").read_text()))
    if kind == "jsonl":
        return pd.read_json(out / "items.jsonl", lines=True)
    if kind == "parquet":
        return pd.read_parquet(out / "items.parquet")
    if kind == "parquet_zstd":
        assert pq.ParquetFile(out / "items_zstd.parquet").metadata.row_group(0).column(0).compression == "ZSTD"
        return pd.read_parquet(out / "items_zstd.parquet")
    if kind == "parquet_dir":
        return pd.read_parquet(out / "items_dir")
    if kind == "delta":
        return DeltaTable(str(out / "items_delta")).to_pandas()
    if kind == "sqlite":
        return pd.read_sql("SELECT * FROM items", sqlite3.connect(out / "shop.db"))
    if kind == "sqlalchemy":
        return pd.read_sql("SELECT * FROM items", sqlite3.connect(out / "url.db"))
    raise AssertionError(kind)


@pytest.mark.parametrize("mode", ["overwrite", "append"])
def test_every_writer_in_one_pipeline(project: Project, mode: str) -> None:
    project.sample_csv()
    steps: list[dict[str, object]] = [
        {"layer": "ingest", "name": "read", "value": "data/sample.csv", "outputs": {"data": "raw"}},
        {
            "layer": "transform",
            "name": "high",
            "type": "sql",
            "value": "SELECT id, name, value, category FROM data WHERE value > 100 ORDER BY id",
            "inputs": {"data": "raw"},
            "outputs": {"data": "high"},
        },
    ]
    for kind, spec in WRITERS.items():
        params = {**dict(spec.get("params", {})), "mode": mode}  # type: ignore[call-overload]
        steps.append(
            {
                "layer": "store" if kind != "sqlalchemy" else "publish",
                "name": f"write_{kind}",
                "value": spec["value"],
                "params": params,
                "inputs": {"data": "high"},
            }
        )
    path = project.pipeline("writers", steps)
    defs = build_definitions(path)
    job = defs.resolve_job_def("writers")

    first = job.execute_in_process(raise_on_error=False)
    assert first.success
    for kind in WRITERS:
        got = read_target(project, kind)
        assert sorted(got["id"]) == HIGH_VALUE_IDS, kind
        assert list(got.columns) == ["id", "name", "value", "category"], kind
        md = materialization_metadata(first, dg.AssetKey(["writers", f"write_{kind}"]))
        assert md["dagster/row_count"].value == 6, kind
        assert md["odibi/mode"].value == mode
        assert "dagster/uri" in md

    second = job.execute_in_process(raise_on_error=False)
    assert second.success
    for kind in WRITERS:
        got = read_target(project, kind)
        expected = HIGH_VALUE_IDS if mode == "overwrite" else sorted(HIGH_VALUE_IDS * 2)
        assert sorted(got["id"]) == expected, (kind, mode)
    delta_version = materialization_metadata(second, dg.AssetKey(["writers", "write_delta"]))["odibi/delta_version"]
    assert delta_version.value == 1
    # no temp files left beside the targets
    assert [p.name for p in project.path("out").rglob("*") if ".tmp" in p.name] == []


# ----------------------------------------------------------------------------- transforms


def test_sql_step_sees_its_inputs_under_their_logical_names(project: Project) -> None:
    project.sample_csv()
    project.write("data/categories.csv", "code,label\nA,apples\nB,bananas\nC,cherries\n")
    path = project.pipeline(
        "join",
        [
            {
                "layer": "ingest",
                "name": "read_items",
                "value": "data/sample.csv",
                "outputs": {"data": "raw_items"},
            },
            {
                "layer": "ingest",
                "name": "read_cats",
                "value": "data/categories.csv",
                "outputs": {"data": "raw_cats"},
            },
            {
                "layer": "transform",
                "name": "label",
                "type": "sql",
                "value": "SELECT i.id, c.label FROM items AS i JOIN cats AS c ON i.category = c.code "
                "WHERE i.value > 100 ORDER BY i.id",
                "inputs": {"items": "raw_items", "cats": "raw_cats"},
                "outputs": {"data": "labelled"},
            },
            {"layer": "store", "name": "save", "value": "out/labelled.csv", "inputs": {"data": "labelled"}},
        ],
    )
    result = run_pipeline(path, job="join")
    assert result.success
    got = pd.read_csv(project.path("out/labelled.csv"))
    assert got["id"].tolist() == HIGH_VALUE_IDS
    assert got["label"].tolist() == ["cherries", "bananas", "cherries", "bananas", "cherries", "bananas"]
    # SQL steps get column lineage in their metadata
    md = materialization_metadata(result, dg.AssetKey(["join", "labelled"]))
    assert "dagster/column_lineage" in md


FUNCTIONS = """
import os
import pandas as pd


def enrich(items, cats, factor, suffix="!"):
    assert isinstance(items, pd.DataFrame) and isinstance(cats, pd.DataFrame)
    out = items.merge(cats, left_on="category", right_on="code")
    out["scaled"] = out["value"] * factor
    out["label"] = out["label"] + suffix
    return out[["id", "scaled", "label"]].sort_values("id")


def split(data, threshold):
    return {"high": data[data["value"] > threshold], "low": data[data["value"] <= threshold]}


def incomplete(data):
    return {"high": data}
"""


def test_function_steps_get_pandas_frames_by_logical_name_and_params_as_kwargs(project: Project) -> None:
    project.sample_csv()
    project.write("data/categories.csv", "code,label\nA,apples\nB,bananas\nC,cherries\n")
    fn = project.module(FUNCTIONS)
    path = project.pipeline(
        "fn",
        [
            {
                "layer": "ingest",
                "name": "read_items",
                "value": "data/sample.csv",
                "outputs": {"data": "raw_items"},
            },
            {
                "layer": "ingest",
                "name": "read_cats",
                "value": "data/categories.csv",
                "outputs": {"data": "raw_cats"},
            },
            {
                "layer": "transform",
                "name": "enrich",
                "type": "function",
                "value": f"{fn}.enrich",
                "params": {"factor": 3},
                "inputs": {"items": "raw_items", "cats": "raw_cats"},
                "outputs": {"data": "enriched"},
            },
            {
                "layer": "transform",
                "name": "split",
                "type": "function",
                "value": f"{fn}.split",
                "params": {"threshold": 100},
                "inputs": {"data": "raw_items"},
                "outputs": {"high": "high_items", "low": "low_items"},
            },
            {
                "layer": "transform",
                "name": "count_high",
                "type": "sql",
                "value": "SELECT COUNT(*) AS n FROM h",
                "inputs": {"h": "high_items"},
                "outputs": {"data": "high_count"},
            },
            {"layer": "store", "name": "save_low", "value": "out/low.json", "inputs": {"data": "low_items"}},
        ],
    )
    result = run_pipeline(path, job="fn")
    assert result.success
    enriched = dataset(project, "fn", "enriched")
    assert enriched["scaled"].tolist() == [v * 3 for v in [50, 150, 80, 200, 120, 90, 300, 101, 99, 180]]
    assert enriched["label"].str.endswith("!").all()
    assert sorted(dataset(project, "fn", "high_items")["id"]) == HIGH_VALUE_IDS
    assert len(dataset(project, "fn", "low_items")) == 4
    assert dataset(project, "fn", "high_count")["n"].tolist() == [6]
    assert len(json.loads(project.path("out/low.json").read_text())) == 4
    # one step, two assets, each with its own row count
    assert materialization_metadata(result, dg.AssetKey(["fn", "high_items"]))["dagster/row_count"].value == 6
    assert materialization_metadata(result, dg.AssetKey(["fn", "low_items"]))["dagster/row_count"].value == 4


def test_function_missing_an_output_fails_naming_it(project: Project) -> None:
    project.sample_csv()
    fn = project.module(FUNCTIONS)
    path = project.pipeline(
        "fn_bad",
        [
            {"layer": "ingest", "name": "read", "value": "data/sample.csv", "outputs": {"data": "raw"}},
            {
                "layer": "transform",
                "name": "split",
                "type": "function",
                "value": f"{fn}.incomplete",
                "inputs": {"data": "raw"},
                "outputs": {"high": "high_items", "low": "low_items"},
            },
        ],
    )
    result = run_pipeline(path, job="fn_bad")
    assert not result.success
    assert "low" in failure_message(result, "split")
    assert "read" in step_events(result, "STEP_SUCCESS")


# ----------------------------------------------------------------------------- connect steps


def test_connect_step_is_a_resource_used_by_ingest_and_store(project: Project) -> None:
    db = project.path("db.sqlite")
    conn = sqlite3.connect(db)
    sample_frame().to_sql("items", conn, index=False)
    conn.close()
    path = project.pipeline(
        "warehouse",
        [
            {"layer": "connect", "name": "conn", "value": "sqlite:///db.sqlite"},
            {
                "layer": "ingest",
                "name": "read_high",
                "value": "items",
                "params": {"connection": "conn", "query": "SELECT * FROM items WHERE value > 100"},
                "outputs": {"data": "high"},
            },
            {
                "layer": "ingest",
                "name": "read_table",
                "value": "items",
                "params": {"connection": "conn"},
                "outputs": {"data": "all_items"},
            },
            {
                "layer": "ingest",
                "name": "read_query_value",
                "value": "SELECT id FROM items WHERE id <= 3",
                "params": {"connection": "conn"},
                "outputs": {"data": "first_three"},
            },
            {
                "layer": "transform",
                "name": "tag",
                "type": "sql",
                "value": "SELECT id, name, 'high' AS tier FROM h",
                "inputs": {"h": "high"},
                "outputs": {"data": "tagged"},
            },
            {
                "layer": "store",
                "name": "save_tagged",
                "value": "tagged_items",
                "params": {"connection": "conn", "table": "tagged_items"},
                "inputs": {"data": "tagged"},
            },
            {
                "layer": "publish",
                "name": "publish_ids",
                "value": "first_ids",
                "params": {"connection": "conn"},
                "inputs": {"data": "first_three"},
            },
        ],
    )
    result = run_pipeline(path, job="warehouse")
    assert result.success, failure_message(result, next(iter(step_events(result, "STEP_FAILURE"))))
    # the relative sqlite URL resolved against the config's directory: the same database file
    assert sorted(r[0] for r in sqlite_rows(db, "SELECT id FROM tagged_items")) == HIGH_VALUE_IDS
    assert sqlite_rows(db, "SELECT DISTINCT tier FROM tagged_items") == [("high",)]
    assert sorted(r[0] for r in sqlite_rows(db, "SELECT id FROM first_ids")) == [1, 2, 3]
    assert len(dataset(project, "warehouse", "all_items")) == 10
    tables = {r[0] for r in sqlite_rows(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"items", "tagged_items", "first_ids"}
    assert not any(p.name == "items" for p in project.root.iterdir())
    # the use of the connection is observed on the asset
    observations = [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    conns = [e.event_specific_data.asset_observation.metadata.get("odibi/connection") for e in observations]
    assert any(c is not None and c.value == "conn" for c in conns)


def test_connection_url_comes_from_the_environment(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    db = project.path("secret_place.db")
    conn = sqlite3.connect(db)
    sample_frame().to_sql("items", conn, index=False)
    conn.close()
    monkeypatch.setenv("ODIBI_TEST_DB_URL", f"sqlite:///{db}")
    path = project.pipeline(
        "env_conn",
        [
            {"layer": "connect", "name": "conn", "value": "{{ env.ODIBI_TEST_DB_URL }}"},
            {
                "layer": "ingest",
                "name": "read",
                "value": "items",
                "params": {"connection": "conn"},
                "outputs": {"data": "items"},
            },
        ],
    )
    defs = build_definitions(path)
    # the definitions hold the placeholder, never the value
    resources = {k: v for k, v in (defs.resources or {}).items() if isinstance(v, OdibiConnection)}
    assert [r.url for r in resources.values()] == ["{{ env.ODIBI_TEST_DB_URL }}"]
    result = defs.resolve_job_def("env_conn").execute_in_process(raise_on_error=False)
    assert result.success
    assert len(dataset(project, "env_conn", "items")) == 10
