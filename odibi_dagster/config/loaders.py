"""Read pipeline configs from JSON, YAML, SQLite and CSV into raw documents.

Each loader returns :class:`RawPipeline` objects (plain dicts plus where they came
from and the line of each step); ``validation`` turns them into models. Parse
errors become problems with file and line instead of exceptions.
"""

from __future__ import annotations

import bisect
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
# Keys that make a JSON/YAML file in a scanned directory a pipeline config (not a data file).
PIPELINE_KEYS = {
    "pipeline",
    "steps",
    "engine",
    "owners",
    "partitions",
    "schedule",
    "sensors",
    "hooks",
    "retry",
    "backfill",
    "story",
    "explanations",
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
    key_lines: dict[str, int] = field(default_factory=dict)  # top-level key of a document -> line number
    # ODIBI's own forms (a bare list of steps, a SQLite or CSV table) resolve relative paths
    # against ODIBI's project root; pipeline documents against their own folder.
    odibi_format: bool = False
    # Rows of a CSV config table skipped for enabled = 0 (ODIBI's CSV loader would run them).
    disabled_csv_rows: int = 0


def discover(path: str | Path) -> list[Path]:
    """The config files at ``path``: the file itself, or every config in a directory and its
    sub-folders.

    In a directory, CSV files without ODIBI's columns, SQLite databases without a
    ``transformation_config`` table and JSON/YAML files that are clearly data (no step or
    pipeline keys, or a dg ``defs.yaml``) are skipped; JSON/YAML files that do not parse
    are kept, so their errors are reported.
    """
    p = Path(path)
    if p.is_dir():
        found = []
        # Sub-folders too (hidden ones, such as .odibi/ working files, are skipped).
        children = sorted(c for c in p.rglob("*") if not any(part.startswith(".") for part in c.relative_to(p).parts))
        for child in children:
            if child.is_file() and child.suffix.lower() in CONFIG_SUFFIXES:
                suffix = child.suffix.lower()
                if suffix in CSV_SUFFIXES and not _looks_like_step_csv(child):
                    continue  # a data file next to the configs
                if suffix in JSON_SUFFIXES | YAML_SUFFIXES and not _looks_like_config(child):
                    continue
                if suffix in SQLITE_SUFFIXES and not _has_config_table(child):
                    continue  # a data database next to the configs
                found.append(child)
        return found
    return [p]


def _has_config_table(p: Path) -> bool:
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


def _looks_like_config(p: Path) -> bool:
    try:
        text = p.read_text(encoding="utf-8-sig")
        data = json.loads(text) if p.suffix.lower() in JSON_SUFFIXES else yaml.safe_load(text)
    except Exception:
        return True  # a broken config is reported, not skipped
    if isinstance(data, dict):
        return bool(PIPELINE_KEYS & set(data))
    if isinstance(data, list):
        return not data or any(isinstance(item, dict) and {"layer", "name"} & set(item) for item in data)
    return False


def _column_key(name: Any) -> str:
    key = re.sub(r"[\s_]", "", str(name or "")).lower()
    return COLUMN_ALIASES.get(key, key)


def read_raw(path: str | Path, *, project: str | None = None, enabled_only: bool = True) -> list[RawPipeline]:
    """Read one config file (any supported format) into raw pipelines."""
    p = Path(path)
    file = str(p)
    if not p.exists():
        return [RawPipeline(file, None, problems=[Problem(file, None, None, "Config source not found")])]
    if not p.is_file():
        # A FIFO, socket or device would block the read (or never end): refuse before opening it.
        return [
            RawPipeline(
                file,
                None,
                problems=[
                    Problem(
                        file, None, None, "not a regular file (a config must be a file, or a directory of config files)"
                    )
                ],
            )
        ]
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
    except OSError as exc:
        return [RawPipeline(file, None, problems=[Problem(file, None, None, f"cannot read file: {exc}")])]
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


def _failed(p: Path, message: str, line: int | None = None) -> RawPipeline:
    return RawPipeline(str(p), None, problems=[Problem(str(p), None, None, message, line)])


def _empty(p: Path) -> RawPipeline:
    # ODIBI's wording for a config without steps.
    problem = Problem(str(p), None, "steps", "Config is empty - no steps found")
    return RawPipeline(str(p), None, problems=[problem])


def _read_json(p: Path) -> RawPipeline:
    text = p.read_text(encoding="utf-8-sig")  # utf-8-sig: files saved with a BOM (Windows editors) load too
    if not text.strip():
        return _empty(p)
    duplicates: list[tuple[str | None, str]] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen:
                name = next((v for k, v in items if k == "name" and isinstance(v, str)), None)
                duplicates.append((name, key))
            seen.add(key)
        return dict(items)

    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        return _failed(p, f"invalid JSON: {exc.msg}", exc.lineno)
    except RecursionError:
        return _failed(p, "invalid JSON: nested too deeply")
    doc = _wrap(data)
    if doc is None:
        return _failed(p, "JSON config must be an array of steps or an object")
    raw = RawPipeline(
        str(p),
        doc,
        lines=_json_step_lines(text, doc),
        default_name=p.stem,
        key_lines=_json_key_lines(text) if isinstance(data, dict) else {},
        odibi_format=isinstance(data, list),
    )
    for name, key in duplicates:
        raw.problems.append(Problem(str(p), name, key, f"duplicate key '{key}' (JSON keeps only the last)"))
    return raw


def _json_item_offsets(text: str) -> list[int]:
    """Where each step starts in JSON ``text``: the items of the top-level array, or of the
    ``steps`` array of the top-level object (a small scanner; the text is valid JSON)."""
    stack: list[str] = []
    steps_depth: int | None = None
    offsets: list[int] = []
    expect = pending_steps = False
    last_key: str | None = None
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if expect and c != "]":
            offsets.append(i)
            expect = False
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            pending_steps = False
            if stack == ["{"]:
                last_key = text[i + 1 : j]
            i = j + 1
            continue
        if c == ":":
            pending_steps = stack == ["{"] and last_key == "steps"
        elif c in "[{":
            stack.append(c)
            if c == "[" and steps_depth is None and (len(stack) == 1 or pending_steps):
                steps_depth, expect = len(stack), True
            pending_steps = False
        elif c in "]}":
            if c == "]" and len(stack) == steps_depth:
                break
            if stack:
                stack.pop()
        elif c == ",":
            expect = steps_depth is not None and len(stack) == steps_depth
        else:
            pending_steps = False
        i += 1
    return offsets


def _json_step_lines(text: str, doc: dict[str, Any]) -> dict[int, int]:
    """Line of each step: its ``"name"`` entry, else where the step starts."""
    steps = doc.get("steps")
    if not isinstance(steps, list):
        return {}
    offsets = _json_item_offsets(text)
    if len(offsets) != len(steps):
        return {}
    newlines = [m.start() for m in re.finditer("\n", text)]
    lines: dict[int, int] = {}
    for i, (step, start) in enumerate(zip(steps, offsets, strict=True)):
        end = offsets[i + 1] if i + 1 < len(offsets) else len(text)
        pos = start
        if isinstance(step, dict) and isinstance(step.get("name"), str):
            m = re.compile(r'"name"\s*:\s*' + re.escape(json.dumps(step["name"]))).search(text, start, end)
            if m is None:  # the file escapes it differently (e.g. non-ASCII as \\u00e9)
                m = _NAME_KEY.search(text, start, end)
            pos = m.start() if m else start
        lines[i] = bisect.bisect_right(newlines, pos) + 1
    return lines


def _read_yaml(p: Path) -> RawPipeline:
    text = p.read_text(encoding="utf-8-sig")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        alias_problem = _alias_problem(node)
        if alias_problem is not None:
            return _failed(p, f"invalid YAML: {alias_problem[0]}", alias_problem[1])
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        msg = getattr(exc, "problem", None) or str(exc)
        return _failed(p, f"invalid YAML: {msg}", line)
    except RecursionError:
        return _failed(p, "invalid YAML: nested too deeply")
    if data is None:  # an empty file, or only comments
        return _empty(p)
    doc = _wrap(data)
    if doc is None:
        return _failed(p, "YAML config must be a list of steps or a mapping")
    raw = RawPipeline(
        str(p),
        doc,
        lines=_yaml_step_lines(node),
        default_name=p.stem,
        key_lines=_yaml_key_lines(node),
        odibi_format=isinstance(data, list),
    )
    raw.problems.extend(_yaml_duplicate_keys(node, str(p)))
    return raw


#: Nodes a YAML document may expand to once its aliases are followed: far above any real
#: pipeline, far below what nested aliases ("billion laughs") can make a loader build.
MAX_YAML_NODES = 200_000


def _alias_problem(root: yaml.Node | None) -> tuple[str, int | None] | None:
    """A recursive alias, or aliases expanding past :data:`MAX_YAML_NODES`, in a composed
    document: (message, line). PyYAML builds both without complaint, and everything that
    walks the result then runs for ever or runs out of memory."""
    if root is None:
        return None
    sizes: dict[int, int] = {}  # node id -> expanded size
    state: dict[int, int] = {}  # 1: on the current path, 2: done
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if children_done:
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            state[key] = 2
            if sizes[key] > MAX_YAML_NODES:
                return (f"aliases expand the document past {MAX_YAML_NODES:,} nodes", node.start_mark.line + 1)
            continue
        if state.get(key) == 2:
            continue
        state[key] = 1
        stack.append((node, True))
        for child in children:
            if state.get(id(child)) == 1:
                return (
                    "an alias refers to a node that contains it (recursive aliases are not supported)",
                    child.start_mark.line + 1,
                )
            if state.get(id(child)) != 2:
                stack.append((child, False))
    return None


def _yaml_duplicate_keys(node: yaml.Node | None, file: str) -> list[Problem]:
    """YAML keeps only the last of duplicate keys; report them with their line."""
    problems: list[Problem] = []
    todo = [node]
    while todo:
        current = todo.pop()
        if isinstance(current, yaml.SequenceNode):
            todo.extend(current.value)
        elif isinstance(current, yaml.MappingNode):
            seen: set[str] = set()
            names = [
                v.value
                for k, v in current.value
                if isinstance(k, yaml.ScalarNode) and k.value == "name" and isinstance(v, yaml.ScalarNode)
            ]
            name = names[-1] if names else None
            for key, value in current.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen and key.value != "<<":
                        problems.append(
                            Problem(
                                file,
                                name,
                                key.value,
                                f"duplicate key '{key.value}' (YAML keeps only the last)",
                                key.start_mark.line + 1,
                            )
                        )
                    seen.add(key.value)
                todo.append(value)
    return problems


def _yaml_key_lines(node: yaml.Node | None) -> dict[str, int]:
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


_COLON = re.compile(r"\s*:")
_NAME_KEY = re.compile(r'"name"\s*:')


def _json_key_lines(text: str) -> dict[str, int]:
    """Line of each key of the top-level JSON object."""
    lines: dict[str, int] = {}
    depth, i, n = 0, 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            if depth == 1 and _COLON.match(text, j + 1):
                key = json.loads(text[i : j + 1]) if j < n else ""
                lines.setdefault(key, text.count("\n", 0, i) + 1)
            i = j + 1
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        i += 1
    return lines


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


def _rows_to_raw(
    file: str, rows: list[dict[str, Any]], default_name: str, project: str | None, enabled_only: bool
) -> list[RawPipeline]:
    problems: list[Problem] = []
    by_project: dict[str | None, list[tuple[int, dict[str, Any]]]] = {}
    if project is not None and rows and "project" not in rows[0]:
        return [
            RawPipeline(
                file,
                None,
                problems=[
                    Problem(file, None, "project", f"project '{project}' given, but the table has no 'project' column")
                ],
            )
        ]
    for rownum, row in enumerate(rows, start=1):
        if project is not None and str(row.get("project")) != str(project):
            continue
        if enabled_only and "enabled" in row and not _truthy(row["enabled"]):
            continue
        proj = row.get("project")
        proj = None if proj is None or str(proj).strip() == "" else str(proj)
        by_project.setdefault(proj, []).append((rownum, _row_to_step(row, file, rownum, problems)))
    if project is not None and not by_project:
        known = sorted({str(r["project"]) for r in rows if r.get("project") is not None})
        return [
            RawPipeline(
                file,
                None,
                problems=[
                    Problem(
                        file,
                        None,
                        "project",
                        f"no enabled rows for project '{project}' "
                        f"(projects in the table: {', '.join(known) or 'none'})",
                    )
                ],
            )
        ]
    if len(by_project) <= 1:
        items = next(iter(by_project.values()), [])
        name = project or default_name
        return [
            RawPipeline(
                file,
                {"steps": [s for _, s in items]},
                {i: r for i, (r, _) in enumerate(items)},
                problems,
                name,
                odibi_format=True,
            )
        ]
    # Several projects in one table: one pipeline per project (rows without a project: the file's name).
    raws = []
    for n, (proj, items) in enumerate(sorted(by_project.items(), key=lambda kv: str(kv[0] or ""))):
        name = proj or default_name
        raws.append(
            RawPipeline(
                file,
                {"pipeline": name, "steps": [s for _, s in items]},
                {i: r for i, (r, _) in enumerate(items)},
                problems if n == 0 else [],
                name,
                odibi_format=True,
            )
        )
    return raws


def _read_sqlite(p: Path, *, project: str | None, enabled_only: bool) -> list[RawPipeline]:
    file = str(p)
    try:
        conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return [_failed(p, f"cannot open SQLite database: {exc}")]
    try:
        conn.row_factory = sqlite3.Row
        try:
            cur = conn.execute("SELECT * FROM transformation_config")
        except sqlite3.DatabaseError as exc:
            return [
                RawPipeline(
                    file,
                    None,
                    problems=[
                        Problem(file, None, "transformation_config", f"cannot read table transformation_config: {exc}")
                    ],
                )
            ]
        rows = [{_column_key(k): r[k] for k in r.keys()} for r in cur.fetchall()]  # noqa: SIM118 - sqlite3.Row
    finally:
        conn.close()
    missing = [c for c in ("layer", "stepname") if rows and c not in rows[0]]
    if missing:
        return [
            RawPipeline(
                file,
                None,
                problems=[Problem(file, None, "transformation_config", f"missing column(s): {', '.join(missing)}")],
            )
        ]
    return _rows_to_raw(file, rows, p.stem, project, enabled_only)


def _looks_like_step_csv(p: Path) -> bool:
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    cols = {_column_key(h) for h in header}
    return {"layer", "stepname"} <= cols


def _read_csv(p: Path, *, project: str | None, enabled_only: bool) -> list[RawPipeline]:
    file = str(p)
    with p.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        try:
            header = [_column_key(h) for h in (reader.fieldnames or [])]
            missing = [c for c in ("layer", "stepname") if c not in header]
            if missing:
                return [
                    RawPipeline(
                        file, None, problems=[Problem(file, None, None, f"missing column(s): {', '.join(missing)}")]
                    )
                ]
            rows = []
            extra: list[Problem] = []
            for row in reader:
                norm = {_column_key(k): v for k, v in row.items() if k is not None}
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
            return [
                RawPipeline(
                    file, None, problems=[Problem(file, None, None, f"invalid CSV: {exc}", reader.line_num or None)]
                )
            ]
    raws = _rows_to_raw(file, rows, p.stem, project, enabled_only)
    if enabled_only:
        disabled = sum(
            1
            for row in rows
            if "enabled" in row
            and not _truthy(row["enabled"])
            and (project is None or str(row.get("project")) == str(project))
        )
        for raw in raws:
            raw.disabled_csv_rows = disabled
    raws[0].problems.extend(extra)
    # CSV rows are lines 2.. (line 1 is the header).
    for raw in raws:
        raw.lines = {i: r + 1 for i, r in raw.lines.items()}
    return raws
