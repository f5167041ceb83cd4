"""The one table of data formats: names, aliases, file extensions and Dagster kinds.

Both engines resolve a step's format through it (``format``/``source_type`` param, a
database URL or connection param, the file extension, or a directory's content), the
translator takes its asset kinds from it and reference ingest its lazily readable formats.
So ``tsv``, ``postgres`` or ``jsonl`` mean the same on pandas+DuckDB and on Spark, and an
unknown name or extension fails the same way on both. Which engine reads and writes which
format is the registry's business (:mod:`odibi_dagster.engines.formats.registry`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from odibi_dagster.engines import paths

__all__ = [
    "FORMATS",
    "REFERENCE_FORMATS",
    "FormatSpec",
    "canonical_format",
    "directory_format",
    "format_of_extension",
    "format_of_files",
    "implied_params",
    "is_database_url",
    "resolve_format",
    "storage_kind",
]


@dataclass(frozen=True)
class FormatSpec:
    """One format: its canonical ``name``, the other names configs may use, its file
    extensions, and whether plain files of it can be ingested by reference (read lazily
    in place by both engines' readers)."""

    name: str
    aliases: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()
    by_reference: bool = False
    kind: str | None = None  # the Dagster kind shown in the UI (default: the name)


FORMATS: tuple[FormatSpec, ...] = (
    FormatSpec("csv", ("tsv", "text", "txt"), (".csv", ".tsv"), by_reference=True),
    FormatSpec("json", (), (".json",), by_reference=True),
    FormatSpec("jsonl", ("ndjson", "json_lines", "jsonlines"), (".jsonl", ".ndjson"), by_reference=True, kind="json"),
    FormatSpec("parquet", ("pq",), (".parquet", ".pq"), by_reference=True),
    FormatSpec("delta", ("deltalake", "delta_lake"), (".delta",), by_reference=True),
    FormatSpec("avro", (), (".avro",), by_reference=True),
    FormatSpec("orc", (), (".orc",), by_reference=True),
    FormatSpec("sqlite", ("sqlite3",), (".db", ".sqlite", ".sqlite3")),
    # A database table or query: SQLAlchemy URLs on pandas+DuckDB, JDBC URLs on Spark.
    FormatSpec(
        "sql",
        (
            "jdbc",
            "database",
            "db",
            "sqlalchemy",
            "postgres",
            "postgresql",
            "mysql",
            "mssql",
            "sqlserver",
            "azure_sql",
        ),
    ),
    FormatSpec("table", ("catalog",)),  # a table of the engine's catalog (Spark's metastore)
)

_BY_NAME: dict[str, FormatSpec] = {n: spec for spec in FORMATS for n in (spec.name, *spec.aliases)}
_BY_EXTENSION: dict[str, FormatSpec] = {ext: spec for spec in FORMATS for ext in spec.extensions}

#: Formats whose plain files both engines read lazily: ingestable by reference.
REFERENCE_FORMATS = frozenset(spec.name for spec in FORMATS if spec.by_reference)

# Names and extensions that imply a reader/writer option unless the params set it.
_TAB = {"delimiter": "\t"}
_IMPLIED: dict[str, dict[str, Any]] = {"tsv": _TAB, ".tsv": _TAB}
_DELIMITER_PARAMS = ("delimiter", "sep", "delim")

_COMPRESSION_SUFFIXES = (".gz", ".gzip", ".zst", ".zstd", ".bz2", ".xz", ".snappy", ".lz4", ".deflate")

# URL schemes that are databases (SQLAlchemy dialects, JDBC), not filesystems.
_SQL_SCHEMES = frozenset(
    {
        "sqlite",
        "postgresql",
        "postgres",
        "mysql",
        "mariadb",
        "mssql",
        "oracle",
        "redshift",
        "snowflake",
        "duckdb",
        "trino",
        "presto",
        "bigquery",
        "databricks",
        "hana",
        "db2",
        "firebird",
        "sybase",
        "teradata",
        "clickhouse",
        "cockroachdb",
    }
)
# Params that name a database: the source is then a table or a query in it.
_DATABASE_PARAMS = ("connection_string", "jdbc_url", "url")
# URL prefixes of filesystems: their paths have a format of their own (an extension).
_FILESYSTEM_URLS = ("abfs", "az://", "file://", "s3", "gs://", "gcs://", "memory://")
# Aliases of ``sql`` that say nothing about the database product (kinds show the others).
_GENERIC_SQL = frozenset({"sql", "database", "db", "sqlalchemy"})


def all_names() -> list[str]:
    """Every accepted format name and alias, sorted."""
    return sorted(_BY_NAME)


def canonical_format(name: str) -> str:
    """The canonical format of ``name`` (an alias or a name, any case); ValueError if unknown."""
    key = str(name).lower().strip()
    spec = _BY_NAME.get(key)
    if spec is None:
        raise ValueError(f"unknown format {name!r}; supported: {', '.join(all_names())}")
    return spec.name


def _extension(path: str) -> str:
    """The extension of ``path``'s file name, compression suffixes (``.gz``...) dropped."""
    name = paths.basename(str(path).split("?", 1)[0]).lower()
    for suffix in _COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return os.path.splitext(name)[1]


def format_of_extension(path: str) -> str | None:
    """The format of ``path``'s extension (globs allowed), or None."""
    spec = _BY_EXTENSION.get(_extension(path))
    return spec.name if spec else None


def is_database_url(source: str) -> bool:
    """Whether ``source`` is a database URL (``postgresql://``, ``sqlite:///``, ``jdbc:...``)."""
    text = str(source)
    if text.lower().startswith("jdbc:"):
        return True
    proto = paths.protocol_of(text)
    return proto is not None and (proto.split("+", 1)[0] in _SQL_SCHEMES or "+" in proto)


def format_of_files(names: Iterable[str]) -> str | None:
    """The format of a dataset directory's files: the first data file's (hidden and
    ``_``-prefixed files such as ``_SUCCESS`` skipped)."""
    for name in names:
        base = paths.basename(name)
        if base.startswith((".", "_")):
            continue
        spec = _BY_EXTENSION.get(_extension(base))
        if spec is not None and spec.by_reference:
            return spec.name
    return None


def _walk_files(path: str) -> Iterable[str]:
    if paths.is_remote(path):
        return paths.fs_for(path).find(path)

    def walk() -> Iterable[str]:
        for root, dirs, files in os.walk(paths.local_path(path)):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
            yield from (os.path.join(root, f) for f in sorted(files))

    return walk()


def directory_format(path: str) -> str | None:
    """The format of a dataset directory: ``delta`` when it has a ``_delta_log``, else its
    files' (see :func:`format_of_files`); None when ``path`` is no directory."""
    if not paths.isdir(path):
        return None
    if paths.exists(paths.join(path, "_delta_log")):
        return "delta"
    return format_of_files(_walk_files(path))


def resolve_format(
    source: str,
    params: Mapping[str, Any],
    directory: Callable[[str], str | None] = directory_format,
) -> str:
    """The canonical format of reading or writing ``source`` with ``params``.

    In order: the ``format``/``source_type`` param; a database param (``connection_string``,
    ``jdbc_url``, ``url``) or URL -> ``sql``; the extension; the content of a directory
    (``directory`` looks, an engine may pass its own). ValueError when none tells.
    """
    explicit = params.get("format") or params.get("source_type")
    if explicit:
        return canonical_format(str(explicit))
    source = str(source)
    if any(params.get(k) for k in _DATABASE_PARAMS) or is_database_url(source):
        return "sql"
    # The extension first: it costs no filesystem call (remote listings are slow).
    by_ext = format_of_extension(source)
    if by_ext:
        return by_ext
    if not paths.has_glob(source):
        found = directory(source)
        if found:
            return found
    raise ValueError(
        f"cannot infer the format of {source!r} from its extension or content; "
        f"pass format= (one of {', '.join(spec.name for spec in FORMATS)})"
    )


def implied_params(source: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Options a format name or extension implies (``tsv``, ``.tsv``: tab-delimited),
    unless ``params`` set them already."""
    explicit = str(params.get("format") or params.get("source_type") or "").lower().strip()
    implied = _IMPLIED.get(explicit) or ({} if explicit else _IMPLIED.get(_extension(str(source)), {}))
    if "delimiter" in implied and any(k in params for k in _DELIMITER_PARAMS):
        return {}
    return dict(implied)


def storage_kind(source: str, params: Mapping[str, Any]) -> str | None:
    """The Dagster kind of a step's source or target: its format (a database alias or URL
    scheme names the product, ``postgres``), or None when neither names one. An unknown
    ``format`` param is shown as it is (validation reports it)."""
    explicit = params.get("format") or params.get("source_type")
    if explicit:
        key = str(explicit).lower().strip()
        spec = _BY_NAME.get(key)
        if spec is None or (spec.name == "sql" and key not in _GENERIC_SQL):
            return key
        return spec.kind or spec.name
    value = str(source).strip().lower()
    if value.startswith("jdbc:"):
        value = value[5:]
    if "://" in value and not value.startswith(_FILESYSTEM_URLS):
        return value.split(":", 1)[0].split("+", 1)[0]  # postgresql://, sqlite://, https:// ...
    spec = _BY_EXTENSION.get(_extension(value))
    return (spec.kind or spec.name) if spec else None
