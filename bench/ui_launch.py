"""UI launch benchmark: a run launched through `dagster dev`'s webserver vs `odibi-dagster run`.

    python bench/ui_launch.py --repeat 5

Starts a real `dagster dev -w workspace.yaml` on 127.0.0.1 (its own process group and a
throw-away DAGSTER_HOME holding the quick start's `scripts/dagster.yaml`), then per repeat, side by side:

* **ui**: launches the example `sales_medallion` job through the webserver's GraphQL API, as
  the launchpad does, and times launch -> SUCCESS (queued, dequeued by the daemon, run worker
  started, code location loaded, steps run);
* **ui_assets**: the same for "Materialize all" on the `sales_medallion` asset group (the
  implicit asset job with the group's assets and checks, what the button launches);
* **cli**: `odibi-dagster run definitions/pipelines/sales_medallion.yaml` in a fresh process,
  wall time of the whole command.

Prints each repeat's times and ratios against the CLI, then the medians. ``--json`` adds
one JSON line with every figure (the test suite uses it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _harness import stop_process_group

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCATION = "odibi_examples"
PIPELINE = "sales_medallion"
CONFIG = REPO / "definitions" / "pipelines" / f"{PIPELINE}.yaml"

LAUNCH = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
  ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } ... on InvalidSubsetError { message } } }"""
STATUS = "query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }"
GROUP = """query($g: AssetGroupSelector!) { assetNodes(group: $g) { assetKey { path }
  assetChecksOrError { ... on AssetChecks { checks { name } } } } }"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def graphql(base: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    req = urllib.request.Request(
        f"{base}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as res:
        body = json.loads(res.read())
    if body.get("errors"):
        raise RuntimeError(json.dumps(body["errors"])[:2000])
    return body["data"]


@contextlib.contextmanager
def dagster_dev(home: Path, log: Path) -> Iterator[str]:
    """`dagster dev` on loopback in its own process group; yields the webserver's URL."""
    shutil.copyfile(REPO / "scripts" / "dagster.yaml", home / "dagster.yaml")  # the quick start's instance
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "ODIBI_BASE_DIR"} | {"DAGSTER_HOME": str(home)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited: {log.read_text()[-3000:]}")
            with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError, RuntimeError):
                if graphql(base, "{ version }").get("version"):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"dagster dev did not answer: {log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base
    finally:
        # SIGINT first: dagster dev shuts its webserver and daemon down cleanly on it
        stop_process_group(proc, ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 10)))


def wait_for_location(base: str, timeout: float = 180) -> list[dict[str, Any]]:
    """The sales_medallion group's asset nodes, once the code location has loaded."""
    deadline = time.monotonic() + timeout
    selector = {"groupName": PIPELINE, "repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
    while True:
        with contextlib.suppress(RuntimeError):
            nodes = graphql(base, GROUP, {"g": selector})["assetNodes"]
            if nodes:
                return nodes
        if time.monotonic() > deadline:
            raise RuntimeError("the code location did not load")
        time.sleep(0.5)


def launch_and_wait(base: str, params: dict[str, Any], timeout: float = 300) -> tuple[float, str, str]:
    """Launch a run through GraphQL; returns (seconds from launch to a final status, run id, status)."""
    started = time.perf_counter()
    result = graphql(base, LAUNCH, {"p": params})["launchRun"]
    if result["__typename"] != "LaunchRunSuccess":
        raise RuntimeError(f"launch failed: {json.dumps(result)[:2000]}")
    run_id = result["run"]["runId"]
    while time.perf_counter() - started < timeout:
        status = graphql(base, STATUS, {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return time.perf_counter() - started, run_id, status
        time.sleep(0.05)
    raise RuntimeError(f"run {run_id} did not finish in {timeout} s")


def job_params() -> dict[str, Any]:
    return {
        "selector": {"repositoryLocationName": LOCATION, "repositoryName": "__repository__", "jobName": PIPELINE},
        "runConfigData": {},
    }


def materialize_all_params(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """What "Materialize all" on the group launches: the implicit asset job, the group's assets and checks."""
    checks = [
        {"assetKey": {"path": n["assetKey"]["path"]}, "name": c["name"]}
        for n in nodes
        for c in (n.get("assetChecksOrError") or {}).get("checks", [])
    ]
    return {
        "selector": {
            "repositoryLocationName": LOCATION,
            "repositoryName": "__repository__",
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": n["assetKey"]["path"]} for n in nodes],
            "assetCheckSelection": checks,
        },
        "runConfigData": {},
    }


def cli_run() -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "ODIBI_BASE_DIR")}
    started = time.perf_counter()
    proc = subprocess.run(
        [str(BIN / "odibi-dagster"), "run", str(CONFIG)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"odibi-dagster run failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="also print one JSON line with every figure")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="odibi-ui-bench-") as tmp:
        home = Path(tmp) / "dagster_home"
        home.mkdir()
        with dagster_dev(home, Path(tmp) / "dagster_dev.log") as base:
            nodes = wait_for_location(base)
            # One untimed run of each kind: the daemon's first tick, first imports into the page cache.
            launch_and_wait(base, job_params())
            cli_run()
            print(f"{'repeat':>6} {'ui s':>8} {'ui_assets s':>12} {'cli s':>8} {'ui/cli':>8} {'assets/cli':>11}")
            for i in range(args.repeat):
                ui, run_id, status = launch_and_wait(base, job_params())
                assets, assets_run, assets_status = launch_and_wait(base, materialize_all_params(nodes))
                cli = cli_run()
                if status != "SUCCESS" or assets_status != "SUCCESS":
                    raise RuntimeError(f"UI runs ended {status} ({run_id}) and {assets_status} ({assets_run})")
                rows.append(
                    {
                        "ui": ui,
                        "ui_assets": assets,
                        "cli": cli,
                        "run_id": run_id,
                        "status": status,
                        "assets_run_id": assets_run,
                        "assets_status": assets_status,
                    }
                )
                print(
                    f"{i + 1:>6} {ui:>8.2f} {assets:>12.2f} {cli:>8.2f} {ui / cli:>8.2f} {assets / cli:>11.2f}",
                    flush=True,
                )
    ratio = statistics.median(r["ui"] / r["cli"] for r in rows)
    assets_ratio = statistics.median(r["ui_assets"] / r["cli"] for r in rows)
    print(
        f"median: ui {statistics.median(r['ui'] for r in rows):.2f} s, "
        f"ui_assets {statistics.median(r['ui_assets'] for r in rows):.2f} s, "
        f"cli {statistics.median(r['cli'] for r in rows):.2f} s; "
        f"ui/cli {ratio:.2f}x, ui_assets/cli {assets_ratio:.2f}x (target <= 1.5x)"
    )
    if args.json:
        print(json.dumps({"runs": rows, "ui_over_cli": ratio, "ui_assets_over_cli": assets_ratio}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
