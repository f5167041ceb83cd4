"""A reference ingest counts a plain CSV file from its line breaks, not by parsing it again;
every file where a line might not be one record is left to DuckDB's ``COUNT(*)``."""

from __future__ import annotations

from pathlib import Path

import pytest

from odibi_dagster.engines.formats.csv import csv_row_count
from odibi_dagster.engines.pandas_duckdb import PandasDuckDBContext


@pytest.mark.parametrize(
    ("text", "params"),
    [
        ("a,b\n1,x\n2,y\n", {}),
        ("a,b\n1,x\n2,y", {}),  # no line break after the last record
        ("1,x\n2,y\n3,z\n", {"header": False}),
        ("a;b\n1;x\n", {"sep": ";"}),
        ("a,b\n", {}),  # a header alone
    ],
)
def test_plain_files_are_counted_as_duckdb_counts_them(tmp_path: Path, text: str, params: dict) -> None:
    path = tmp_path / "data.csv"
    path.write_text(text)
    with PandasDuckDBContext() as ctx:
        expected = ctx.row_count(ctx.read(str(path), **params))
        assert csv_row_count(ctx.conn, str(path), params) == expected
        assert ctx.source_snapshot(ctx.read(str(path), **params), str(path), params).row_count == expected


@pytest.mark.parametrize(
    ("text", "params"),
    [
        ('a,b\n1,"x\ny"\n2,z\n', {}),  # a quoted line break: one record over two lines
        ("a,b\n1,O'Brien\n", {}),
        ("a,b\n1,x\n\n2,y\n", {}),  # DuckDB skips blank lines
        ("a,b\r\n1,x\r\n", {}),
        ("a,b\n1,x\n", {"skiprows": 1}),
        ("a,b\n1,x\n", {"comment": "#"}),
    ],
)
def test_files_a_line_count_could_miscount_are_left_to_duckdb(tmp_path: Path, text: str, params: dict) -> None:
    path = tmp_path / "data.csv"
    path.write_text(text, newline="")
    with PandasDuckDBContext() as ctx:
        assert csv_row_count(ctx.conn, str(path), params) is None
        expected = ctx.row_count(ctx.read(str(path), **params))
        assert ctx.source_snapshot(ctx.read(str(path), **params), str(path), params).row_count == expected


def test_globs_folders_and_compressed_files_are_left_to_duckdb(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("a\n1\n")
    with PandasDuckDBContext() as ctx:
        assert csv_row_count(ctx.conn, str(tmp_path / "*.csv"), {}) is None
        assert csv_row_count(ctx.conn, str(tmp_path), {}) is None
        assert csv_row_count(ctx.conn, str(tmp_path / "a.csv.gz"), {}) is None


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 7, 1 << 20])
def test_the_parallel_line_scan_sees_blank_lines_across_chunks_and_slices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    from odibi_dagster.engines.formats import csv as csv_format

    monkeypatch.setattr(csv_format, "_CHUNK", chunk)
    monkeypatch.setattr(csv_format.os, "cpu_count", lambda: 3)  # three slices, whatever the machine
    cases = {
        "a,b\n1,x\n2,y\n": 3,
        "a,b\n1,x\n2,y": 3,
        "a\n1\n22\n333\n4444\n": 5,
        "\na\n1\n": None,  # a leading blank line
        "a\n1\n\n": None,
        "a\n\n1\n": None,
        "a,b\n1,x\n2,y\n\n3,z\n": None,
        "a\n1\n2\n3\n4\n5\n6\n7\n8\n\n": None,
    }
    for text, expected in cases.items():
        path = tmp_path / "data.csv"
        path.write_bytes(text.encode())
        assert csv_format._record_lines(str(path)) == expected, (text, chunk)
