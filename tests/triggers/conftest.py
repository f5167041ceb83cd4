"""Fixtures of the trigger tests (helpers live in ``triggers_support``)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project directory; working files stay beside its configs."""
    monkeypatch.delenv("ODIBI_BASE_DIR", raising=False)
    root = tmp_path / "project"
    root.mkdir()
    return root


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """A real (in-memory) Dagster instance: run, event and schedule storage, dynamic partitions."""
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture
def dagster_home(tmp_path: Path) -> Path:
    """A DAGSTER_HOME directory for persistent instances (``DagsterInstance.from_config``)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return home


@pytest.fixture
def persistent_instance(dagster_home: Path) -> Iterator[dg.DagsterInstance]:
    """A Dagster instance stored in ``dagster_home`` (as the daemon and webserver use)."""
    with dg.DagsterInstance.from_config(str(dagster_home)) as inst:
        yield inst
