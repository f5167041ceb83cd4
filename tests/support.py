"""Helpers shared by tests that start real servers on loopback: free ports, npm packages
installed once into a cache folder (Azurite, playwright-core), ``dagster dev`` on a copy of
the example code location, GraphQL requests to its webserver, PostgreSQL, Azurite and a
standalone Spark cluster; and the two-branch pipeline of the ``--changed-only`` tests."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Two sources, each cleaned, joined and stored: the pipeline of the `--changed-only` tests.
BRANCHES: list[dict[str, Any]] = [
    {"layer": "ingest", "name": "read_a", "value": "data/a.csv", "outputs": {"data": "raw_a"}},
    {"layer": "ingest", "name": "read_b", "value": "data/b.csv", "outputs": {"data": "raw_b"}},
    {
        "layer": "transform",
        "name": "clean_a",
        "type": "sql",
        "value": "SELECT id, value FROM a WHERE value > 0",
        "inputs": {"a": "raw_a"},
        "outputs": {"data": "clean_a"},
    },
    {
        "layer": "transform",
        "name": "clean_b",
        "type": "sql",
        "value": "SELECT id, value FROM b WHERE value > 0",
        "inputs": {"b": "raw_b"},
        "outputs": {"data": "clean_b"},
    },
    {
        "layer": "transform",
        "name": "joined",
        "type": "sql",
        "value": "SELECT a.id, a.value AS a_value, b.value AS b_value FROM a JOIN b USING (id) ORDER BY a.id",
        "inputs": {"a": "clean_a", "b": "clean_b"},
        "outputs": {"data": "joined"},
    },
    {"layer": "store", "name": "save", "value": "out/joined.parquet", "inputs": {"data": "joined"}},
]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def npm_install(folder: Path, package: str, installed: Path, timeout: float = 600) -> Path:
    """``npm install package`` into ``folder`` unless ``installed`` already exists; returns ``installed``.

    The folder is a cache shared by runs (``~/.cache/odibi_dagster/...``), so the registry
    is reached only on the first run of a machine. Fails the test, naming npm's error, when
    npm is missing or the install does not produce ``installed``.
    """
    if installed.exists():
        return installed
    if shutil.which("npm") is None:
        pytest.fail(f"npm is needed to install {package}")
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "package.json"
    if not manifest.exists():
        manifest.write_text(f'{{"name": "odibi-{folder.name}", "private": true}}\n')
    proc = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", package],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0 or not installed.exists():
        pytest.fail(f"npm install {package} failed: {proc.stderr[-2000:]}")
    return installed


CHROMIUM = "/usr/bin/chromium"
PLAYWRIGHT_DIR = Path(os.environ.get("ODIBI_PLAYWRIGHT_DIR", Path.home() / ".cache" / "odibi_dagster" / "playwright"))


def ensure_chromium() -> str:
    """Debian's Chromium; installed with apt-get when missing. Fails (never skips) without it."""
    if not Path(CHROMIUM).exists():
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                pytest.fail(f"cannot install chromium ({' '.join(cmd)}): {proc.stderr[-2000:]}")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no browser at {CHROMIUM}")
    return CHROMIUM


def ensure_playwright_core() -> Path:
    """playwright-core (the library only; the browser is Debian's) in a cached npm directory."""
    module = PLAYWRIGHT_DIR / "node_modules" / "playwright-core"
    npm_install(PLAYWRIGHT_DIR, "playwright-core@1", module / "package.json", timeout=300)
    if shutil.which("node") is None:
        pytest.fail("node is needed to drive the browser")
    return module


REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).parent / "dagster")


def example_copy(dest: Path) -> Path:
    """A copy of the example code location (``definitions/``, without working files and outputs)
    and a ``workspace.yaml`` loading it, so a test's runs leave the repository untouched."""
    ignore = shutil.ignore_patterns(".odibi", "output", "__pycache__")
    shutil.copytree(REPO / "definitions", dest / "definitions", ignore=ignore)
    (dest / "workspace.yaml").write_text(
        "load_from:\n  - python_file:\n      relative_path: definitions/definitions.py\n"
        "      working_directory: definitions\n      location_name: odibi_examples\n"
    )
    return dest


def graphql(base: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """One GraphQL request to a Dagster webserver; fails the test on GraphQL errors."""
    req = urllib.request.Request(
        f"{base}/graphql",
        headers={"Content-Type": "application/json"},
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
    )
    with urllib.request.urlopen(req, timeout=60) as res:
        body = json.loads(res.read())
    assert "errors" not in body, body
    return body["data"]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str = "condition", *, interval: float = 0.5) -> Any:
    """Poll ``predicate`` until it returns something truthy, and return that; ``TimeoutError``
    naming ``what`` after ``timeout`` seconds (tests catch it to add the servers' logs)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server started with ``start_new_session`` and everything it started (``dagster dev``'s
    webserver, daemon, code servers and run workers outlive a plain SIGTERM to the leader)."""
    for sig, wait in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the leader is gone; make sure its children are too
        return


