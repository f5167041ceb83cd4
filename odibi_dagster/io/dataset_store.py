"""Where every step's datasets live, and the one path that writes and finds them.

Every dataset is written under a pipeline's work dir (local or ``abfs://``), one Parquet
file (pandas engine) or one Delta/Parquet table (Spark engine) per asset and partition,
atomically. Steps hand each other a :class:`DatasetRef` rather than loaded data, so a SQL
step queries the files in place and a step can run in any process or on any machine that
sees the work dir.

Odibi's steps call the store explicitly (their Dagster outputs are ``Nothing``, as in
dagster-dbt and dagster-sling): a step persists its datasets inside its own body, where
their metadata, the tracker and a source-changed guard are, and reads its inputs the same
way. One :class:`OdibiDatasetStore` resource serves every pipeline of a code location.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
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
_SUFFIXES = ("parquet", "delta", MANIFEST_SUFFIX)
SparkFormat = Literal["delta", "parquet"]


def _is_spark_frame(obj: Any) -> bool:
    return type(obj).__module__.startswith("pyspark.")


def persist_any(obj: Any, path_without_suffix: str, spark_format: SparkFormat = "delta") -> tuple[str, WriteInfo]:
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


def _ref(path: str, fmt: DatasetFormat, asset_key: dg.AssetKey, partition_key: str | None) -> DatasetRef:
    return DatasetRef((path,), fmt, tuple(asset_key.path), (partition_key,) if partition_key is not None else ())


@dataclass(frozen=True)
class DatasetLayout:
    """The datasets under one work dir.

    Layout: ``<base_dir>/datasets/<asset key parts>/<data|partition=KEY>.<parquet|delta>``;
    a source ingested by reference leaves ``....source.json`` (its manifest) there instead.
    """

    base_dir: str
    spark_format: SparkFormat = "delta"

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
                is_delta = paths.isdir(candidate) and paths.exists(paths.join(candidate, "_delta_log"))
                return candidate, "delta" if is_delta else "parquet"
        return None

    def persist(self, obj: Any, asset_key: dg.AssetKey, partition_key: str | None) -> tuple[DatasetRef, WriteInfo]:
        """Write ``obj`` as the dataset of ``asset_key`` (one partition) and return its ref."""
        stem = self.path_stem(asset_key, partition_key)
        path, info = persist_any(obj, stem, self.spark_format)
        self._drop_stale(stem, path)
        fmt: DatasetFormat = "parquet" if path.endswith(".parquet") else self.spark_format
        return _ref(path, fmt, asset_key, partition_key), info

    def persist_reference(
        self, manifest: SourceManifest, asset_key: dg.AssetKey, partition_key: str | None
    ) -> DatasetRef:
        """Record ``asset_key`` (one partition) as a source ingested by reference."""
        stem = self.path_stem(asset_key, partition_key)
        path = f"{stem}.{MANIFEST_SUFFIX}"
        write_manifest(path, manifest)
        self._drop_stale(stem, path)
        return _ref(path, "source", asset_key, partition_key)

    @staticmethod
    def _drop_stale(stem: str, keep: str) -> None:
        # A dataset can change engine or ingest mode between runs: drop the other forms.
        for other in _SUFFIXES:
            stale = f"{stem}.{other}"
            if stale != keep and paths.exists(stale):
                paths.fs_for(stale).rm(stale, recursive=True)

    def load(self, asset_key: dg.AssetKey, partition_keys: Sequence[str | None]) -> DatasetRef:
        """The ref of ``asset_key``'s materialized partitions (``[None]``: unpartitioned).

        Raises a non-retryable ``dg.Failure`` when a partition was never materialized, when
        partitions mix storage formats, or when a source recorded by reference has changed.
        """
        keys = list(partition_keys)
        found: list[str] = []
        formats: set[DatasetFormat] = set()
        missing: list[str] = []
        for key in keys:
            hit = self.existing(asset_key, key)
            if hit is None:
                missing.append(key or "(unpartitioned)")
                continue
            found.append(hit[0])
            formats.add(hit[1])
        name = asset_key.to_user_string()
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise dg.Failure(
                description=(
                    f"Dataset {name} has not been materialized"
                    f"{' for partition(s) ' + shown if keys != [None] else ''} under {self.asset_dir(asset_key)}; "
                    "materialize it first."
                ),
                allow_retries=False,  # retrying the step cannot make the upstream data appear
            )
        if len(formats) > 1:
            raise dg.Failure(
                description=f"Dataset {name} mixes partitions stored as "
                f"{' and '.join(sorted(formats))}; materialize them again together"
            )
        fmt: DatasetFormat = formats.pop() if formats else "parquet"  # no keys: an empty ref
        if fmt == "source":
            for manifest in found:
                try:
                    verified_manifest(manifest)
                except SourceChangedError as exc:
                    # Retrying cannot help: only materializing the ingest again can.
                    raise dg.Failure(description=f"Dataset {name}: {exc}", allow_retries=False) from None
        return DatasetRef(tuple(found), fmt, tuple(asset_key.path), tuple(k for k in keys if k is not None))


def external_dataset(path: str, fmt: Literal["parquet", "delta"], asset_key: dg.AssetKey) -> DatasetRef:
    """The ref of a dataset an asset outside the pipeline wrote at ``path`` (an external input).

    Raises a non-retryable ``dg.Failure`` naming the asset when nothing is there yet.
    """
    if not any(ch in path for ch in "*?[") and not paths.exists(path):
        raise dg.Failure(
            description=f"External input {asset_key.to_user_string()} has not been written to {path}; "
            "materialize it in its code location first.",
            allow_retries=False,
        )
    return DatasetRef((path,), fmt, tuple(asset_key.path))


class OdibiDatasetStore(dg.ConfigurableResource):
    """The resource odibi's steps persist and read their datasets through (key ``odibi_datasets``).

    One instance serves every pipeline: each pipeline's datasets live under its own work dir,
    which the step passes to :meth:`at`. ``spark_format`` is how Spark steps store their
    datasets (Delta by default; ``parquet`` where no Delta jars are wanted).
    """

    spark_format: SparkFormat = "delta"

    def at(self, base_dir: str) -> DatasetLayout:
        """The datasets under ``base_dir`` (a pipeline's work dir)."""
        return DatasetLayout(base_dir, self.spark_format)
