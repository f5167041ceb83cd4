"""Pipelines on Azure Blob Storage paths (``abfs://``) against a real Azurite on 127.0.0.1:
sources, persisted datasets, stores in Parquet/CSV/Delta, ingest by reference (ETag
fingerprint), with tracker records and the story in the blob store beside the datasets."""

from __future__ import annotations

import json
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from support import AZURITE_ACCOUNT_KEY, new_container

from odibi_dagster import build_definitions
from odibi_dagster.engines import paths

ACCOUNT_KEY = AZURITE_ACCOUNT_KEY


@pytest.fixture
def container(azurite: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh container; ``abfs://<container>`` paths reach Azurite through the environment."""
    return new_container(azurite, monkeypatch)


def _pipeline(tmp: Path, c: str, mode: str = "copy") -> Path:
    cfg = tmp / "az.json"
    cfg.write_text(
        json.dumps(
            {
                "pipeline": "az",
                "ingest_mode": mode,
                "steps": [
                    {
                        "layer": "ingest",
                        "name": "read",
                        "value": f"abfs://{c}/in/sales.csv",
                        "outputs": {"data": "raw"},
                    },
                    {
                        "layer": "transform",
                        "name": "big",
                        "type": "sql",
                        "value": "SELECT * FROM raw WHERE amount > 100",
                        "inputs": {"raw": "raw"},
                        "outputs": {"data": "big"},
                    },
                    {
                        "layer": "store",
                        "name": "save_parquet",
                        "value": f"abfs://{c}/out/big.parquet",
                        "inputs": {"data": "big"},
                    },
                    {
                        "layer": "store",
                        "name": "save_csv",
                        "value": f"abfs://{c}/out/big.csv",
                        "inputs": {"data": "big"},
                    },
                    {
                        "layer": "store",
                        "name": "save_delta",
                        "value": f"abfs://{c}/out/big_delta",
                        "params": {"format": "delta"},
                        "inputs": {"data": "big"},
                    },
                ],
            }
        )
    )
    return cfg


def _run(cfg: Path, c: str, selection: list[dg.AssetKey] | None = None) -> dg.ExecuteInProcessResult:
    defs = build_definitions(cfg, base_dir=f"abfs://{c}/work")
    return defs.resolve_job_def("az").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), asset_selection=selection, raise_on_error=False
    )


def _put_sales(c: str, extra: str = "") -> None:
    body = "id,store,amount\n1,north,50\n2,south,150\n3,north,300\n4,east,101\n" + extra
    paths.fs_for(f"abfs://{c}").pipe(f"abfs://{c}/in/sales.csv", body.encode())


def _messages(result: dg.ExecuteInProcessResult) -> str:
    """The innermost error message of every failed step."""
    out = []
    for event in result.all_events:
        if event.is_step_failure:
            err = event.event_specific_data.error
            while err.cause is not None:
                err = err.cause
            out.append(err.message)
    return "\n".join(out)


def test_a_pipeline_reads_persists_and_stores_on_azure_blob_storage(tmp_path: Path, container: str) -> None:
    from deltalake import DeltaTable

    _put_sales(container)
    result = _run(_pipeline(tmp_path, container), container)
    assert result.success, _messages(result)
    fs = paths.fs_for(f"abfs://{container}")
    files = {p.split("/", 1)[1] for p in fs.find(f"abfs://{container}")}
    assert {
        "work/datasets/az/raw/data.parquet",
        "work/datasets/az/big/data.parquet",
        "out/big.parquet",
        "out/big.csv",
    } <= files
    with fs.open(f"abfs://{container}/out/big.parquet", "rb") as fh:
        assert sorted(pd.read_parquet(fh)["id"]) == [2, 3, 4]
    with fs.open(f"abfs://{container}/out/big.csv", "r") as fh:
        assert sorted(pd.read_csv(fh)["id"]) == [2, 3, 4]
    table = DeltaTable(
        f"abfs://{container}/out/big_delta",
        storage_options=paths.delta_storage_options(f"abfs://{container}/out/big_delta"),
    )
    assert table.version() == 0 and sorted(table.to_pandas()["id"]) == [2, 3, 4]
    # metadata names the blobs; the account key appears nowhere in it
    mats = {
        m.materialization.asset_key.path[-1]: m.materialization.metadata
        for m in result.get_asset_materialization_events()
    }
    assert mats["big"]["dagster/uri"].value == f"abfs://{container}/work/datasets/az/big/data.parquet"
    assert mats["save_delta"]["dagster/row_count"].value == 3
    assert ACCOUNT_KEY not in json.dumps({k: str(v) for md in mats.values() for k, v in md.items()})
    # tracker records and the story live under the remote work dir, where every worker sees them
    run_dir = f"abfs://{container}/work/stories/az/{result.run_id}"
    story = fs.cat(f"{run_dir}/story.html").decode()
    assert story.startswith("<!DOCTYPE html>") and ACCOUNT_KEY not in story
    assert mats["big"]["odibi/story"].value == f"{run_dir}/story.html"
    lineage = json.loads(fs.cat(f"{run_dir}/tracker.json"))
    assert lineage["summary"]["success_count"] == 5 and lineage["summary"]["running_count"] == 0
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{run_dir}/steps", detail=False)) == [
        f"{s}.json" for s in ("big", "read", "save_csv", "save_delta", "save_parquet")
    ]
    assert not (tmp_path / ".odibi").exists() and not Path("abfs:").exists()