@contextlib.contextmanager
def dagster_dev(workdir: Path, home: Path, *, timeout: float = 180) -> Iterator[str]:
    """``dagster dev -w workspace.yaml`` in ``workdir`` on loopback, with its daemon, in its own
    process group and a throw-away ``DAGSTER_HOME`` (with the quick start's ``scripts/dagster.yaml``
    unless ``home`` has a ``dagster.yaml``); yields the webserver's URL once the code
    location has loaded. The log is ``home/dagster_dev.log``."""
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copyfile(REPO / "scripts" / "dagster.yaml", home / "dagster.yaml")  # the quick start's instance
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("ODIBI_BASE_DIR",)} | {"DAGSTER_HOME": str(home)}
    log_path = home / "dagster_dev.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [DAGSTER, "dev", "-w", "workspace.yaml", "-p", str(port), "-h", "127.0.0.1"],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"dagster dev exited: {log_path.read_text()[-3000:]}")
            with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError, AssertionError):
                data = graphql(
                    base,
                    "{ workspaceOrError { ... on Workspace { locationEntries { name "
                    "locationOrLoadError { __typename } } } } }",
                )
                entries = data["workspaceOrError"]["locationEntries"]
                if entries and all(
                    e["locationOrLoadError"] and e["locationOrLoadError"]["__typename"] == "RepositoryLocation"
                    for e in entries
                ):
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"dagster dev did not load its workspace: {log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base
    finally:
        stop_group(proc)


