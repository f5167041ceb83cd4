"""Fixtures of the translate tests (helpers live in ``translate_support``)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from translate_support import Project

from odibi_dagster.translate import cli_run


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    # Working files default to the config's directory; make sure no outer setting moves them.
    monkeypatch.delenv("ODIBI_BASE_DIR", raising=False)
    yield Project(tmp_path / "project")


@pytest.fixture
def cli_job_env() -> Iterator[None]:
    """Lets ``cli_run.reconstruct_job`` (what ``odibi-dagster run`` hands to ``dg.reconstructable``)
    rebuild a test's job in this process and in executor subprocesses."""
    cli_run.cli_definitions.cache_clear()
    cli_run._plans.cache_clear()
    yield
    cli_run.cli_definitions.cache_clear()
    cli_run._plans.cache_clear()
