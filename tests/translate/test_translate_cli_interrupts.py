"""``odibi-dagster run`` interrupted by SIGINT or SIGTERM leaves no run STARTED in the instance,
starts no further run of a range, and says so without a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

CLI = str(Path(sys.executable).parent / "odibi-dagster")

SLOW_STEP = """
import os, pathlib, time

def slow(df):
    pathlib.Path(__file__).with_name("started").write_text("yes")
    if os.environ.get("ODIBI_TEST_SLOW") != "0":
        time.sleep(120)
    return df
"""


def _project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    (tmp_path / "in.csv").write_text("id\n1\n")
    (tmp_path / "slow_step.py").write_text(SLOW_STEP)
    config = tmp_path / "p.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "pipeline": "slowp",
                "partitions": {"type": "daily", "start": "2024-01-01", "end": "2024-01-10"},
                "backfill": {"policy": "multi_run"},
                "steps": [
                    {"name": "read", "layer": "ingest", "value": "in.csv", "outputs": {"data": "raw"}},
                    {
                        "name": "wait",
                        "layer": "transform",
                        "type": "function",
                        "value": "slow_step.slow",
                        "inputs": {"df": "raw"},
                        "outputs": {"data": "waited"},
                    },
                    {
                        "name": "save",
                        "layer": "store",
                        "value": "out/{{ partition_key }}.csv",
                        "inputs": {"data": "waited"},
                    },
                ],
            }
        )
    )
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    # The test's modules first, then the caller's path (a worktree's odibi_dagster, not the installed one).
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": path}
    return config, env


@pytest.mark.parametrize(("sig", "executor"), [(signal.SIGTERM, "in_process"), (signal.SIGINT, "multiprocess")])
def test_an_interrupted_run_ends_failed_and_the_range_stops(tmp_path: Path, sig: signal.Signals, executor: str) -> None:
    config, env = _project(tmp_path)
    proc = subprocess.Popen(
        [CLI, "run", str(config), "--partition", "2024-01-01...2024-01-03", "--executor", executor],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "started").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        os.kill(proc.pid, sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + sig, out + err
    assert "Traceback" not in out + err
    assert f"interrupted by {sig.name}" in err and "2 later run(s) of the range not started" in err
    assert "FAIL  wait" in out and "interrupted (SIGINT/SIGTERM)" in out
    os.environ.setdefault("DAGSTER_HOME", env["DAGSTER_HOME"])
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        runs = instance.get_runs()
        assert [r.status for r in runs] == [dg.DagsterRunStatus.FAILURE]
        assert runs[0].tags["dagster/partition"] == "2024-01-01"


def test_an_interrupt_before_any_run_prints_no_traceback(tmp_path: Path) -> None:
    config, env = _project(tmp_path)
    proc = subprocess.Popen(
        [CLI, "run", str(config), "--partition", "2024-01-01"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)  # still importing and loading the definitions
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "interrupted by SIGINT" in err
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert all(r.status != dg.DagsterRunStatus.STARTED for r in instance.get_runs())


def test_a_run_left_started_by_a_sigkill_is_failed_by_the_next_invocation(tmp_path: Path) -> None:
    config, env = _project(tmp_path)
    args = [CLI, "run", str(config), "--partition", "2024-01-01"]
    proc = subprocess.Popen(
        args, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while not (tmp_path / "started").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        [killed] = instance.get_runs()
        assert killed.status == dg.DagsterRunStatus.STARTED  # nothing could mark it: the process is gone
    again = subprocess.run(
        args,
        env={**env, "ODIBI_TEST_SLOW": "0"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"run {killed.run_id} was left STARTED by a killed odibi-dagster run; marked FAILURE" in again.stderr
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        statuses = {r.run_id: r.status for r in instance.get_runs()}
        assert statuses.pop(killed.run_id) == dg.DagsterRunStatus.FAILURE
        assert list(statuses.values()) == [dg.DagsterRunStatus.SUCCESS]
