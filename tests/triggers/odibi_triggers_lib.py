"""Helpers of the trigger tests: write pipelines and data into a temp project, build
definitions, evaluate sensors and schedules, run jobs, and drive a real Dagster webserver
and daemon in their own process group."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from odibi_dagster import build_definitions

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
ODIBI_CLI = str(VENV_BIN / "odibi-dagster")
STORES = ["north", "south", "east", "west"]


def write_yaml(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return path


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def sales_rows(day: str, n: int, first_id: int = 0) -> list[list[Any]]:
    return [[first_id + i, STORES[i % 4], round(10 + i * 1.5, 2), day] for i in range(n)]


def write_daily_data(root: Path, days: Sequence[str], rows_per_day: Callable[[int], int] = lambda i: 5 + i) -> None:
    """``data/daily/<day>/sales.csv`` with ``rows_per_day(i)`` rows on the i-th day."""
    for i, day in enumerate(days):
        write_csv(
            root / "data" / "daily" / day / "sales.csv",
            ["sale_id", "store", "amount", "sale_date"],
            sales_rows(day, rows_per_day(i), first_id=i * 1000),
        )


def days(start: str, n: int) -> list[str]:
    import datetime as dt

    first = dt.date.fromisoformat(start)
    return [(first + dt.timedelta(days=i)).isoformat() for i in range(n)]


def daily_pipeline(root: Path, name: str = "daily", extra_steps: Sequence[dict[str, Any]] = (), **extra: Any) -> Path:
    """A daily-partitioned pipeline: ingest the day's CSV, summarise it (SQL with the partition
    variables), store one CSV per day."""
    doc: dict[str, Any] = {
        "pipeline": name,
        "partitions": {"type": "daily", "start": "2024-01-01", "end": "2024-01-11"},
        **extra,
        "steps": [
            {
                "layer": "ingest",
                "name": "ingest_sales",
                "value": "data/daily/{{ partition_key }}/sales.csv",
                "outputs": {"data": "bronze"},
            },
            {
                "layer": "transform",
                "name": "summarise",
                "type": "sql",
                "value": "SELECT {{ partition_key }} AS pk, {{ partition_start }} AS ps, "
                "{{ partition_end }} AS pe, COUNT(*) AS n, ROUND(SUM(amount), 2) AS revenue FROM bronze",
                "inputs": {"bronze": "bronze"},
                "outputs": {"data": "summary"},
            },
            {
                "layer": "store",
                "name": "save_summary",
                "value": "out/{{ partition_key }}.csv",
                "inputs": {"data": "summary"},
            },
            *extra_steps,
        ],
    }
    return write_yaml(root / f"{name}.yaml", doc)


def materializations(instance: dg.DagsterInstance, key: dg.AssetKey) -> list[dg.AssetMaterialization]:
    records = instance.fetch_materializations(key, limit=1000).records
    return [r.asset_materialization for r in records if r.asset_materialization is not None]


def event_types(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [r.dagster_event.event_type_value for r in instance.all_logs(run_id) if r.dagster_event is not None]


def evaluate_sensor(defs: dg.Definitions, name: str, instance: dg.DagsterInstance, cursor: str | None = None) -> Any:
    """One tick of sensor ``name`` (run requests, cursor, skip message, dynamic partition requests)."""
    sensor = defs.resolve_sensor_def(name)
    # Like the daemon, a persistent instance comes with its ref (dynamic partitions need it).
    ref = instance.get_ref() if instance.is_persistent else None
    context = dg.build_sensor_context(instance=instance, instance_ref=ref, cursor=cursor, definitions=defs)
    return sensor.evaluate_tick(context)


def launch(
    defs: dg.Definitions, job_name: str, instance: dg.DagsterInstance, request: dg.RunRequest
) -> dg.ExecuteInProcessResult:
    """Execute what a sensor/schedule asked for (run config, partition, tags) in process."""
    job = defs.resolve_job_def(job_name)
    return job.execute_in_process(
        instance=instance,
        run_config=request.run_config,
        partition_key=request.partition_key,
        tags=dict(request.tags),
        raise_on_error=False,
    )


def build(*paths: Path | str) -> dg.Definitions:
    return build_definitions(*paths)


# --------------------------------------------------------------------------- real Dagster processes


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.5, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class DagsterProcess:
    """``dagster-webserver`` / ``dagster-daemon run`` in its own process group (killed whole)."""

    def __init__(self, args: list[str], home: Path, cwd: Path, log: Path, env: dict[str, str] | None = None):
        env = dict(os.environ, DAGSTER_HOME=str(home), PYTHONUNBUFFERED="1", **(env or {}))
        env.pop("ODIBI_BASE_DIR", None)
        self.log = log
        self._fh = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        # Children (code servers, runs) share the group; make sure none is left behind.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._fh.close()

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def start_webserver(home: Path, workspace: Path, port: int, log: Path) -> DagsterProcess:
    proc = DagsterProcess(
        [str(VENV_BIN / "dagster-webserver"), "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)],
        home,
        workspace.parent,
        log,
    )
    try:
        wait_for(
            lambda: _http_ok(f"http://127.0.0.1:{port}/server_info") or not proc.alive(),
            120,
            what="dagster-webserver",
        )
        if not proc.alive():
            raise RuntimeError(f"dagster-webserver exited:\n{proc.tail()}")
    except BaseException:
        proc.stop()
        raise
    return proc


# An instance for a webserver and daemon: runs queue and are taken every second, three at once.
DAEMON_DAGSTER_YAML = """\
telemetry: {enabled: false}
run_queue:
  max_concurrent_runs: 3
  dequeue_interval_seconds: 1
"""

DEFS_PY = """\
from pathlib import Path

import dagster as dg

from odibi_dagster import build_definitions

# In-process executor: each run is one process (the daemon's run launcher), no process per step.
defs = build_definitions(Path(__file__).parent / "pipelines", executor=dg.in_process_executor)
"""


def write_deployment(root: Path, location: str) -> tuple[Path, Path]:
    """``root/home/dagster.yaml`` (:data:`DAEMON_DAGSTER_YAML`), and a code location ``location``
    building ``root/pipelines`` (``defs.py`` and ``workspace.yaml``); returns (home, workspace)."""
    home = root / "home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text(DAEMON_DAGSTER_YAML)
    (root / "defs.py").write_text(DEFS_PY)
    workspace = root / "workspace.yaml"
    workspace.write_text(
        f"load_from:\n  - python_file: {{relative_path: defs.py, working_directory: ., location_name: {location}}}\n"
    )
    return home, workspace


def start_daemon(home: Path, workspace: Path, log: Path, env: dict[str, str] | None = None) -> DagsterProcess:
    """``dagster-daemon run``; ``env`` adds variables (e.g. ``FRESHNESS_DAEMON_INTERVAL_SECONDS``)."""
    return DagsterProcess(
        [str(VENV_BIN / "dagster-daemon"), "run", "-w", str(workspace)], home, workspace.parent, log, env
    )


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def graphql(port: int, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        out = json.loads(resp.read())
    if out.get("errors"):
        raise RuntimeError(f"GraphQL errors: {out['errors']}")
    return out["data"]


LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on InvalidSubsetError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}
"""
