"""The IO manager that hands datasets from step to step through persisted files.

Every dataset is written under ``base_dir`` (local or ``abfs://``), one Parquet
file (pandas engine) or one Delta/Parquet table (Spark engine) per asset and
partition, atomically. Downstream steps receive a :class:`DatasetRef` rather than
loaded data, so a SQL step queries the files in place and a step can run in any
process or on any machine that sees ``base_dir``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import quote

import dagster as dg

from odibi_dagster.engines import paths
from odibi_dagster.engines.base import DatasetFormat, DatasetRef, WriteInfo
from odibi_dagster.engines.source_ref import (
    MANIFEST_SUFFIX,
    SourceChangedError,
    SourceManifest,
    verified_manifest,
    write_manifest,
)

UNPARTITIONED = "data"
#: Op name -> what to call with ``(run_id, message)`` when an input of that op cannot load.
#: The translate layer registers its steps here, so such a failure (which happens before the
#: step's body runs) still reaches the run's story.
LOAD_FAILURE_LISTENERS: dict[str, Callable[[str, str], None]] = {}
_SUFFIXES = ("parquet", "delta", MANIFEST_SUFFIX)


def _is_spark_frame(obj: Any) -> bool:
    return type(obj).__module__.startswith("pyspark.")


def persist_any(obj: Any, path_without_suffix: str, spark_format: DatasetFormat = "delta") -> tuple[str, WriteInfo]:
    """Persist a frame of any supported engine; returns (path, WriteInfo)."""
    if _is_spark_frame(obj):
        from odibi_dagster.engines.spark import persist_frame as spark_persist

        path = f"{path_without_suffix}.{spark_format}"
        return path, spark_persist(obj, path, spark_format)
    from odibi_dagster.engines.pandas_duckdb import persist_frame as pandas_persist

    path = f"{path_without_suffix}.parquet"
    return path, pandas_persist(obj, path)


def partition_file_stem(partition_key: str | None) -> str:
    """File name (without suffix) of one partition; any key is safe as a file name."""
    if partition_key is None:
        return UNPARTITIONED
    stem = "partition=" + quote(partition_key, safe="")
    if len(stem) > 200:
        # File names stop at 255 bytes; long keys (a dynamic partition per landed file path)
        # keep a readable prefix and a hash of the whole key.
        stem = f"{stem[:150]}~{hashlib.sha256(partition_key.encode()).hexdigest()[:32]}"
    return stem


class OdibiIOManager(dg.ConfigurableIOManager):
    """Persists every dataset under ``base_dir`` and loads it as a :class:`DatasetRef`.

    Layout: ``<base_dir>/datasets/<asset key parts>/<data|partition=KEY>.<parquet|delta>``;
    a source ingested by reference leaves ``....source.json`` (its manifest) there instead.
    """

    base_dir: str
    spark_format: Literal["delta", "parquet"] = "delta"

    def asset_dir(self, asset_key: dg.AssetKey) -> str:
        return paths.join(self.base_dir, "datasets", *[quote(p, safe="") for p in asset_key.path])

    def path_stem(self, asset_key: dg.AssetKey, partition_key: str | None) -> str:
        return paths.join(self.asset_dir(asset_key), partition_file_stem(partition_key))

    def existing(self, asset_key: dg.AssetKey, partition_key: str | None) -> tuple[str, DatasetFormat] | None:
        """Where a materialized dataset is, and in which format (None when never materialized)."""
        stem = self.path_stem(asset_key, partition_key)
        for suffix in _SUFFIXES:
            candidate = f"{stem}.{suffix}"
            if paths.exists(candidate):
                if suffix == MANIFEST_SUFFIX:
                    return candidate, "source"
                fmt: DatasetFormat = (
                    "delta"
                    if paths.isdir(candidate) and paths.exists(paths.join(candidate, "_delta_log"))
                    else "parquet"
                )
                return candidate, fmt
        return None

    def persist(self, obj: Any, asset_key: dg.AssetKey, partition_key: str | None) -> tuple[DatasetRef, WriteInfo]:
        """Write ``obj`` as the dataset of ``asset_key`` (one partition) and return its ref."""
        stem = self.path_stem(asset_key, partition_key)
        path, info = persist_any(obj, stem, self.spark_format)
        self._drop_stale(stem, path)
        fmt: DatasetFormat = "parquet" if path.endswith(".parquet") else self.spark_format
        ref = DatasetRef((path,), fmt, tuple(asset_key.path), (partition_key,) if partition_key is not None else ())
        return ref, info

    def persist_reference(
        self, manifest: SourceManifest, asset_key: dg.AssetKey, partition_key: str | None
    ) -> DatasetRef:
        """Record ``asset_key`` (one partition) as a source ingested by reference."""
        stem = self.path_stem(asset_key, partition_key)
        path = f"{stem}.{MANIFEST_SUFFIX}"
        write_manifest(path, manifest)
        self._drop_stale(stem, path)
        return DatasetRef(
            (path,), "source", tuple(asset_key.path), (partition_key,) if partition_key is not None else ()
        )

    @staticmethod
    def _drop_stale(stem: str, keep: str) -> None:
        # A dataset can change engine or ingest mode between runs: drop the other forms.
        for other in _SUFFIXES:
            stale = f"{stem}.{other}"
            if stale != keep and paths.exists(stale):
                paths.fs_for(stale).rm(stale, recursive=True)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None or isinstance(obj, DatasetRef):
            return  # odibi assets persist through `persist` themselves, with their metadata
        keys = context.asset_partition_keys if context.has_asset_partitions else [None]
        if len(keys) != 1:
            raise dg.DagsterInvariantViolationError(
                f"{context.asset_key.to_user_string()}: cannot store one object for {len(keys)} partitions"
            )
        ref, info = self.persist(obj, context.asset_key, keys[0])
        context.add_output_metadata(
            {"dagster/uri": dg.MetadataValue.path(ref.paths[0])}
            | ({"dagster/row_count": info.rows} if info.rows is not None else {})
        )

    def load_input(self, context: dg.InputContext) -> DatasetRef:
        try:
            return self._load(context)
        except dg.Failure as exc:
            op_def = getattr(context, "_op_def", None)  # None when built by dg.build_input_context
            listener = LOAD_FAILURE_LISTENERS.get(op_def.name) if op_def is not None else None
            if listener is not None:
                listener(context.step_context.run_id, f"Failure: {exc.description}")
            raise

    def _load(self, context: dg.InputContext) -> DatasetRef:
        asset_key = context.asset_key
        keys: list[str | None] = list(context.asset_partition_keys) if context.has_asset_partitions else [None]
        found: list[str] = []
        formats: set[str] = set()
        missing: list[str] = []
        for key in keys:
            hit = self.existing(asset_key, key)
            if hit is None:
                missing.append(key or "(unpartitioned)")
                continue
            found.append(hit[0])
            formats.add(hit[1])
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise dg.Failure(
                description=(
                    f"Dataset {asset_key.to_user_string()} has not been materialized"
                    f"{' for partition(s) ' + shown if keys != [None] else ''} under {self.asset_dir(asset_key)}; "
                    "materialize it first."
                ),
                allow_retries=False,  # retrying the step cannot make the upstream data appear
            )
        if len(formats) > 1:
            raise dg.Failure(
                description=f"Dataset {asset_key.to_user_string()} mixes partitions stored as "
                f"{' and '.join(sorted(formats))}; materialize them again together"
            )
        fmt: DatasetFormat = formats.pop() if formats else "parquet"  # type: ignore[assignment]
        if fmt == "source":
            for manifest in found:
                try:
                    verified_manifest(manifest)
                except SourceChangedError as exc:
                    # Retrying cannot help: only materializing the ingest again can.
                    raise dg.Failure(
                        description=f"Dataset {asset_key.to_user_string()}: {exc}", allow_retries=False
                    ) from None
        return DatasetRef(tuple(found), fmt, tuple(asset_key.path), tuple(k for k in keys if k is not None))
