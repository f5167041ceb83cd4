"""ODIBI's config tables: ``transformation_config`` rows of a SQLite database or a CSV file,
one row per step, grouped into one pipeline per ``project``."""

from __future__ import annotations

import csv
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

from odibi_dagster.config.errors import Problem
from odibi_dagster.config.loaders.raw import RawPipeline, failed

# ODIBI's transformation_config columns -> Step fields. Column names are matched
# case-insensitively and without spaces/underscores (``StepName``, ``step_name``).
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
COLUMN_ALIASES = {"name": "stepname", "type": "steptype"}
JSON_COLUMNS = {"params", "inputs", "outputs", "metadata"}
LOWERCASE_COLUMNS = {"layer", "type", "engine"}

_Rows = list[tuple[int, dict[str, Any]]]  # (row number, step mapping)


def column_key(name: Any) -> str:
    """A column name as matched: lower-case, without spaces and underscores, aliases resolved."""
    key = re.sub(r"[\s_]", "", str(name or "")).lower()
    return COLUMN_ALIASES.get(key, key)


def _row_to_step(row: dict[str, Any], file: str, rownum: int, problems: list[Problem]) -> dict[str, Any]:
    """One ``transformation_config`` row (keys already normalised) as a step mapping."""
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
    if "type" not in step and step.get("layer", "transform") == "transform":
        step["type"] = "sql"  # ODIBI's SQLite loader: a NULL StepType of a transform is SQL
    return step


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "y", "t"}
    return bool(value)


def _of_project(row: dict[str, Any], project: str | None) -> bool:
    return project is None or str(row.get("project")) == str(project)


def _disabled(row: dict[str, Any]) -> bool:
    return "enabled" in row and not _truthy(row["enabled"])


def _group_by_project(
    file: str, rows: list[dict[str, Any]], project: str | None, enabled_only: bool, problems: list[Problem]
) -> dict[str | None, _Rows]:
    """The selected rows as steps, by project (None: rows without one)."""
    by_project: dict[str | None, _Rows] = {}
    for rownum, row in enumerate(rows, start=1):
        if not _of_project(row, project) or (enabled_only and _disabled(row)):
            continue
        proj = row.get("project")
        proj = None if proj is None or str(proj).strip() == "" else str(proj)
        by_project.setdefault(proj, []).append((rownum, _row_to_step(row, file, rownum, problems)))
    return by_project


def _raw(file: str, items: _Rows, problems: list[Problem], name: str, *, named: bool) -> RawPipeline:
    doc: dict[str, Any] = {"pipeline": name} if named else {}
    doc["steps"] = [s for _, s in items]
    lines = {i: r for i, (r, _) in enumerate(items)}
    return RawPipeline(file, doc, lines, problems, name, odibi_format=True)


def _rows_to_raw(
    file: str, rows: list[dict[str, Any]], default_name: str, project: str | None, enabled_only: bool
) -> list[RawPipeline]:
    if project is not None and rows and "project" not in rows[0]:
        return [failed(file, f"project '{project}' given, but the table has no 'project' column", field="project")]
    problems: list[Problem] = []
    by_project = _group_by_project(file, rows, project, enabled_only, problems)
    if project is not None and not by_project:
        known = sorted({str(r["project"]) for r in rows if r.get("project") is not None})
        message = f"no enabled rows for project '{project}' (projects in the table: {', '.join(known) or 'none'})"
        return [failed(file, message, field="project")]
    if len(by_project) <= 1:
        items = next(iter(by_project.values()), [])
        return [_raw(file, items, problems, project or default_name, named=False)]
    # Several projects in one table: one pipeline per project (rows without a project: the file's name).
    ordered = sorted(by_project.items(), key=lambda kv: str(kv[0] or ""))
    return [
        _raw(file, items, problems if n == 0 else [], proj or default_name, named=True)
        for n, (proj, items) in enumerate(ordered)
    ]


def read_sqlite(p: Path, *, project: str | None, enabled_only: bool) -> list[RawPipeline]:
    """Read the ``transformation_config`` table of a SQLite database."""
    try:
        conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return [failed(p, f"cannot open SQLite database: {exc}")]
    try:
        conn.row_factory = sqlite3.Row
        try:
            cur = conn.execute("SELECT * FROM transformation_config")
        except sqlite3.DatabaseError as exc:
            message = f"cannot read table transformation_config: {exc}"
            return [failed(p, message, field="transformation_config")]
        rows = [{column_key(k): r[k] for k in r.keys()} for r in cur.fetchall()]  # noqa: SIM118 - sqlite3.Row
    finally:
        conn.close()
    missing = [c for c in ("layer", "stepname") if rows and c not in rows[0]]
    if missing:
        return [failed(p, f"missing column(s): {', '.join(missing)}", field="transformation_config")]
    return _rows_to_raw(str(p), rows, p.stem, project, enabled_only)


def has_config_table(p: Path) -> bool:
    """Whether a SQLite file has ODIBI's ``transformation_config`` table (or view)."""
    try:
        conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
        try:
            row = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND lower(name) = 'transformation_config'"
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return row is not None


def looks_like_step_csv(p: Path) -> bool:
    """Whether a CSV file has ODIBI's columns (``Layer``, ``StepName``)."""
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    cols = {column_key(h) for h in header}
    return {"layer", "stepname"} <= cols


def _csv_rows(p: Path) -> tuple[list[dict[str, Any]], list[Problem]] | RawPipeline:
    """The rows of a CSV table (keys normalised) and rows with too many fields; or the failure."""
    file = str(p)
    with p.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        try:
            header = [column_key(h) for h in (reader.fieldnames or [])]
            missing = [c for c in ("layer", "stepname") if c not in header]
            if missing:
                return failed(p, f"missing column(s): {', '.join(missing)}")
            rows = []
            extra: list[Problem] = []
            for row in reader:
                norm = {column_key(k): v for k, v in row.items() if k is not None}
                if row.get(None):  # type: ignore[call-overload]  # DictReader's restkey: too many fields
                    extra.append(
                        Problem(
                            file,
                            norm.get("stepname") or None,
                            None,
                            "row has more fields than the header (quote values that hold commas, such as JSON "
                            "in Params/Inputs/Outputs)",
                            reader.line_num,
                        )
                    )
                rows.append(norm)
        except csv.Error as exc:
            return failed(p, f"invalid CSV: {exc}", reader.line_num or None)
    return rows, extra


def read_csv(p: Path, *, project: str | None, enabled_only: bool) -> list[RawPipeline]:
    """Read a CSV config table (ODIBI's ``transformation_config`` columns)."""
    read = _csv_rows(p)
    if isinstance(read, RawPipeline):
        return [read]
    rows, extra = read
    raws = _rows_to_raw(str(p), rows, p.stem, project, enabled_only)
    if enabled_only:
        disabled = sum(1 for row in rows if _disabled(row) and _of_project(row, project))
        for raw in raws:
            raw.disabled_csv_rows = disabled
    raws[0].problems.extend(extra)
    # CSV rows are lines 2.. (line 1 is the header).
    for raw in raws:
        raw.lines = {i: r + 1 for i, r in raw.lines.items()}
    return raws
