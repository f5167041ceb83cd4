"""Read pipeline configs from JSON, YAML, SQLite and CSV into raw documents.

Each loader returns :class:`RawPipeline` objects (plain dicts plus where they came
from and the line of each step); ``validation`` turns them into models. Parse
errors become problems with file and line instead of exceptions.
"""

from __future__ import annotations

import csv
import json
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from odibi_dagster.config.errors import Problem

JSON_SUFFIXES = {".json"}
YAML_SUFFIXES = {".yaml", ".yml"}
SQLITE_SUFFIXES = {".db", ".sqlite", ".sqlite3"}
CSV_SUFFIXES = {".csv"}
CONFIG_SUFFIXES = JSON_SUFFIXES | YAML_SUFFIXES | SQLITE_SUFFIXES | CSV_SUFFIXES

# ODIBI's transformation_config columns -> Step fields.
TABLE_COLUMNS = {
    "layer": "layer",
    "stepname": "name",
    "steptype": "type",
    "engine": "engine",
    "value": "value",
    "params": "params",
    "inputs": "inputs",
    "outputs": "outputs",
    "metadata": "metadata",
}
JSON_COLUMNS = {"params", "inputs", "outputs", "metadata"}
LOWERCASE_COLUMNS = {"layer", "type", "engine"}


@dataclass
class RawPipeline:
    """A config as read from its source, before validation."""

    file: str
    document: dict[str, Any] | None
    lines: dict[int, int] = field(default_factory=dict)  # step index -> line number
    problems: list[Problem] = field(default_factory=list)
    default_name: str | None = None


def discover(path: str | Path) -> list[Path]:
    """The config files at ``path``: the file itself, or every config in a directory."""
    p = Path(path)
    if p.is_dir():
        found = []
        for child in sorted(p.iterdir()):
            if child.is_file() and child.suffix.lower() in CONFIG_SUFFIXES and not child.name.startswith("."):
                if child.suffix.lower() in CSV_SUFFIXES and not _looks_like_step_csv(child):
                    continue  # a data file next to the configs
                found.append(child)
        return found
    return [p]


def read_raw(path: str | Path, *, project: str | None = None, enabled_only: bool = True) -> list[RawPipeline]:
    """Read one config file (any supported format) into raw pipelines."""
    p = Path(path)
    file = str(p)
    if not p.exists():
        return [RawPipeline(file, None, problems=[Problem(file, None, None, "Config source not found")])]
    suffix = p.suffix.lower()
    try:
        if suffix in JSON_SUFFIXES:
            return [_read_json(p)]
        if suffix in YAML_SUFFIXES:
            return [_read_yaml(p)]
        if suffix in SQLITE_SUFFIXES:
            return _read_sqlite(p, project=project, enabled_only=enabled_only)
        if suffix in CSV_SUFFIXES:
            return _read_csv(p, project=project, enabled_only=enabled_only)
    except UnicodeDecodeError as exc:
        return [RawPipeline(file, None, problems=[Problem(file, None, None, f"cannot decode file: {exc}")])]
    return [
        RawPipeline(
            file,
            None,
            problems=[
                Problem(file, None, None, f"unsupported config format '{suffix}' (use .json, .yaml, .db or .csv)")
            ],
        )
    ]


def _wrap(data: Any) -> dict[str, Any] | None:
    # A bare list is ODIBI's form; an object is a pipeline document.
    if isinstance(data, list):
        return {"steps": data}
    if isinstance(data, dict):
        return data
    return None


def _read_json(p: Path) -> RawPipeline:
    text = p.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return RawPipeline(str(p), None, problems=[Problem(str(p), None, None, f"invalid JSON: {exc.msg}", exc.lineno)])
    doc = _wrap(data)
    if doc is None:
        return RawPipeline(
            str(p), None, problems=[Problem(str(p), None, None, "JSON config must be an array of steps or an object")]
        )
    return RawPipeline(str(p), doc, lines=_json_step_lines(text, doc), default_name=p.stem)


def _json_step_lines(text: str, doc: dict[str, Any]) -> dict[int, int]:
    steps = doc.get("steps")
    if not isinstance(steps, list):
        return {}
    lines: dict[int, int] = {}
    pos = 0
    for i, step in enumerate(steps):
        if not isinstance(step, dict) or not isinstance(step.get("name"), str):
            continue
        m = re.compile(r'"name"\s*:\s*' + re.escape(json.dumps(step["name"]))).search(text, pos)
        if m:
            lines[i] = text.count("\n", 0, m.start()) + 1
            pos = m.end()
    return lines


