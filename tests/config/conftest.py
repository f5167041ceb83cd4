"""Fixtures of the config tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from config_support import ConfigFiles


@pytest.fixture
def files(tmp_path: Path) -> ConfigFiles:
    """Write configs (JSON, YAML, SQLite, CSV) into the test's tmp_path."""
    return ConfigFiles(tmp_path)
