"""ODIBI's pandas engine on DuckDB: lazy relations, SQL over logical names, atomic writes.

The native frame is a :class:`duckdb.DuckDBPyRelation`. Relations stay lazy through
``read`` -> ``execute_sql`` -> ``write``/``persist``, so a chain of SQL steps never
converts to pandas; ``to_pandas`` exists for ``function`` steps only. pandas
DataFrames, Arrow tables/datasets and :class:`DatasetRef` are accepted wherever a
frame is.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import duckdb

from odibi_dagster.config.templating import quote_ident, sql_literal
from odibi_dagster.engines import paths, source_ref
from odibi_dagster.engines.base import DatasetFormat, DatasetRef, Snapshot, WriteInfo, arrow_sample
from odibi_dagster.engines.formats import csv, delta, duck, json, parquet, registry, sql
from odibi_dagster.engines.pandas_resource import PandasDuckDBEngine
from odibi_dagster.engines.secrets import SecretResolver, SecretSource

if TYPE_CHECKING:  # loaded when a frame needs them: code servers never import pandas
    import pandas as pd

# The format families this engine reads and writes: importing them registered their readers
# and writers (see engines.formats.registry).
FORMAT_MODULES = (csv, json, parquet, delta, sql)

__all__ = [
    "PandasDuckDBContext",
    "PandasDuckDBEngine",
    "accepted_params",
    "persist_frame",
    "read_source",
    "shared_cursor",
    "source_format",
    "write_target",
]


def source_format(source: str, params: Mapping[str, Any]) -> str:
    """The format this engine reads or writes ``source`` with ``params`` in (``csv``, ``sql``...)."""
    return registry.resolve(duck.ENGINE, str(source), params)


def read_source(conn: duckdb.DuckDBPyConnection, source: str, **params: Any) -> duckdb.DuckDBPyRelation:
    """Read ``source`` into a lazy relation on ``conn`` with the reader of its format."""
    return registry.read(duck.ENGINE, conn, str(source), params)


def write_target(
    conn: duckdb.DuckDBPyConnection, rel: duckdb.DuckDBPyRelation, target: str, **params: Any
) -> WriteInfo:
    """Write ``rel`` to ``target`` with the writer of its format."""
    return registry.write(duck.ENGINE, conn, rel, str(target), params)


def accepted_params(fmt: str, kind: str) -> frozenset[str] | None:
    """The params this engine's ``kind`` (``reader`` / ``writer``) of ``fmt`` accepts, for
    validation; None for formats whose options are not checked before a run (databases)."""
    return registry.accepted_params(duck.ENGINE, fmt, kind)


def _is_pandas(obj: Any) -> bool:
    # A DataFrame can only exist once pandas is loaded: checking never imports it.
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(obj, pd.DataFrame)


def _is_arrow(obj: Any, *types: str) -> bool:
    pa = sys.modules.get("pyarrow")
    return pa is not None and isinstance(obj, tuple(getattr(pa, t) for t in types))


def _is_arrow_like(obj: Any) -> bool:
    if hasattr(obj, "__arrow_c_stream__") or _is_arrow(obj, "Table", "RecordBatch"):
        return True
    if "pyarrow.dataset" not in sys.modules:
        return False
    import pyarrow.dataset as pads

    return isinstance(obj, pads.Dataset)


def _relation_parquet(rel: duckdb.DuckDBPyRelation, path: str) -> int:
    """Stream a relation to a Parquet file with DuckDB's writer (``COPY ... TO`` on the relation's
    own connection, all threads); returns the row count ``COPY`` reports (no second scan)."""
    view = f"__odibi_persist_{uuid.uuid4().hex}"
    out = rel.query(view, f"COPY (SELECT * FROM {view}) TO {sql_literal(path)} (FORMAT parquet)").fetchall()
    return int(out[0][0]) if out else 0


def persist_frame(obj: Any, path: str) -> WriteInfo:
    """Write a relation / pandas / Arrow object to Parquet at ``path`` atomically.

    The data goes to a temp file beside ``path`` (fsynced, then ``os.replace``), or for
    remote paths (``abfs://``, ``az://``...) to a local temp file then ``fs.put``. A
    relation is written by DuckDB itself, streaming with all threads, never via pandas.
    """
    path = str(path)
    with paths.atomic_output(path) as tmp:
        if isinstance(obj, duckdb.DuckDBPyRelation):
            rows = _relation_parquet(obj, tmp)
        elif _is_pandas(obj):
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(obj, preserve_index=False)
            pq.write_table(table, tmp)
            rows = table.num_rows
        elif _is_arrow(obj, "RecordBatchReader"):
            import pyarrow.parquet as pq

            with pq.ParquetWriter(tmp, obj.schema) as writer:
                rows = 0
                for batch in obj:
                    writer.write_batch(batch)
                    rows += batch.num_rows
        elif _is_arrow_like(obj):
            # Datasets and other Arrow streams: let DuckDB scan and write them lazily.
            with duckdb.connect() as conn:
                rows = _relation_parquet(conn.from_arrow(obj), tmp)
        else:
            raise TypeError(f"cannot persist a {type(obj).__name__}; expected a relation, pandas or Arrow")
    if isinstance(obj, duckdb.DuckDBPyRelation) and not paths.is_remote(path):
        parquet.note_duckdb_written(path, rows)  # its snapshot then needs no footer reads
    return WriteInfo(uri=path, format="parquet", rows=rows)


#: The per-connection cap on DuckDB's intermediates while an ingest copies a source
#: (:meth:`PandasDuckDBContext.cap_copy_memory`); a setting of this connection only.
COPY_OPERATOR_MEMORY = "256MB"

# One in-memory DuckDB database per process and setting, shared by the step contexts of
# that process: creating and closing a database costs ~27 ms, a connection to it (a cursor)
# under 1 ms, which is most of a small step. Each context still gets its own connection,
# so the temp views and registered frames of one step are invisible to the others.
_DATABASES: dict[tuple[int, tuple[tuple[str, Any], ...]], duckdb.DuckDBPyConnection] = {}
_DATABASES_LOCK = threading.Lock()


def _memory_database(config: Mapping[str, Any]) -> duckdb.DuckDBPyConnection:
    key = (os.getpid(), tuple(sorted(config.items())))  # never reuse a database across a fork
    with _DATABASES_LOCK:
        database = _DATABASES.get(key)
        if database is not None:
            try:
                database.execute("SELECT 1").fetchall()
            except duckdb.Error:  # closed, or invalidated by a fatal error in an earlier step
                database = None
        if database is None:
            database = duckdb.connect(":memory:", config=dict(config))
            _DATABASES[key] = database
        return database


def shared_cursor() -> duckdb.DuckDBPyConnection:
    """A new connection (close it) to the process's shared in-memory DuckDB database with default
    settings: for reading file metadata and samples without a database of its own."""
    return _memory_database({}).cursor()


class PandasDuckDBContext:
    """ODIBI's PandasEngineContext on one DuckDB connection (one per step execution).

    With the default in-memory ``database``, the connection is to the process's shared
    in-memory database for these settings: opening it is cheap, and temp views and
    registered frames stay private to the connection.

    Args:
        threads: DuckDB worker threads (default: all cores).
        memory_limit: DuckDB memory limit such as ``"8GB"`` (default: DuckDB's 80% of RAM).
        secrets: a mapping or a callable ``name -> value | None`` consulted before the
            environment by :meth:`get_secret` and for ``{"secret": NAME}`` params.
        temp_directory: where DuckDB spills when a query exceeds memory.
        database: DuckDB database (``":memory:"`` by default).
    """

    engine = "pandas"

    def __init__(
        self,
        *,
        threads: int | None = None,
        memory_limit: str | None = None,
        secrets: SecretSource | None = None,
        temp_directory: str | None = None,
        database: str = ":memory:",
    ) -> None:
        config: dict[str, Any] = {}
        if threads is not None:
            config["threads"] = int(threads)
        if memory_limit:
            config["memory_limit"] = str(memory_limit)
        if temp_directory:
            os.makedirs(temp_directory, exist_ok=True)
            config["temp_directory"] = str(temp_directory)
        self.conn: duckdb.DuckDBPyConnection = (
            _memory_database(config).cursor() if database == ":memory:" else duckdb.connect(database, config=config)
        )
        self.secrets = SecretResolver(secrets)
        self._delta_scan: bool | None = None
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close this context's DuckDB connection (relations from it become unusable)."""
        if not self._closed:
            self._closed = True
            self.conn.close()

    def __enter__(self) -> PandasDuckDBContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ frames

    def relation(self, df: Any) -> duckdb.DuckDBPyRelation:
        """Any accepted frame (relation, pandas, Arrow, :class:`DatasetRef`) as a relation."""
        if isinstance(df, duckdb.DuckDBPyRelation):
            return df
        if isinstance(df, DatasetRef):
            return self.load(df)
        if _is_pandas(df):
            return self.conn.from_df(df)
        if _is_arrow(df, "RecordBatchReader"):
            # A reader is one-shot but a relation may be scanned several times.
            return self.conn.from_arrow(df.read_all())
        if _is_arrow_like(df):
            return self.conn.from_arrow(df)
        raise TypeError(
            f"unsupported frame type {type(df).__name__}; expected a DuckDB relation, "
            "pandas DataFrame, Arrow table/dataset or DatasetRef"
        )

    def read(self, source: str, **params: Any) -> duckdb.DuckDBPyRelation:
        """Read ``source`` into a lazy relation; see :mod:`odibi_dagster.engines.formats`."""
        return read_source(self.conn, source, **self.secrets.resolve_params(params))

    def read_schema(self, df: Any, fmt: str) -> str | None:
        """Nothing to pin: DuckDB's CSV/JSON sniffing reads a sample, not the whole file."""
        return None

    def source_format(self, source: str, params: dict[str, Any]) -> str:
        """The reader format ``read(source, **params)`` would use (``csv``, ``parquet``, ``sql``...)."""
        return source_format(source, params)

    def write(self, df: Any, target: str, **params: Any) -> WriteInfo:
        """Write ``df`` to ``target`` atomically (``format``/``source_type``, ``mode``, options)."""
        return write_target(self.conn, self.relation(df), target, **self.secrets.resolve_params(params))

    def execute_sql(self, query: str) -> duckdb.DuckDBPyRelation:
        """Run ``query`` over the registered names; returns a lazy relation."""
        return self.conn.sql(query)

    def register_temp(self, name: str, df: Any) -> None:
        """Make ``df`` queryable as ``name`` (a temp view; replaces an earlier one)."""
        if isinstance(df, DatasetRef):
            self._register_ref(name, df)
            return
        if _is_arrow(df, "RecordBatchReader"):
            df = df.read_all()
        if isinstance(df, duckdb.DuckDBPyRelation) or _is_pandas(df) or _is_arrow_like(df):
            self._drop_view(name)
            self.conn.register(name, df)
            return
        raise TypeError(f"cannot register a {type(df).__name__} as {name!r}")

    def _drop_view(self, name: str) -> None:
        # A SQL view from a DatasetRef and a python-registered object share one namespace.
        self.conn.unregister(name)
        self.conn.execute(f"DROP VIEW IF EXISTS temp.main.{quote_ident(name)}").fetchall()

    def _register_ref(self, name: str, ref: DatasetRef) -> None:
        self._drop_view(name)
        rel = self.load(ref)
        self.conn.register(name, rel)

    # ------------------------------------------------------------------ datasets

    def _delta_scan_available(self) -> bool:
        """Whether DuckDB's delta extension is installed (never downloads: offline-safe)."""
        if self._delta_scan is None:
            try:
                rows = self.conn.execute(
                    "SELECT installed FROM duckdb_extensions() WHERE extension_name = 'delta'"
                ).fetchall()
                self._delta_scan = bool(rows and rows[0][0])
                if self._delta_scan:
                    self.conn.execute("LOAD delta").fetchall()
            except duckdb.Error:
                self._delta_scan = False
        return self._delta_scan

    def load(self, ref: DatasetRef) -> duckdb.DuckDBPyRelation:
        """A lazy relation over a persisted dataset (Parquet files, a Delta table, or a source
        ingested by reference, read again with the ingest's reader after its fingerprint check)."""
        if not ref.paths:
            raise ValueError(f"DatasetRef {ref.asset_key} has no paths")
        if ref.format == "parquet":
            return parquet.read_parquet(self.conn, list(ref.paths))
        if ref.format in ("delta", "source"):
            relation = self._delta_relation if ref.format == "delta" else self._source_relation
            rels = [relation(p) for p in ref.paths]
            out = rels[0]
            for r in rels[1:]:
                out = out.union(r)
            return out
        raise ValueError(f"unknown DatasetRef format {ref.format!r}")

    def _source_relation(self, manifest_path: str) -> duckdb.DuckDBPyRelation:
        manifest = source_ref.verified_manifest(manifest_path)
        return self.read(manifest.source, **manifest.params)

    def _delta_relation(self, path: str) -> duckdb.DuckDBPyRelation:
        if not paths.is_remote(path) and self._delta_scan_available():
            return self.conn.sql(f"SELECT * FROM delta_scan({sql_literal(paths.local_path(path))})")
        return self.conn.from_arrow(delta.open_delta_dataset(path))

    def cap_copy_memory(self) -> None:
        """Declare that this context's queries from now on only copy data (an ingest: read a
        source, write it as a dataset): caps DuckDB's intermediates on this connection at
        :data:`COPY_OPERATOR_MEMORY`.

        A plain copy has no hash table or sort; what grows is the ordered Parquet writer's
        buffer of chunks read ahead of the one being written, which DuckDB sizes from the
        memory limit (80% of RAM by default): 750 MB more peak memory for a 20 M-row CSV, with
        the same speed under this cap (see the README's scale section)."""
        # A DuckDB without the setting (before 2.0) keeps its defaults.
        with contextlib.suppress(duckdb.CatalogException):
            self.conn.execute(f"SET operator_memory_limit = {sql_literal(COPY_OPERATOR_MEMORY)}").fetchall()

    def persist(self, df: Any, path: str, format: DatasetFormat = "parquet") -> WriteInfo:
        """Persist a dataset between steps at ``path`` (Parquet file or Delta table), atomically."""
        rel = self.relation(df)
        if format == "parquet":
            return persist_frame(rel, path)
        if format == "delta":
            return delta.write_delta(self.conn, rel, path, mode="overwrite", schema_mode="overwrite")
        raise ValueError(f"unknown dataset format {format!r}; use 'parquet' or 'delta'")

    # ------------------------------------------------------------------ inspection

    def collect_sample(self, df: Any, n: int = 5) -> pd.DataFrame:
        """The first ``n`` rows as pandas (``LIMIT n``: the frame is not collected)."""
        if _is_pandas(df):
            return df.head(n).reset_index(drop=True)
        return self.relation(df).limit(int(n)).df()

    def to_pandas(self, df: Any) -> pd.DataFrame:
        """The whole frame as pandas (``function`` steps only)."""
        if _is_pandas(df):
            return df
        return self.relation(df).df()

    def schema(self, df: Any) -> tuple[tuple[str, str], ...]:
        """``(column, Arrow type string)`` pairs, e.g. ``("id", "int64")``, without scanning data."""
        arrow_schema = self.relation(df).limit(0).to_arrow_table().schema
        return tuple((f.name, str(f.type)) for f in arrow_schema)

    def row_count(self, df: Any) -> int:
        """Number of rows (``count(*)`` in DuckDB; metadata-only for Parquet files)."""
        if _is_pandas(df):
            return len(df)
        if _is_arrow(df, "Table"):
            return df.num_rows
        rows = self.relation(df).aggregate("count(*)").fetchall()
        return int(rows[0][0]) if rows else 0

    def snapshot(self, df: Any, sample_rows: int = 5, *, row_count: int | None = None) -> Snapshot:
        """Rows (``row_count`` when already known), Arrow-typed schema and a ``LIMIT`` sample of ``df``.

        Schema and sample come from one ``LIMIT`` query as Arrow (a CSV source is sniffed once,
        not once for each), the sample as :class:`SampleRows`: describing a frame never
        imports pandas."""
        rel = self.relation(df)
        head = rel.limit(max(int(sample_rows), 0)).to_arrow_table()
        schema = tuple((f.name, str(f.type)) for f in head.schema)
        rows = self.row_count(rel) if row_count is None else int(row_count)
        return Snapshot(row_count=rows, schema=schema, sample=arrow_sample(head) if sample_rows > 0 else None)

    def source_snapshot(self, df: Any, source: str, params: Mapping[str, Any], sample_rows: int = 5) -> Snapshot:
        """:meth:`snapshot` of ``df`` read from ``source``: a plain CSV file's rows are counted
        from its line breaks (:func:`~odibi_dagster.engines.formats.csv.csv_row_count`), not by
        parsing the whole file a second time."""
        rows = None
        if source_format(source, params) == "csv":
            rows = csv.csv_row_count(self.conn, source, self.secrets.resolve_params(dict(params)))
        return self.snapshot(df, sample_rows, row_count=rows)

    # ------------------------------------------------------------------ secrets

    def get_secret(self, key: str) -> str:
        """A secret from the configured ``secrets`` (mapping or callable), else the environment
        (see :class:`~odibi_dagster.engines.secrets.SecretResolver`).

        Raises :class:`~odibi_dagster.engines.secrets.SecretNotFoundError` (a ``KeyError``)
        naming the secret, never a value.
        """
        return self.secrets.get(key)
