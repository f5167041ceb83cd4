"""``odibi-dagster run --changed-only``: ODIBI's cache on Dagster's data versions, through the real
CLI, a real (SQLite) Dagster instance and real files.

What runs is read back three ways: the CLI's progress lines, the run's tracker records (``success``
for a step that computed, ``cached`` for one reused) and the Dagster event log.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.definitions.data_version import DATA_VERSION_TAG
from odibi_testlib import Project, cli_env, run_cli
from support import BRANCHES

RUN_ID = re.compile(r"\(run ([0-9a-f-]{36})\)")

ALL_STEPS = {s["name"] for s in BRANCHES}


def write_sources(project: Project, a_rows: int = 5, b_rows: int = 5, a_scale: int = 10) -> None:
    project.write("data/a.csv", "id,value\n" + "".join(f"{i},{i * a_scale}\n" for i in range(1, a_rows + 1)))
    project.write("data/b.csv", "id,value\n" + "".join(f"{i},{i * 7}\n" for i in range(1, b_rows + 1)))


def changed_only(project: Project, config: Path, *extra: str) -> tuple[str, str | None]:
    """Run ``--changed-only``; returns the output and the run id (None when nothing ran)."""
    proc = run_cli("run", str(config), "--changed-only", *extra, cwd=project.root, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ids = RUN_ID.findall(proc.stdout)
    return proc.stdout, (ids[-1] if ids else None)


def records(project: Project, pipeline: str, run_id: str) -> dict[str, str]:
    """Tracker record -> status of a run (``success``: computed, ``cached``: reused)."""
    lineage = json.loads((project.root / ".odibi/stories" / pipeline / run_id / "tracker.json").read_text())
    out: dict[str, str] = {}
    for step in lineage["steps"]:
        key = step["step_name"] + (f"@{step['partition_key']}" if step.get("partition_key") else "")
        out[key] = step["status"]
    return out


def computed(statuses: dict[str, str]) -> set[str]:
    return {name for name, status in statuses.items() if status == "success"}


def instance_of(project: Project) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(project.root / ".odibi" / "dagster"))


def latest_versions(instance: dg.DagsterInstance, key: list[str], partition: str | None = None) -> tuple[Any, ...]:
    """Data version and metadata of the asset's (partition's) latest materialization."""
    flt = dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), asset_partitions=[partition] if partition else None)
    event = instance.fetch_materializations(flt, limit=1).records[0].event_log_entry.asset_materialization
    return event.tags[DATA_VERSION_TAG], dict(event.metadata)


@pytest.fixture
def branches(project: Project) -> Path:
    write_sources(project)
    return project.pipeline("branches", BRANCHES, metrics=True)


def test_an_unchanged_pipeline_runs_no_step_the_second_time(project: Project, branches: Path) -> None:
    first, run_id = changed_only(project, branches)
    assert run_id is not None and "6 step(s) stale or missing" in first
    assert computed(records(project, "branches", run_id)) == ALL_STEPS
    assert (project.root / ".odibi/dagster/dagster.yaml").is_file()  # the CLI's own persistent instance

    with instance_of(project) as instance:
        runs_before = len(instance.get_runs())
    again, second_id = changed_only(project, branches)
    assert second_id is None
    assert "nothing changed, 6 step(s) fresh (cached); no run" in again
    with instance_of(project) as instance:
        assert len(instance.get_runs()) == runs_before  # no run at all


def test_changing_one_source_reruns_its_ingest_and_downstream_only(project: Project, branches: Path) -> None:
    changed_only(project, branches)
    with instance_of(project) as instance:
        untouched = latest_versions(instance, ["branches", "clean_b"])[0]

    write_sources(project, a_scale=11)  # a.csv changes; b.csv is rewritten but identical
    (project.root / "data/b.csv").touch()
    out, run_id = changed_only(project, branches)
    assert run_id is not None
    statuses = records(project, "branches", run_id)
    # b's source was touched (its fingerprint changed), so read_b runs: its dataset comes out
    # with the same data version, and clean_b is reused rather than computed.
    assert computed(statuses) == {"read_a", "read_b", "clean_a", "joined", "save"}
    assert statuses["clean_b"] == "cached"
    assert re.search(r"cached clean_b\s+5 rows", out)
    with instance_of(project) as instance:
        version, metadata = latest_versions(instance, ["branches", "clean_b"])
        assert version == untouched and metadata["odibi/cache"].value == "hit"
        assert latest_versions(instance, ["branches", "joined"])[1]["dagster/row_count"].value == 5
    # not a changed-only run any more: the next one finds nothing to do
    assert changed_only(project, branches)[1] is None


def test_editing_one_steps_sql_reruns_that_step_and_its_downstream_only(project: Project, branches: Path) -> None:
    changed_only(project, branches)
    edited = [dict(s) for s in BRANCHES]
    edited[3] = {**edited[3], "value": "SELECT id, value * 2 AS value FROM b WHERE value > 0"}
    project.pipeline("branches", edited, metrics=True)
    out, run_id = changed_only(project, branches)
    assert run_id is not None and "1 step(s) stale or missing" in out
    statuses = records(project, "branches", run_id)
    assert computed(statuses) == {"clean_b", "joined", "save"}
    assert {statuses[s] for s in ("read_a", "read_b", "clean_a")} == {"cached"}
    # the story shows the reused steps as cached, with the rows of their last materialization
    story = (project.root / ".odibi/stories/branches" / run_id / "story.html").read_text()
    assert story.count('class="badge cached"') == 3 and "cached (unchanged)" in story
    read_a = next(
        s
        for s in json.loads((project.root / ".odibi/stories/branches" / run_id / "tracker.json").read_text())["steps"]
        if s["step_name"] == "read_a"
    )
    assert read_a["after_snapshot"]["row_count"] == 5 and read_a["after_snapshot"]["schema"][0][0] == "id"


def test_a_reformatted_sql_step_runs_but_its_downstream_is_reused(project: Project, branches: Path) -> None:
    changed_only(project, branches)
    edited = [dict(s) for s in BRANCHES]
    edited[2] = {**edited[2], "value": "SELECT id, value\nFROM a\nWHERE value > 0"}  # same result
    project.pipeline("branches", edited, metrics=True)
    out, run_id = changed_only(project, branches)
    assert run_id is not None
    statuses = records(project, "branches", run_id)
    assert computed(statuses) == {"clean_a"}  # same data version: nothing downstream changed
    assert statuses["joined"] == statuses["save"] == "cached"
    assert re.search(r"cached joined\s+5 rows\s+\(inputs unchanged\)", out)


def test_metrics_count_cache_hits_and_misses(project: Project, branches: Path) -> None:
    changed_only(project, branches)
    edited = [dict(s) for s in BRANCHES]
    edited[4] = {**edited[4], "value": BRANCHES[4]["value"].replace("ORDER BY a.id", "ORDER BY a.id DESC")}
    project.pipeline("branches", edited, metrics=True)
    _, run_id = changed_only(project, branches)
    run_dir = project.root / ".odibi/stories/branches" / str(run_id)
    summary = json.loads((run_dir / "metrics.json").read_text())["summary"]
    assert summary["cache_hits"] == 4 and summary["cache_misses"] == 2
    prom = (run_dir / "metrics.prom").read_text()
    assert 'odibi_pipeline_cache_hits{pipeline="branches"} 4' in prom
    assert 'odibi_pipeline_cache_misses{pipeline="branches"} 2' in prom
    assert 'odibi_pipeline_steps{pipeline="branches",status="cached"} 4' in prom
    # the latest run's metrics, where a node_exporter textfile collector reads them
    assert (project.root / ".odibi/metrics/branches.prom").read_text() == prom


def test_data_versions_are_content_fingerprints(project: Project, branches: Path) -> None:
    changed_only(project, branches)
    with instance_of(project) as instance:
        version, metadata = latest_versions(instance, ["branches", "clean_a"])
        parquet = project.root / ".odibi/datasets/branches/clean_a/data.parquet"
        assert version == hashlib.sha256(parquet.read_bytes()).hexdigest()[:32] == metadata["odibi/data_version"].value
        source = instance.fetch_observations(dg.AssetKey(["branches", "source", "read_a"]), limit=1).records[0]
        observed = source.event_log_entry.asset_observation
        assert observed.tags[DATA_VERSION_TAG] and observed.metadata["odibi/source_files"].value == 1
        # the ingest recorded the source version it read, and the store the version of its input
        ingest = instance.fetch_materializations(dg.AssetKey(["branches", "raw_a"]), limit=1).records[0]
        provenance = dg.DataProvenance.from_tags(ingest.event_log_entry.asset_materialization.tags)
        assert (
            provenance.input_data_versions[dg.AssetKey(["branches", "source", "read_a"])].value
            == (observed.tags[DATA_VERSION_TAG])
        )


def test_reference_ingests_are_versioned_by_their_source_fingerprint(project: Project) -> None:
    write_sources(project)
    config = project.pipeline("refs", BRANCHES, ingest_mode="reference")
    changed_only(project, config)
    with instance_of(project) as instance:
        version, metadata = latest_versions(instance, ["refs", "raw_a"])
        observed = instance.fetch_observations(dg.AssetKey(["refs", "source", "read_a"]), limit=1).records[0]
        assert metadata["odibi/ingest_mode"].value == "reference"
        assert version == observed.event_log_entry.asset_observation.tags[DATA_VERSION_TAG]
    assert changed_only(project, config)[1] is None


def test_dagster_home_is_used_when_set_and_plain_runs_keep_the_instance_current(
    project: Project, branches: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = cli_env(DAGSTER_HOME=str(home))
    proc = run_cli("run", str(branches), "--changed-only", cwd=project.root, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert not (project.root / ".odibi/dagster").exists()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert len(instance.get_runs()) == 1

    # a plain run on the pipeline's own instance (once it exists) records what it did, so a
    # changed-only run after it has nothing to do
    changed_only(project, branches)
    write_sources(project, a_rows=3)
    plain = run_cli("run", str(branches), cwd=project.root, timeout=300)
    assert plain.returncode == 0, plain.stderr
    assert changed_only(project, branches)[1] is None


def test_a_remote_work_dir_without_dagster_home_is_refused(project: Project, branches: Path) -> None:
    env = cli_env(ODIBI_BASE_DIR="memory://lake")  # datasets and stories on a blob store
    proc = run_cli("run", str(branches), "--changed-only", cwd=project.root, env=env)
    assert proc.returncode == 2
    assert "--changed-only compares with the runs a Dagster instance recorded" in proc.stderr
    assert "set DAGSTER_HOME" in proc.stderr


# ----------------------------------------------------------------------------- partitions

DAILY = [
    {"layer": "ingest", "name": "read_day", "value": "data/{{ partition_key }}.csv", "outputs": {"data": "raw"}},
    {
        "layer": "transform",
        "name": "positive",
        "type": "sql",
        "value": "SELECT id, value FROM raw WHERE value > 0",
        "inputs": {"raw": "raw"},
        "outputs": {"data": "positive"},
    },
    {"layer": "store", "name": "save_day", "value": "out/{{ partition_key }}.parquet", "inputs": {"data": "positive"}},
]
DAYS = ["2024-01-01", "2024-01-02", "2024-01-03"]


def write_day(project: Project, day: str, rows: int) -> None:
    project.write(f"data/{day}.csv", "id,value\n" + "".join(f"{i},{i}\n" for i in range(1, rows + 1)))


@pytest.mark.parametrize("policy", ["multi_run", "single_run"])
def test_a_partitioned_pipeline_reruns_only_the_changed_partition(project: Project, policy: str) -> None:
    for n, day in enumerate(DAYS, start=2):
        write_day(project, day, n)
    partitions = {"type": "daily", "start": DAYS[0], "end": "2024-01-04"}
    config = project.pipeline("daily", DAILY, partitions=partitions, backfill={"policy": policy})
    window = f"{DAYS[0]}...{DAYS[-1]}"
    first, _ = changed_only(project, config, "--partition", window)
    assert first.count("succeeded") == (3 if policy == "multi_run" else 1)
    again, run_id = changed_only(project, config, "--partition", window)
    assert run_id is None and again.count("nothing changed") == (3 if policy == "multi_run" else 1)

    write_day(project, DAYS[1], 9)
    out, run_id = changed_only(project, config, "--partition", window)
    assert run_id is not None
    # Only the changed partition runs; a single-run range is split around it (Dagster records one
    # data version per asset for a whole range run).
    assert out.count("nothing changed") == 2 and out.count("running pipeline") == 1
    assert "partition 2024-01-02" in out.split("running pipeline")[1]
    assert computed(records(project, "daily", run_id)) == {
        f"{s}@{DAYS[1]}" for s in ("read_day", "positive", "save_day")
    }
    with instance_of(project) as instance:
        _, metadata = latest_versions(instance, ["daily", "positive"], DAYS[1])
        assert metadata["dagster/partition_row_count"].value == 9
        # each partition's own fingerprint, also in a range run
        parquet = project.root / ".odibi/datasets/daily/positive" / f"partition={DAYS[1]}.parquet"
        assert metadata["odibi/data_version"].value == hashlib.sha256(parquet.read_bytes()).hexdigest()[:32]
    assert changed_only(project, config, "--partition", window)[1] is None

    # A reformatted SQL step is stale in every partition: each partition runs it (in a run of its
    # own, also with single_run), and reuses what follows it when its output is the same.
    for attempt, sql in enumerate(
        ["SELECT id, value\nFROM raw\nWHERE value > 0", "SELECT id, value FROM raw WHERE 0 < value"]
    ):
        edited = [dict(s) for s in DAILY]
        edited[1] = {**edited[1], "value": sql}
        project.pipeline("daily", edited, partitions=partitions, backfill={"policy": policy})
        out, run_id = changed_only(project, config, "--partition", window)
        assert out.count("running pipeline") == 3
        last = DAYS[-1]
        statuses = records(project, "daily", str(run_id))  # the last partition's run
        assert {statuses[f"read_day@{last}"], statuses[f"positive@{last}"]} == {"cached", "success"}
        assert statuses[f"read_day@{last}"] == "cached"
        # A partition first materialized by a single-run range carries the range's data version
        # (Dagster records one per asset for a whole run); its first run alone gives it its own,
        # so what follows it runs once more. From then on it is reused.
        once_more = policy == "single_run" and attempt == 0
        assert statuses[f"save_day@{last}"] == ("success" if once_more else "cached")
