"""Hostile inputs that used to hang or crash: a FIFO as the config path, a message holding a
lone surrogate printed on a terminal that cannot encode it, and story files readable only by
their owner."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from odibi_dagster import ConfigValidationError, load_pipelines
from odibi_dagster.observe._util import atomic_write_text

CLI = str(Path(sys.executable).parent / "odibi-dagster")


def test_a_fifo_as_config_path_is_rejected_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipeline.yaml"
    os.mkfifo(fifo)
    proc = subprocess.run([CLI, "validate", str(fifo)], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 1
    assert proc.stdout.startswith(str(fifo)), proc.stdout
    assert "not a regular file (a config must be a file, or a directory of config files)" in proc.stdout
    try:
        load_pipelines(fifo)
    except ConfigValidationError as exc:
        assert "not a regular file" in str(exc)
    else:
        raise AssertionError("a FIFO validated")


def test_a_lone_surrogate_prints_on_an_ascii_terminal(tmp_path: Path) -> None:
    config = tmp_path / "bad.json"
    config.write_text(json.dumps([{"layer": "ingest", "name": "read\ud800", "value": "x.csv", "engine": "nope",
                                   "outputs": {"data": "raw"}}]))
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "LC_ALL": "C"}
    proc = subprocess.run([CLI, "validate", str(config)], capture_output=True, text=True, timeout=60,
                          env=env, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "UnicodeEncodeError" not in proc.stderr
    assert "step 'read\\ud800'" in proc.stdout and "engine" in proc.stdout


def test_atomically_written_files_get_the_umask_mode(tmp_path: Path) -> None:
    path = atomic_write_text(tmp_path / "story.html", "<html></html>")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
