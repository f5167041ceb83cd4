"""Fixtures of the trigger tests (helpers live in ``odibi_triggers_lib``)."""

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
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """A real, persistent Dagster instance in its own DAGSTER_HOME directory."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)) as inst:
        yield inst
