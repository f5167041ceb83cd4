"""Ingest by reference: a dataset that is an immutable source file, not a copy of it.

With ``ingest_mode: reference`` an ingest step of a file source (CSV, JSON, Parquet,
Delta, Avro on Spark) does not rewrite the source as a Parquet dataset. It writes a
small manifest instead (``<dataset>.source.json`` where the Parquet file would be):
the source path and reader params, the source files' fingerprint (size and
modification time, or the blob's ETag), and the tracker snapshot taken when it was
ingested (row count, schema, sample rows as Arrow IPC). Downstream steps read the
source with the same reader, lazily, so a SQL step scans the CSV once instead of the
CSV and then its Parquet copy.

What makes this safe is the fingerprint: if the source changed after the ingest ran,
loading the dataset fails and says so, instead of silently handing newer data to a
step that Dagster records as downstream of the older materialization.
"""

from __future__ import annotations

import base64
import glob as globlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from odibi_dagster.engines import paths
from odibi_dagster.engines.base import SampleRows, Snapshot, arrow_sample
from odibi_dagster.engines.formats.table import REFERENCE_FORMATS

__all__ = [
    "MANIFEST_SUFFIX",
    "REFERENCE_FORMATS",
    "SourceChangedError",
    "SourceManifest",
    "encode_sample",
    "fingerprint",
    "manifests_snapshot",
    "read_manifest",
    "verified_manifest",
    "write_manifest",
]

MANIFEST_SUFFIX = "source.json"
# REFERENCE_FORMATS (from the format table): formats both engines read lazily from files
# (Avro, ORC: Spark only).
_MANIFEST_VERSION = 1


class SourceChangedError(RuntimeError):
    """A dataset ingested by reference no longer matches its source files."""


@dataclass
class SourceManifest:
    """What a reference dataset points at and what it looked like when ingested."""

    source: str
    params: dict[str, Any]
    engine: str
    fingerprint: list[list[Any]]
    row_count: int
    schema: list[list[str]]
    sample_ipc: str | None = None  # base64 Arrow IPC stream of the sample rows
    # The schema the engine inferred at ingest (Spark's StructType JSON for CSV/JSON), handed
    # back to the reader so downstream steps do not scan the file again to infer it.
    read_schema: str | None = None
    ingested_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    step: str = ""

    def snapshot(self, sample_rows: int) -> Snapshot:
        """The tracker snapshot recorded at ingest (no read of the source; the sample as
        :class:`SampleRows`, without pandas)."""
        sample = None
        if sample_rows > 0 and self.sample_ipc:
            import pyarrow as pa

            with pa.ipc.open_stream(base64.b64decode(self.sample_ipc)) as reader:
                sample = arrow_sample(reader.read_all().slice(0, sample_rows))
        return Snapshot(row_count=self.row_count, schema=tuple((c, t) for c, t in self.schema), sample=sample)


def fingerprint(source: str) -> list[list[Any]]:
    """``[name, size, version]`` for every file under ``source`` (a file, folder or glob).

    ``version`` is the modification time in nanoseconds for local files and the ETag (or
    last-modified time) for blobs: whatever changes when the file is rewritten.
    """
    if paths.is_remote(source):
        fs = paths.fs_for(source)
        if paths.has_glob(source):
            infos = [fs.info(p) for p in fs.glob(source)]
        elif fs.isdir(source):
            infos = list(fs.find(source, detail=True).values())
        else:
            infos = [fs.info(source)]
        out = []
        for info in infos:
            version = info.get("etag") or info.get("last_modified") or info.get("mtime") or info.get("created")
            out.append([str(info["name"]), int(info.get("size") or 0), str(version)])
        return sorted(out)
    local = paths.local_path(source)
    if paths.has_glob(local):
        files = [p for p in globlib.glob(local, recursive=True) if os.path.isfile(p)]
    elif os.path.isdir(local):
        files = [os.path.join(root, name) for root, _dirs, names in os.walk(local) for name in names]
    else:
        files = [local]
    out = []
    for name in files:
        st = os.stat(name)
        out.append([name, st.st_size, st.st_mtime_ns])
    return sorted(out)


