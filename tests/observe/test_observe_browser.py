"""The story in a real browser: headless Chromium renders it, and injected markup stays text.

These tests fail (never skip) when Chromium is missing: install it with
``apt-get update && apt-get install -y chromium``.
"""

from __future__ import annotations

import html as html_lib
import json
import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from observe_support import EVIL_STEP, IMG_PAYLOAD, SCRIPT_PAYLOAD

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


PICK_COLUMN_SCRIPT = r"""// Opens a story, picks a column in the column lineage section, then follows a link of a
// step card's lineage table. Env: PW_CORE, CHROMIUM, STORY_URL, COLUMN, SHOT. Prints one JSON line.
const { chromium } = require(process.env.PW_CORE);
(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(process.env.STORY_URL);
  const lines = () => page.$$eval('#column-path > div', (els) =>
    els.map((e) => ({ text: e.innerText, indent: e.style.paddingLeft, visible: e.offsetHeight > 0 })));
  const before = await lines();
  await page.selectOption('#column-pick', { label: process.env.COLUMN });
  const picked = await lines();
  await page.locator('#column-lineage').scrollIntoViewIfNeeded();
  await page.screenshot({ path: process.env.SHOT });
  // A person reading build_gold's card clicks the output column "weighted" of its table.
  const card = page.locator('details.step', { has: page.locator('span.name', { hasText: /^build_gold$/ }) });
  await card.locator(':scope > summary').click();
  await card.locator('table.lineage-table a', { hasText: /^avg_quantity$/ }).click();
  await page.waitForFunction(() => document.querySelector('#column-path > div') !== null);
  const linked = await lines();
  const selected = await page.$eval('#column-pick', (s) => s.options[s.selectedIndex].textContent);
  // Every column the picker offers, as the page shows it.
  const every = {};
  const labels = await page.$$eval('#column-pick option', (os) => os.filter((o) => o.value).map((o) => o.textContent));
  for (const label of labels) {
    await page.selectOption('#column-pick', { label });
    every[label] = await lines();
  }
  await browser.close();
  console.log(JSON.stringify({ before, picked, linked, selected, every, errors }));
})().catch((e) => { console.error(e && e.stack || e); process.exit(1); });
"""


def _shown(lines: list[dict[str, object]]) -> list[tuple[int, str]]:
    """(depth, text) of the path lines the page shows; depth from the indent (1.5em per level)."""
    assert all(line["visible"] for line in lines)
    return [(round(float(str(line["indent"] or "0em").removesuffix("em")) / 1.5), str(line["text"])) for line in lines]


def _printed(lines: list[str]) -> list[tuple[int, str]]:
    """(depth, text) of the lines ``odibi-dagster lineage`` prints (two spaces per level)."""
    return [((len(line) - len(line.lstrip(" "))) // 2, line.lstrip(" ")) for line in lines]


def test_picking_a_column_shows_its_path_down_to_the_source(tmp_path):
    """What a person does: pick ``gold.total`` in the story, see where it comes from, the same
    lines as ``odibi-dagster lineage`` prints; then follow a column link of a step card."""
    from lineage_medallion import run_medallion, write_medallion
    from support import ensure_chromium, ensure_playwright_core

    from odibi_dagster.config.validation import load_pipelines
    from odibi_dagster.translate.config_lineage import column_path, config_column_graph
    from odibi_dagster.translate.definitions import build_plans
    from odibi_dagster.translate.translator import OdibiTranslator

    config = write_medallion(tmp_path / "project")
    _result, story = run_medallion(config)
    ARTIFACTS.mkdir(exist_ok=True)
    script = tmp_path / "pick_column.js"
    script.write_text(PICK_COLUMN_SCRIPT)
    env = {
        **os.environ,
        "PW_CORE": str(ensure_playwright_core()),
        "CHROMIUM": ensure_chromium(),
        "STORY_URL": story.as_uri(),
        "COLUMN": "gold.total",
        "SHOT": str(ARTIFACTS / "story_column_lineage.png"),
    }
    proc = subprocess.run(["node", str(script)], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-4000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["errors"] == []  # the script ran under the page's CSP, without errors
    assert seen["before"] == []
    sales = tmp_path / "project" / "data" / "sales.csv"
    assert _shown(seen["picked"]) == [
        (0, "gold.total = SUM(amount)  [sql step build_gold]"),
        (1, "← silver_sales.amount = CAST(s.amount AS DOUBLE)  [sql step clean_sales]"),
        (2, f"← bronze_sales.amount = column 'amount' of {sales}  [ingest step ingest_sales]"),
        (0, "used by: gold_ranked.total, save_gold.total"),
    ]
    assert _shown(seen["picked"]) == _printed(column_path(config, "gold.total"))
    # A click on a column of build_gold's lineage table shows that column's path; it reaches
    # bronze_sales.amount twice (through silver amount and value), the second time "see above".
    assert seen["selected"] == "gold.avg_quantity"
    assert _shown(seen["linked"]) == [
        (0, "gold.avg_quantity = SUM(value) / SUM(amount)  [sql step build_gold]"),
        (1, "← silver_sales.amount = CAST(s.amount AS DOUBLE)  [sql step clean_sales]"),
        (2, f"← bronze_sales.amount = column 'amount' of {sales}  [ingest step ingest_sales]"),
        (1, "← silver_sales.value = s.amount * s.quantity  [sql step clean_sales]"),
        (2, "← bronze_sales.amount (see above)"),
        (2, f"← bronze_sales.quantity = column 'quantity' of {sales}  [ingest step ingest_sales]"),
        (0, "used by: gold_ranked.avg_quantity, save_gold.avg_quantity"),
    ]
    # Every column the story offers shows what `odibi-dagster lineage` prints for it.
    plan = build_plans(load_pipelines(config), OdibiTranslator(), (), None)[0]
    graph = config_column_graph(plan)
    assert len(seen["every"]) == len(graph.all_refs()) == 33
    for label, lines in seen["every"].items():
        assert _shown(lines) == _printed(graph.path_lines(*graph.resolve(label))), label
    shutil.copy(story, ARTIFACTS / "story_column_lineage.html")
