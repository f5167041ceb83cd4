"""The ingest steps' source files as observable source assets: observed on ``observe_sources: <cron>``
by Dagster's automation evaluator (no click needed), per partition when the path is templated, and
a change of a source's files marks its ingest stale in Dagster's own resolver."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.data_version import DATA_VERSION_TAG, StaleStatus
from odibi_triggers_lib import build, daily_pipeline, days, write_daily_data, write_yaml

from odibi_dagster.config.errors import ConfigValidationError
from odibi_dagster.translate.cache import stale_resolver

SOURCE = dg.AssetKey(["simple", "source", "ingest"])


def simple(project: Path, **extra: object) -> Path:
    (project / "data").mkdir(exist_ok=True)
    (project / "data/x.csv").write_text("id,value\n1,10\n2,20\n")
    steps = [{"layer": "ingest", "name": "ingest", "value": "data/x.csv", "outputs": {"data": "raw"}}]
    return write_yaml(project / "simple.yaml", {"pipeline": "simple", **extra, "steps": steps})


def observe(defs: dg.Definitions, instance: dg.DagsterInstance, key: dg.AssetKey, **kwargs: object) -> None:
    """What "Observe sources" launches: the observable asset's own op."""
    job = defs.resolve_implicit_global_asset_job_def()
    assert job.execute_in_process(instance=instance, asset_selection=[key], **kwargs).success


def observed_versions(instance: dg.DagsterInstance, key: dg.AssetKey) -> list[tuple[str | None, str]]:
    records = instance.fetch_observations(key, limit=100).records
    return [(r.partition_key, r.event_log_entry.asset_observation.tags[DATA_VERSION_TAG]) for r in records]


def test_observe_sources_cron_requests_observations_without_a_click(project: Path) -> None:
    defs = build(simple(project, observe_sources="*/15 * * * *"))
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key == SOURCE)
    assert spec.group_name == "simple" and spec.automation_condition is not None
    with dg.DagsterInstance.ephemeral() as instance:
        first = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, evaluation_time=dt.datetime(2024, 1, 1, 0, 1, tzinfo=dt.UTC)
        )
        assert first.total_requested == 0
        tick = dg.evaluate_automation_conditions(
            defs=defs,
            instance=instance,
            cursor=first.cursor,
            evaluation_time=dt.datetime(2024, 1, 1, 0, 16, tzinfo=dt.UTC),
        )
        assert tick.total_requested == 1 and tick.get_requested_partitions(SOURCE) == {None}


def test_a_source_change_marks_its_ingest_stale(project: Path) -> None:
    defs = build(simple(project))
    raw = dg.AssetKey(["simple", "raw"])
    with dg.DagsterInstance.ephemeral() as instance:
        observe(defs, instance, SOURCE)
        assert defs.resolve_job_def("simple").execute_in_process(instance=instance).success
        graph = defs.resolve_asset_graph()
        assert stale_resolver(instance, graph).get_status(raw) == StaleStatus.FRESH

        observe(defs, instance, SOURCE)  # nothing changed: the same version
        assert len({v for _, v in observed_versions(instance, SOURCE)}) == 1
        assert stale_resolver(instance, graph).get_status(raw) == StaleStatus.FRESH

        (project / "data/x.csv").write_text("id,value\n1,10\n2,20\n3,30\n")
        observe(defs, instance, SOURCE)
        assert stale_resolver(instance, graph).get_status(raw) == StaleStatus.STALE
        (cause,) = stale_resolver(instance, graph).get_stale_root_causes(raw)
        assert cause.asset_key == SOURCE and cause.reason == "has a new data version"


def test_templated_sources_are_observed_per_partition(project: Path) -> None:
    write_daily_data(project, days("2024-01-01", 3))
    defs = build(daily_pipeline(project, observe_sources="0 * * * *"))
    key = dg.AssetKey(["daily", "source", "ingest_sales"])
    assert defs.resolve_asset_graph().get(key).is_partitioned
    with dg.DagsterInstance.ephemeral() as instance:
        observe(defs, instance, key)  # every partition (the UI's "Observe sources")
        versions = dict(observed_versions(instance, key))
        assert len(versions) == 10  # 2024-01-01 .. 2024-01-10
        assert versions["2024-01-05"] == "missing" and versions["2024-01-01"] != "missing"
        assert len({versions[d] for d in days("2024-01-01", 3)}) == 3
        # a partition run observes its own partition only
        observe(defs, instance, key, partition_key="2024-01-02")
        assert len(observed_versions(instance, key)) == 11

        # the automation condition asks for the latest time window only (where files land)
        first = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, evaluation_time=dt.datetime(2024, 1, 11, 0, 30, tzinfo=dt.UTC)
        )
        tick = dg.evaluate_automation_conditions(
            defs=defs,
            instance=instance,
            cursor=first.cursor,
            evaluation_time=dt.datetime(2024, 1, 11, 1, 5, tzinfo=dt.UTC),
        )
        assert tick.get_requested_partitions(key) == {"2024-01-10"}


def test_sources_that_are_not_files_are_not_observed(project: Path) -> None:
    doc = {
        "pipeline": "mixed",
        "steps": [
            {
                "layer": "ingest",
                "name": "db",
                "value": "sqlite:///x.db",
                "params": {"table": "t"},
                "outputs": {"d": "a"},
            },
            {"layer": "ingest", "name": "custom", "type": "function", "value": "os.getcwd", "outputs": {"d": "b"}},
            {"layer": "ingest", "name": "per_run", "value": "data/{{ run_id }}.csv", "outputs": {"d": "c"}},
            {"layer": "ingest", "name": "files", "value": "data/*.csv", "outputs": {"d": "e"}},
        ],
    }
    defs = build(write_yaml(project / "mixed.yaml", doc))
    observable = {k.to_user_string() for k in defs.resolve_asset_graph().external_asset_keys}
    assert observable == {"mixed/source/files"}


def test_observe_sources_must_be_a_cron_expression(project: Path) -> None:
    with pytest.raises(ConfigValidationError, match="observe_sources: 'every day' is not a valid cron expression"):
        build(simple(project, observe_sources="every day"))
