"""A write killed with SIGKILL leaves its hidden temp file beside the target; the next write
to the same target removes it, and touches nothing else."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import yaml

from odibi_dagster.engines import paths

CLI = str(Path(sys.executable).parent / "odibi-dagster")

# A writer that starts an atomic write of TARGET, fills its temp file and waits to be killed.
_KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from odibi_dagster.engines import paths
    with paths.atomic_output(sys.argv[1]) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(b"x" * 1_000_000)
        print(tmp, flush=True)
        time.sleep(600)
""")


def _killed_write(target: Path) -> Path:
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    tmp = Path(proc.stdout.readline().strip())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert tmp.exists() and tmp.name.startswith(f".{target.name}.") and tmp.name.endswith(".tmp")
    return tmp


def test_the_next_run_removes_what_killed_writes_left(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id,v\n1,a\n2,b\n")
    target = tmp_path / "out" / "result.parquet"
    target.parent.mkdir()
    leftovers = [_killed_write(target), _killed_write(target)]
    # Beside them: files that are not leftovers of this target's writes, and one of a live writer.
    keep = [
        target.parent / ".result.parquet.notes",
        target.parent / ".other.parquet.0123456789ab.tmp",
        target.parent / "result.parquet.0123456789ab.tmp",
    ]
    for f in keep:
        f.write_text("mine")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        live = target.parent / f".result.parquet.{paths._HOST_TAG}-{sleeper.pid}-0123456789ab.tmp"
        live.write_text("being written")
        config = tmp_path / "p.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "pipeline": "p",
                    "steps": [
                        {"name": "read", "layer": "ingest", "value": "in.csv", "outputs": {"data": "raw"}},
                        {"name": "save", "layer": "store", "value": "out/result.parquet", "inputs": {"data": "raw"}},
                    ],
                }
            )
        )
        proc = subprocess.run([CLI, "run", str(config)], capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert target.exists()
        assert not any(f.exists() for f in leftovers)
        assert all(f.read_text() == "mine" for f in keep)
        assert live.exists()  # its writer is still running
    finally:
        sleeper.kill()
        sleeper.wait()


def test_leftovers_of_other_hosts_and_old_releases_go_only_when_old(tmp_path: Path) -> None:
    target = tmp_path / "t.csv"
    foreign = tmp_path / ".t.csv.abcdef-12-0123456789ab.tmp"
    legacy = tmp_path / ".t.csv.0123456789ab.tmp.old"
    for f in (foreign, legacy):
        f.mkdir()
        (f / "part-0.parquet").write_text("x")
    assert paths.remove_stale_temps(str(target)) == []
    old = time.time() - paths.STALE_TEMP_SECONDS - 60
    os.utime(foreign, (old, old))
    assert paths.remove_stale_temps(str(target)) == [str(foreign)]
    assert not foreign.exists() and legacy.exists()