@contextlib.contextmanager
def postgres_server(root: Path, password: str, *, user: str = "odibi") -> Iterator[dict[str, Any]]:
    """A throw-away PostgreSQL cluster on 127.0.0.1 with password (SCRAM) authentication.

    Uses Debian's ``postgresql`` binaries (``scripts/test-deps`` installs them). As root,
    the cluster runs as the ``postgres`` user, since ``initdb`` refuses to run as root.
    Yields ``host``, ``port``, ``user``, ``password`` and ``url`` (a SQLAlchemy URL).
    """
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL binaries not found under /usr/lib/postgresql: run scripts/test-deps")
    bindir = found[-1].parent
    as_root = os.geteuid() == 0
    if as_root:
        # pytest's temp folders are private to root: the cluster gets its own, owned by postgres.
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="odibi-pg-"))
    root.mkdir(parents=True, exist_ok=True)
    data, sockets, pwfile = root / "data", root / "sockets", root / "pwfile"
    sockets.mkdir()
    pwfile.write_text(password + "\n")
    prefix: list[str] = []
    if as_root:
        import pwd

        owner = pwd.getpwnam("postgres")
        for path in (root, sockets, pwfile):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [
            *prefix,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            user,
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = free_port()
    log = open(root / "postgres.log", "wb")  # noqa: SIM115 - closed when the server stops
    proc = subprocess.Popen(
        [
            *prefix,
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-h",
            "127.0.0.1",
            "-k",
            str(sockets),
            "-c",
            "fsync=off",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while (
            subprocess.run(
                [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True, check=False
            ).returncode
            != 0
        ):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"PostgreSQL did not start: {(root / 'postgres.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield {
            "host": "127.0.0.1",
            "port": port,
            "user": user,
            "password": password,
            "url": f"postgresql://{user}:{password}@127.0.0.1:{port}/postgres",
        }
    finally:
        stop_group(proc)  # type: ignore[arg-type]
        log.close()
        if as_root:
            shutil.rmtree(root, ignore_errors=True)


AZURITE_DIR = Path(os.environ.get("ODIBI_AZURITE_DIR", Path.home() / ".cache" / "odibi_dagster" / "azurite"))
# Azurite's documented, well-known development account key (not a secret).
AZURITE_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def new_container(connection_string: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh container on the blob store of ``connection_string``, set as the environment's
    (so ``abfs://<container>`` paths reach it on both engines); no ``ODIBI_BASE_DIR``."""
    from odibi_dagster.engines import paths

    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection_string)
    monkeypatch.delenv("ODIBI_BASE_DIR", raising=False)
    name = f"c{uuid.uuid4().hex[:12]}"
    paths.fs_for(f"abfs://{name}").mkdir(name)
    return name


@contextlib.contextmanager
def azurite_server() -> Iterator[str]:
    """A blob-only Azurite in memory on a free loopback port, in its own process group; yields
    its connection string. Azurite is installed from npm on first use (``AZURITE_DIR``)."""
    binary = npm_install(AZURITE_DIR, "azurite@3", AZURITE_DIR / "node_modules" / ".bin" / "azurite-blob")
    port = free_port()
    proc = subprocess.Popen(
        [
            str(binary),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--inMemoryPersistence",
            "--disableTelemetry",
            "--silent",
            "--skipApiVersionCheck",
            "--loose",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Azurite did not start: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
            time.sleep(0.2)
        yield (
            f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        )
    finally:
        stop_group(proc)  # node may have children: stop the whole group


def get_json(url: str, timeout: float = 5) -> Any:
    """The JSON document at ``url`` (a server's status page)."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.load(resp)


class SparkCluster:
    """A standalone Spark cluster on 127.0.0.1: one master and one worker started with
    ``spark-class`` from the pyspark install, each in its own process group, logging under
    ``root`` (``master.log``, ``worker.log``; executors' output under ``root/work``).

    :meth:`start` returns at once (the worker retries until the master is up), so the cluster
    comes up while other servers start; :meth:`wait_ready` waits for the registered worker.
    """

    HOST = "127.0.0.1"

    def __init__(self, root: Path, *, cores: int = 1, memory: str = "1g", env: dict[str, str] | None = None) -> None:
        import pyspark

        self.root = root
        self.cores, self.memory = cores, memory
        self.spark_home = Path(pyspark.__file__).resolve().parent
        self.port, self.ui_port, self.worker_ui_port = free_port(), free_port(), free_port()
        self.env = {**os.environ, **(env or {})}
        self.env.update(
            SPARK_HOME=str(self.spark_home),
            SPARK_LOCAL_IP=self.HOST,
            SPARK_WORKER_DIR=str(root / "work"),
            SPARK_LOG_DIR=str(root / "logs"),
            PYSPARK_PYTHON=sys.executable,
        )
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """The master URL (``spark://127.0.0.1:PORT``)."""
        return f"spark://{self.HOST}:{self.port}"

    @property
    def master_json(self) -> str:
        """The master's status page (applications, workers)."""
        return f"http://{self.HOST}:{self.ui_port}/json/"

    def _spawn(self, name: str, *args: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{name}.log", "ab") as log:
            self.procs.append(
                subprocess.Popen(
                    [str(self.spark_home / "bin" / "spark-class"), *args],
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, stopped as a whole
                )
            )

    def start(self) -> SparkCluster:
        """Start the master and the worker (without waiting for either)."""
        self._spawn(
            "master",
            *("org.apache.spark.deploy.master.Master", "--host", self.HOST),
            *("--port", str(self.port), "--webui-port", str(self.ui_port)),
        )
        self._spawn(
            "worker",
            *("org.apache.spark.deploy.worker.Worker", self.url, "--host", self.HOST),
            *("--cores", str(self.cores), "--memory", self.memory, "--webui-port", str(self.worker_ui_port)),
        )
        return self

    def status(self) -> dict[str, Any]:
        """The master's status (``workers``, ``activeapps``, ``completedapps`` ...)."""
        return dict(get_json(self.master_json))

    def wait_ready(self, timeout: float = 120) -> SparkCluster:
        """Wait until the worker has registered with the master; fail the test naming the logs otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            for proc in self.procs:
                if proc.poll() is not None:
                    pytest.fail(f"a Spark cluster process exited with {proc.returncode}: {self.log_tails()}")
            with contextlib.suppress(OSError, ValueError):
                if any(w["state"] == "ALIVE" for w in self.status()["workers"]):
                    return self
            if time.monotonic() > deadline:
                pytest.fail(f"the Spark worker did not register within {timeout:.0f} s: {self.log_tails()}")
            time.sleep(0.5)

    def log_tails(self, chars: int = 2000) -> str:
        return "\n".join(
            f"--- {name}.log\n{(self.root / f'{name}.log').read_text(errors='replace')[-chars:]}"
            for name in ("master", "worker")
            if (self.root / f"{name}.log").exists()
        )

    def stop(self) -> None:
        """Stop the worker, then the master (each process group)."""
        for proc in reversed(self.procs):
            stop_group(proc)
        self.procs.clear()


@contextlib.contextmanager
def spark_cluster(root: Path, **kwargs: Any) -> Iterator[SparkCluster]:
    """A started and registered :class:`SparkCluster`, stopped at the end."""
    cluster = SparkCluster(root, **kwargs).start()
    try:
        yield cluster.wait_ready()
    finally:
        cluster.stop()
