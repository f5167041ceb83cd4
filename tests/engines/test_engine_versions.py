"""Data versions of datasets: they change exactly when the content does, without reading more
than needed (Delta: the log; blobs: their listing)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import duckdb
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import write_deltalake

from odibi_dagster.engines.source_ref import SourceManifest, fingerprint, write_manifest
from odibi_dagster.engines.versions import combine_versions, content_version, source_version


def _parquet(path: Path, sql: str) -> Path:
    duckdb.sql(f"COPY ({sql}) TO '{path}' (FORMAT parquet)")
    return path


BASE = "SELECT i AS id, ROUND(((i * 7919) % 52000) / 100.0 - 20, 2) AS amount FROM range(200000) t(i)"


def test_parquet_versions_follow_the_bytes_where_the_footer_would_not(tmp_path: Path) -> None:
    same_a = _parquet(tmp_path / "a.parquet", BASE)
    same_b = _parquet(tmp_path / "b.parquet", BASE)
    # one cent more on one row, and two values swapped: every column chunk keeps its size and
    # min/max, so the Parquet footers are byte-identical; the versions are not
    cent = _parquet(
        tmp_path / "c.parquet",
        f"SELECT id, CASE WHEN id = 1000 THEN amount + 0.01 ELSE amount END AS amount FROM ({BASE})",
    )
    swap = _parquet(
        tmp_path / "d.parquet",
        f"SELECT id, CASE WHEN id = 1000 THEN (SELECT amount FROM ({BASE}) WHERE id = 1001) "
        f"WHEN id = 1001 THEN (SELECT amount FROM ({BASE}) WHERE id = 1000) ELSE amount END AS amount FROM ({BASE})",
    )

    def footer(path: Path) -> bytes:  # the FileMetaData: row groups, column chunk sizes and statistics
        data = path.read_bytes()
        size = int.from_bytes(data[-8:-4], "little")
        return data[-8 - size :]

    assert footer(cent) == footer(swap)  # why a footer alone cannot be the version
    versions = {p.name: content_version(str(p), "parquet") for p in (same_a, same_b, cent, swap)}
    assert versions["a.parquet"] == versions["b.parquet"] == hashlib.sha256(same_a.read_bytes()).hexdigest()[:32]
    assert len({versions["a.parquet"], versions["c.parquet"], versions["d.parquet"]}) == 3


def test_a_parquet_folder_is_versioned_by_its_data_files_not_their_names(tmp_path: Path) -> None:
    table = pa.table({"id": [1, 2, 3]})
    for folder, name in (("one", "part-0001-aaaa.parquet"), ("two", "part-0001-bbbb.parquet")):
        (tmp_path / folder).mkdir()
        pq.write_table(table, tmp_path / folder / name)
        (tmp_path / folder / "_SUCCESS").write_text(folder)  # markers and hidden files do not count
        (tmp_path / folder / ".part.crc").write_text(folder)
    assert content_version(str(tmp_path / "one"), "parquet") == content_version(str(tmp_path / "two"), "parquet")
    pq.write_table(pa.table({"id": [1, 2, 4]}), tmp_path / "two" / "part-0001-bbbb.parquet")
    assert content_version(str(tmp_path / "one"), "parquet") != content_version(str(tmp_path / "two"), "parquet")


def test_delta_versions_are_the_table_version_and_its_commit(tmp_path: Path) -> None:
    path = str(tmp_path / "table.delta")
    write_deltalake(path, pa.table({"id": [1, 2]}))
    first = content_version(path, "delta")
    assert first.startswith("delta-v0-")
    write_deltalake(path, pa.table({"id": [1, 2]}), mode="overwrite")
    second = content_version(path, "delta")
    assert second.startswith("delta-v1-") and second != first
    # a table created again from scratch starts at version 0 again, with another commit
    other = str(tmp_path / "again.delta")
    write_deltalake(other, pa.table({"id": [1, 2]}))
    assert content_version(other, "delta").startswith("delta-v0-") and content_version(other, "delta") != first


def test_blobs_are_versioned_from_their_listing(tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/lake/x.parquet", b"PAR1...")
    before = content_version("memory://lake/x.parquet", "parquet")
    assert before == content_version("memory://lake/x.parquet", "parquet")
    fs.pipe("/lake/x.parquet", b"PAR1....")
    assert content_version("memory://lake/x.parquet", "parquet") != before


def test_sources_are_versioned_by_their_fingerprint(tmp_path: Path) -> None:
    src = tmp_path / "s.csv"
    src.write_text("a\n1\n")
    prints = fingerprint(str(src))
    manifest = tmp_path / "data.source.json"
    write_manifest(
        str(manifest),
        SourceManifest(source=str(src), params={}, engine="pandas", fingerprint=prints, row_count=1, schema=[]),
    )
    assert content_version(str(manifest), "source") == source_version(prints)
    os.utime(src, ns=(1, 1))  # touched: a new fingerprint, a new version
    assert source_version(fingerprint(str(src))) != source_version(prints)
    assert source_version([]) == "missing"
    assert combine_versions(["a", "b"]) != combine_versions(["b", "a"])
