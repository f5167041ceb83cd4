"""``ingest_mode: reference``: an ingest of files records a fingerprinted manifest instead
of copying the source to a Parquet dataset; downstream steps read the source in place and
fail loudly when it changed after the ingest (real Dagster, real DuckDB, real files)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from translate_support import (
    HIGH_VALUE_IDS,
    MULTIPROCESS_CONFIG,
    ODIBI_SIMPLE_STEPS,
    Project,
    failure_message,
    materialization_metadata,
    persistent_instance,
    reconstructable_job,
    run_pipeline,
    run_step_events,
)

from odibi_dagster import build_definitions
from odibi_dagster.config.errors import ConfigValidationError

RAW = dg.AssetKey(["refs", "raw_data"])
FILTERED = dg.AssetKey(["refs", "filtered_data"])


def _pipeline(project: Project, mode: str = "reference", name: str = "refs", **settings) -> Path:
    return project.pipeline(name, ODIBI_SIMPLE_STEPS, ingest_mode=mode, **settings)


def test_reference_ingest_writes_a_manifest_and_gives_the_same_results_as_copy(project: Project) -> None:
    project.sample_csv()
    copy_result = run_pipeline(_pipeline(project, "copy", name="copied"), job="copied")
    assert copy_result.success
    copied = pd.read_parquet(project.path("output/filtered.parquet"))
    project.path("output/filtered.parquet").unlink()

    result = run_pipeline(_pipeline(project), job="refs")
    assert result.success
    datasets = project.datasets_dir("refs")
    # no Parquet copy of the source: a manifest where the dataset would be
    assert sorted(p.relative_to(datasets).as_posix() for p in datasets.rglob("*") if p.is_file()) == [
        "filtered_data/data.parquet",
        "raw_data/data.source.json",
    ]
    manifest = json.loads((datasets / "raw_data" / "data.source.json").read_text())
    source = project.path("data/sample.csv")
    assert manifest["source"] == str(source)
    assert manifest["fingerprint"] == [[str(source), source.stat().st_size, source.stat().st_mtime_ns]]
    assert manifest["row_count"] == 10 and manifest["step"] == "read_sample_csv"

    pd.testing.assert_frame_equal(pd.read_parquet(project.path("output/filtered.parquet")), copied)
    assert copied["id"].tolist() == HIGH_VALUE_IDS

    # the ingest's metadata is what the copy reported, with the source as its URI
    ref_md = materialization_metadata(result, RAW)
    copy_md = materialization_metadata(copy_result, dg.AssetKey(["copied", "raw_data"]))
    assert ref_md["dagster/row_count"].value == copy_md["dagster/row_count"].value == 10
    assert ref_md["dagster/column_schema"].schema == copy_md["dagster/column_schema"].schema
    assert ref_md["dagster/uri"].value == str(source)
    assert ref_md["odibi/ingest_mode"].value == "reference"
    assert "odibi/ingest_mode" not in copy_md
    # the downstream step's schema diff / row delta see the same "before" snapshot
    filtered_md = materialization_metadata(result, FILTERED)
    assert filtered_md["dagster/row_count"].value == 6
    assert (
        filtered_md["odibi/row_delta"].value
        == materialization_metadata(copy_result, dg.AssetKey(["copied", "filtered_data"]))["odibi/row_delta"].value
    )


def test_a_source_changed_after_the_ingest_fails_downstream_naming_file_and_step(project: Project) -> None:
    project.sample_csv()
    path = _pipeline(project)
    assert run_pipeline(path, job="refs", selection=[RAW]).success
    source = project.path("data/sample.csv")
    with open(source, "a", newline="") as fh:
        fh.write("11,item_11,500,C,2024-01-11T08:00:00\r\n")

    later = run_pipeline(path, job="refs", selection=[FILTERED])
    assert not later.success
    message = failure_message(later, "filter_high_value")
    assert str(source) in message and "'read_sample_csv'" in message and "changed after" in message
    assert not project.path("output/filtered.parquet").exists()

    # materializing the ingest again records the new file; downstream sees the new row
    assert run_pipeline(path, job="refs").success
    assert pd.read_parquet(project.path("output/filtered.parquet"))["id"].tolist() == [*HIGH_VALUE_IDS, 11]


def test_a_deleted_source_fails_downstream_instead_of_reading_nothing(project: Project) -> None:
    project.sample_csv()
    path = _pipeline(project)
    assert run_pipeline(path, job="refs", selection=[RAW]).success
    project.path("data/sample.csv").unlink()
    later = run_pipeline(path, job="refs", selection=[FILTERED])
    assert not later.success
    assert "changed after step 'read_sample_csv'" in failure_message(later, "filter_high_value")


def test_a_source_changing_while_a_step_reads_it_commits_nothing(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = project.sample_csv()
    # A function step that rewrites its own source while it runs: a concurrent writer, made
    # deterministic. Its output would mix the old read with a changed source.
    fn = project.module(
        "import os\n"
        f"SOURCE = {str(source)!r}\n"
        "def touch(data):\n"
        "    if os.environ.get('ODIBI_TEST_REWRITE'):\n"
        "        with open(SOURCE, 'a') as fh:\n"
        "            fh.write('11,item_11,500,C,2024-01-11T08:00:00\\r\\n')\n"
        "    return data\n"
    )
    path = project.pipeline(
        "racing",
        [
            {"layer": "ingest", "name": "read", "value": "data/sample.csv", "outputs": {"data": "raw"}},
            {
                "layer": "transform",
                "name": "touch",
                "type": "function",
                "value": f"{fn}.touch",
                "inputs": {"data": "raw"},
                "outputs": {"data": "touched"},
            },
        ],
        ingest_mode="reference",
    )
    assert run_pipeline(path, job="racing").success
    dataset = project.datasets_dir("racing") / "touched" / "data.parquet"
    before = dataset.read_bytes()

    monkeypatch.setenv("ODIBI_TEST_REWRITE", "1")
    result = run_pipeline(path, job="racing", selection=[dg.AssetKey(["racing", "touched"])])
    assert not result.success
    message = failure_message(result, "touch")
    assert "nothing was written" in message and str(source) in message and "'read'" in message
    assert dataset.read_bytes() == before  # the previous dataset stands
    assert sorted(p.name for p in dataset.parent.iterdir()) == ["data.parquet"]  # no temp file left


def test_switching_modes_replaces_the_other_form_of_the_dataset(project: Project) -> None:
    project.sample_csv()
    raw_dir = project.datasets_dir("refs") / "raw_data"
    assert run_pipeline(_pipeline(project, "copy"), job="refs").success
    assert [p.name for p in raw_dir.iterdir()] == ["data.parquet"]
    assert run_pipeline(_pipeline(project, "reference"), job="refs").success
    assert [p.name for p in raw_dir.iterdir()] == ["data.source.json"]
    assert run_pipeline(_pipeline(project, "copy"), job="refs").success
    assert [p.name for p in raw_dir.iterdir()] == ["data.parquet"]


def test_checks_stores_and_function_steps_read_a_reference_dataset(project: Project) -> None:
    project.sample_csv()
    fn = project.module("def tag(data):\n    return data.assign(tagged=data['value'] * 2)\n")
    path = project.pipeline(
        "mixed",
        [
            {
                "layer": "ingest",
                "name": "read",
                "value": "data/sample.csv",
                "outputs": {"data": "raw"},
                "checks": [{"not_null": ["id"], "severity": "error"}, {"row_count": {"min": 11}}],
            },
            {
                "layer": "transform",
                "name": "tag",
                "type": "function",
                "value": f"{fn}.tag",
                "inputs": {"data": "raw"},
                "outputs": {"data": "tagged"},
            },
            {"layer": "store", "name": "save_raw", "value": "out/raw.jsonl", "inputs": {"data": "raw"}},
        ],
        ingest_mode="reference",
    )
    result = run_pipeline(path, job="mixed")
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"not_null__id": True, "row_count": False}  # 10 rows < min 11: the check really ran
    assert (project.datasets_dir("mixed") / "raw" / "data.source.json").exists()
    tagged = pd.read_parquet(project.datasets_dir("mixed") / "tagged" / "data.parquet")
    assert tagged["tagged"].tolist() == [v * 2 for v in tagged["value"]]
    assert len(pd.read_json(project.path("out/raw.jsonl"), lines=True)) == 10


def test_ingests_that_are_not_plain_files_are_still_copied(project: Project) -> None:
    project.sample_csv()
    db = project.path("data/shop.db")
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE items (id INTEGER, name TEXT)")
        conn.executemany("INSERT INTO items VALUES (?, ?)", [(1, "a"), (2, "b")])
    reader = project.module("import pandas as pd\n\ndef make():\n    return pd.DataFrame({'x': [1, 2, 3]})\n")
    os.environ["ODIBI_TEST_CSV_SEP"] = ","
    path = project.pipeline(
        "kinds",
        [
            # a database: no file fingerprint covers it
            {
                "layer": "ingest",
                "name": "from_db",
                "value": f"sqlite:///{db}",
                "params": {"table": "items"},
                "outputs": {"data": "items"},
            },
            # a custom reader
            {
                "layer": "ingest",
                "name": "from_fn",
                "type": "function",
                "value": f"{reader}.make",
                "outputs": {"data": "made"},
            },
            # a file whose params carry a secret: the manifest would store it in plain text
            {
                "layer": "ingest",
                "name": "secret_opts",
                "value": "data/sample.csv",
                "params": {"sep": {"secret": "ODIBI_TEST_CSV_SEP"}},
                "outputs": {"data": "with_secret"},
            },
            # a plain file: by reference
            {"layer": "ingest", "name": "plain", "value": "data/sample.csv", "outputs": {"data": "plain"}},
        ],
        ingest_mode="reference",
    )
    try:
        assert run_pipeline(path, job="kinds").success
    finally:
        del os.environ["ODIBI_TEST_CSV_SEP"]
    datasets = project.datasets_dir("kinds")
    forms = {p.parent.name: p.name for p in datasets.rglob("data.*")}
    assert forms == {
        "items": "data.parquet",
        "made": "data.parquet",
        "with_secret": "data.parquet",
        "plain": "data.source.json",
    }


def test_a_source_the_pipeline_also_writes_is_copied(project: Project) -> None:
    project.sample_csv()
    path = project.pipeline(
        "loop",
        [
            {"layer": "ingest", "name": "read", "value": "data/sample.csv", "outputs": {"data": "raw"}},
            {"layer": "store", "name": "rewrite", "value": "data/sample.csv", "inputs": {"data": "raw"}},
        ],
        ingest_mode="reference",
    )
    assert run_pipeline(path, job="loop").success
    assert (project.datasets_dir("loop") / "raw" / "data.parquet").exists()


def test_reference_datasets_cross_processes_with_the_multiprocess_executor(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli_job_env: None
) -> None:
    project.sample_csv()
    path = _pipeline(project)
    job = reconstructable_job(monkeypatch, path, "refs")
    with persistent_instance(tmp_path / "dagster_home") as instance:
        result = dg.execute_job(job, instance=instance, run_config=MULTIPROCESS_CONFIG, raise_on_error=False)
        assert result.success
        assert run_step_events(instance, result.run_id, "STEP_WORKER_STARTED") == {
            "read_sample_csv",
            "filter_high_value",
            "write_filtered_parquet",
        }
    assert (project.datasets_dir("refs") / "raw_data" / "data.source.json").exists()
    assert pd.read_parquet(project.path("output/filtered.parquet"))["id"].tolist() == HIGH_VALUE_IDS


def test_unknown_ingest_mode_is_a_validation_error_naming_the_field(project: Project) -> None:
    path = _pipeline(project, "lazy")
    with pytest.raises(ConfigValidationError) as err:
        build_definitions(path)
    text = str(err.value)
    assert "refs.yaml" in text and "ingest_mode" in text and "'copy'" in text and "'reference'" in text
