"""Fingerprints and manifests of sources ingested by reference (local files and fsspec)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import fsspec
import pandas as pd
import pytest

from odibi_dagster.engines.source_ref import (
    SourceChangedError,
    SourceManifest,
    encode_sample,
    fingerprint,
    read_manifest,
    verified_manifest,
    write_manifest,
)


def _manifest(source: str, **extra) -> SourceManifest:
    sample = pd.DataFrame({"id": [1, 2], "when": pd.to_datetime(["2024-01-01", "2024-01-02"])})
    return SourceManifest(
        source=source,
        params={"sep": ","},
        engine="pandas",
        fingerprint=fingerprint(source),
        row_count=2,
        schema=[["id", "int64"], ["when", "timestamp[ns]"]],
        sample_ipc=encode_sample(sample),
        step="read",
        **extra,
    )


def test_fingerprint_covers_files_folders_and_globs(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    a, b = tmp_path / "d" / "a.csv", tmp_path / "d" / "sub" / "b.csv"
    a.write_text("x\n1\n")
    b.write_text("x\n2\n")
    assert fingerprint(str(a)) == [[str(a), 4, a.stat().st_mtime_ns]]
    assert [row[0] for row in fingerprint(str(tmp_path / "d"))] == [str(a), str(b)]
    assert [row[0] for row in fingerprint(str(tmp_path / "d" / "**" / "*.csv"))] == [str(a), str(b)]
    before = fingerprint(str(tmp_path / "d"))
    os.utime(b, ns=(b.stat().st_atime_ns, b.stat().st_mtime_ns + 1_000_000))  # same size, touched
    assert fingerprint(str(tmp_path / "d")) != before


def test_manifest_round_trips_with_an_exact_sample(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("id,when\n1,2024-01-01\n2,2024-01-02\n")
    path = str(tmp_path / "m" / "data.source.json")
    write_manifest(path, _manifest(str(src)))
    back = verified_manifest(path)
    assert back.params == {"sep": ","} and back.row_count == 2 and back.step == "read"
    snap = back.snapshot(1)
    assert snap.row_count == 2 and snap.schema == (("id", "int64"), ("when", "timestamp[ns]"))
    # The sample comes back without pandas, its types as they were (pandas' datetime64 column).
    assert len(snap.sample) == 1 and snap.sample.types[0] == "int64"
    assert snap.sample.types[1].startswith("timestamp[")
    assert snap.sample.columns == ("id", "when") and snap.sample.rows[0][0] == 1
    assert str(snap.sample.rows[0][1]).startswith("2024-01-01")
    assert back.snapshot(0).sample is None


def test_a_sample_read_without_pandas_round_trips_with_its_types(tmp_path: Path) -> None:
    import datetime as dt
    from decimal import Decimal

    from odibi_dagster.engines.base import SampleRows

    sample = SampleRows(
        ("id", "day", "price", "name", "tags"),
        ((1, dt.date(2024, 1, 2), Decimal("1.50"), "a", ["x"]), (None, None, None, None, None)),
        ("int32", "date32[day]", "decimal128(10, 2)", "string", "list<item: string>"),
    )
    src = tmp_path / "in.csv"
    src.write_text("id\n1\n")
    manifest = _manifest(str(src))
    manifest.sample_ipc = encode_sample(sample)
    path = str(tmp_path / "data.source.json")
    write_manifest(path, manifest)
    assert read_manifest(path).snapshot(5).sample == sample


def test_a_changed_or_missing_source_is_refused_with_the_file_and_step(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("id\n1\n")
    path = str(tmp_path / "data.source.json")
    write_manifest(path, _manifest(str(src)))
    src.write_text("id\n1\n2\n")
    with pytest.raises(SourceChangedError, match=r"in\.csv changed after step 'read' ingested it by reference"):
        verified_manifest(path)
    src.unlink()
    with pytest.raises(SourceChangedError, match="materialize 'read' again"):
        verified_manifest(path)
    assert read_manifest(path).source == str(src)  # reading without the check still works


def test_fingerprint_of_a_blob_changes_when_it_is_rewritten() -> None:
    root = f"memory://odibi-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    fs.pipe(f"{root}/in/a.csv", b"x\n1\n")
    fs.pipe(f"{root}/in/b.csv", b"x\n2\n")
    first = fingerprint(f"{root}/in")
    assert [row[1] for row in first] == [4, 4]
    manifest_path = f"{root}/m/data.source.json"
    write_manifest(manifest_path, _manifest(f"{root}/in"))
    assert verified_manifest(manifest_path).fingerprint == first
    fs.pipe(f"{root}/in/b.csv", b"x\n3\n")  # same size, new blob
    assert fingerprint(f"{root}/in") != first
    with pytest.raises(SourceChangedError):
        verified_manifest(manifest_path)
