"""Which files are configs, and which loader reads each (by suffix)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from odibi_dagster.config.loaders.json_files import read_json
from odibi_dagster.config.loaders.raw import RawPipeline, failed
from odibi_dagster.config.loaders.tables import has_config_table, looks_like_step_csv, read_csv, read_sqlite
from odibi_dagster.config.loaders.yaml_files import FastLoader, read_yaml

JSON_SUFFIXES = {".json"}
YAML_SUFFIXES = {".yaml", ".yml"}
SQLITE_SUFFIXES = {".db", ".sqlite", ".sqlite3"}
CSV_SUFFIXES = {".csv"}
CONFIG_SUFFIXES = JSON_SUFFIXES | YAML_SUFFIXES | SQLITE_SUFFIXES | CSV_SUFFIXES
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


# A top-level key of a YAML block mapping starts its line: one of PIPELINE_KEYS there settles
# it without parsing the file, which was half the time discovery took (read_raw parses it again).
# Anything else (flow style, a list of steps, a data file) is parsed.
_YAML_TOP_KEY = re.compile(rf"^[\"']?(?:{'|'.join(sorted(PIPELINE_KEYS))})[\"']?[ \t]*:(?:[ \t]|$)", re.MULTILINE)


def _is_config(child: Path) -> bool:
    suffix = child.suffix.lower()
    if suffix not in CONFIG_SUFFIXES:
        return False
    if suffix in CSV_SUFFIXES:
        return looks_like_step_csv(child)  # else a data file next to the configs
    if suffix in JSON_SUFFIXES | YAML_SUFFIXES:
        return _looks_like_config(child)
    return has_config_table(child)  # else a data database next to the configs


def discover(path: str | Path) -> list[Path]:
    """The config files at ``path``: the file itself, or every config in a directory and its
    sub-folders.

    In a directory, CSV files without ODIBI's columns, SQLite databases without a
    ``transformation_config`` table and JSON/YAML files that are clearly data (no step or
    pipeline keys, or a dg ``defs.yaml``) are skipped; JSON/YAML files that do not parse
    are kept, so their errors are reported.
    """
    p = Path(path)
    if not p.is_dir():
        return [p]
    # Sub-folders too (hidden ones, such as .odibi/ working files, are skipped).
    children = sorted(c for c in p.rglob("*") if not any(part.startswith(".") for part in c.relative_to(p).parts))
    return [child for child in children if child.is_file() and _is_config(child)]


def _looks_like_config(p: Path) -> bool:
    try:
        text = p.read_text(encoding="utf-8-sig")
        if p.suffix.lower() in YAML_SUFFIXES and _YAML_TOP_KEY.search(text):
            return True
        data = json.loads(text) if p.suffix.lower() in JSON_SUFFIXES else yaml.load(text, Loader=FastLoader)
    except Exception:
        return True  # a broken config is reported, not skipped
    if isinstance(data, dict):
        return bool(PIPELINE_KEYS & set(data))
    if isinstance(data, list):
        return not data or any(isinstance(item, dict) and {"layer", "name"} & set(item) for item in data)
    return False


def read_raw(path: str | Path, *, project: str | None = None, enabled_only: bool = True) -> list[RawPipeline]:
    """Read one config file (any supported format) into raw pipelines."""
    p = Path(path)
    if not p.exists():
        return [failed(p, "Config source not found")]
    if not p.is_file():
        # A FIFO, socket or device would block the read (or never end): refuse before opening it.
        return [failed(p, "not a regular file (a config must be a file, or a directory of config files)")]
    suffix = p.suffix.lower()
    try:
        if suffix in JSON_SUFFIXES:
            return [read_json(p)]
        if suffix in YAML_SUFFIXES:
            return [read_yaml(p)]
        if suffix in SQLITE_SUFFIXES:
            return read_sqlite(p, project=project, enabled_only=enabled_only)
        if suffix in CSV_SUFFIXES:
            return read_csv(p, project=project, enabled_only=enabled_only)
    except UnicodeDecodeError as exc:
        return [failed(p, f"cannot decode file: {exc}")]
    except OSError as exc:
        return [failed(p, f"cannot read file: {exc}")]
    return [failed(p, f"unsupported config format '{suffix}' (use .json, .yaml, .db or .csv)")]
