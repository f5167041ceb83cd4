"""Column lineage people can see: the tracker records a SQL step's lineage, the story shows a
table per SQL step and the column path view, and ``odibi-dagster lineage`` prints the same path
from the config, with or without a run."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import dagster as dg
import pytest
from lineage_medallion import run_medallion, write_medallion

from odibi_dagster.cli import main
from odibi_dagster.observe.column_paths import ColumnGraph, steps_from_records

GOLD_TOTAL = [
    "gold.total = SUM(amount)  [sql step build_gold]",
    "  ← silver_sales.amount = CAST(s.amount AS DOUBLE)  [sql step clean_sales]",
    "    ← bronze_sales.amount = column 'amount' of {root}/data/sales.csv  [ingest step ingest_sales]",
    "used by: gold_ranked.total, save_gold.total",
]
SAVE_GOLD_WEIGHTED = [
    "save_gold.weighted = written to {root}/out/gold.csv  [store step save_gold]",
    "  ← gold_ranked.weighted  [function step rank_regions; lineage unknown, same-named input column assumed]",
    "    ← gold.weighted = SUM(amount * quantity)  [sql step build_gold]",
    "      ← silver_sales.amount = CAST(s.amount AS DOUBLE)  [sql step clean_sales]",
    "        ← bronze_sales.amount = column 'amount' of {root}/data/sales.csv  [ingest step ingest_sales]",
    "      ← silver_sales.quantity = s.quantity  [sql step clean_sales]",
    "        ← bronze_sales.quantity = column 'quantity' of {root}/data/sales.csv  [ingest step ingest_sales]",
    "used by: no other column",
]


@pytest.fixture(scope="module")
def medallion(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("lineage") / "project"
    config = write_medallion(root)
    result, story = run_medallion(config)
    return {"root": root, "config": config, "result": result, "story": story, "html": story.read_text()}


def _expected(lines: list[str], root: Path) -> list[str]:
    return [line.format(root=root) for line in lines]


def story_graph(story: Path) -> ColumnGraph:
    """The column graph the story is rendered from: the run's tracker records."""
    return ColumnGraph(steps_from_records(json.loads((story.parent / "tracker.json").read_text())["steps"]))


def story_hop_texts(page: str) -> dict[str, str]:
    """Label -> hop text of every column line the page holds (its script arranges them into paths,
    which the browser test checks)."""
    return {
        html.unescape(m["label"]): html.unescape(m["label"] + m["detail"])
        for m in re.finditer(
            r'<div class="hop" id="hop-\d+"[^>]*><code>(?P<label>[^<]*)</code>'
            r'<span class="detail">(?P<detail>[^<]*)</span></div>',
            page,
        )
    }


