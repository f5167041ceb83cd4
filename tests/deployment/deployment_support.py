"""A production-like Dagster deployment on loopback, started and stopped by the deployment test.

Every server runs in its own process group with its own log file (``<root>/logs/<name>.log``),
so a failing test can print the tail of each log (:meth:`Deployment.log_tails`):

* PostgreSQL (a throw-away cluster) behind the instance's run, event-log and schedule storage;
* Azurite (blob storage) and Redis (the Celery broker);
* one ``dagster api grpc`` server per code location, ``dagster-webserver`` and ``dagster-daemon``
  against one ``dagster.yaml`` and a workspace listing the gRPC servers;
* Celery workers (``dagster-celery worker start``), each from its own folder with its own copy of
  the code location and its own ``DAGSTER_HOME``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support import free_port, graphql, stop_group, wait_for

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
REPOSITORY = "__repository__"

DAGSTER_YAML = """\
telemetry: {{enabled: false}}
storage:
  postgres:
    postgres_db:
      hostname: 127.0.0.1
      port: {port}
      username: {user}
      password: {{env: DAGSTER_PG_PASSWORD}}
      db_name: postgres
      # dagster-postgres is written for psycopg2; SQLAlchemy 2.1 maps a bare postgresql:// to
      # psycopg 3, on which its event log fails (NOTIFY with a bound parameter).
      scheme: postgresql+psycopg2
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config: {{dequeue_interval_seconds: 1, max_concurrent_runs: 6}}
run_monitoring: {{enabled: true, poll_interval_seconds: 30}}
# Steps run on workers that share no disk with the webserver: a local compute-log folder would
# split the logs over the hosts (a real deployment uses a blob-store compute log manager).
compute_logs:
  module: dagster._core.storage.noop_compute_log_manager
  class: NoOpComputeLogManager
sensors: {{use_threads: true, num_workers: 2}}
"""


@dataclass
class Server:
    """A server process in its own process group, logging to ``log``."""

    name: str
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            out.write(f"\n===== start {time.strftime('%H:%M:%S')}: {' '.join(self.argv)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)
            self.proc = None

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def grpc_serving(port: int) -> bool:
    """Whether a Dagster gRPC code server answers on ``port``."""
    from dagster._grpc.client import DagsterGrpcClient

    try:
        return DagsterGrpcClient(port=port, host="127.0.0.1").ping("odibi")["echo"] == "odibi"
    except Exception:
        return False


@dataclass
class Deployment:
    """The running deployment: its servers, their ports and the environment they share."""

    root: Path
    env: dict[str, str]
    servers: dict[str, Server] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)  # what later tests need from earlier ones

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.ports['webserver']}"

    def add(self, name: str, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> Server:
        server = Server(name, argv, cwd, {**self.env, **(env or {})}, self.root / "logs" / f"{name}.log")
        self.servers[name] = server.start()
        return server

    def code_server(self, location: str, target: list[str], cwd: Path, env: dict[str, str] | None = None) -> Server:
        """``dagster api grpc`` for one code location on a fixed port (a restart keeps it)."""
        port = self.ports.setdefault(location, free_port())
        argv = [str(BIN / "dagster"), "api", "grpc", "-h", "127.0.0.1", "-p", str(port), *target]
        return self.add(location, [*argv, "--location-name", location], cwd, env)

    def wait_code_server(self, location: str, timeout: float = 120) -> None:
        server = self.servers[location]

        def up() -> bool:
            if not server.alive():
                pytest.fail(f"code server {location} exited:\n{server.tail()}")
            return grpc_serving(self.ports[location])

        wait_for(up, timeout, f"code server {location}")

    def restart(self, name: str) -> Server:
        server = self.servers[name]
        server.stop()
        return server.start()

    def query(self, text: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return graphql(self.base, text, variables)

    def workspace_loaded(self) -> bool:
        with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError, AssertionError):
            data = self.query(
                "{ workspaceOrError { ... on Workspace { locationEntries { name "
                "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
            )
            entries = data["workspaceOrError"]["locationEntries"]
            errors = [e for e in entries if (e["locationOrLoadError"] or {}).get("__typename") == "PythonError"]
            if errors:
                pytest.fail(f"code locations failed to load: {json.dumps(errors)[:3000]}")
            return bool(entries) and all(
                (e["locationOrLoadError"] or {}).get("__typename") == "RepositoryLocation" for e in entries
            )
        return False

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(f"----- {name} ({s.log})\n{s.tail(lines)}" for name, s in self.servers.items())

    def stop_all(self) -> None:
        """Stop every server's process group, all at once (one by one takes half a minute)."""
        stop_groups([s.proc for s in self.servers.values() if s.proc is not None])
        for server in self.servers.values():
            server.proc = None


def stop_groups(procs: list[subprocess.Popen[bytes]]) -> None:
    """Like ``support.stop_group`` for several process groups at once: SIGINT to all, then
    SIGTERM and SIGKILL to those still running."""
    import signal

    pending = list(procs)
    for sig, wait in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        for proc in pending:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        deadline = time.monotonic() + wait
        while pending and time.monotonic() < deadline:
            pending = [p for p in pending if p.poll() is None]
            time.sleep(0.1)
        if not pending:
            break
    for proc in procs:  # leaders gone: make sure their children are too
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def write_dagster_yaml(home: Path, pg: dict[str, Any]) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "dagster.yaml"
    path.write_text(DAGSTER_YAML.format(port=pg["port"], user=pg["user"]))
    return path


@contextlib.contextmanager
def redis_server(log: Path) -> Iterator[str]:
    """Debian's ``redis-server`` on a free loopback port, in memory only; yields its URL."""
    binary = "/usr/bin/redis-server"
    if not Path(binary).exists():
        pytest.fail("redis-server not found: run scripts/test-deps (Debian's redis-server package)")
    port = free_port()
    server = Server(
        "redis",
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        log.parent,
        dict(os.environ),
        log,
    ).start()
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)

        def up() -> bool:
            with contextlib.suppress(redis.exceptions.ConnectionError):
                return bool(client.ping())
            return False

        wait_for(up, 30, "redis-server")
        yield f"redis://127.0.0.1:{port}"
    finally:
        server.stop()
