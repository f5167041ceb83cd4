"""What a person sees in ``dagster dev -w workspace.yaml``: the pipelines as asset groups,
"Materialize all" on the simple_pipeline group, the run succeeding, and the filtered_data
asset page with its row count and column schema. Headless Debian Chromium driven by
playwright-core (no browser download); screenshots go to ``test-artifacts/ui_*.png``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import support
from support import ensure_chromium, ensure_playwright_core, graphql

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
DAGSTER = str(Path(sys.executable).parent / "dagster")

pytestmark = [pytest.mark.slow, pytest.mark.browser]

NODE_SCRIPT = r"""// Drives `dagster dev` in headless Chromium: catalog, lineage with the pipelines' groups,
// "Materialize all" on the simple_pipeline group, the run, and the filtered_data asset page.
// Env: PW_CORE (path of playwright-core), BASE_URL, OUT_DIR, CHROMIUM. Prints one JSON line.
const { chromium } = require(process.env.PW_CORE);

const BASE = process.env.BASE_URL;
const OUT = process.env.OUT_DIR;
const GROUP = 'simple_pipeline';
const GROUP_URL = `${BASE}/locations/odibi_examples/asset-groups/${GROUP}/lineage`;
const log = (...a) => console.error(new Date().toISOString(), ...a);

