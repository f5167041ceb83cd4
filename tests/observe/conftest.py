"""Shared fixtures for the observe tests."""

from __future__ import annotations

from typing import Any

import pytest
from observe_support import build_story_run


@pytest.fixture
def story_run(tmp_path) -> dict[str, Any]:
    """A run of four steps (success, success, failed, never started) with XSS payloads in a
    sample cell, a column name, a step name, the SQL, the explanation and the error."""
    return build_story_run(tmp_path)
