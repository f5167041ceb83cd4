"""Database passwords never reach Dagster's storage, the UI, logs, tracker files or stories.

A real PostgreSQL with password authentication; the pipeline connects three ways (a URL with
an inline password on a connect step, one on an ingest step, and a password given as
``{"secret": NAME}`` in a connect step's params), runs from a real ``dagster dev`` launched
through GraphQL, and then every file and SQLite cell it left, and everything the servers
printed, is searched for the password."""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import time
import zlib
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from support import dagster_dev, graphql, postgres_server

PASSWORD = f"S3cr3tP4ss{secrets.token_hex(6)}"


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory):
    with postgres_server(tmp_path_factory.mktemp("pg"), PASSWORD) as server:
        engine = sa.create_engine(server["url"])
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE sales (id int, store text, amount numeric)"))
            conn.execute(sa.text("INSERT INTO sales VALUES (1, 'north', 10.5), (2, 'south', 20), (3, 'north', 7)"))
        engine.dispose()
        yield server


def _project(root: Path, pg: dict, executor: str) -> Path:
    hostport = f"127.0.0.1:{pg['port']}"
    inline = f"postgresql://{pg['user']}:{PASSWORD}@{hostport}/postgres"
    (root / "pipelines").mkdir(parents=True)
    (root / "pipelines" / "db.yaml").write_text(
        yaml.safe_dump(
            {
                "pipeline": "db_sales",
                "executor": executor,
                "steps": [
                    {"name": "warehouse", "layer": "connect", "value": inline},
                    {
                        "name": "warehouse_by_secret",
                        "layer": "connect",
                        "value": f"postgresql://{pg['user']}@{hostport}/postgres",
                        "params": {"password": {"secret": "ODIBI_TEST_DB_PW"}},
                    },
                    {
                        "name": "via_connection",
                        "layer": "ingest",
                        "value": "sales",
                        "params": {"connection": "warehouse"},
                        "outputs": {"data": "a"},
                    },
                    {
                        "name": "via_secret",
                        "layer": "ingest",
                        "value": "SELECT * FROM sales WHERE store = 'north'",
                        "params": {"connection": "warehouse_by_secret"},
                        "outputs": {"data": "b"},
                    },
                    {
                        "name": "via_url",
                        "layer": "ingest",
                        "value": inline,
                        "params": {"table": "sales"},
                        "outputs": {"data": "c"},
                    },
                    {
                        "name": "combine",
                        "layer": "transform",
                        "type": "sql",
                        "value": "SELECT 'a' AS src, * FROM a UNION ALL SELECT 'b', * FROM b "
                        "UNION ALL SELECT 'c', * FROM c",
                        "inputs": {"a": "a", "b": "b", "c": "c"},
                        "outputs": {"data": "combined"},
                        "checks": [{"not_null": ["id"]}],
                    },
                    {
                        "name": "save",
                        "layer": "store",
                        "value": "../out/combined.parquet",
                        "inputs": {"data": "combined"},
                    },
                ],
            }
        )
    )
    (root / "definitions.py").write_text(
        "from pathlib import Path\nfrom odibi_dagster import build_definitions\n\n"
        "defs = build_definitions(Path(__file__).parent / 'pipelines')\n"
    )
    (root / "workspace.yaml").write_text("load_from:\n  - python_file: definitions.py\n")
    return root


def _cells(db: Path) -> list[str]:
    """Every cell of every table of a SQLite file, as text (zlib-compressed snapshots inflated)."""
    out: list[str] = []
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for cell in row:
                    if isinstance(cell, bytes):
                        with contextlib.suppress(zlib.error):
                            cell = zlib.decompress(cell)
                        cell = cell.decode("utf-8", "replace")
                    out.append(str(cell))
    return out


def _leaks(root: Path) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        raw = path.read_bytes()
        if PASSWORD.encode() in raw or PASSWORD.encode() in _inflate(raw):
            found.append(str(path))
        if path.suffix == ".db" or raw.startswith(b"SQLite format 3"):
            found += [f"{path}: {c[:200]}" for c in _cells(path) if PASSWORD in c]
    return found


def _inflate(raw: bytes) -> bytes:
    try:
        return zlib.decompress(raw)
    except zlib.error:
        return b""


RESOURCES_AND_ASSETS = """
query {
  repositoriesOrError { ... on RepositoryConnection { nodes {
    allTopLevelResourceDetails { name description configFields { name description defaultValueAsJson }
                                 configuredValues { key value type } }
    assetNodes { assetKey { path } description metadataEntries { label __typename
      ... on TextMetadataEntry { text } ... on JsonMetadataEntry { jsonString } } }
  } } }
}
"""

LAUNCH = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }
"""

STATUS = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"


@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
def test_no_password_reaches_dagster_the_ui_or_odibi_files(
    tmp_path: Path, postgres: dict, executor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Multiprocess: each step process resolves the inline password from the config it loaded too.
    project = _project(tmp_path / "project", postgres, executor)
    home = tmp_path / "home"
    monkeypatch.setenv("ODIBI_TEST_DB_PW", PASSWORD)  # the secret the connect step names
    with dagster_dev(project, home) as base:
        served = graphql(base, RESOURCES_AND_ASSETS)
        assert PASSWORD not in json.dumps(served)
        nodes = served["repositoriesOrError"]["nodes"][0]
        shown = {r["name"]: r for r in nodes["allTopLevelResourceDetails"]}
        # The UI still shows where the connection goes, with the password masked.
        assert f":***@127.0.0.1:{postgres['port']}" in json.dumps(shown["db_sales__warehouse"])
        descriptions = {"/".join(n["assetKey"]["path"]): n["description"] for n in nodes["assetNodes"]}
        assert ":***@" in descriptions["db_sales/c"]

        launched = graphql(
            base,
            LAUNCH,
            {
                "params": {
                    "selector": {
                        "repositoryLocationName": "definitions.py",
                        "repositoryName": "__repository__",
                        "jobName": "db_sales",
                    },
                    "runConfigData": {},
                }
            },
        )["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        deadline = time.monotonic() + 180
        while (status := graphql(base, STATUS, {"id": run_id})["runOrError"]["status"]) not in (
            "SUCCESS",
            "FAILURE",
            "CANCELED",
        ):
            assert time.monotonic() < deadline, "run did not finish"
            time.sleep(0.5)
        assert status == "SUCCESS", (home / "dagster_dev.log").read_text()[-4000:]
    combined = pd.read_parquet(project / "out" / "combined.parquet")
    assert combined.groupby("src").size().to_dict() == {"a": 3, "b": 2, "c": 3}
    assert list(project.rglob(".odibi/stories/*/*/story.html")), "the run wrote its story"
    # Everything the run left (DAGSTER_HOME with its SQLite storage, .odibi/ with tracker files and
    # stories, the output, dagster dev's log), apart from the config that holds the password.
    leaks = _leaks(tmp_path)
    assert leaks == [str(project / "pipelines" / "db.yaml")], leaks
    assert PASSWORD not in (home / "dagster_dev.log").read_text()