async function gql(query, variables = {}) {
  const res = await fetch(BASE + '/graphql', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  const body = await res.json();
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data;
}

const RUNS = `{ runsOrError(limit: 50) { __typename ... on Runs { results {
  runId status jobName assetSelection { path } } } } }`;

async function runs() {
  const data = await gql(RUNS);
  return data.runsOrError.results || [];
}

async function dismissModal(page) {
  // the first visit shows a "Join the Dagster community" dialog
  const skip = page.getByRole('button', { name: 'Skip', exact: true });
  try {
    await skip.click({ timeout: 3000 });
    log('dismissed community dialog');
  } catch (e) { /* not shown */ }
}

async function shot(page, name) {
  const path = `${OUT}/ui_${name}.png`;
  await page.screenshot({ path, fullPage: false });
  return path;
}

(async () => {
  const result = { screenshots: [], groups_seen: [], launched_by: null, run: null, asset_page_text: '' };
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-component-update', '--no-first-run'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    page.setDefaultTimeout(30000);

    // 1. global lineage: one group per pipeline
    await page.goto(BASE + '/asset-groups', { waitUntil: 'domcontentloaded' });
    await dismissModal(page);
    for (const g of ['simple_pipeline', 'sales_medallion', 'inventory']) {
      await page.getByText(g, { exact: true }).first().waitFor();
      result.groups_seen.push(g);
    }
    await page.waitForTimeout(1000);
    result.screenshots.push(await shot(page, 'lineage_groups'));

    // 2. the asset catalog
    await page.goto(BASE + '/assets', { waitUntil: 'domcontentloaded' });
    await dismissModal(page);
    await page.getByText('filtered_data').first().waitFor();
    await page.waitForTimeout(1000);
    result.screenshots.push(await shot(page, 'catalog'));

    // 3. the simple_pipeline group: click "Materialize all"
    await page.goto(GROUP_URL, { waitUntil: 'domcontentloaded' });
    await dismissModal(page);
    for (const a of ['raw_data', 'filtered_data', 'write_filtered_parquet']) {
      await page.getByText(a, { exact: true }).first().waitFor();
    }
    await page.waitForTimeout(1500);
    result.screenshots.push(await shot(page, 'group_before'));
    const before = new Set((await runs()).map(r => r.runId));
    // "Materialize all (3)": the three step assets; the ingest's source files (an observable
    // source asset) are observed, not materialized
    const button = page.locator('button').filter({ hasText: /^\s*Materialize all \(3\)\s*$/ }).first();
    await button.waitFor();
    await dismissModal(page);  // the community dialog can come up late on a loaded machine
    await button.click();
    log('clicked Materialize all');
    let run = null;
    for (let i = 0; i < 60 && !run; i++) {
      await page.waitForTimeout(500);
      run = (await runs()).find(r => !before.has(r.runId)) || null;
    }
    if (run) {
      result.launched_by = 'click';
    } else {
      // fallback: launch the pipeline's job through GraphQL
      log('no run after the click; launching through GraphQL');
      await shot(page, 'click_failed');
      const data = await gql(`mutation($p: ExecutionParams!) { launchPipelineExecution(executionParams: $p) {
        __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }`,
        { p: { selector: { repositoryLocationName: 'odibi_examples', repositoryName: '__repository__',
                           pipelineName: GROUP }, mode: 'default', runConfigData: {} } });
      log(JSON.stringify(data));
      result.launched_by = 'graphql';
      run = (await runs()).find(r => !before.has(r.runId)) || null;
    }
    if (!run) throw new Error('no run was launched');
    await page.waitForTimeout(1000);
    result.screenshots.push(await shot(page, 'after_click'));

    // 4. wait for the run (GraphQL), then look at it
    const terminal = new Set(['SUCCESS', 'FAILURE', 'CANCELED']);
    const deadline = Date.now() + 120000;
    while (Date.now() < deadline) {
      run = (await runs()).find(r => r.runId === run.runId);
      if (terminal.has(run.status)) break;
      await new Promise(r => setTimeout(r, 1000));
    }
    result.run = run;
    log('run', JSON.stringify(run));
    await page.goto(`${BASE}/runs/${run.runId}`, { waitUntil: 'domcontentloaded' });
    await page.getByText('write_filtered_parquet').first().waitFor();
    await page.waitForTimeout(2500);
    result.screenshots.push(await shot(page, 'run'));

    // 5. the filtered_data asset page: row count and column schema from the materialization
    await page.goto(`${BASE}/assets/${GROUP}/filtered_data`, { waitUntil: 'domcontentloaded' });
    await page.getByText('Columns', { exact: false }).first().waitFor();
    await page.waitForTimeout(2500);
    result.screenshots.push(await shot(page, 'asset_filtered_data'));
    result.asset_page_text = await page.innerText('body');
    await page.getByText('Metadata', { exact: true }).first()
      .evaluate(el => el.scrollIntoView({ block: 'start' }));
    await page.waitForTimeout(1000);
    result.screenshots.push(await shot(page, 'asset_filtered_data_metadata'));

    // 6. back to the group: the assets now show their latest materialization
    await page.goto(GROUP_URL, { waitUntil: 'domcontentloaded' });
    await page.getByText('filtered_data', { exact: true }).first().waitFor();
    await page.waitForTimeout(2500);
    result.screenshots.push(await shot(page, 'group_after'));
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(result));
})().catch(e => { console.error(e && e.stack || e); process.exit(1); });
"""


@pytest.fixture
def dagster_dev(tmp_path: Path) -> Iterator[str]:
    with support.dagster_dev(REPO, tmp_path / "dagster_home") as base:
        yield base


def test_materialize_simple_pipeline_from_the_ui(dagster_dev: str, tmp_path: Path) -> None:
    chromium = ensure_chromium()
    playwright = ensure_playwright_core()
    ARTIFACTS.mkdir(exist_ok=True)
    for old in ARTIFACTS.glob("ui_*.png"):
        old.unlink()
    script = tmp_path / "ui_dagster_dev.js"
    script.write_text(NODE_SCRIPT)
    env = {
        **os.environ,
        "PW_CORE": str(playwright),
        "BASE_URL": dagster_dev,
        "OUT_DIR": str(ARTIFACTS),
        "CHROMIUM": chromium,
    }
    proc = subprocess.run(["node", str(script)], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(proc.stderr)  # the script's own log (-s shows it)
    print(f"run launched by: {result['launched_by']}")

    # the pipelines are the groups
    assert set(result["groups_seen"]) == {"simple_pipeline", "sales_medallion", "inventory"}
    # the run the click started materialized the simple_pipeline group and succeeded
    run = result["run"]
    assert run["status"] == "SUCCESS", run
    assert {"/".join(k["path"]) for k in run["assetSelection"]} == {
        "simple_pipeline/raw_data",
        "simple_pipeline/filtered_data",
        "simple_pipeline/write_filtered_parquet",
    }
    # the asset page shows the materialization's row count and column schema
    text = result["asset_page_text"]
    assert "Row count" in text
    for column in ("id", "name", "value", "category", "timestamp"):
        assert column in text
    assert "SELECT * FROM data WHERE value > 100" in text
    for shot in result["screenshots"]:
        assert Path(shot).stat().st_size > 10_000, shot

    # cross-check through GraphQL: the asset's latest materialization has 6 rows
    data = graphql(
        dagster_dev,
        """{ assetOrError(assetKey: {path: ["simple_pipeline", "filtered_data"]}) {
        ... on Asset { assetMaterializations(limit: 1) { runId metadataEntries {
            label ... on IntMetadataEntry { intValue } } } } } }""",
    )
    (mat,) = data["assetOrError"]["assetMaterializations"]
    assert mat["runId"] == run["runId"]
    rows = {e["label"]: e.get("intValue") for e in mat["metadataEntries"]}
    assert rows["dagster/row_count"] == 6
