"""ODIBI's StoryGenerator: one self-contained HTML page per run, rendered from lineage JSON.

The page has a header, the run summary, an SVG picture of the step graph (laid out in
Python by ``layout``, so no JavaScript library or network access is needed) and a
collapsible card per step. Everything from the run (step names, column names, sample
values, SQL, error messages) goes through jinja2's autoescaping; the only script is a
constant of this module, allowed by a hash-based Content Security Policy so that nothing
injected could run even if it slipped through.
"""

from __future__ import annotations

import base64
import datetime as _dt
import functools
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported at the first render, not with the definitions every process loads
    import jinja2

from odibi_dagster.observe._util import atomic_write_text, safe_name
from odibi_dagster.observe.story.columns import column_view
from odibi_dagster.observe.story.layout import STATUS_CLASSES, graph_layout

__all__ = ["STORY_FILENAME", "StoryGenerator", "graph_layout", "latest_story", "story_path"]

STORY_FILENAME = "story.html"
_TEMPLATES = Path(__file__).parent / "templates"

# The page's only script: expand/collapse all cards, open a card when its graph node is
# clicked, and show the path of the column picked in the column lineage section (or linked as
# #column-N). A column's path is walked over the page's hop lines as ColumnGraph.upstream and
# ColumnGraph.used_by walk it (see observe/story/columns.py), with the words the page carries.
# No data is interpolated into it, so its CSP hash is a constant.
_SCRIPT = """
(function () {
  function cards() { return document.querySelectorAll("details.step"); }
  function hop(id) { return document.getElementById("hop-" + id); }
  function ids(el, name) { return (el.getAttribute(name) || "").split(" ").filter(Boolean); }
  var dependents = null;
  function downstream(start) {
    if (!dependents) {
      dependents = {};
      document.querySelectorAll("#column-hops > .hop[data-known]").forEach(function (h) {
        ids(h, "data-src").forEach(function (s) { (dependents[s] = dependents[s] || []).push(h.id.slice(4)); });
      });
    }
    var seen = {}, order = [], frontier = [start];
    while (frontier.length) {
      var found = [];
      frontier.forEach(function (ref) {
        (dependents[ref] || []).forEach(function (d) {
          if (!seen[d]) { seen[d] = true; order.push(d); found.push(d); }
        });
      });
      frontier = found;
    }
    return order;
  }
  function hopLine(words, depth, id, repeated) {
    var line = document.createElement("div");
    line.className = "hop";
    line.style.paddingLeft = (1.5 * depth) + "em";
    if (depth) { line.appendChild(document.createTextNode(words.arrow)); }
    var src = hop(id);
    line.appendChild(src.querySelector("code").cloneNode(true));
    if (repeated) { line.appendChild(document.createTextNode(words.seeAbove)); }
    else { line.appendChild(src.querySelector(".detail").cloneNode(true)); }
    return line;
  }
  function usedLine(words, start) {
    var reached = downstream(start), labels = [], opaque = [];
    reached.forEach(function (id) { labels.push(hop(id).querySelector("code").textContent); });
    [start].concat(reached).forEach(function (id) {
      ids(hop(id), "data-opaque").forEach(function (n) {
        var name = document.getElementById("opaque-" + n).textContent;
        if (opaque.indexOf(name) < 0) { opaque.push(name); }
      });
    });
    var text = words.usedBy + (labels.length ? labels.join(", ") : words.nothing);
    if (opaque.length) { text += words.also + opaque.join(", ") + words.notKnown; }
    var line = document.createElement("div");
    line.className = "used";
    line.textContent = text;
    return line;
  }
  function showColumn(id) {
    var pick = document.getElementById("column-pick");
    var out = document.getElementById("column-path");
    if (!pick || !out) { return; }
    if (id !== undefined) { pick.value = id; }
    while (out.firstChild) { out.removeChild(out.firstChild); }
    if (!pick.value) { return; }
    var words = document.getElementById("column-words").dataset;
    var expanded = {}, stack = [[0, pick.value]];
    while (stack.length) {
      var top = stack.pop(), depth = top[0], ref = top[1];
      if (expanded[ref]) { out.appendChild(hopLine(words, depth, ref, true)); continue; }
      expanded[ref] = true;
      out.appendChild(hopLine(words, depth, ref, false));
      ids(hop(ref), "data-src").reverse().forEach(function (s) { stack.push([depth + 1, s]); });
    }
    out.appendChild(usedLine(words, pick.value));
  }
  function openTarget() {
    var id = decodeURIComponent(location.hash.slice(1));
    var column = /^column-([0-9]+)$/.exec(id);
    if (column) {
      showColumn(column[1]);
      document.getElementById("column-lineage").scrollIntoView();
      return;
    }
    var el = id && document.getElementById(id);
    if (el && el.tagName === "DETAILS") { el.open = true; }
  }
  document.addEventListener("click", function (ev) {
    var t = ev.target.closest("[data-toggle]");
    if (!t) { return; }
    var open = t.getAttribute("data-toggle") === "open";
    cards().forEach(function (d) { d.open = open; });
  });
  document.addEventListener("change", function (ev) {
    if (ev.target.id === "column-pick") { showColumn(); }
  });
  window.addEventListener("hashchange", openTarget);
  openTarget();
})();
"""
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.encode("utf-8")).digest()).decode("ascii")


