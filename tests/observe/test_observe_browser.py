"""The story in a real browser: headless Chromium renders it, and injected markup stays text.

These tests fail (never skip) when Chromium is missing: install it with
``apt-get update && apt-get install -y chromium``.
"""

from __future__ import annotations

import html as html_lib
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from observe_story_run import EVIL_STEP, IMG_PAYLOAD, SCRIPT_PAYLOAD

from odibi_dagster.observe.story import StoryGenerator

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("Chromium is not installed: apt-get update && apt-get install -y chromium")


def _run_chromium(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=3000",  # let load handlers and our script run before the dump
        *args,
        url,
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def _png_info(path: Path) -> tuple[int, int, int]:
    """(width, height, distinct scanlines) of a PNG, enough to tell a real page from a blank one."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, height, bpp = 8, b"", 0, 0, 4
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            bpp = {2: 3, 6: 4, 0: 1, 4: 2}.get(color, 4) * max(depth // 8, 1)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = 1 + width * bpp
    rows = {raw[i : i + stride] for i in range(0, len(raw), stride)}
    return width, height, len(rows)


@pytest.fixture
def story_file(story_run) -> Path:
    path = story_run["tracker"].story_path
    StoryGenerator({"save_silver": "Writes silver to the lake."}).write(path, story_run["lineage"], story_run["graph"])
    return path


def test_story_screenshot(story_file, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "story.png"
    shot.unlink(missing_ok=True)
    # '#step-2' opens the transform card through the page's own script, as a click on its graph node does.
    _run_chromium(tmp_path, story_file.as_uri() + "#step-2", f"--screenshot={shot}", "--window-size=1280,2000")
    assert shot.is_file()
    width, height, distinct_rows = _png_info(shot)
    assert (width, height) == (1280, 2000)
    assert shot.stat().st_size > 30_000
    assert distinct_rows > 200, "screenshot looks blank"
    shutil.copy(story_file, ARTIFACTS / "story.html")


def test_xss_payloads_stay_text(story_file, tmp_path):
    dom = _run_chromium(tmp_path, story_file.as_uri(), "--dump-dom").stdout
    title = dom.split("<title>", 1)[1].split("</title>", 1)[0]
    assert "pwned" not in title
    assert html_lib.unescape(title) == "sales_medallion · run 0f3c2a9e-1111-4e5b-9c1d-abcdef012345"
    # no element was injected: the only <script> is ours and there is no <img> at all
    assert dom.count("<script") == 1
    assert "<img" not in dom
    # the payloads are in the DOM as escaped text (sample cell, column name, step name, error)
    assert html_lib.escape(IMG_PAYLOAD, quote=False) in dom
    assert html_lib.escape(SCRIPT_PAYLOAD, quote=False) in dom
    assert html_lib.escape(EVIL_STEP, quote=False) in dom
    # our own script ran (the failed card is open, the page is interactive)
    assert 'class="step failed" id="step-3" open=""' in dom


def test_harness_detects_unescaped_markup(tmp_path):
    """Control: the same payload in an unescaped page does run, so the test above means something."""
    page = tmp_path / "unsafe.html"
    page.write_text(f"<!DOCTYPE html><html><head><title>safe</title></head><body>{IMG_PAYLOAD}</body></html>")
    dom = _run_chromium(tmp_path, page.as_uri(), "--dump-dom").stdout
    assert "<title>pwned</title>" in dom
