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

import pytest

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
    with pytest.raises(ConfigValidationError, match="not a regular file"):
        load_pipelines(fifo)


def test_a_lone_surrogate_prints_on_an_ascii_terminal(tmp_path: Path) -> None:
    config = tmp_path / "bad.json"
    config.write_text(
        json.dumps(
            [{"layer": "ingest", "name": "read\ud800", "value": "x.csv", "engine": "nope", "outputs": {"data": "raw"}}]
        )
    )
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "LC_ALL": "C"}
    proc = subprocess.run(
        [CLI, "validate", str(config)], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "UnicodeEncodeError" not in proc.stderr
    assert "step 'read\\ud800'" in proc.stdout and "engine" in proc.stdout


def test_atomically_written_files_get_the_umask_mode(tmp_path: Path) -> None:
    path = atomic_write_text(tmp_path / "story.html", "<html></html>")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


RECURSIVE_YAML = {
    "params": "pipeline: p\nsteps:\n  - {layer: ingest, name: read, value: a.csv, outputs: {data: raw},"
    " params: &p {self: *p}}\n",
    "steps": "pipeline: p\nsteps: &s [*s]\n",
    "document": "&d\npipeline: p\nsteps: [{layer: ingest, name: read, value: a.csv, params: {d: *d}}]\n",
}
LAUGHS = (
    "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(7))
    + "pipeline: p\nsteps: [{layer: ingest, name: read, value: a.csv, params: {x: *h}}]\n"
)


def test_recursive_and_exploding_yaml_aliases_are_rejected_at_once(tmp_path: Path) -> None:
    import time

    for name, text in [*RECURSIVE_YAML.items(), ("laughs", LAUGHS)]:
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        started = time.monotonic()
        proc = subprocess.run([CLI, "validate", str(path)], capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 1, (name, proc.stdout, proc.stderr)
        assert "invalid YAML" in proc.stdout, (name, proc.stdout)
        expected = "past 200,000 nodes" if name == "laughs" else "recursive aliases are not supported"
        assert expected in proc.stdout, (name, proc.stdout)
        assert time.monotonic() - started < 30, name


def test_shared_non_recursive_aliases_still_load(tmp_path: Path) -> None:
    path = tmp_path / "shared.yaml"
    path.write_text(
        "defaults: &d {header: true}\npipeline: p\nsteps:\n"
        "  - {layer: ingest, name: a, value: a.csv, params: *d, outputs: {data: ra}}\n"
        "  - {layer: ingest, name: b, value: b.csv, params: *d, outputs: {data: rb}}\n"
    )
    (tmp_path / "a.csv").write_text("x\n1\n")
    (tmp_path / "b.csv").write_text("x\n1\n")
    with pytest.raises(ConfigValidationError) as info:  # the unknown top-level key, never the aliases
        load_pipelines(path)
    assert "invalid YAML" not in str(info.value), str(info.value)
    assert "defaults" in str(info.value)