def _read_yaml(p: Path) -> RawPipeline:
    text = p.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        msg = getattr(exc, "problem", None) or str(exc)
        return RawPipeline(str(p), None, problems=[Problem(str(p), None, None, f"invalid YAML: {msg}", line)])
    doc = _wrap(data)
    if doc is None:
        return RawPipeline(
            str(p), None, problems=[Problem(str(p), None, None, "YAML config must be a list of steps or a mapping")]
        )
    return RawPipeline(str(p), doc, lines=_yaml_step_lines(node), default_name=p.stem)


def _yaml_step_lines(node: yaml.Node | None) -> dict[int, int]:
    seq = None
    if isinstance(node, yaml.SequenceNode):
        seq = node
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "steps" and isinstance(value, yaml.SequenceNode):
                seq = value
    if seq is None:
        return {}
    return {i: item.start_mark.line + 1 for i, item in enumerate(seq.value)}


def _row_to_step(row: dict[str, Any], file: str, rownum: int, problems: list[Problem]) -> dict[str, Any]:
    step: dict[str, Any] = {}
    name = row.get("stepname")
    for col, key in TABLE_COLUMNS.items():
        if col not in row:
            continue
        value = row[col]
        if value is None or (isinstance(value, str) and value.strip() == "" and col != "value"):
            continue
        if col in JSON_COLUMNS and isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                problems.append(Problem(file, name or f"#{rownum}", key, f"invalid JSON in column: {exc.msg}", rownum))
                continue
        if key in LOWERCASE_COLUMNS and isinstance(value, str):
            value = value.strip().lower()  # ODIBI stores 'Ingest', 'SQL', 'Pandas'
        step[key] = value
    return step


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "y", "t"}
    return bool(value)


def _rows_to_raw(
    file: str, rows: list[dict[str, Any]], default_name: str, project: str | None, enabled_only: bool
) -> list[RawPipeline]:
    problems: list[Problem] = []
    by_project: dict[str | None, list[tuple[int, dict[str, Any]]]] = {}
    for rownum, row in enumerate(rows, start=1):
        if project is not None and row.get("project") != project:
            continue
        if enabled_only and "enabled" in row and not _truthy(row["enabled"]):
            continue
        by_project.setdefault(row.get("project"), []).append((rownum, _row_to_step(row, file, rownum, problems)))
    if len(by_project) <= 1:
        items = next(iter(by_project.values()), [])
        name = project or default_name
        return [RawPipeline(file, {"steps": [s for _, s in items]}, {i: r for i, (r, _) in enumerate(items)},
                            problems, name)]
    # Several projects in one table: one pipeline per project.
    return [
        RawPipeline(file, {"pipeline": str(proj), "steps": [s for _, s in items]},
                    {i: r for i, (r, _) in enumerate(items)}, problems if n == 0 else [], str(proj))
        for n, (proj, items) in enumerate(sorted(by_project.items(), key=lambda kv: str(kv[0])))
    ]


def _read_sqlite(p: Path, *, project: str | None, enabled_only: bool) -> list[RawPipeline]:
    file = str(p)
    try:
        conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return [RawPipeline(file, None, problems=[Problem(file, None, None, f"cannot open SQLite database: {exc}")])]
    try:
        conn.row_factory = sqlite3.Row
        try:
            cur = conn.execute("SELECT * FROM transformation_config")
        except sqlite3.DatabaseError as exc:
            return [RawPipeline(file, None, problems=[
                Problem(file, None, "transformation_config", f"cannot read table transformation_config: {exc}")])]
        rows = [{k.lower(): r[k] for k in r.keys()} for r in cur.fetchall()]  # noqa: SIM118 - sqlite3.Row
    finally:
        conn.close()
    missing = [c for c in ("layer", "stepname") if rows and c not in rows[0]]
    if missing:
        return [RawPipeline(file, None, problems=[
            Problem(file, None, "transformation_config", f"missing column(s): {', '.join(missing)}")])]
    return _rows_to_raw(file, rows, p.stem, project, enabled_only)


def _looks_like_step_csv(p: Path) -> bool:
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError):
        return False
    cols = {h.strip().lower() for h in header}
    return {"layer", "stepname"} <= cols


def _read_csv(p: Path, *, project: str | None, enabled_only: bool) -> list[RawPipeline]:
    file = str(p)
    with p.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        missing = [c for c in ("layer", "stepname") if c not in header]
        if missing:
            return [RawPipeline(file, None, problems=[Problem(file, None, None, f"missing column(s): {', '.join(missing)}")])]
        rows = [{(k or "").strip().lower(): v for k, v in row.items()} for row in reader]
    raws = _rows_to_raw(file, rows, p.stem, project, enabled_only)
    # CSV rows are lines 2.. (line 1 is the header).
    for raw in raws:
        raw.lines = {i: r + 1 for i, r in raw.lines.items()}
    return raws
