"""JSON configs: the document, the line of each step and of each top-level key, and the
duplicate keys JSON would silently drop."""

from __future__ import annotations

import bisect
import functools
import json
import re
from pathlib import Path
from typing import Any

from odibi_dagster.config.errors import Problem
from odibi_dagster.config.loaders.raw import RawPipeline, empty, failed, parsed

_COLON = re.compile(r"\s*:")
_NAME_KEY = re.compile(r'"name"\s*:')


def read_json(p: Path) -> RawPipeline:
    """Read one JSON config (a list of steps or a pipeline document)."""
    text = p.read_text(encoding="utf-8-sig")  # utf-8-sig: files saved with a BOM (Windows editors) load too
    if not text.strip():
        return empty(p)
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
        return failed(p, f"invalid JSON: {exc.msg}", exc.lineno)
    except RecursionError:
        return failed(p, "invalid JSON: nested too deeply")
    key_lines = _json_key_lines(text) if isinstance(data, dict) else {}
    step_lines = functools.partial(_json_step_lines, text)
    raw = parsed(p, data, "JSON config must be an array of steps or an object", step_lines, key_lines)
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
