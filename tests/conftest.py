"""Suite-wide: this folder is on ``sys.path`` (pytest's default import mode puts a
conftest's folder there), so every test module can import :mod:`support`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import azurite_server


@pytest.fixture(scope="module")
def azurite() -> Iterator[str]:
    """A blob-only Azurite in memory on a free loopback port, one per test module; yields its
    connection string."""
    with azurite_server() as connection_string:
        yield connection_string
