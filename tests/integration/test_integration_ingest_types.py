"""Ingest steps of ODIBI's other types: ``function`` (a custom reader) and ``api`` (JSON over HTTP)."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from odibi_dagster import build_definitions

TOKEN = "api-t0ken-4d3c2b1a"


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.send_response(401)
            self.end_headers()
            return
        body = json.dumps({"data": {"items": [{"id": 1, "v": {"x": 2}}, {"id": 2, "v": {"x": 5}}]}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/items"
    finally:
        server.shutdown()
        server.server_close()


def _run(cfg: Path, job: str) -> tuple[dg.ExecuteInProcessResult, dg.DagsterInstance]:
    instance = dg.DagsterInstance.ephemeral()
    result = build_definitions(cfg).resolve_job_def(job).execute_in_process(instance=instance, raise_on_error=False)
    return result, instance


def test_api_ingest_reads_json_records_with_a_secret_header(
    tmp_path: Path, api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_AUTH", f"Bearer {TOKEN}")
    cfg = tmp_path / "api.json"
    cfg.write_text(
        json.dumps(
            [
                {
                    "layer": "ingest",
                    "name": "fetch",
                    "type": "api",
                    "value": api_url,
                    "params": {"record_path": "data.items", "headers": {"Authorization": {"secret": "API_AUTH"}}},
                    "outputs": {"data": "items"},
                },
                {"layer": "store", "name": "save", "value": "out/items.csv", "inputs": {"data": "items"}},
            ]
        )
    )
    result, instance = _run(cfg, "api")
    assert result.success
    df = pd.read_csv(tmp_path / "out" / "items.csv")
    assert list(df.columns) == ["id", "v.x"] and df["v.x"].tolist() == [2, 5]
    assert TOKEN not in "\n".join(str(r) for r in instance.all_logs(result.run_id))


def test_api_ingest_failure_names_the_step(tmp_path: Path, api_url: str) -> None:
    cfg = tmp_path / "api_fail.json"
    cfg.write_text(
        json.dumps(
            [
                {"layer": "ingest", "name": "fetch", "type": "api", "value": api_url, "outputs": {"data": "items"}},
            ]
        )
    )
    result, _ = _run(cfg, "api_fail")
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_key.endswith("__fetch")
    assert "401" in str(failure.event_specific_data.error)


def test_function_ingest_is_a_custom_reader(tmp_path: Path) -> None:
    mod = f"readers_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{mod}.py").write_text(
        "import pandas as pd\n"
        "def generate(rows, prefix='r'):\n"
        "    return pd.DataFrame({'id': range(rows), 'label': [f'{prefix}{i}' for i in range(rows)]})\n"
    )
    cfg = tmp_path / "fn.json"
    cfg.write_text(
        json.dumps(
            [
                {
                    "layer": "ingest",
                    "name": "gen",
                    "type": "function",
                    "value": f"{mod}.generate",
                    "params": {"rows": 7, "prefix": "x"},
                    "outputs": {"data": "generated"},
                },
                {
                    "layer": "transform",
                    "name": "evens",
                    "type": "sql",
                    "value": "SELECT * FROM g WHERE id % 2 = 0",
                    "inputs": {"g": "generated"},
                    "outputs": {"data": "even"},
                },
            ]
        )
    )
    result, _ = _run(cfg, "fn")
    assert result.success
    rows = {
        m.materialization.asset_key.path[-1]: m.materialization.metadata["dagster/row_count"].value
        for m in result.get_asset_materialization_events()
    }
    assert rows == {"generated": 7, "even": 4}