def test_reference_ingest_on_blob_storage_fails_downstream_when_the_blob_changes(
    tmp_path: Path, container: str
) -> None:
    _put_sales(container)
    cfg = _pipeline(tmp_path, container, mode="reference")
    raw, big = dg.AssetKey(["az", "raw"]), dg.AssetKey(["az", "big"])
    assert _run(cfg, container, [raw]).success
    manifest = f"abfs://{container}/work/datasets/az/raw/data.source.json"
    fs = paths.fs_for(manifest)
    assert fs.exists(manifest) and not fs.exists(f"abfs://{container}/work/datasets/az/raw/data.parquet")
    recorded = json.loads(fs.cat(manifest))
    assert recorded["fingerprint"][0][2] == fs.info(f"abfs://{container}/in/sales.csv")["etag"]

    assert _run(cfg, container, [big]).success  # unchanged blob: read in place
    _put_sales(container, extra="5,west,999\n")
    later = _run(cfg, container, [big])
    assert not later.success
    assert f"abfs://{container}/in/sales.csv changed after step 'read'" in _messages(later)
    assert _run(cfg, container).success  # ingest again, then everything downstream sees row 5
    with fs.open(f"abfs://{container}/out/big.parquet", "rb") as fh:
        assert sorted(pd.read_parquet(fh)["id"]) == [2, 3, 4, 5]


def test_file_watch_sensor_on_a_blob_prefix_starts_one_run_per_new_or_rewritten_blob(
    tmp_path: Path, container: str
) -> None:
    cfg = tmp_path / "landing.json"
    cfg.write_text(
        json.dumps(
            {
                "pipeline": "landing",
                "ingest_mode": "reference",
                "sensors": [
                    {
                        "type": "file_watch",
                        "path": f"abfs://{container}/incoming",
                        "pattern": "*.csv",
                        "step": "ingest",
                        "settle_seconds": 0,
                    }
                ],
                "steps": [
                    {
                        "layer": "ingest",
                        "name": "ingest",
                        "value": f"abfs://{container}/incoming/latest.csv",
                        "outputs": {"data": "raw"},
                    },
                    {
                        "layer": "transform",
                        "name": "count",
                        "type": "sql",
                        "value": "SELECT COUNT(*) AS n FROM raw",
                        "inputs": {"raw": "raw"},
                        "outputs": {"data": "counted"},
                    },
                ],
            }
        )
    )
    fs = paths.fs_for(f"abfs://{container}")
    defs = build_definitions(cfg)
    sensor = defs.resolve_sensor_def("landing__watch_ingest")
    job = defs.resolve_job_def("landing")
    with dg.DagsterInstance.ephemeral() as instance:

        def tick(cursor: str | None) -> dg.SensorExecutionData:
            return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs))

        empty = tick(None)
        assert not empty.run_requests
        fs.pipe(f"abfs://{container}/incoming/a.csv", b"v\n1\n2\n")
        fs.pipe(f"abfs://{container}/incoming/b.csv", b"v\n1\n2\n3\n")
        fs.pipe(f"abfs://{container}/incoming/.b.csv.tmp", b"v\n")  # an upload in progress: hidden
        fs.pipe(f"abfs://{container}/incoming/notes.txt", b"x")  # not matching the pattern
        cursor, sources, counts = empty.cursor, [], {}
        for _ in range(2):  # unpartitioned: one run at a time
            evaluation = tick(cursor)
            (request,) = evaluation.run_requests
            cursor = evaluation.cursor
            sources.append(request.run_config["ops"]["landing__ingest"]["config"]["source"])
            result = job.execute_in_process(
                instance=instance, run_config=request.run_config, tags=dict(request.tags), raise_on_error=False
            )
            assert result.success, _messages(result)
            counted = tmp_path / ".odibi" / "datasets" / "landing" / "counted" / "data.parquet"
            counts[request.tags["odibi/file"]] = int(pd.read_parquet(counted)["n"][0])
        assert sorted(sources) == [f"abfs://{container}/incoming/a.csv", f"abfs://{container}/incoming/b.csv"]
        assert counts == {"a.csv": 2, "b.csv": 3}

        first = tick(cursor)
        assert not first.run_requests  # nothing new: no run
        time.sleep(1.1)  # blob timestamps have one-second resolution
        fs.pipe(f"abfs://{container}/incoming/a.csv", b"v\n1\n2\n3\n4\n")
        again = tick(first.cursor)
        assert [r.tags["odibi/file"] for r in again.run_requests] == ["a.csv"]
