"""Helpers shared by tests that start real servers on loopback: free ports and
npm packages installed once into a cache folder (Azurite, playwright-core)."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def npm_install(folder: Path, package: str, installed: Path, timeout: float = 600) -> Path:
    """``npm install package`` into ``folder`` unless ``installed`` already exists; returns ``installed``.

    The folder is a cache shared by runs (``~/.cache/odibi_dagster/...``), so the registry
    is reached only on the first run of a machine. Fails the test, naming npm's error, when
    npm is missing or the install does not produce ``installed``.
    """
    if installed.exists():
        return installed
    if shutil.which("npm") is None:
        pytest.fail(f"npm is needed to install {package}")
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "package.json"
    if not manifest.exists():
        manifest.write_text(f'{{"name": "odibi-{folder.name}", "private": true}}\n')
    proc = subprocess.run(["npm", "install", "--no-audit", "--no-fund", package], cwd=folder,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not installed.exists():
        pytest.fail(f"npm install {package} failed: {proc.stderr[-2000:]}")
    return installed
