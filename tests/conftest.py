"""Suite-wide: this folder is on ``sys.path`` (pytest's default import mode puts a
conftest's folder there), so every test module can import :mod:`support`."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest
from support import azurite_server


def pytest_configure(config: pytest.Config) -> None:
    """One load cache per test session (``ODIBI_CACHE_DIR``, inherited by the servers tests
    start), so the suite neither reads nor fills the user's: each SQL statement and YAML file is
    parsed the first time the session meets it."""
    if "ODIBI_CACHE_DIR" not in os.environ:
        os.environ["ODIBI_CACHE_DIR"] = tempfile.mkdtemp(prefix="odibi-test-cache.")


@pytest.fixture(scope="module")
def azurite() -> Iterator[str]:
    """A blob-only Azurite in memory on a free loopback port, one per test module; yields its
    connection string."""
    with azurite_server() as connection_string:
        yield connection_string
