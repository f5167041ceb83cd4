"""Read pipeline configs from JSON, YAML, SQLite and CSV into raw documents.

Each loader returns :class:`RawPipeline` objects (plain dicts plus where they came
from and the line of each step); ``validation`` turns them into models. Parse
errors become problems with file and line instead of exceptions. One module per
source: ``json_files``, ``yaml_files``, ``tables`` (SQLite and CSV rows), and
``discovery`` (which files are configs, and which loader reads each).
"""

from odibi_dagster.config.loaders.discovery import (
    CONFIG_SUFFIXES,
    CSV_SUFFIXES,
    JSON_SUFFIXES,
    PIPELINE_KEYS,
    SQLITE_SUFFIXES,
    YAML_SUFFIXES,
    discover,
    read_raw,
)
from odibi_dagster.config.loaders.raw import RawPipeline
from odibi_dagster.config.loaders.tables import COLUMN_ALIASES, TABLE_COLUMNS
from odibi_dagster.config.loaders.yaml_files import MAX_YAML_NODES

__all__ = [
    "COLUMN_ALIASES",
    "CONFIG_SUFFIXES",
    "CSV_SUFFIXES",
    "JSON_SUFFIXES",
    "MAX_YAML_NODES",
    "PIPELINE_KEYS",
    "SQLITE_SUFFIXES",
    "TABLE_COLUMNS",
    "YAML_SUFFIXES",
    "RawPipeline",
    "discover",
    "read_raw",
]
