"""Data formats: one table of names, one registry of readers and writers.

* :mod:`~odibi_dagster.engines.formats.table`: every format's name, aliases, extensions and
  Dagster kind, and how a source's format is resolved (used by both engines, the
  translator's kinds and reference ingest);
* :mod:`~odibi_dagster.engines.formats.registry`: the readers and writers, keyed by format
  and engine, and the dispatch through them;
* one module per format family with its pandas+DuckDB reader and writer: ``csv``, ``json``
  (``json``, ``jsonl``), ``parquet``, ``delta``, ``sql`` (``sqlite``, ``sql``), sharing
  :mod:`~odibi_dagster.engines.formats.duck`. Spark's are in
  :mod:`odibi_dagster.engines.spark.io`.

This package's ``__init__`` imports the table and the registry only (no DuckDB, no Spark);
an engine imports its format modules, which register themselves.
"""

from odibi_dagster.engines.formats.registry import FormatIO, format_io, register, supported_formats
from odibi_dagster.engines.formats.table import (
    FORMATS,
    REFERENCE_FORMATS,
    FormatSpec,
    canonical_format,
    format_of_extension,
    resolve_format,
    storage_kind,
)

__all__ = [
    "FORMATS",
    "REFERENCE_FORMATS",
    "FormatIO",
    "FormatSpec",
    "canonical_format",
    "format_io",
    "format_of_extension",
    "register",
    "resolve_format",
    "storage_kind",
    "supported_formats",
]
