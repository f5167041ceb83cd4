"""Materialization metadata: Dagster's standard keys and ODIBI's tracker fields."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest
from dagster._core.definitions.metadata.metadata_set import TableMetadataSet, UriMetadataSet

from odibi_dagster.engines.base import Snapshot
from odibi_dagster.observe.lineage import sql_column_lineage
from odibi_dagster.observe.metadata import dataset_metadata, sample_markdown
from odibi_dagster.observe.metadata_keys import OdibiMetadataSet
from odibi_dagster.observe.redact import Redactor

BEFORE = Snapshot(10, (("id", "int64"), ("amount", "double"), ("note", "string")))
AFTER = Snapshot(
    7,
    (("id", "int32"), ("amount", "double"), ("total", "double")),
    pd.DataFrame({"id": range(7), "amount": [1.5] * 7, "total": [3.0] * 7}),
)


def test_standard_and_odibi_keys_with_types():
    lineage = sql_column_lineage(
        "SELECT id, amount, amount * 2 AS total FROM bronze",
        {"bronze": ["id", "amount", "note"]},
        {"bronze": dg.AssetKey(["p", "bronze"])},
    )
    md = dataset_metadata(
        AFTER,
        BEFORE,
        duration_s=0.5,
        lineage=lineage,
        uri="abfs://c@acct.dfs.core.windows.net/silver.parquet",
        story_path="/tmp/stories/p/run/story.html",
    )
    assert md["dagster/row_count"] == dg.MetadataValue.int(7)
    assert "dagster/partition_row_count" not in md
    schema = md["dagster/column_schema"]
    assert isinstance(schema, dg.TableSchemaMetadataValue)
    assert [(c.name, c.type) for c in schema.schema.columns] == [
        ("id", "int32"),
        ("amount", "double"),
        ("total", "double"),
    ]
    assert isinstance(md["dagster/column_lineage"], dg.TableColumnLineageMetadataValue)
    assert md["dagster/column_lineage"].column_lineage == lineage
    assert md["dagster/uri"] == dg.MetadataValue.text("abfs://c@acct.dfs.core.windows.net/silver.parquet")
    assert md["odibi/schema_diff"] == dg.MetadataValue.json(
        {
            "added_columns": ["total"],
            "removed_columns": ["note"],
            "changed_types": [{"column": "id", "before": "int64", "after": "int32"}],
        }
    )
    assert md["odibi/row_delta"] == dg.MetadataValue.int(-3)
    assert md["odibi/rows_before"] == dg.MetadataValue.int(10)
    assert isinstance(md["odibi/sample"], dg.MarkdownMetadataValue)
    assert md["odibi/duration_ms"] == dg.MetadataValue.float(500.0)
    assert md["odibi/rows_per_second"] == dg.MetadataValue.float(14.0)
    assert md["odibi/story"] == dg.MetadataValue.path("/tmp/stories/p/run/story.html")


def test_keys_match_dagster_metadata_sets():
    md = dataset_metadata(AFTER, None, duration_s=1.0, uri="/data/x.parquet")
    table = TableMetadataSet.extract(md)
    assert table.row_count == 7
    assert [c.name for c in table.column_schema.columns] == ["id", "amount", "total"]
    assert UriMetadataSet.extract(md).uri == "/data/x.parquet"
    # Sources (no before snapshot) carry no diff.
    assert not {"odibi/schema_diff", "odibi/row_delta", "odibi/rows_before"} & md.keys()


def test_partition_row_count():
    md = dataset_metadata(AFTER, None, duration_s=0.0, partition=True, total_row_count=70)
    assert md["dagster/partition_row_count"] == dg.MetadataValue.int(7)
    assert md["dagster/row_count"] == dg.MetadataValue.int(70)
    assert "odibi/rows_per_second" not in md  # no division by zero
    md = dataset_metadata(AFTER, None, duration_s=0.1, partition=True)
    assert md["dagster/row_count"] == dg.MetadataValue.int(7)
    assert TableMetadataSet.extract(md).partition_row_count == 7


def test_uri_credentials_never_reach_metadata():
    md = dataset_metadata(
        AFTER,
        None,
        duration_s=1,
        uri="https://acct.blob.core.windows.net/c/x.parquet?sv=2024&sig=SECRETSIG",
        redactor=Redactor(["topsecretvalue"]),
    )
    assert "SECRETSIG" not in md["dagster/uri"].value
    sample = Snapshot(1, (("k", "string"),), pd.DataFrame({"k": ["topsecretvalue"]}))
    md = dataset_metadata(sample, None, duration_s=1, redactor=Redactor(["topsecretvalue"]))
    assert "topsecretvalue" not in md["odibi/sample"].value


def test_sample_markdown_cuts_and_escapes():
    df = pd.DataFrame(
        {
            "text": ["x" * 100, "a|b", "line1\nline2", "<script>alert(1)</script>", None, "back\\slash"],
            "n": [1, 2, 3, 4, 5, 6],
        }
    )
    md = sample_markdown(df, rows=5, max_cell_chars=40)
    lines = md.splitlines()
    assert lines[0] == "| text | n |"
    assert lines[1] == "| --- | --- |"
    assert len(lines) == 2 + 5  # 5 rows by default
    assert lines[2] == "| " + "x" * 39 + "… | 1 |"
    assert lines[3] == "| a\\|b | 2 |"
    assert lines[4] == "| line1\\nline2 | 3 |"
    assert lines[5] == "| &lt;script&gt;alert(1)&lt;/script&gt; | 4 |"
    assert lines[6] == "| *null* | 5 |"
    # every row has exactly as many unescaped pipes as the header
    for line in lines:
        assert line.replace("\\|", "").count("|") == 3
    assert sample_markdown(None) == "_no sample_"
    assert sample_markdown(df.head(0)).splitlines()[0] == "| text | n |"


def test_metadata_is_accepted_by_a_real_materialization():
    lineage = sql_column_lineage(
        "SELECT id, amount FROM bronze", {"bronze": ["id", "amount"]}, {"bronze": dg.AssetKey("bronze")}
    )
    md = dataset_metadata(AFTER, BEFORE, duration_s=0.25, lineage=lineage, uri="/x.parquet", story_path="/s.html")

    @dg.asset
    def bronze() -> None:
        return None

    @dg.asset(deps=[bronze])
    def silver() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata=md)

    result = dg.materialize([bronze, silver])
    assert result.success
    [event] = [
        e.event_specific_data.materialization
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("silver")
    ]
    assert event.metadata["dagster/row_count"].value == 7
    assert event.metadata["odibi/row_delta"].value == -3
    assert isinstance(event.metadata["dagster/column_lineage"], dg.TableColumnLineageMetadataValue)


def test_odibi_metadata_set_is_typed_and_round_trips():
    md = dataset_metadata(AFTER, BEFORE, duration_s=0.5, story_path="/tmp/s.html")
    odibi = OdibiMetadataSet.extract(md)
    assert odibi.row_delta == -3 and odibi.rows_before == 10 and odibi.duration_ms == 500.0
    assert odibi.story == dg.MetadataValue.path("/tmp/s.html") and odibi.format is None
    # Splatted, the set gives the entries Dagster stores: raw values wrapped as Dagster does.
    assert {**odibi} == {k: v for k, v in md.items() if k.startswith("odibi/")}
    assert {**OdibiMetadataSet(check="unique", rows_written=3)} == {
        "odibi/rows_written": dg.MetadataValue.int(3),
        "odibi/check": dg.MetadataValue.text("unique"),
    }
    with pytest.raises(ValueError):  # pydantic's ValidationError: a field holds one type
        OdibiMetadataSet(row_delta="many")
