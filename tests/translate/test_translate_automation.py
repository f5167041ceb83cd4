"""Automation and guarantees from config, on real Dagster: freshness policies on the asset specs,
concurrency pools on the ops (and a pool limited to 1 keeping two steps of a multiprocess run
apart), and eager steps that wait for their inputs' blocking checks (Dagster's own automation
condition evaluation over a real instance)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import dagster as dg
import pytest
from odibi_testlib import Project, reconstructable_job

from odibi_dagster import OdibiTranslator, OdibiTranslatorSettings, build_definitions


def _op_pools(defs: dg.Definitions) -> dict[dg.AssetKey, str | None]:
    return {key: a.op.pool for a in defs.assets for key in a.keys}  # type: ignore[union-attr]


def _specs(defs: dg.Definitions) -> dict[dg.AssetKey, dg.AssetSpec]:
    return {s.key: s for s in defs.resolve_all_asset_specs()}


def _steps(check_min: int = 3) -> list[dict[str, Any]]:
    return [
        {"layer": "connect", "name": "warehouse", "value": "sqlite:///warehouse.db"},
        {
            "layer": "ingest",
            "name": "read",
            "value": "data/sample.csv",
            "outputs": {"data": "raw"},
            "checks": [{"row_count": {"min": check_min}, "severity": "error"}],
            "metadata": {"freshness": {"deadline_cron": "0 9 * * *", "lower_bound_delta": "1h"}},
        },
        {
            "layer": "transform",
            "name": "clean",
            "type": "sql",
            "value": "SELECT * FROM raw WHERE value > 100",
            "inputs": {"raw": "raw"},
            "outputs": {"data": "cleaned"},
            "metadata": {"automation": "eager", "pool": "heavy_sql"},
        },
        {
            "layer": "store",
            "name": "publish",
            "value": "cleaned_table",
            "params": {"connection": "warehouse", "mode": "overwrite"},
            "inputs": {"data": "cleaned"},
        },
    ]


def test_freshness_pools_and_automation_on_the_definitions(project: Project) -> None:
    project.sample_csv()
    path = project.pipeline("guarded", _steps(), freshness={"fail_window": "26h", "warn_window": "25h"})
    defs = build_definitions(path)
    raw, cleaned, publish = (dg.AssetKey(["guarded", k]) for k in ("raw", "cleaned", "publish"))
    specs = _specs(defs)

    assert specs[raw].freshness_policy == dg.FreshnessPolicy.cron(
        deadline_cron="0 9 * * *", lower_bound_delta=dt.timedelta(hours=1)
    )
    window = dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=26), warn_window=dt.timedelta(hours=25))
    assert specs[cleaned].freshness_policy == window and specs[publish].freshness_policy == window

    # The step's own pool; the pool of the connection a store writes through; none otherwise.
    assert _op_pools(defs) == {raw: None, cleaned: "heavy_sql", publish: "guarded__warehouse"}

    condition = specs[cleaned].automation_condition
    assert condition is not None
    labels = {c.get_label() for c in condition.children}  # type: ignore[attr-defined]
    assert labels == {"eager", "all_deps_blocking_checks_passed"}
    assert specs[raw].automation_condition is None and specs[publish].automation_condition is None

    off = OdibiTranslatorSettings(
        enable_freshness_policies=False, enable_pools=False, automation_waits_for_blocking_checks=False
    )
    plain = build_definitions(path, translator=OdibiTranslator(settings=off))
    assert all(s.freshness_policy is None for s in plain.resolve_all_asset_specs())
    assert set(_op_pools(plain).values()) == {None}
    assert _specs(plain)[cleaned].automation_condition.get_label() == "eager"  # type: ignore[union-attr]


@pytest.mark.parametrize("waits", [True, False], ids=["waits_for_checks", "plain_eager"])
def test_eager_step_waits_for_the_blocking_checks_of_its_inputs(project: Project, waits: bool) -> None:
    """Dagster's automation evaluation over a real instance: after ``read`` materialized with its
    blocking check failing, ``clean`` (eager) is not requested; once the check passes, it is. Plain
    ``eager()`` (the setting off) would have run ``clean`` on the rejected data."""
    project.sample_csv()
    path = project.pipeline("auto", _steps(check_min=100)[1:3])
    settings = OdibiTranslatorSettings(automation_waits_for_blocking_checks=waits)
    raw, cleaned = dg.AssetKey(["auto", "raw"]), dg.AssetKey(["auto", "cleaned"])
    with dg.DagsterInstance.ephemeral() as instance:
        defs = build_definitions(path, translator=OdibiTranslator(settings=settings))
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert tick.total_requested == 0  # nothing upstream has happened yet

        job = defs.resolve_job_def("auto")
        failed = job.execute_in_process(instance=instance, asset_selection=[raw], raise_on_error=False)
        assert not failed.success
        assert [e.passed for e in failed.get_asset_check_evaluations()] == [False]
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
        assert tick.get_requested_partitions(cleaned) == (set() if waits else {None})
        if not waits:
            return

        # The data is fixed (the check's minimum now holds): the check passes, `clean` is requested.
        path = project.pipeline("auto", _steps(check_min=3)[1:3])
        defs = build_definitions(path, translator=OdibiTranslator(settings=settings))
        passed = defs.resolve_job_def("auto").execute_in_process(instance=instance, asset_selection=[raw])
        assert [e.passed for e in passed.get_asset_check_evaluations()] == [True]
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
        assert tick.get_requested_partitions(cleaned) == {None}


SLOW_FNS = """\
import time


