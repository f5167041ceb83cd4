"""Helpers shared by the config tests (imported by name: tests/config is on sys.path)."""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from odibi_dagster import ConfigValidationError, Problem, load_pipelines

# ODIBI's transformation_config columns, in ODIBI's spelling.
ODIBI_COLUMNS = ["Layer", "StepName", "StepType", "Engine", "Value", "Params", "Inputs", "Outputs"]


def ingest(name: str = "read", value: str = "data.csv", out: str = "raw", **extra: Any) -> dict[str, Any]:
    return {"layer": "ingest", "name": name, "value": value, "outputs": {"data": out}, **extra}


def sql_step(
    name: str = "filter",
    sql: str = "SELECT * FROM data",
    inputs: dict | None = None,
    out: str = "filtered",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "layer": "transform",
        "name": name,
        "type": "sql",
        "value": sql,
        "inputs": {"data": "raw"} if inputs is None else inputs,
        "outputs": {"data": out},
        **extra,
    }


def store(name: str = "write", value: str = "out.parquet", dataset: str = "filtered", **extra: Any) -> dict:
    return {"layer": "store", "name": name, "value": value, "inputs": {"data": dataset}, **extra}


def good_steps() -> list[dict[str, Any]]:
    """A small valid ODIBI pipeline: ingest -> SQL transform -> store."""
    return [ingest(), sql_step(), store()]


class ConfigFiles:
    """Writes configs into a test's tmp_path and validates them."""

    def __init__(self, root: Path):
        self.root = root

    def json(self, data: Any, name: str = "pipeline.json") -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
        return path

    def yaml(self, data: Any, name: str = "pipeline.yaml") -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return path

    def text(self, text: str, name: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def sqlite(
        self,
        rows: Iterable[Sequence[Any]],
        name: str = "config.db",
        columns: Sequence[str] = ODIBI_COLUMNS,
        table: str = "transformation_config",
    ) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path)
        try:
            cols = ", ".join(f'"{c}" TEXT' if c.lower() != "enabled" else f'"{c}" INTEGER' for c in columns)
            conn.execute(f"CREATE TABLE {table} ({cols})")
            marks = ", ".join("?" for _ in columns)
            conn.executemany(f"INSERT INTO {table} VALUES ({marks})", [tuple(r) for r in rows])
            conn.commit()
        finally:
            conn.close()
        return path

    def csv(
        self, rows: Iterable[Sequence[Any]], name: str = "config.csv", columns: Sequence[str] = ODIBI_COLUMNS
    ) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            writer.writerows(["" if v is None else v for v in r] for r in rows)
        return path


def problems_of(*paths: Path | str, **kwargs: Any) -> list[Problem]:
    """The problems ``load_pipelines`` reports for ``paths`` (fails the test when they are valid)."""
    with pytest.raises(ConfigValidationError) as info:
        load_pipelines(*paths, **kwargs)
    assert str(info.value).startswith(f"{len(info.value.problems)} problem")
    return info.value.problems


def find(problems: list[Problem], step: str | None, field: str | None, message: str) -> Problem:
    """The one problem of ``step``/``field`` whose message contains ``message``."""
    hits = [p for p in problems if p.step == step and p.field == field and message in p.message]
    assert hits, f"no problem ({step!r}, {field!r}, {message!r}) in:\n" + "\n".join(map(str, problems))
    return hits[0]


def assert_only(
    problems: list[Problem], *expected: tuple[str | None, str | None, str], file: Path | str | None = None
) -> None:
    """``problems`` are exactly ``expected`` (step, field, message fragment), all naming ``file``."""
    for step, field, message in expected:
        found = find(problems, step, field, message)
        if file is not None:
            assert found.file == str(file)
    assert len(problems) == len(expected), "\n".join(map(str, problems))
