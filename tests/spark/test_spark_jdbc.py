"""JDBC against a real database: SQLite through the org.xerial:sqlite-jdbc jar from Maven Central."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from odibi_dagster.engines.spark import SparkEngineContext

pytestmark = pytest.mark.spark


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, spend REAL)")
        conn.executemany("INSERT INTO customers VALUES (?, ?, ?)", [(1, "ann", 10.0), (2, "bob", 25.5), (3, "cy", 3.0)])
    return path


def test_read_by_table_and_by_query(ctx: SparkEngineContext, db: Path) -> None:
    url = f"jdbc:sqlite:{db}"
    df = ctx.read("customers", source_type="jdbc", jdbc_url=url, table="customers")
    assert sorted(tuple(r) for r in df.collect()) == [(1, "ann", 10.0), (2, "bob", 25.5), (3, "cy", 3.0)]
    top = ctx.read("q", format="jdbc", url=url, query="SELECT name FROM customers WHERE spend > 5")
    assert sorted(r.name for r in top.collect()) == ["ann", "bob"]
    # the source is the table name when no table/query is given (ODIBI's read("users", ...))
    assert ctx.read("customers", source_type="jdbc", url=url, driver="org.sqlite.JDBC").count() == 3
    # ODIBI's sqlite source type: the source is the database file
    assert ctx.read(str(db), source_type="sqlite", table="customers").count() == 3
    assert ctx.read(str(db), query="SELECT COUNT(*) AS n FROM customers").first().n == 3


def test_write_overwrite_and_append(ctx: SparkEngineContext, db: Path) -> None:
    url = f"jdbc:sqlite:{db}"
    df = ctx.spark.createDataFrame([(10, "x"), (11, "y")], "id long, label string")
    info = ctx.write(df, "labels", source_type="jdbc", jdbc_url=url, table="labels", mode="overwrite")
    assert info.format == "jdbc" and info.rows == 2 and info.uri == f"{url}#labels"
    info = ctx.write(df.limit(1), "labels", source_type="jdbc", jdbc_url=url, table="labels", mode="append")
    assert info.rows == 1
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0] == 3
    ctx.write(df, str(db), source_type="sqlite", table="labels", mode="overwrite")
    with sqlite3.connect(db) as conn:
        assert sorted(conn.execute("SELECT id, label FROM labels").fetchall()) == [(10, "x"), (11, "y")]
    with pytest.raises(ValueError, match="needs format delta"):
        ctx.write(df, "labels", source_type="jdbc", jdbc_url=url, table="labels", mode="merge", keys="id")


def test_password_comes_from_secrets_and_never_shows(
    ctx: SparkEngineContext, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ODIBI_TEST_DB_PASS", "s3cr3t-pw!")
    assert ctx.get_secret("ODIBI_TEST_DB_PASS") == "s3cr3t-pw!"
    # SQLite ignores credentials: the read succeeds with the secret passed through
    ok = ctx.read(
        "customers",
        source_type="jdbc",
        jdbc_url=f"jdbc:sqlite:{db}",
        table="customers",
        user="admin",
        password={"secret": "ODIBI_TEST_DB_PASS"},
    )
    assert ok.count() == 3
    # a failing connection: the error names the URL but neither the password param nor the URL's
    with pytest.raises(RuntimeError) as err:
        ctx.read(
            "users",
            source_type="jdbc",
            jdbc_url="jdbc:postgresql://127.0.0.1:1/db?user=admin&password=url-pw-123",
            table="users",
            user="admin",
            password=ctx.get_secret("ODIBI_TEST_DB_PASS"),
        )
    text = str(err.value)
    assert "jdbc read from jdbc:postgresql://127.0.0.1:1/db" in text
    assert "s3cr3t-pw!" not in text and "url-pw-123" not in text and "password=***" in text
    assert err.value.__cause__ is None and err.value.__suppress_context__
    with pytest.raises(KeyError, match="NOT_SET_ANYWHERE"):
        ctx.get_secret("NOT_SET_ANYWHERE")