def encode_sample(sample: Any) -> str | None:
    """A sample (:class:`SampleRows`, an Arrow table or a pandas frame) as base64 Arrow IPC
    (types kept exactly, unlike JSON)."""
    if sample is None:
        return None
    import pyarrow as pa

    if isinstance(sample, SampleRows):
        table = sample.arrow if sample.arrow is not None else _sample_table(sample)
    elif isinstance(sample, pa.Table):
        table = sample
    else:
        table = pa.Table.from_pandas(sample, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return base64.b64encode(sink.getvalue().to_pybytes()).decode("ascii")


_DECIMAL = re.compile(r"decimal(?:128|256)\((\d+), (-?\d+)\)")


def _arrow_type(name: str) -> Any:
    """The Arrow type a type name (``str(pyarrow.DataType)``) stands for; None when it cannot be
    read back from its name (nested, zoned...): the values' own type is inferred then."""
    import pyarrow as pa

    if match := _DECIMAL.fullmatch(name):
        return pa.decimal128(int(match[1]), int(match[2]))
    try:
        return pa.type_for_alias(name)
    except ValueError:
        return None


def _sample_table(sample: SampleRows) -> Any:
    """:class:`SampleRows` back as the Arrow table they were read from (types from their names)."""
    import pyarrow as pa

    arrays = []
    for i in range(len(sample.columns)):
        values = [row[i] for row in sample.rows]
        kind = _arrow_type(sample.types[i]) if i < len(sample.types) else None
        try:
            arrays.append(pa.array(values, type=kind))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            arrays.append(pa.array([None if v is None else str(v) for v in values], type=pa.string()))
    return pa.Table.from_arrays(arrays, names=list(sample.columns))


def write_manifest(path: str, manifest: SourceManifest) -> None:
    """Write the manifest atomically (readers see the old one or the new one)."""
    body = json.dumps({"odibi_source_manifest": _MANIFEST_VERSION, **manifest.__dict__}, default=str)
    with paths.atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(body)


def read_manifest(path: str) -> SourceManifest:
    """Parse a manifest written by :func:`write_manifest`."""
    if paths.is_remote(path):
        with paths.fs_for(path).open(path, "r", encoding="utf-8") as fh:
            data = json.load(fh)
    else:
        with open(paths.local_path(path), encoding="utf-8") as fh:
            data = json.load(fh)
    data.pop("odibi_source_manifest", None)
    return SourceManifest(**data)


def verified_manifest(path: str) -> SourceManifest:
    """The manifest at ``path``, after checking its source files did not change since ingest."""
    manifest = read_manifest(path)
    try:
        now = fingerprint(manifest.source)
    except FileNotFoundError:
        now = []
    if now != manifest.fingerprint:
        before = {name: rest for name, *rest in manifest.fingerprint}
        after = {name: rest for name, *rest in now}
        changed = sorted(n for n in before.keys() | after.keys() if before.get(n) != after.get(n))
        shown = ", ".join(changed[:3]) + (" ..." if len(changed) > 3 else "")
        raise SourceChangedError(
            f"{manifest.source} changed after step '{manifest.step}' ingested it by reference at "
            f"{manifest.ingested_at} ({shown or 'files differ'}); materialize '{manifest.step}' again "
            "(or use ingest_mode: copy for sources that change in place)."
        )
    return manifest


def manifests_snapshot(manifest_paths: Sequence[str], sample_rows: int) -> Snapshot:
    """One snapshot over several partitions' manifests: rows summed, first schema and sample."""
    manifests = [read_manifest(p) for p in manifest_paths]
    first = manifests[0].snapshot(sample_rows)
    if len(manifests) == 1:
        return first
    return Snapshot(row_count=sum(m.row_count for m in manifests), schema=first.schema, sample=first.sample)