def slow(data):
    time.sleep(2)
    return data
"""


def _step_windows(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[float, float]]:
    start: dict[str, float] = {}
    end: dict[str, float] = {}
    for record in instance.all_logs(run_id):
        ev = record.dagster_event
        if ev is None or not ev.step_key:
            continue
        step = ev.step_key.split("__", 1)[1]
        if ev.event_type_value == "STEP_START":
            start[step] = record.timestamp
        elif ev.event_type_value == "STEP_SUCCESS":
            end[step] = record.timestamp
    return {s: (start[s], end[s]) for s in start}


def _overlap(windows: dict[str, tuple[float, float]]) -> bool:
    (a0, a1), (b0, b1) = windows["a"], windows["b"]
    return a0 < b1 and b0 < a1


def test_a_pool_limited_to_one_keeps_two_steps_of_a_multiprocess_run_apart(
    project: Project, tmp_path, monkeypatch: pytest.MonkeyPatch, cli_job_env: None
) -> None:
    """Two independent slow steps in pool ``slow``, run by Dagster's multiprocess executor on a
    real on-disk instance: with no limit they run at the same time; with the pool limited to 1
    (what ``dagster instance concurrency set slow 1`` or ``concurrency: pools: default_limit``
    does) the second waits for the first, and the run's events say it was blocked by the pool."""
    project.sample_csv()
    module = project.module(SLOW_FNS)
    slow = {"type": "function", "value": f"{module}.slow", "inputs": {"data": "raw"}, "metadata": {"pool": "slow"}}
    path = project.pipeline(
        "pooled",
        [
            {"layer": "ingest", "name": "read", "value": "data/sample.csv", "outputs": {"data": "raw"}},
            {"layer": "transform", "name": "a", "outputs": {"data": "out_a"}, **slow},
            {"layer": "transform", "name": "b", "outputs": {"data": "out_b"}, **slow},
        ],
        executor={"type": "multiprocess", "max_concurrent": 2},
    )
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    job = reconstructable_job(monkeypatch, path, "pooled")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        free = dg.execute_job(job, instance=instance)
        assert free.success
        assert _overlap(_step_windows(instance, free.run_id)), "without a limit the two steps run together"

        instance.event_log_storage.set_concurrency_slots("slow", 1)
        limited = dg.execute_job(job, instance=instance)
        assert limited.success
        assert not _overlap(_step_windows(instance, limited.run_id))
        blocked = [
            r.dagster_event.message
            for r in instance.all_logs(limited.run_id)
            if r.dagster_event is not None and r.dagster_event.event_type_value == "ENGINE_EVENT"
        ]
        assert "Step blocked by limit for pool slow" in blocked