def lineage_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    code = main(["lineage", *args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_tracker_records_hold_each_sql_steps_column_lineage(medallion: dict) -> None:
    steps = medallion["story"].parent / "steps"
    gold = json.loads((steps / "build_gold.json").read_text())
    assert gold["column_lineage"] == [
        {"column": "region", "expression": "region", "sources": [["silver_sales", "region"]]},
        {"column": "total", "expression": "SUM(amount)", "sources": [["silver_sales", "amount"]]},
        {
            "column": "weighted",
            "expression": "SUM(amount * quantity)",
            "sources": [["silver_sales", "amount"], ["silver_sales", "quantity"]],
        },
        {
            "column": "avg_quantity",
            "expression": "SUM(value) / SUM(amount)",
            "sources": [["silver_sales", "amount"], ["silver_sales", "value"]],
        },
        {"column": "sales", "expression": "COUNT(*)", "sources": []},
        {"column": "currency", "expression": "'EUR'", "sources": []},
    ]
    ingest = json.loads((steps / "ingest_sales.json").read_text())
    assert ingest["source"] == str(medallion["root"] / "data" / "sales.csv")
    # The materialization metadata comes from the same analysis.
    result: dg.ExecuteInProcessResult = medallion["result"]
    materialization = next(m for m in result.asset_materializations_for_node("lineage_medallion__build_gold"))
    deps = materialization.metadata["dagster/column_lineage"].value.deps_by_column
    assert {c: [(d.asset_key.path[-1], d.column_name) for d in v] for c, v in deps.items()} == {
        "region": [("silver_sales", "region")],
        "total": [("silver_sales", "amount")],
        "weighted": [("silver_sales", "amount"), ("silver_sales", "quantity")],
        "avg_quantity": [("silver_sales", "amount"), ("silver_sales", "value")],
    }


def _card(page: str, step: str) -> str:
    return page.split(f'<span class="name">{step}</span>', 1)[1].split('<details class="step', 1)[0]


def _table_rows(page: str, step: str) -> list[list[str]]:
    card = _card(page, step)
    table = card.split('<table class="lineage-table">', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>", 1)[1], re.S)
    return [
        [html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)]
        for r in rows
    ]


def test_story_has_a_lineage_table_per_sql_step(medallion: dict) -> None:
    page = medallion["html"]
    none = "no source column (a constant or e.g. COUNT(*))"
    assert _table_rows(page, "build_gold") == [
        ["region", "region", "silver_sales.region"],
        ["total", "SUM(amount)", "silver_sales.amount"],
        ["weighted", "SUM(amount * quantity)", "silver_sales.amount, silver_sales.quantity"],
        ["avg_quantity", "SUM(value) / SUM(amount)", "silver_sales.amount, silver_sales.value"],
        ["sales", "COUNT(*)", none],
        ["currency", "'EUR'", none],
    ]
    assert _table_rows(page, "clean_sales") == [
        ["sale_id", "s.sale_id", "bronze_sales.sale_id"],
        ["region", "st.region", "bronze_stores.region"],
        ["amount", "CAST(s.amount AS DOUBLE)", "bronze_sales.amount"],
        ["quantity", "s.quantity", "bronze_sales.quantity"],
        ["value", "s.amount * s.quantity", "bronze_sales.amount, bronze_sales.quantity"],
    ]
    # Ingest, function and store steps have no such table.
    for step in ("ingest_sales", "rank_regions", "save_gold"):
        assert "lineage-table" not in _card(page, step)


def test_story_path_view_goes_down_to_the_source_files_columns(medallion: dict) -> None:
    page, root = medallion["html"], medallion["root"]
    assert 'id="column-pick"' in page and "Column lineage" in page
    graph = story_graph(medallion["story"])
    assert graph.path_lines("gold", "total") == _expected(GOLD_TOTAL, root)
    assert graph.path_lines("save_gold", "weighted") == _expected(SAVE_GOLD_WEIGHTED, root)
    assert graph.path_lines("gold", "avg_quantity") == [
        "gold.avg_quantity = SUM(value) / SUM(amount)  [sql step build_gold]",
        "  ← silver_sales.amount = CAST(s.amount AS DOUBLE)  [sql step clean_sales]",
        f"    ← bronze_sales.amount = column 'amount' of {root}/data/sales.csv  [ingest step ingest_sales]",
        "  ← silver_sales.value = s.amount * s.quantity  [sql step clean_sales]",
        "    ← bronze_sales.amount (see above)",
        f"    ← bronze_sales.quantity = column 'quantity' of {root}/data/sales.csv  [ingest step ingest_sales]",
        "used by: gold_ranked.avg_quantity, save_gold.avg_quantity",
    ]
    assert graph.path_lines("gold", "sales") == [
        "gold.sales = COUNT(*)  [sql step build_gold; no source column]",
        "used by: gold_ranked.sales, save_gold.sales",
    ]
    assert graph.path_lines("gold_ranked", "rank") == [
        "gold_ranked.rank  [function step rank_regions; lineage unknown, computed from gold]",
        "used by: save_gold.rank",
    ]
    # The page holds every column's line, picked by the select (every column an option).
    hops = story_hop_texts(page)
    assert set(hops) == {f"{d}.{c}" for d, c in graph.all_refs()}
    assert all(hops[origin.label] == origin.text() for origin in (graph.origin(*r) for r in graph.all_refs()))
    options = re.findall(r'<option value="\d+">([^<]*)</option>', page)
    assert sorted(html.unescape(o) for o in options) == sorted(hops)


def test_cli_prints_the_path_the_story_shows(medallion: dict, capsys: pytest.CaptureFixture[str]) -> None:
    config, graph = medallion["config"], story_graph(medallion["story"])
    for column in ("gold.total", "save_gold.weighted", "gold.avg_quantity", "gold.sales", "gold_ranked.rank"):
        code, out, err = lineage_cli(capsys, str(config), column)
        assert code == 0, err
        assert out == graph.path_lines(*column.split("."))
    # A folder, as in the other commands; names are matched case-insensitively.
    code, out, _ = lineage_cli(capsys, str(config.parent), "GOLD.Total")
    assert (code, out) == (0, _expected(GOLD_TOTAL, medallion["root"]))


def test_cli_works_before_any_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_medallion(tmp_path / "fresh")
    code, out, err = lineage_cli(capsys, str(config), "gold.total")
    assert code == 0, err
    # Without a run the function step's output columns are unknown: said, not guessed.
    assert out == [
        *_expected(GOLD_TOTAL, tmp_path / "fresh")[:-1],
        "used by: no other column; also read by gold_ranked, whose columns are not known",
    ]
    code, out, err = lineage_cli(capsys, str(config), "save_gold.weighted")
    assert code == 0, err
    assert out[:-1] == _expected(SAVE_GOLD_WEIGHTED, tmp_path / "fresh")[:-1]
    assert not (tmp_path / "fresh" / ".odibi").exists()  # nothing ran, nothing was written


def test_cli_names_what_exists_for_an_unknown_column_or_dataset(
    medallion: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(medallion["config"])
    code, out, err = lineage_cli(capsys, config, "gold.totl")
    assert (code, out) == (2, [])
    assert (
        err.strip() == "error: dataset 'gold' has no column 'totl'; its columns: "
        "region, total, weighted, avg_quantity, sales, currency"
    )
    code, out, err = lineage_cli(capsys, config, "platinum.total")
    assert (code, out) == (2, [])
    assert err.strip() == (
        "error: no dataset or store step named 'platinum'; datasets: bronze_sales, bronze_stores, "
        "silver_sales, gold, gold_ranked, save_gold"
    )
    code, _, err = lineage_cli(capsys, config, "gold")
    assert code == 2 and "is not DATASET.COLUMN" in err
    code, _, err = lineage_cli(capsys, config, "gold.total", "--pipeline", "nope")
    assert code == 2 and "no pipeline named 'nope'" in err


def test_cli_picks_the_pipeline_holding_the_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "two"
    write_medallion(root)
    (root / "other.yaml").write_text(
        "pipeline: other\nsteps:\n"
        "  - {layer: ingest, name: read, value: data/stores.csv, outputs: {data: stores}}\n"
        "  - {layer: transform, name: pick, type: sql, value: 'SELECT region, region AS area FROM s',"
        " inputs: {s: stores}, outputs: {data: gold}}\n"
    )
    code, out, _ = lineage_cli(capsys, str(root), "silver_sales.amount")
    assert code == 0 and out[0] == "silver_sales.amount = CAST(s.amount AS DOUBLE)  [sql step clean_sales]"
    code, out, _ = lineage_cli(capsys, str(root), "gold.area")
    assert (code, out[0]) == (0, "gold.area = region  [sql step pick]")
    code, _, err = lineage_cli(capsys, str(root), "gold.region")
    assert code == 2
    assert "'gold.region' is in several pipelines (lineage_medallion, other); choose one with --pipeline" in err
    code, out, _ = lineage_cli(capsys, str(root), "gold.region", "--pipeline", "other")
    assert (code, out[0]) == (0, "gold.region = region  [sql step pick]")
    code, _, err = lineage_cli(capsys, str(root), "gold.nope")
    assert code == 2
    assert "pipeline 'lineage_medallion': dataset 'gold' has no column 'nope'" in err
    assert "pipeline 'other': dataset 'gold' has no column 'nope'; its columns: region, area" in err
