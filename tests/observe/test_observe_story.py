"""StoryGenerator: self-contained HTML, escaping, graph layout, story lookup."""

from __future__ import annotations

import os
import re
import time
from html.parser import HTMLParser

from observe_support import EVIL_STEP, IMG_PAYLOAD, SCRIPT_PAYLOAD

from odibi_dagster.observe.story import StoryGenerator, graph_layout, latest_story, story_path


class _Collector(HTMLParser):
    """Collects elements and text so tests can reason about the parsed document."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        (self.scripts if self._in_script else self.text).append(data)


def _parse(html: str) -> _Collector:
    parser = _Collector()
    parser.feed(html)
    return parser


def test_render_contains_every_section(story_run):
    html = StoryGenerator({"save_silver": "Writes silver to the lake."}).render(
        story_run["lineage"], story_run["graph"]
    )
    doc = _parse(html)
    text = "".join(doc.text)
    assert "sales_medallion" in text and "0f3c2a9e-1111-4e5b-9c1d-abcdef012345" in text
    # summary
    assert "succeeded" in text and "failed" in text and "rows in" in text
    # one <details> card per step, failed step open by default
    cards = [attrs for tag, attrs in doc.tags if tag == "details" and "step" in (attrs.get("class") or "")]
    assert len(cards) == 3
    failed = [c for c in cards if "failed" in c["class"]]
    assert len(failed) == 1 and "open" in failed[0]
    # explanation from the step record and from the explanations dict
    assert "Reads the daily sales CSV files." in text
    assert "Writes silver to the lake." in text
    # schema diff highlighting
    chips = [attrs.get("class") for tag, attrs in doc.tags if tag == "span" and "chip" in (attrs.get("class") or "")]
    assert {"chip added", "chip removed", "chip retyped"} <= set(chips)
    assert "amount: double → float" in text
    # SQL in a <pre>, failure message shown
    assert any(tag == "pre" for tag, _ in doc.tags)
    assert "PermissionError" in text
    # graph: one svg with a node per step (plus the never-started one)
    nodes = [attrs for tag, attrs in doc.tags if tag == "g" and "node" in (attrs.get("class") or "")]
    assert [n["data-step"] for n in nodes] == ["ingest_sales", EVIL_STEP, "save_silver", "publish_report"]
    assert [n["class"].split()[1] for n in nodes] == ["success", "success", "failed", "pending"]


def test_everything_is_escaped(story_run):
    html = StoryGenerator().render(story_run["lineage"], story_run["graph"])
    doc = _parse(html)
    # the only element-level script is our own; no img element exists at all
    assert [tag for tag, _ in doc.tags].count("script") == 1
    assert not any(tag == "img" for tag, _ in doc.tags)
    assert not any(k.startswith("on") for _, attrs in doc.tags for k in attrs)
    assert "pwned" not in "".join(doc.scripts)
    text = "".join(doc.text)
    # payloads are visible as text: sample cell, column name, step name, SQL, error
    assert IMG_PAYLOAD in text and SCRIPT_PAYLOAD in text and EVIL_STEP in text
    assert "&lt;img src=x" in html and "<img" not in html


def test_self_contained_no_network(story_run):
    html = StoryGenerator().render(story_run["lineage"], story_run["graph"])
    doc = _parse(html)
    for tag, attrs in doc.tags:
        for key in ("src", "href"):
            value = attrs.get(key)
            assert value is None or value.startswith("#"), (tag, key, value)
        assert tag not in {"link", "iframe", "object", "embed"}
    assert "@import" not in html and "url(http" not in html
    csp = next(a["content"] for t, a in doc.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp and "script-src 'sha256-" in csp


def test_sample_limits_and_cuts(story_run):
    html = StoryGenerator(max_rows=2, max_cell_chars=20).render(story_run["lineage"], story_run["graph"])
    first_card = html.split('id="step-1"')[1].split('id="step-2"')[0]
    sample_table = first_card.split('class="sample"')[1].split("</table>")[0]
    assert sample_table.count("<tr>") == 1 + 2  # header + max_rows
    assert "x" * 19 + "…" in sample_table and "x" * 21 not in sample_table.replace('title="' + "x" * 300, "")


def test_graph_layout_depths_and_cycles():
    nodes = [{"name": n, "layer": "transform"} for n in ["a", "b", "c", "d"]]
    layout = graph_layout(nodes, [["a", "b"], ["a", "c"], ["b", "d"], ["c", "d"], ["x", "a"]], {"a": "success"})
    xs = {n["name"]: n["x"] for n in layout["nodes"]}
    assert xs["x"] < xs["a"] < xs["b"] == xs["c"] < xs["d"]
    assert {n["name"]: n["css"] for n in layout["nodes"]}["a"] == "success"
    assert {n["name"]: n["css"] for n in layout["nodes"]}["b"] == "pending"
    assert len(layout["edges"]) == 5 and all(e["d"].startswith("M") for e in layout["edges"])
    # a cycle does not hang or crash
    cyclic = graph_layout([{"name": "p"}, {"name": "q"}], [["p", "q"], ["q", "p"]])
    assert len(cyclic["nodes"]) == 2
    assert graph_layout([], [])["nodes"] == []


def test_render_without_graph_derives_edges(story_run):
    html = StoryGenerator().render(story_run["lineage"], None)
    assert html.count('class="edge"') == 2  # ingest -> transform -> store, from inputs/outputs


def test_empty_run_renders():
    html = StoryGenerator().render({"pipeline": "p", "run_id": "r", "steps": [], "summary": {}}, {})
    assert "No step has run yet." in html


def test_write_and_latest_story(story_run, tmp_path):
    stories = story_run["stories"]
    lineage = story_run["lineage"]
    path = story_path(stories, "sales_medallion", lineage["run_id"])
    assert path == story_run["tracker"].story_path
    assert path.relative_to(stories).parts == ("sales_medallion", lineage["run_id"], "story.html")
    written = StoryGenerator().write(path, lineage, story_run["graph"])
    assert written == path and path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp files left

    other = story_path(stories, "other_pipeline", "9999aaaa-run")
    StoryGenerator().write(other, {"pipeline": "other_pipeline", "run_id": "9999aaaa-run", "steps": []}, {})
    old = time.time() - 100
    os.utime(path, (old, old))
    assert latest_story(stories) == other
    assert latest_story(stories, lineage["run_id"]) == path
    assert latest_story(stories, "0f3c2a9e") == path  # short id as shown in Dagster's UI
    assert latest_story(stories, "nope") is None
    assert latest_story(tmp_path / "missing") is None


def test_generate_story_alias(story_run):
    gen = StoryGenerator()
    html = gen.generate_story(story_run["lineage"], story_run["graph"])
    # rendering is deterministic apart from the generation timestamp
    strip = re.compile(r"Generated by odibi_dagster · [^<]*")
    assert strip.sub("", html) == strip.sub("", gen.render(story_run["lineage"], story_run["graph"]))
