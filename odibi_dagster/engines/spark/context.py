"""ODIBI's EngineContext over Spark DataFrames (:class:`SparkEngineContext`).

One context per step execution, on the step's own child session: reads and writes through
the format registry (Spark's readers and writers are in :mod:`~odibi_dagster.engines.spark.io`),
Spark SQL over temp views registered under the steps' logical names, snapshots whose schema
uses the pandas engine's Arrow type strings, and atomic persistence of the datasets handed
from step to step (Delta or Parquet).
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import TYPE_CHECKING, Any

import pandas as pd

from odibi_dagster.engines.base import DatasetFormat, DatasetRef, Snapshot, WriteInfo
from odibi_dagster.engines.formats import registry, table
from odibi_dagster.engines.secrets import SecretResolver, SecretSource
from odibi_dagster.engines.spark import hadoop, io
from odibi_dagster.engines.spark.arrow_types import arrow_type_string

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["SparkEngineContext", "persist_frame"]

log = logging.getLogger(__name__)


class SparkEngineContext:
    """ODIBI's EngineContext over Spark DataFrames (one per step execution).

    ``secrets`` is an optional mapping or callable consulted by :meth:`get_secret` before
    the environment. Params whose value is ``{"secret": "NAME"}`` are resolved through it;
    the values (and ``password``-like params) are masked in this context's errors.
    """

    engine = "spark"

    def __init__(self, spark: SparkSession, secrets: SecretSource | None = None) -> None:
        self.spark = spark
        self.secrets = SecretResolver(secrets)
        self._views: set[str] = set()
        self._global_views: set[str] = set()

    # -- secrets -------------------------------------------------------------------------

    def get_secret(self, key: str) -> str:
        """The secret ``key`` from the configured secrets, else the environment variable ``key``
        (see :class:`~odibi_dagster.engines.secrets.SecretResolver`)."""
        return self.secrets.get(key)

    def redact(self, text: str) -> str:
        """``text`` with the secrets this context handed out (and credentials in URLs) masked."""
        return self.secrets.redact(text)

    # -- conversions ---------------------------------------------------------------------

    def _to_spark(self, df: Any) -> DataFrame:
        from pyspark.sql import DataFrame as SparkDataFrame

        if isinstance(df, SparkDataFrame):
            return df
        if isinstance(df, DatasetRef):
            return self.load(df)
        if isinstance(df, pd.DataFrame):
            return self.spark.createDataFrame(df)
        import pyarrow as pa

        if isinstance(df, pa.RecordBatchReader):
            df = df.read_all()
        if isinstance(df, pa.Table):
            return self.spark.createDataFrame(df)
        raise TypeError(f"the spark engine cannot use a {type(df).__name__} as a frame")

    def to_pandas(self, df: Any) -> pd.DataFrame:
        """The whole frame as pandas (``function`` steps only)."""
        if isinstance(df, pd.DataFrame):
            return df
        return self._to_spark(df).toPandas()

    # -- formats -------------------------------------------------------------------------

    def _directory_format(self, source: str) -> str | None:
        """The format of a dataset directory: the format table's look at a local one; a
        remote one is asked for its ``_delta_log`` through Hadoop (Spark's credentials)."""
        path = hadoop.qualify(source)
        local = hadoop.local_path(path)
        if local is not None:
            return table.directory_format(str(local))
        return "delta" if hadoop.exists(self.spark, f"{path.rstrip('/')}/_delta_log") else None

    def source_format(self, source: str, params: dict[str, Any]) -> str:
        """The format ``read(source, **params)`` would use (``csv``, ``delta``, ``sql``...)."""
        return registry.resolve(io.ENGINE, str(source), params, self._directory_format)

    def read_schema(self, df: Any, fmt: str) -> str | None:
        """The inferred schema (StructType JSON) of a CSV/JSON read, to skip inference on re-reads."""
        if fmt not in ("csv", "json", "jsonl"):
            return None
        return self._to_spark(df).schema.json()

    # -- read and write ------------------------------------------------------------------

    def read(self, source: str, **params: Any) -> DataFrame:
        """Read ``source`` into a lazy DataFrame with the reader of its format (the
        ``source_type``/``format`` param, a database param or URL, the extension, or a
        directory's content: see :mod:`odibi_dagster.engines.spark.io`)."""
        params = self.secrets.resolve_params(params)
        return registry.read(io.ENGINE, self, str(source), params, self._directory_format)

    def write(self, df: Any, target: str, **params: Any) -> WriteInfo:
        """Write ``df`` to ``target`` and describe what was written.

        ``mode``: ``overwrite`` (default; file formats are written to a hidden sibling and
        swapped in, Delta commits atomically), ``append``, or ``merge`` (Delta only: upsert on
        ``merge_keys``/``keys``, creating the table when missing). ``partition_by`` partitions
        the output; ``single_file`` writes one file at ``target`` instead of a directory.
        For Delta, ``WriteInfo.version`` is the table version after the write.
        """
        params = self.secrets.resolve_params(params)
        sdf = self._to_spark(df)
        return registry.write(io.ENGINE, self, sdf, str(target), params, self._directory_format)

    # -- SQL -----------------------------------------------------------------------------

    def register_temp(self, name: str, df: Any) -> None:
        """Make ``df`` queryable as ``name`` (a temp view; a DatasetRef is loaded lazily)."""
        sdf = self.load(df) if isinstance(df, DatasetRef) else self._to_spark(df)
        if sdf.sparkSession is not self.spark:
            # A frame from another session (the step has its own child session): hand it over
            # through a global temp view, lazily; temp views only live in their own session.
            bridge = f"odibi_{uuid.uuid4().hex}"
            sdf.createGlobalTempView(bridge)
            self._global_views.add(bridge)
            sdf = self.spark.table(f"global_temp.{bridge}")
        sdf.createOrReplaceTempView(name)
        self._views.add(name)

    def execute_sql(self, query: str) -> DataFrame:
        """Run ``query`` with Spark SQL over the registered temp views (lazy)."""
        return self.spark.sql(query)

    # -- samples and snapshots -----------------------------------------------------------

    def collect_sample(self, df: Any, n: int = 5) -> pd.DataFrame:
        """The first ``n`` rows as pandas (``limit(n).toPandas()``)."""
        if isinstance(df, pd.DataFrame):
            return df.head(n)
        return self._to_spark(df).limit(n).toPandas()

    def snapshot(self, df: Any, sample_rows: int = 5) -> Snapshot:
        """Row count, schema as Arrow type strings (as the pandas engine reports) and a sample."""
        sdf = self._to_spark(df)
        schema = tuple((f.name, arrow_type_string(f.dataType)) for f in sdf.schema.fields)
        sample = self.collect_sample(sdf, sample_rows) if sample_rows > 0 else None
        return Snapshot(row_count=int(sdf.count()), schema=schema, sample=sample)

    # -- persistence between steps -------------------------------------------------------

    def load(self, ref: DatasetRef) -> DataFrame:
        """A lazy DataFrame over a persisted dataset (all its partition paths)."""
        paths = [hadoop.qualify(p) for p in ref.paths]
        if not paths:
            raise ValueError("a DatasetRef needs at least one path")
        if ref.format == "parquet":
            return self.spark.read.parquet(*paths)
        if ref.format == "delta":
            frames = [self.spark.read.format("delta").load(p) for p in paths]
        else:
            frames = [self._source_frame(p) for p in ref.paths]
        out = frames[0]
        for frame in frames[1:]:
            out = out.unionByName(frame, allowMissingColumns=True)
        return out

    def _source_frame(self, manifest_path: str) -> DataFrame:
        from odibi_dagster.engines.source_ref import verified_manifest

        manifest = verified_manifest(manifest_path)
        params = dict(manifest.params)
        if manifest.read_schema and params.get("schema") is None:
            from pyspark.sql.types import StructType

            params["schema"] = StructType.fromJson(json.loads(manifest.read_schema))
        return self.read(manifest.source, **params)

    def persist(self, df: Any, path: str, format: DatasetFormat = "delta") -> WriteInfo:
        """Persist ``df`` at ``path`` for the next step: Delta (transactional overwrite,
        schema replaced) or Parquet (written to a hidden sibling, then renamed into place)."""
        sdf = self._to_spark(df)
        if format == "delta":
            return io.write_delta(self, sdf, path, mode="overwrite", overwriteSchema="true")
        if format == "parquet":
            return io.write_files(self, sdf, path, "parquet", {})
        raise ValueError(f"persist supports delta or parquet, not {format!r}")

    def close(self) -> None:
        """Drop the temp views this context registered (the session itself stays up)."""
        for name in list(self._views):
            try:
                self.spark.catalog.dropTempView(name)
            except Exception:  # the session may already be stopped
                log.debug("could not drop temp view %s", name)
        self._views.clear()
        for name in list(self._global_views):
            try:
                self.spark.catalog.dropGlobalTempView(name)
            except Exception:
                log.debug("could not drop global temp view %s", name)
        self._global_views.clear()


def persist_frame(df: DataFrame, path: str, format: DatasetFormat = "delta") -> WriteInfo:
    """Persist a Spark DataFrame at ``path`` (Delta or Parquet) in its own session (IO manager hook)."""
    return SparkEngineContext(df.sparkSession).persist(df, path, format)
