"""The pandas+DuckDB engine: readers, writers, SQL over registered names, atomic writes.

Real DuckDB, real files (tiny), real Delta tables and SQLite databases.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import time
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from odibi_dagster.engines import formats, paths
from odibi_dagster.engines.base import DatasetRef, EngineContext, WriteInfo
from odibi_dagster.engines.formats import duck
from odibi_dagster.engines.pandas_duckdb import PandasDuckDBContext, PandasDuckDBEngine, persist_frame
from odibi_dagster.engines.secrets import SecretNotFoundError, redact_url


@pytest.fixture
def ctx():
    with PandasDuckDBContext(threads=2) as c:
        yield c


@pytest.fixture
def people() -> pd.DataFrame:
    return pd.DataFrame({"id": [1, 2, 3], "name": ["ann", "bob", "cy"], "amount": [10.5, 20.0, 0.25]})


def rows(rel) -> list[tuple]:
    return sorted(rel.fetchall())


PEOPLE_ROWS = [(1, "ann", 10.5), (2, "bob", 20.0), (3, "cy", 0.25)]


def leftovers(directory: Path) -> list[str]:
    """Temp files the atomic helper might have left behind."""
    return [p.name for p in directory.rglob("*") if ".tmp" in p.name]


# ----------------------------------------------------------------------------- contract


def test_context_implements_engine_contract(ctx):
    assert isinstance(ctx, EngineContext)
    assert ctx.engine == "pandas"


def test_engine_contract_is_what_the_run_path_calls():
    """The Protocol lists exactly the methods the runtime, dataset store, checks and observe
    call on an engine context (``ctx.<name>(...)``): none missing, none that nobody calls."""
    import ast

    import odibi_dagster

    package = Path(odibi_dagster.__file__).parent
    sources = [package / "checks.py", *(package / d for d in ("translate", "io", "observe"))]
    files = [f for src in sources for f in ([src] if src.is_file() else src.rglob("*.py"))]
    called = {
        node.func.attr
        for f in files
        for node in ast.walk(ast.parse(f.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "ctx"
    }
    members = {name for name, value in vars(EngineContext).items() if callable(value) and not name.startswith("_")}
    assert members == called


# ----------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("source", "params", "expected"),
    [
        ("a.csv", {}, "csv"),
        ("data/*.csv", {}, "csv"),
        ("a.csv.gz", {}, "csv"),
        ("a.tsv", {}, "csv"),
        ("a.json", {}, "json"),
        ("a.jsonl", {}, "jsonl"),
        ("a.ndjson", {}, "jsonl"),
        ("a.parquet", {}, "parquet"),
        ("a.pq", {}, "parquet"),
        ("source.db", {}, "sqlite"),
        ("x.sqlite", {}, "sqlite"),
        ("a.txt", {"source_type": "csv"}, "csv"),
        ("a.csv", {"format": "parquet"}, "parquet"),
        ("a.db", {"source_type": "sqlite"}, "sqlite"),
        ("sqlite:///x.db", {}, "sql"),
        ("postgresql+psycopg2://u:p@h/db", {}, "sql"),
        ("mysql://h/db", {}, "sql"),
        ("orders", {"connection_string": "sqlite:///x.db"}, "sql"),
        ("abfs://c/x/a.parquet", {}, "parquet"),
    ],
)
def test_resolve_format(source, params, expected):
    assert formats.resolve_format(source, params) == expected


def test_resolve_format_from_directory_content(tmp_path, ctx, people):
    ctx.write(people, str(tmp_path / "tbl"), format="delta")
    assert formats.resolve_format(str(tmp_path / "tbl"), {}) == "delta"
    (tmp_path / "pq").mkdir()
    ctx.write(people, str(tmp_path / "pq" / "part-0.parquet"))
    assert formats.resolve_format(str(tmp_path / "pq"), {}) == "parquet"


def test_resolve_format_errors():
    with pytest.raises(ValueError, match="cannot infer the format"):
        formats.resolve_format("noext", {})
    with pytest.raises(ValueError, match="unknown format 'xlsx'"):
        formats.resolve_format("a.csv", {"format": "xlsx"})


# ----------------------------------------------------------------------------- CSV


def test_csv_round_trip(ctx, tmp_path, people):
    target = tmp_path / "out" / "people.csv"  # parent dir created by the writer
    info = ctx.write(people, str(target))
    assert info == WriteInfo(uri=str(target), format="csv", rows=3, extra={"mode": "overwrite"})
    assert target.read_text().splitlines()[0] == "id,name,amount"
    rel = ctx.read(str(target))
    assert isinstance(rel, duckdb.DuckDBPyRelation)
    assert rows(rel) == PEOPLE_ROWS


def test_csv_reader_options(ctx, tmp_path):
    src = tmp_path / "semi.txt"
    src.write_text("1;x;2024-01-02\n2;y;2024-03-04\n")
    rel = ctx.read(
        str(src),
        source_type="csv",
        sep=";",
        header=None,
        names=["n", "s", "d"],
        dtype={"n": "int32"},
        parse_dates=["d"],
    )
    assert rel.columns == ["n", "s", "d"]
    assert [str(t) for t in rel.types] == ["INTEGER", "VARCHAR", "TIMESTAMP"]
    assert rows(rel)[0] == (1, "x", dt.datetime(2024, 1, 2))
    # pandas spellings for projection / row limit
    limited = ctx.read(str(src), format="csv", delimiter=";", header=False, usecols=["column1"], nrows=1)
    assert limited.columns == ["column1"]
    assert len(limited.fetchall()) == 1


def test_csv_writer_options_and_tsv(ctx, tmp_path, people):
    target = tmp_path / "p.csv"
    ctx.write(people, str(target), sep="|", header=False, index=False)
    assert target.read_text().splitlines()[0] == "1|ann|10.5"
    tsv = tmp_path / "p.tsv"
    ctx.write(people, str(tsv))
    assert tsv.read_text().splitlines()[0] == "id\tname\tamount"
    assert rows(ctx.read(str(tsv))) == PEOPLE_ROWS


def test_csv_glob_and_directory(ctx, tmp_path, people):
    d = tmp_path / "raw"
    ctx.write(people.iloc[:2], str(d / "a.csv"))
    ctx.write(people.iloc[2:], str(d / "b.csv"))
    (d / "notes.txt").write_text("ignored")
    assert rows(ctx.read(str(d / "*.csv"))) == PEOPLE_ROWS
    assert rows(ctx.read(str(d), format="csv")) == PEOPLE_ROWS


def test_csv_append(ctx, tmp_path, people):
    target = tmp_path / "p.csv"
    ctx.write(people.iloc[:1], str(target))
    # columns in another order are aligned to the existing header
    info = ctx.write(people.iloc[1:][["name", "amount", "id"]], str(target), mode="append")
    assert info.rows == 2
    lines = target.read_text().splitlines()
    assert lines.count("id,name,amount") == 1
    assert rows(ctx.read(str(target))) == PEOPLE_ROWS
    with pytest.raises(ValueError, match="do not match"):
        ctx.write(pd.DataFrame({"other": [1]}), str(target), mode="append")
    assert rows(ctx.read(str(target))) == PEOPLE_ROWS


def test_append_to_missing_file_creates_it(ctx, tmp_path, people):
    target = tmp_path / "new.csv"
    assert ctx.write(people, str(target), mode="append").rows == 3
    assert rows(ctx.read(str(target))) == PEOPLE_ROWS


def test_missing_input_is_file_not_found(ctx, tmp_path):
    with pytest.raises(FileNotFoundError):
        ctx.read(str(tmp_path / "nope.csv"))
    with pytest.raises(FileNotFoundError, match="no files match"):
        ctx.read(str(tmp_path / "*.csv"))


# ----------------------------------------------------------------------------- JSON


def test_json_records_array_round_trip(ctx, tmp_path, people):
    target = tmp_path / "p.json"
    assert ctx.write(people, str(target)).format == "json"
    assert json.loads(target.read_text()) == people.to_dict(orient="records")
    assert rows(ctx.read(str(target))) == PEOPLE_ROWS
    assert ctx.write(people, str(target), mode="append").rows == 3
    assert len(json.loads(target.read_text())) == 6


def test_jsonl_round_trip_and_append(ctx, tmp_path, people):
    target = tmp_path / "p.jsonl"
    info = ctx.write(people.iloc[:2], str(target))
    assert info.format == "jsonl"
    assert [json.loads(line) for line in target.read_text().splitlines()] == people.iloc[:2].to_dict(orient="records")
    ctx.write(people.iloc[2:], str(target), mode="append")
    assert len(target.read_text().splitlines()) == 3
    assert rows(ctx.read(str(target))) == PEOPLE_ROWS
    # ODIBI-style: a .json file holding JSON lines, read with lines=True
    other = tmp_path / "lines.json"
    other.write_text(target.read_text())
    assert rows(ctx.read(str(other), lines=True)) == PEOPLE_ROWS


def test_json_glob(ctx, tmp_path, people):
    ctx.write(people.iloc[:1], str(tmp_path / "a.jsonl"))
    ctx.write(people.iloc[1:], str(tmp_path / "b.jsonl"))
    assert rows(ctx.read(str(tmp_path / "*.jsonl"))) == PEOPLE_ROWS


# ----------------------------------------------------------------------------- Parquet


def test_parquet_round_trip_and_options(ctx, tmp_path, people):
    target = tmp_path / "p.parquet"
    info = ctx.write(people, str(target), compression="zstd")
    assert (info.format, info.rows) == ("parquet", 3)
    assert pq.ParquetFile(target).metadata.row_group(0).column(0).compression == "ZSTD"
    assert rows(ctx.read(str(target))) == PEOPLE_ROWS
    assert ctx.read(str(target), columns=["name"]).fetchall() == [("ann",), ("bob",), ("cy",)]


def test_parquet_append_file_and_directory(ctx, tmp_path, people):
    target = tmp_path / "p.parquet"
    ctx.write(people.iloc[:1], str(target))
    assert ctx.write(people.iloc[1:], str(target), mode="append").rows == 2
    assert target.is_file()
    assert rows(ctx.read(str(target))) == PEOPLE_ROWS

    d = tmp_path / "ds"
    d.mkdir()
    ctx.write(people.iloc[:1], str(d), format="parquet", mode="append")
    ctx.write(people.iloc[1:], str(d), mode="append")  # format from the directory's files
    assert len(list(d.glob("part-*.parquet"))) == 2
    assert rows(ctx.read(str(d))) == PEOPLE_ROWS
    assert rows(ctx.read(str(d / "*.parquet"))) == PEOPLE_ROWS
    # overwrite of a directory replaces all of its parts
    ctx.write(people.iloc[:1], str(d), mode="overwrite")
    assert rows(ctx.read(str(d))) == PEOPLE_ROWS[:1]
    assert leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- Delta


def test_delta_overwrite_append_versions_and_time_travel(ctx, tmp_path, people):
    target = str(tmp_path / "tbl")
    v0 = ctx.write(people.iloc[:1], target, format="delta")
    assert (v0.format, v0.rows, v0.version) == ("delta", 1, 0)
    time.sleep(0.05)
    between = dt.datetime.now(dt.UTC)
    time.sleep(0.05)
    v1 = ctx.write(people.iloc[1:], target, format="delta", mode="append")
    assert (v1.rows, v1.version) == (2, 1)
    assert rows(ctx.read(target)) == PEOPLE_ROWS  # format detected from _delta_log
    assert rows(ctx.read(target, version=0)) == PEOPLE_ROWS[:1]
    assert rows(ctx.read(target, timestamp=between.isoformat())) == PEOPLE_ROWS[:1]
    v2 = ctx.write(people.iloc[2:], target, format="delta", mode="overwrite")
    assert v2.version == 2
    assert rows(ctx.read(target, source_type="delta")) == PEOPLE_ROWS[2:]
    assert ctx.read(target, version=1, columns=["id"]).columns == ["id"]


def test_delta_merge(ctx, tmp_path, people):
    target = str(tmp_path / "tbl")
    ctx.write(people.iloc[:2], target, format="delta")
    changes = pd.DataFrame({"id": [2, 3], "name": ["bobby", "cy"], "amount": [21.0, 0.25]})
    info = ctx.write(changes, target, format="delta", mode="merge", merge_keys=["id"])
    assert info.version == 1
    assert rows(ctx.read(target)) == [(1, "ann", 10.5), (2, "bobby", 21.0), (3, "cy", 0.25)]
    with pytest.raises(ValueError, match="merge_keys"):
        ctx.write(changes, target, format="delta", mode="merge")


def test_delta_failed_first_write_leaves_nothing(ctx, tmp_path):
    bad = ctx.execute_sql("SELECT CASE WHEN range < 5000 THEN range ELSE error('boom') END AS v FROM range(100000)")
    with pytest.raises(Exception, match="boom"):
        ctx.write(bad, str(tmp_path / "tbl"), format="delta")
    assert not (tmp_path / "tbl").exists()


# ----------------------------------------------------------------------------- SQLite / SQLAlchemy


def _make_sqlite(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE orders (id INTEGER, item TEXT, qty REAL)")
    con.executemany("INSERT INTO orders VALUES (?, ?, ?)", [(1, "a", 2.0), (2, "b", 3.5), (3, "c", 1.0)])
    con.commit()
    con.close()


def test_sqlite_table_and_query(ctx, tmp_path):
    db = tmp_path / "source.db"
    _make_sqlite(db)
    rel = ctx.read(str(db), source_type="sqlite", table="orders")
    assert isinstance(rel, duckdb.DuckDBPyRelation)
    assert rows(rel) == [(1, "a", 2.0), (2, "b", 3.5), (3, "c", 1.0)]
    q = ctx.read(str(db), query="SELECT item FROM orders WHERE qty > 1.5")
    assert rows(q) == [("a",), ("b",)]
    with pytest.raises(ValueError, match="exactly one of 'table' or 'query'"):
        ctx.read(str(db))
    with pytest.raises(FileNotFoundError):
        ctx.read(str(tmp_path / "missing.db"), table="orders")
    assert not (tmp_path / "missing.db").exists()


def test_sqlite_write_overwrite_and_append(ctx, tmp_path, people):
    db = tmp_path / "out" / "target.sqlite"
    info = ctx.write(people, str(db), table="people")
    assert (info.format, info.rows, info.extra["table"]) == ("sqlite", 3, "people")
    ctx.write(people.iloc[:1], str(db), table="people", mode="append")
    assert len(ctx.read(str(db), table="people").fetchall()) == 4
    ctx.write(people.iloc[:2], str(db), table="people")  # overwrite -> replace
    assert rows(ctx.read(str(db), table="people")) == PEOPLE_ROWS[:2]
    ctx.write(people.iloc[2:], str(db), table="people", if_exists="append")
    assert rows(ctx.read(str(db), table="people")) == PEOPLE_ROWS


def test_sqlite_failed_overwrite_keeps_old_table(ctx, tmp_path, people, monkeypatch):
    db = tmp_path / "t.db"
    ctx.write(people, str(db), table="people")
    # a query that errors before anything is written
    bad = ctx.execute_sql("SELECT CASE WHEN range < 3000 THEN range ELSE error('boom') END AS id FROM range(100000)")
    with pytest.raises(Exception, match="boom"):
        ctx.write(bad, str(db), table="people", chunksize=1000)
    assert rows(ctx.read(str(db), table="people")) == PEOPLE_ROWS
    # a failure after the first chunk (table already dropped and re-created) rolls back too
    real_to_sql = pd.DataFrame.to_sql
    calls = []

    def fail_second_chunk(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("connection lost")
        return real_to_sql(self, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_sql", fail_second_chunk)
    new = pd.DataFrame({"id": [7, 8, 9], "name": ["x", "y", "z"], "amount": [1.0, 2.0, 3.0]})
    with pytest.raises(OSError, match="connection lost"):
        ctx.write(new, str(db), table="people", chunksize=1)
    monkeypatch.setattr(pd.DataFrame, "to_sql", real_to_sql)
    assert rows(ctx.read(str(db), table="people")) == PEOPLE_ROWS


def test_sqlalchemy_url_read_and_write(ctx, tmp_path, people):
    db = tmp_path / "sa.db"
    url = f"sqlite:///{db}"
    info = ctx.write(people, url, table="people")
    assert (info.format, info.rows, info.uri) == ("sql", 3, url)
    assert rows(ctx.read(url, table="people")) == PEOPLE_ROWS
    # connection_string param; a SELECT as source is the query; a bare name is the table
    assert rows(ctx.read("SELECT id FROM people", connection_string=url)) == [(1,), (2,), (3,)]
    assert len(ctx.read("people", connection_string=url).fetchall()) == 3
    ctx.write(people.iloc[:1], "people", connection_string=url, mode="append")
    assert len(ctx.read(url, query="SELECT * FROM people").fetchall()) == 4


def test_sql_uri_hides_password():
    assert "secret" not in redact_url("postgresql://user:secret@host/db")


# ----------------------------------------------------------------------------- params


@pytest.mark.parametrize(
    ("target", "params", "fmt"),
    [
        ("x.csv", {"bogus": 1}, "csv"),
        ("x.json", {"bogus": 1}, "json"),
        ("x.jsonl", {"bogus": 1}, "jsonl"),
        ("x.parquet", {"bogus": 1}, "parquet"),
        ("x.db", {"table": "t", "bogus": 1}, "sqlite"),
    ],
)
def test_unknown_writer_param_names_param_and_format(ctx, tmp_path, people, target, params, fmt):
    with pytest.raises(ValueError, match=rf"unknown {fmt} writer param 'bogus'"):
        ctx.write(people, str(tmp_path / target), **params)
    assert not (tmp_path / target).exists()


def test_unknown_reader_param(ctx, tmp_path, people):
    ctx.write(people, str(tmp_path / "p.csv"))
    ctx.write(people, str(tmp_path / "d"), format="delta")
    with pytest.raises(ValueError, match="unknown csv reader param 'colour'"):
        ctx.read(str(tmp_path / "p.csv"), colour="red")
    with pytest.raises(ValueError, match="unknown delta reader param 'vers'"):
        ctx.read(str(tmp_path / "d"), vers=0)
    with pytest.raises(ValueError, match="mode 'upsert'"):
        ctx.write(people, str(tmp_path / "p.csv"), mode="upsert")


# ----------------------------------------------------------------------------- SQL


def test_sql_over_registered_frames(ctx, tmp_path, people):
    ctx.register_temp("pdf", people)
    ctx.register_temp("arrow_t", pa.table({"id": [1, 2], "tag": ["x", "y"]}))
    ctx.register_temp("rel", ctx.execute_sql("SELECT id, amount * 2 AS double_amount FROM pdf"))
    out = ctx.execute_sql(
        "SELECT p.name, a.tag, r.double_amount FROM pdf p JOIN arrow_t a USING (id) JOIN rel r USING (id)"
    )
    assert isinstance(out, duckdb.DuckDBPyRelation)
    assert rows(out) == [("ann", "x", 21.0), ("bob", "y", 40.0)]


def test_sql_over_dataset_refs(ctx, tmp_path, people):
    p1 = persist_frame(people.iloc[:2], str(tmp_path / "k=1.parquet"))
    p2 = persist_frame(people.iloc[2:], str(tmp_path / "k=2.parquet"))
    assert (p1.rows, p2.rows) == (2, 1)
    ref = DatasetRef(paths=(p1.uri, p2.uri), asset_key=("pipe", "people"), partition_keys=("1", "2"))
    ctx.register_temp("parts", ref)
    ctx.persist(people, str(tmp_path / "delta_tbl"), format="delta")
    ctx.register_temp("dl", DatasetRef(paths=(str(tmp_path / "delta_tbl"),), format="delta"))
    out = ctx.execute_sql("SELECT count(*) FROM parts JOIN dl USING (id)")
    assert out.fetchall() == [(3,)]
    # re-registering a name with another kind of frame replaces it
    ctx.register_temp("parts", people.iloc[:1])
    assert ctx.execute_sql("SELECT count(*) FROM parts").fetchall() == [(1,)]
    ctx.register_temp("parts", ref)
    assert ctx.execute_sql("SELECT count(*) FROM parts").fetchall() == [(3,)]


def test_load_returns_lazy_relation(ctx, tmp_path, people):
    path = str(tmp_path / "p.parquet")
    ctx.persist(people, path)
    rel = ctx.load(DatasetRef(paths=(path,)))
    assert isinstance(rel, duckdb.DuckDBPyRelation)
    assert rows(rel) == PEOPLE_ROWS
    ctx.persist(people, str(tmp_path / "d"), format="delta")
    assert rows(ctx.load(DatasetRef(paths=(str(tmp_path / "d"),), format="delta"))) == PEOPLE_ROWS


def test_sql_chain_never_converts_to_pandas(ctx, tmp_path, monkeypatch):
    src = tmp_path / "in.csv"
    src.write_text("id,grp,amount\n" + "".join(f"{i},{i % 3},{i * 1.5}\n" for i in range(1000)))

    def forbidden(*_a, **_k):
        raise AssertionError("materialised to pandas/arrow in the SQL path")

    for name in ("df", "to_df", "fetchdf", "to_arrow_table", "fetch_arrow_table"):
        monkeypatch.setattr(duckdb.DuckDBPyRelation, name, forbidden)
    monkeypatch.setattr(pd.DataFrame, "__init__", forbidden)

    ctx.register_temp("raw", ctx.read(str(src)))
    ctx.register_temp("clean", ctx.execute_sql("SELECT * FROM raw WHERE amount > 3"))
    info = ctx.persist(ctx.execute_sql("SELECT * FROM clean"), str(tmp_path / "silver.parquet"))
    ctx.register_temp("silver", DatasetRef(paths=(info.uri,)))
    agg = ctx.execute_sql("SELECT grp, sum(amount) AS total FROM silver GROUP BY grp")
    out = ctx.write(agg, str(tmp_path / "gold.parquet"))
    assert (info.rows, out.rows) == (997, 3)


# ----------------------------------------------------------------------------- inspection


def test_collect_sample_and_to_pandas(ctx, people):
    rel = ctx.execute_sql("SELECT * FROM range(1000000) t(i)")
    sample = ctx.collect_sample(rel, 4)
    assert isinstance(sample, pd.DataFrame)
    assert list(sample["i"]) == [0, 1, 2, 3]
    assert len(ctx.collect_sample(people, 2)) == 2
    assert len(ctx.collect_sample(pa.Table.from_pandas(people), 1)) == 1
    full = ctx.to_pandas(ctx.execute_sql("SELECT * FROM range(10) t(i)"))
    assert isinstance(full, pd.DataFrame)
    assert len(full) == 10


def test_snapshot_uses_arrow_type_names(ctx):
    rel = ctx.execute_sql(
        "SELECT range::BIGINT AS id, range / 2 AS amount, 'x' || range AS label, "
        "DATE '2024-01-01' + range::INT AS day, TIMESTAMP '2024-01-01 10:00:00' AS ts, "
        "range % 2 = 0 AS flag FROM range(7)"
    )
    snap = ctx.snapshot(rel, sample_rows=3)
    assert snap.row_count == 7
    assert snap.schema == (
        ("id", "int64"),
        ("amount", "double"),
        ("label", "string"),
        ("day", "date32[day]"),
        ("ts", "timestamp[us]"),
        ("flag", "bool"),
    )
    assert snap.columns == ["id", "amount", "label", "day", "ts", "flag"]
    assert len(snap.sample) == 3
    # pandas input normalises to the same type names
    pdf = pd.DataFrame({"id": [1, 2], "label": ["a", "b"], "amount": [1.0, 2.0]})
    assert ctx.snapshot(pdf, sample_rows=0) == ctx.snapshot(pdf, sample_rows=0)
    assert ctx.snapshot(pdf).schema == (("id", "int64"), ("label", "string"), ("amount", "double"))


# ----------------------------------------------------------------------------- atomic writes


def test_failing_writer_keeps_old_file_and_no_temp(ctx, tmp_path, people, monkeypatch):
    for name in ("p.parquet", "p.csv", "p.json", "p.jsonl"):
        target = tmp_path / name
        ctx.write(people, str(target))
        before = target.read_bytes()
        real_copy = duck.copy_to

        def half_then_fail(conn, rel, path, options, _real=real_copy):
            _real(conn, rel, path, options)  # the temp file is fully written ...
            raise OSError("disk full")  # ... and then the write fails

        monkeypatch.setattr(duck, "copy_to", half_then_fail)
        with pytest.raises(OSError, match="disk full"):
            ctx.write(people.iloc[:1], str(target))
        with pytest.raises(OSError, match="disk full"):
            ctx.write(people.iloc[:1], str(target), mode="append")
        monkeypatch.setattr(duck, "copy_to", real_copy)
        assert target.read_bytes() == before, name
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv", "p.json", "p.jsonl", "p.parquet"]


def test_failing_query_keeps_old_file(ctx, tmp_path, people):
    bad = ctx.execute_sql("SELECT CASE WHEN range < 5000 THEN range ELSE error('boom') END AS v FROM range(100000)")
    for name in ("p.parquet", "p.csv"):
        target = tmp_path / name
        ctx.write(people, str(target))
        before = target.read_bytes()
        with pytest.raises(duckdb.Error, match="boom"):
            ctx.write(bad, str(target))
        assert target.read_bytes() == before
    target = tmp_path / "persisted.parquet"
    persist_frame(people, str(target))
    before = target.read_bytes()
    with pytest.raises(duckdb.Error, match="boom"):
        ctx.persist(bad, str(target))
    assert target.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_atomic_output_helper(tmp_path):
    target = tmp_path / "a" / "b" / "f.txt"
    with paths.atomic_output(str(target)) as tmp:
        assert Path(tmp).parent == target.parent
        assert not target.exists()
        Path(tmp).write_text("v1")
    assert target.read_text() == "v1"
    with pytest.raises(RuntimeError), paths.atomic_output(str(target)) as tmp:
        Path(tmp).write_text("half")
        raise RuntimeError
    assert target.read_text() == "v1"
    assert os.listdir(target.parent) == ["f.txt"]


def test_commit_guard_runs_before_every_commit_and_can_refuse_it(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    calls: list[str] = []

    def refuse() -> None:
        calls.append("refuse")
        raise RuntimeError("source changed")

    with (
        paths.commit_guard(lambda: calls.append("outer")),
        paths.commit_guard(refuse),
        pytest.raises(RuntimeError, match="source changed"),
        paths.atomic_output(str(target)) as tmp,
    ):
        Path(tmp).write_text("new")
    assert calls == ["outer", "refuse"]
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]  # the temp file is gone
    # outside the block the guard no longer applies
    with paths.atomic_output(str(target)) as tmp:
        Path(tmp).write_text("new")
    assert target.read_text() == "new" and calls == ["outer", "refuse"]


def test_persist_frame_kinds(tmp_path, people):
    table = pa.Table.from_pandas(people, preserve_index=False)
    with duckdb.connect() as con:
        rel = con.from_arrow(table)
        for i, obj in enumerate([people, table, table.to_reader(), rel]):
            info = persist_frame(obj, str(tmp_path / f"n{i}" / "x.parquet"))
            assert info.rows == 3
            assert info.format == "parquet"
            assert pq.read_table(info.uri).to_pydict() == table.to_pydict()
    with pytest.raises(TypeError):
        persist_frame(object(), str(tmp_path / "bad.parquet"))
    assert not (tmp_path / "bad.parquet").exists()


# ----------------------------------------------------------------------------- remote paths


def test_remote_paths_through_fsspec(ctx, people):
    import fsspec

    url = "memory://odibi-test/ds/people.parquet"
    info = persist_frame(people, url)
    assert info.rows == 3
    fs = fsspec.filesystem("memory")
    assert fs.exists(url)
    assert [p for p in fs.find("memory://odibi-test") if ".tmp" in p] == []
    assert rows(ctx.read(url)) == PEOPLE_ROWS
    ctx.register_temp("remote", DatasetRef(paths=(url,)))
    assert ctx.execute_sql("SELECT count(*) FROM remote").fetchall() == [(3,)]
    csv_url = "memory://odibi-test/ds/people.csv"
    ctx.write(people, csv_url)
    ctx.write(people, csv_url, mode="append")
    assert len(ctx.read(csv_url).fetchall()) == 6
    fs.rm("memory://odibi-test", recursive=True)


def test_path_helpers(monkeypatch):
    assert paths.is_remote("abfs://c@acct.dfs.core.windows.net/x")
    assert paths.is_remote("az://c/x")
    assert not paths.is_remote("/data/x.csv")
    assert not paths.is_remote("file:///data/x.csv")
    assert not paths.is_remote(r"C:\data\x.csv")
    assert paths.join("abfs://c/base/", "/ds", "p.parquet") == "abfs://c/base/ds/p.parquet"
    assert paths.join("base", "ds", "p.parquet") == os.path.join("base", "ds", "p.parquet")
    assert "memory" in paths.fs_for("memory://x").protocol
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "acct")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", "k3y")
    assert paths.storage_options_for("abfss://c/x") == {"account_name": "acct", "account_key": "k3y"}
    monkeypatch.setenv(
        "AZURE_STORAGE_CONNECTION_STRING",
        "AccountName=dev;AccountKey=kk;BlobEndpoint=http://127.0.0.1:10000/dev",
    )
    assert paths.storage_options_for("az://c/x") == {
        "connection_string": "AccountName=dev;AccountKey=kk;BlobEndpoint=http://127.0.0.1:10000/dev"
    }
    delta_opts = paths.delta_storage_options("az://c/x")
    assert delta_opts["azure_storage_account_name"] == "dev"
    assert delta_opts["allow_http"] == "true"
    assert paths.storage_options_for("/local/x") == {}


# ----------------------------------------------------------------------------- secrets


def test_secrets_mapping_callable_env_and_missing(monkeypatch):
    monkeypatch.setenv("ODIBI_TEST_SECRET", "from-env")
    monkeypatch.delenv("ODIBI_TEST_MISSING", raising=False)
    with PandasDuckDBContext(secrets={"DB_PASSWORD": "hunter2"}) as c:
        assert c.get_secret("DB_PASSWORD") == "hunter2"
        assert c.get_secret("ODIBI_TEST_SECRET") == "from-env"
    with PandasDuckDBContext(secrets=lambda k: "cb-" + k if k.startswith("X") else None) as c:
        assert c.get_secret("XKEY") == "cb-XKEY"
        assert c.get_secret("ODIBI_TEST_SECRET") == "from-env"
        with pytest.raises(KeyError) as err:
            c.get_secret("ODIBI_TEST_MISSING")
    assert isinstance(err.value, SecretNotFoundError)

    def strict_store(key: str) -> str:
        return {"ONLY": "x"}[key]

    with PandasDuckDBContext(secrets=strict_store) as c:
        assert c.get_secret("ONLY") == "x"
        assert c.get_secret("ODIBI_TEST_SECRET") == "from-env"
    assert "ODIBI_TEST_MISSING" in str(err.value)
    assert "from-env" not in str(err.value)


# ----------------------------------------------------------------------------- resource


def test_resource_context_settings_and_close(tmp_path):
    engine = PandasDuckDBEngine(threads=1, memory_limit="512MB", temp_directory=str(tmp_path / "spill"))
    with engine.context() as c:
        settings = dict(
            c.conn.execute(
                "SELECT name, value FROM duckdb_settings() WHERE name IN ('threads', 'memory_limit')"
            ).fetchall()
        )
        assert settings["threads"] == "1"
        assert settings["memory_limit"].startswith(("488", "512"))
        conn = c.conn
    with pytest.raises(duckdb.Error):
        conn.execute("SELECT 1")


def test_default_context_uses_all_threads():
    with PandasDuckDBEngine().context() as c:
        threads = c.conn.execute("SELECT current_setting('threads')").fetchall()[0][0]
    assert int(threads) == os.cpu_count()


def test_resource_in_a_dagster_asset(tmp_path, people):
    src = tmp_path / "in.csv"
    people.to_csv(src, index=False)
    out = tmp_path / "out.parquet"

    @dg.asset
    def silver(engine: PandasDuckDBEngine) -> dg.MaterializeResult:
        with engine.context() as c:
            c.register_temp("bronze", c.read(str(src)))
            info = c.persist(c.execute_sql("SELECT * FROM bronze WHERE amount > 1"), str(out))
        return dg.MaterializeResult(metadata={"dagster/row_count": info.rows})

    result = dg.materialize([silver], resources={"engine": PandasDuckDBEngine(threads=1)})
    assert result.success
    mat = result.asset_materializations_for_node("silver")[0]
    assert mat.metadata["dagster/row_count"].value == 2
    assert pq.read_table(out).num_rows == 2


def test_contexts_of_a_process_keep_their_frames_to_themselves(people):
    """Step contexts share one in-memory database per process (a connection each): what one
    step registers is invisible to another, before and after it closes."""
    first, second = PandasDuckDBContext(), PandasDuckDBContext()
    try:
        first.register_temp("people", people)
        first.conn.execute("CREATE TEMP VIEW adults AS SELECT * FROM people WHERE amount >= 10")
        assert first.row_count(first.execute_sql("SELECT * FROM people")) == 3
        for name in ("people", "adults"):
            with pytest.raises(duckdb.CatalogException):
                second.execute_sql(f"SELECT * FROM {name}").fetchall()
        second.register_temp("people", people.head(1))  # same name, its own frame
        assert second.row_count(second.execute_sql("SELECT * FROM people")) == 1
        assert first.row_count(first.execute_sql("SELECT * FROM people")) == 3
    finally:
        first.close()
    third = PandasDuckDBContext()
    try:
        with pytest.raises(duckdb.CatalogException):
            third.execute_sql("SELECT * FROM adults").fetchall()
    finally:
        second.close()
        third.close()


def test_a_closed_or_broken_shared_database_is_replaced():
    from odibi_dagster.engines import pandas_duckdb

    ctx = PandasDuckDBContext(threads=1)
    ctx.close()
    for database in list(pandas_duckdb._DATABASES.values()):
        database.close()  # what a fatal DuckDB error leaves behind: a database that refuses queries
    again = PandasDuckDBContext(threads=1)
    try:
        assert again.execute_sql("SELECT 42").fetchall() == [(42,)]
    finally:
        again.close()


def test_a_format_of_the_table_the_engine_lacks_names_the_ones_it_has(ctx, people, tmp_path):
    with pytest.raises(ValueError, match="format 'avro' is not supported by the pandas engine; its readers: csv"):
        ctx.read(str(tmp_path / "x.avro"))
    with pytest.raises(ValueError, match="format 'table' is not supported by the pandas engine"):
        ctx.write(people, "tbl", source_type="table")
    assert ctx.source_format("q", {"source_type": "jdbc"}) == "sql"


def test_cap_copy_memory_bounds_only_its_own_connection(tmp_path):
    from odibi_dagster.engines.pandas_duckdb import PandasDuckDBContext

    setting = "SELECT current_setting('operator_memory_limit')"
    with PandasDuckDBContext() as copying, PandasDuckDBContext() as other:
        copying.cap_copy_memory()
        assert copying.conn.sql(setting).fetchall()[0][0] is not None
        assert other.conn.sql(setting).fetchall()[0][0] is None  # the shared database is untouched
        src = tmp_path / "in.csv"
        src.write_text("id,name\n1,a\n2,NA\n")
        info = copying.persist(copying.read(str(src)), str(tmp_path / "out.parquet"))
        assert info.rows == 2
        assert copying.conn.sql(f"SELECT * FROM '{tmp_path / 'out.parquet'}'").fetchall() == [(1, "a"), (2, None)]
