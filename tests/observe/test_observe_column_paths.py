"""Column paths across a pipeline (``observe.column_paths``) and how the story shows them."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest
from observe_support import IMG_PAYLOAD

from odibi_dagster.observe.column_paths import ColumnGraph, StepColumns, steps_from_records
from odibi_dagster.observe.story import StoryGenerator


def _sql(name: str, inputs: tuple[str, ...], output: str, *rows: tuple[str, str, list[list[str]]]) -> StepColumns:
    lineage = tuple({"column": c, "expression": e, "sources": s} for c, e, s in rows)
    return StepColumns(name, "transform", "sql", inputs=inputs, outputs=(output,), lineage=lineage)


STEPS = [
    StepColumns("read", "ingest", "ingest", outputs=("raw.v1",), columns=("id", "Amount", "qty"), source="/d/a.csv"),
    _sql(
        "clean",
        ("raw.v1",),
        "silver",
        ("id", "*", [["raw.v1", "id"]]),
        ("amount", "Amount", [["raw.v1", "Amount"]]),
        ("value", "Amount * qty", [["raw.v1", "Amount"], ["raw.v1", "qty"]]),
        ("target", "t.target", [["targets", "target"]]),
    ),
    _sql(
        "gold",
        ("silver",),
        "gold",
        ("ratio", "SUM(value) / SUM(amount)", [["silver", "amount"], ["silver", "value"]]),
        ("n", "COUNT(*)", []),
    ),
    StepColumns("enrich", "transform", "function", inputs=("gold",), outputs=("scored",), columns=("ratio", "score")),
    StepColumns("opaque", "transform", "function", inputs=("silver",), outputs=("mystery",)),
    StepColumns("save", "store", "sink", inputs=("scored",), source="/out/scored.csv"),
    StepColumns("broken", "transform", "sql", inputs=("silver",), outputs=("odd",), columns=("x",)),
]


@pytest.fixture
def graph() -> ColumnGraph:
    return ColumnGraph(STEPS, missing={"targets": "external input (asset team/targets)"})


def test_upstream_path_through_sql_function_and_store(graph: ColumnGraph) -> None:
    assert graph.path_lines("save", "ratio") == [
        "save.ratio = written to /out/scored.csv  [store step save]",
        "  ← scored.ratio  [function step enrich; lineage unknown, same-named input column assumed]",
        "    ← gold.ratio = SUM(value) / SUM(amount)  [sql step gold]",
        "      ← silver.amount = Amount  [sql step clean]",
        "        ← raw.v1.Amount = column 'Amount' of /d/a.csv  [ingest step read]",
        "      ← silver.value = Amount * qty  [sql step clean]",
        "        ← raw.v1.Amount (see above)",
        "        ← raw.v1.qty = column 'qty' of /d/a.csv  [ingest step read]",
        "used by: no other column",
    ]


def test_dead_ends_say_why(graph: ColumnGraph) -> None:
    assert graph.origin("gold", "n").text() == "gold.n = COUNT(*)  [sql step gold; no source column]"
    assert graph.origin("scored", "score").text() == (
        "scored.score  [function step enrich; lineage unknown, computed from gold]"
    )
    assert graph.origin("targets", "target").text() == "targets.target  [external input (asset team/targets)]"
    assert graph.origin("odd", "x").text() == "odd.x  [sql step broken; lineage unknown: the SQL could not be analysed]"
    assert ColumnGraph(STEPS).origin("targets", "target").text() == "targets.target  [no step produces it]"


def test_used_by_lists_every_column_downstream_nearest_first(graph: ColumnGraph) -> None:
    assert graph.downstream("raw.v1", "Amount") == [
        ("silver", "amount"),
        ("silver", "value"),
        ("gold", "ratio"),
        ("scored", "ratio"),
        ("save", "ratio"),
    ]
    assert graph.used_by("raw.v1", "qty") == (
        "used by: silver.value, gold.ratio, scored.ratio, save.ratio; also read by mystery, whose columns are not known"
    )
    assert graph.used_by("gold", "n") == "used by: no other column"  # enrich has no column 'n'


def test_resolve_names_with_dots_any_case_and_unknown_columns(graph: ColumnGraph) -> None:
    assert graph.resolve("raw.v1.amount") == ("raw.v1", "Amount")
    assert graph.resolve("SILVER.Value") == ("silver", "value")
    assert graph.resolve("mystery.anything") == ("mystery", "anything")  # its columns are not known
    with pytest.raises(LookupError, match=r"^dataset 'gold' has no column 'total'; its columns: ratio, n$"):
        graph.resolve("gold.total")
    with pytest.raises(LookupError, match=r"^no dataset or store step named 'platinum'; datasets: raw.v1, silver, "):
        graph.resolve("platinum.x")
    with pytest.raises(LookupError, match=r"is not DATASET\.COLUMN"):
        graph.resolve("gold")


def _record(name: str, layer: str, status: str = "success", **extra: Any) -> dict[str, Any]:
    return {"step_name": name, "layer": layer, "status": status, "inputs": {}, "outputs": {}, **extra}


def test_steps_from_records_take_a_steps_last_successful_record() -> None:
    schema = {"schema": [["id", "BIGINT"], ["v", "DOUBLE"]]}
    records = [
        _record("read", "ingest", outputs={"data": "raw"}, after_snapshot=schema, source="/a.csv", partition_key="1"),
        _record("read", "ingest", "failed", outputs={"data": "raw"}, partition_key="2"),
        _record("sum", "transform", inputs={"r": "raw"}, outputs={"data": "out"}, sql="SELECT 1"),  # an old record
        _record("fn", "transform", inputs={"r": "raw"}, outputs={"data": "f"}, after_snapshot=schema),
        _record("save", "publish", inputs={"data": "out"}, before_snapshot=schema, target="/o.json"),
        _record("conn", "connect"),
    ]
    steps = {s.name: s for s in steps_from_records(records)}
    assert set(steps) == {"read", "sum", "fn", "save"}
    assert (steps["read"].kind, steps["read"].columns, steps["read"].source) == ("ingest", ("id", "v"), "/a.csv")
    assert (steps["sum"].kind, steps["sum"].lineage) == ("sql", None)
    assert steps["sum"].lineage_note == "lineage unknown: the step has not succeeded in this run"
    assert (steps["fn"].kind, steps["save"].kind, steps["save"].source) == ("function", "sink", "/o.json")
    assert ColumnGraph(list(steps.values())).origin("save", "v").text() == (
        "save.v = written to /o.json  [publish step save]"
    )


class _Texts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_story_escapes_column_names_in_tables_and_paths() -> None:
    lineage = {
        "pipeline": "p",
        "run_id": "r",
        "steps": [
            _record(
                "read",
                "ingest",
                outputs={"data": "raw"},
                after_snapshot={"schema": [[IMG_PAYLOAD, "VARCHAR"]]},
                source="/a.csv",
            ),
            _record(
                "pick",
                "transform",
                inputs={"r": "raw"},
                outputs={"data": "out"},
                sql="SELECT ...",
                after_snapshot={"schema": [["c", "VARCHAR"]]},
                column_lineage=[{"column": "c", "expression": f'"{IMG_PAYLOAD}"', "sources": [["raw", IMG_PAYLOAD]]}],
            ),
        ],
    }
    page = StoryGenerator().render(lineage)
    doc = _Texts()
    doc.feed(page)
    assert not any(tag == "img" for tag, _ in doc.tags)
    text = "".join(doc.text)
    assert f"raw.{IMG_PAYLOAD} = column '{IMG_PAYLOAD}' of /a.csv  [ingest step read]" in text
    assert f'out.c = "{IMG_PAYLOAD}"  [sql step pick]' in text
    options = [attrs for tag, attrs in doc.tags if tag == "option"]
    assert [o["value"] for o in options] == ["", "0", "1"]
    hops = [attrs for tag, attrs in doc.tags if tag == "div" and (attrs.get("id") or "").startswith("hop-")]
    assert [(h["id"], h["data-src"], "data-known" in h) for h in hops] == [("hop-0", "", True), ("hop-1", "0", True)]


def test_story_says_when_a_sql_steps_lineage_is_unknown() -> None:
    lineage = {
        "steps": [
            _record(
                "pick", "transform", inputs={"r": "raw"}, outputs={"data": "out"}, sql="SELECT ?", column_lineage=None
            ),
            _record("later", "transform", "failed", inputs={"r": "out"}, outputs={"data": "o2"}, sql="SELECT 1"),
        ]
    }
    doc = _Texts()
    doc.feed(StoryGenerator().render(lineage))
    text = "".join(doc.text)
    assert "Column lineage unknown: the SQL could not be analysed." in text
    assert "Column lineage unknown: the step has not succeeded in this run." in text
    assert "Where does a column come from?" not in text  # no column is known: no picker