def story_path(stories_dir: str | os.PathLike[str], pipeline: str, run_id: str) -> Path:
    """``<stories_dir>/<pipeline>/<run_id>/story.html``: where a run's story lives."""
    return Path(stories_dir) / safe_name(pipeline) / safe_name(run_id) / STORY_FILENAME


def latest_story(stories_dir: str | os.PathLike[str], run_id: str | None = None) -> Path | None:
    """The story of ``run_id`` (exact, else the newest whose run id starts with it, as the
    8-character ids Dagster's UI shows), or the newest story of any run; ``None`` if none."""
    root = Path(stories_dir)
    if not root.is_dir():
        return None
    if run_id:
        candidates = list(root.glob(f"*/{_glob_escape(safe_name(run_id))}/{STORY_FILENAME}"))
        if not candidates and safe_name(run_id) == run_id:
            candidates = list(root.glob(f"*/{_glob_escape(run_id)}*/{STORY_FILENAME}"))
    else:
        candidates = list(root.glob(f"*/*/{STORY_FILENAME}"))
    candidates = [p for p in candidates if p.is_file()]
    if not candidates:
        return None
    return max(candidates, key=lambda p: p.stat().st_mtime)


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in text)


def _as_pairs(value: Any) -> list[tuple[str, str]]:
    """Step inputs/outputs (a mapping or a list) as display pairs."""
    if isinstance(value, Mapping):
        return [(str(k), _text(v)) for k, v in value.items()]
    if isinstance(value, list | tuple):
        return [("", _text(v)) for v in value]
    return [] if value in (None, "") else [("", _text(value))]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _edges_from_io(steps: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Edges derived from datasets: producer of a dataset -> every step reading it."""
    producers: dict[str, list[str]] = {}
    for step in steps:
        outputs = step.get("outputs") or {}
        for dataset in outputs.values() if isinstance(outputs, Mapping) else outputs:
            producers.setdefault(str(dataset), []).append(str(step.get("step_name")))
    edges = []
    for step in steps:
        inputs = step.get("inputs") or {}
        for dataset in inputs.values() if isinstance(inputs, Mapping) else inputs:
            for producer in producers.get(str(dataset), []):
                edges.append((producer, str(step.get("step_name"))))
    return edges


def _fmt_ms(value: Any) -> str:
    if not isinstance(value, int | float):
        return "—"
    if value < 1000:
        return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"
    seconds = value / 1000.0
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, sec = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {sec:02d}s" if hours else f"{minutes}m {sec:02d}s"


def _fmt_int(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "—"


def _fmt_delta(value: Any) -> str:
    return f"{value:+,}" if isinstance(value, int) and not isinstance(value, bool) else "—"


def _fmt_time(value: Any) -> str:
    if not value:
        return "—"
    try:
        moment = _dt.datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    if moment.tzinfo is not None:
        offset = moment.utcoffset()
        text += " UTC" if offset == _dt.timedelta(0) else moment.strftime(" %z")
    return text


def _script() -> Any:
    from markupsafe import Markup  # jinja2's, loaded with it

    return Markup(_SCRIPT)  # a constant of this module, no run data inside


@functools.cache
def _environment() -> jinja2.Environment:
    # One environment per process: it caches the compiled template, which is rendered
    # several times per run.
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        autoescape=True,  # every value from the run is data, never markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ms=_fmt_ms, num=_fmt_int, delta=_fmt_delta, when=_fmt_time)
    return env


_STATUS_RANK = {"cached": -1, "success": 0, "running": 1, "failed": 2}


class StoryGenerator:
    """Renders a run's lineage JSON (``RunTracker.export_lineage()``) into an HTML story.

    ``explanations`` maps step names to prose shown on their cards when the step
    itself has no ``explanation``; ``max_rows`` limits the sample rows per card;
    ``max_cell_chars`` cuts long sample values (the full value is in the tooltip).
    """

    def __init__(
        self, explanations: Mapping[str, str] | None = None, max_rows: int = 5, *, max_cell_chars: int = 80
    ) -> None:
        self.explanations = dict(explanations or {})
        self.max_rows = max_rows
        self.max_cell_chars = max_cell_chars
        self._env = _environment()

    # -- view model ------------------------------------------------------------------------

    def _cell(self, value: Any) -> dict[str, Any]:
        if value is None:
            return {"text": "null", "full": "", "null": True}
        text = _text(value)
        short = text
        if self.max_cell_chars > 0 and len(text) > self.max_cell_chars:
            short = text[: self.max_cell_chars - 1] + "…"
        return {"text": short, "full": text if short != text else "", "null": False}

    def _sample(self, snapshot: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if not snapshot:
            return None
        records = [r for r in (snapshot.get("sample_data") or []) if isinstance(r, Mapping)][: self.max_rows]
        columns = [str(c[0]) for c in snapshot.get("schema") or [] if isinstance(c, list | tuple) and c]
        for record in records:
            columns.extend(str(k) for k in record if str(k) not in columns)
        rows = [[self._cell(r.get(c)) for c in columns] for r in records]
        return {"columns": columns, "rows": rows}

    @staticmethod
    def _schema_rows(step: Mapping[str, Any]) -> list[dict[str, str]]:
        after = (step.get("after_snapshot") or {}).get("schema") or []
        before = (step.get("before_snapshot") or {}).get("schema") or []
        diff = step.get("schema_diff") or {}
        added = set(diff.get("added_columns") or [])
        changed = {str(c.get("column")): c for c in diff.get("changed_types") or [] if isinstance(c, Mapping)}
        rows = []
        for pair in after or before:
            name, type_ = str(pair[0]), str(pair[1]) if len(pair) > 1 else ""
            if name in added:
                rows.append({"name": name, "type": type_, "change": "added", "note": "added"})
            elif name in changed:
                note = f"{changed[name].get('before')} → {changed[name].get('after')}"
                rows.append({"name": name, "type": type_, "change": "retyped", "note": note})
            else:
                rows.append({"name": name, "type": type_, "change": "", "note": ""})
        if after:
            for name in diff.get("removed_columns") or []:
                type_ = next((str(p[1]) for p in before if str(p[0]) == str(name) and len(p) > 1), "")
                rows.append({"name": str(name), "type": type_, "change": "removed", "note": "removed"})
        return rows

    def _step_view(self, index: int, step: Mapping[str, Any], lineage: Mapping[str, Any] | None) -> dict[str, Any]:
        name = str(step.get("step_name") or f"step {index + 1}")
        status = str(step.get("status") or "pending")
        before, after = step.get("before_snapshot"), step.get("after_snapshot")
        diff = step.get("schema_diff") or {}
        explanation = step.get("explanation") or self.explanations.get(name)
        known = {
            "step_name", "layer", "start_time", "end_time", "duration_ms", "status", "before_snapshot",
            "after_snapshot", "schema_diff", "row_delta", "error_message", "inputs", "outputs", "sql",
            "explanation", "pid", "partition_key", "column_lineage",
        }  # fmt: skip
        extra = [(str(k), _text(v)) for k, v in step.items() if k not in known and v not in (None, "", [], {})]
        return {
            "anchor": f"step-{index + 1}",
            "name": name,
            "partition": None if step.get("partition_key") is None else str(step["partition_key"]),
            "layer": str(step.get("layer") or ""),
            "status": status,
            "css": STATUS_CLASSES.get(status, "pending"),
            "start_time": step.get("start_time"),
            "end_time": step.get("end_time"),
            "duration_ms": step.get("duration_ms"),
            "rows_before": (before or {}).get("row_count"),
            "rows_after": (after or {}).get("row_count"),
            "row_delta": step.get("row_delta"),
            "inputs": _as_pairs(step.get("inputs")),
            "outputs": _as_pairs(step.get("outputs")),
            "added": [str(c) for c in diff.get("added_columns") or []],
            "removed": [str(c) for c in diff.get("removed_columns") or []],
            "retyped": [
                {"column": str(c.get("column")), "before": str(c.get("before")), "after": str(c.get("after"))}
                for c in diff.get("changed_types") or []
                if isinstance(c, Mapping)
            ],
            "has_diff": bool(step.get("schema_diff")),
            "schema": self._schema_rows(step),
            "sample": self._sample(after),
            "before_sample": self._sample(before),
            "sql": step.get("sql"),
            "explanation": explanation,
            "error": step.get("error_message"),
            "extra": extra,
            "lineage": lineage,
        }

    def context(self, lineage: Mapping[str, Any], graph: Mapping[str, Any] | None) -> dict[str, Any]:
        """The template's view model (also handy for tests and other renderers)."""
        steps = [s for s in lineage.get("steps") or [] if isinstance(s, Mapping)]
        columns = column_view(steps)
        views = [self._step_view(i, s, columns["tables"].get(str(s.get("step_name")))) for i, s in enumerate(steps)]
        graph = graph or {}
        nodes = list(graph.get("nodes") or [])
        edges = list(graph.get("edges") or [])
        if not nodes:
            nodes = [{"name": s.get("step_name"), "layer": s.get("layer")} for s in steps]
            edges = edges or _edges_from_io(steps)
        statuses: dict[str, str] = {}
        for v in views:  # a step of a range run has a record per partition: the worst one colours it
            if _STATUS_RANK.get(v["status"], 0) >= _STATUS_RANK.get(statuses.get(v["name"], ""), -1):
                statuses[v["name"]] = v["status"]
        layout = graph_layout(nodes, edges, statuses)
        anchors = {v["name"]: v["anchor"] for v in views}
        for node in layout["nodes"]:
            node["anchor"] = anchors.get(node["name"])
        summary = dict(lineage.get("summary") or {})
        pending = sum(1 for n in layout["nodes"] if n["name"] not in anchors)
        return {
            "pipeline": str(lineage.get("pipeline") or lineage.get("pipeline_id") or "pipeline"),
            "run_id": str(lineage.get("run_id") or lineage.get("pipeline_id") or ""),
            "start_time": lineage.get("start_time"),
            "generated_at": _dt.datetime.now(_dt.UTC).isoformat(),
            "summary": summary,
            "pending_count": pending,
            "graph": layout,
            "steps": views,
            "columns": columns,
            "script": _script(),
            "script_hash": _SCRIPT_HASH,
        }

    # -- output ----------------------------------------------------------------------------

    def render(self, lineage: Mapping[str, Any], graph: Mapping[str, Any] | None = None) -> str:
        """The story as one self-contained HTML document (inline CSS/JS, no network).

        ``graph`` is ``{"nodes": [{"name", "layer"}], "edges": [[from_step, to_step], ...]}``;
        nodes without a step record are drawn as pending. Without a graph, the steps in
        ``lineage`` are drawn with edges derived from their inputs and outputs.
        """
        return self._env.get_template("story.html.j2").render(**self.context(lineage, graph))

    def write(
        self, path: str | os.PathLike[str], lineage: Mapping[str, Any], graph: Mapping[str, Any] | None = None
    ) -> Path:
        """Render and write the story to ``path`` atomically; returns the path."""
        return atomic_write_text(path, self.render(lineage, graph))

    # ODIBI's name for render()
    def generate_story(self, lineage: Mapping[str, Any], graph: Mapping[str, Any] | None = None) -> str:
        """Alias of :meth:`render` (ODIBI CORE's ``StoryGenerator.generate_story``)."""
        return self.render(lineage, graph)
