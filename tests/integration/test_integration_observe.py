"""Issue 4 end to end: metadata in the event log, story, tracker JSON, checks, hooks, secrets."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import dagster as dg
import pytest

from odibi_dagster import build_definitions

SECRET = "s3cr3t-T0ken-9f8e7d"


def _write_pipeline(tmp: Path, *, check_fail: bool = False, hook_raises: bool = False, extra: str = "") -> Path:
    # A module name per test: Python caches imported modules by name.
    mod = f"obs_hooks_{uuid.uuid4().hex[:8]}"
    (tmp / "data").mkdir()
    (tmp / "data" / "orders.csv").write_text(
        "order_id,customer_id,amount,status\n1,10,25.5,paid\n2,11,100.0,paid\n3,10,7.25,refunded\n4,12,50,paid\n"
        "5,13,<script>alert(1)</script>,paid\n"
    )
    (tmp / "data" / "customers.csv").write_text("customer_id,name,country\n10,Ada,NG\n11,Bo,NL\n12,Cy,US\n")
    (tmp / f"{mod}.py").write_text(
        extra
        + textwrap.dedent(f"""
        import json, os
        LOG = os.path.join(os.path.dirname(__file__), "hook_calls.jsonl")
        def _rec(tag, data):
            with open(LOG, "a") as fh:
                fh.write(json.dumps({{"tag": tag, "data": data}}, default=str) + "\\n")
        def high(data): _rec("high", data)
        def medium(data): _rec("medium", data)
        def low(data):
            _rec("low", data)
            if {hook_raises!r}:
                raise RuntimeError("hook exploded")
        def enrich(orders, token):
            import pandas as pd
            out = orders.copy()
            out["token_seen"] = token == {SECRET!r}
            return out
    """)
    )
    statuses = "[paid, refunded]" if not check_fail else "[paid]"
    (tmp / "obs.yaml").write_text(
        textwrap.dedent(f"""
        pipeline: obs
        metrics: true
        hooks:
          - {{event: node_complete, function: obs_hooks.low, priority: low}}
          - {{event: node_complete, function: obs_hooks.high, priority: high}}
          - {{event: node_complete, function: obs_hooks.medium}}
          - {{event: node_error, function: obs_hooks.high, priority: high}}
        explanations:
          join_orders: Joins orders to customers.
        steps:
          - {{layer: ingest, name: read_orders, value: data/orders.csv, params: {{all_varchar: true}},
              outputs: {{data: orders}}}}
          - {{layer: ingest, name: read_customers, value: data/customers.csv, outputs: {{data: customers}}}}
          - layer: transform
            name: enrich_orders
            type: function
            value: obs_hooks.enrich
            params: {{token: {{secret: ODIBI_TEST_TOKEN}}}}
            inputs: {{orders: orders}}
            outputs: {{data: orders_enriched}}
          - layer: transform
            name: join_orders
            type: sql
            value: |
              SELECT o.order_id, c.name AS customer, UPPER(c.country) AS country, o.amount, o.status
              FROM o JOIN c ON o.customer_id = c.customer_id
            inputs: {{o: orders_enriched, c: customers}}
            outputs: {{data: joined}}
            checks:
              - {{accepted_values: {{column: status, values: {statuses}}}, severity: warn}}
              - {{not_null: [order_id], severity: error}}
              - {{row_count: {{min: 1, max: 100}}}}
              - {{sql: "SELECT * FROM data WHERE order_id IS NULL"}}
          - layer: transform
            name: by_country
            type: sql
            value: SELECT country, COUNT(*) AS orders, COUNT(DISTINCT customer) AS customers FROM j GROUP BY country
            inputs: {{j: joined}}
            outputs: {{data: country_totals}}
          - {{layer: store, name: save_totals, value: out/totals.parquet, inputs: {{data: country_totals}}}}
    """).replace("obs_hooks.", f"{mod}.")
    )
    return tmp / "obs.yaml"


def _run(cfg: Path, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    defs = build_definitions(cfg)
    return defs.resolve_job_def("obs").execute_in_process(instance=instance, raise_on_error=False)


def _materializations(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict]:
    out = {}
    for rec in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        mat = rec.dagster_event.event_specific_data.materialization
        out[mat.asset_key.to_user_string()] = dict(mat.metadata)
    return out


@pytest.fixture
def ran(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ODIBI_TEST_TOKEN", SECRET)
    cfg = _write_pipeline(tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    result = _run(cfg, instance)
    assert result.success
    return tmp_path, instance, result


def test_standard_metadata_in_event_log(ran) -> None:
    _, instance, result = ran
    mats = _materializations(instance, result.run_id)
    assert set(mats) == {
        "obs/orders",
        "obs/customers",
        "obs/orders_enriched",
        "obs/joined",
        "obs/country_totals",
        "obs/save_totals",
    }
    joined = mats["obs/joined"]
    assert joined["dagster/row_count"].value == 4  # order 5's customer 13 has no match
    schema = joined["dagster/column_schema"].value
    assert [c.name for c in schema.columns] == ["order_id", "customer", "country", "amount", "status"]
    assert all(c.type for c in schema.columns)
    diff = joined["odibi/schema_diff"].value
    assert "customer" in diff["added_columns"] and "customer_id" in diff["removed_columns"]
    assert joined["odibi/rows_before"].value == 5 and joined["odibi/row_delta"].value == -1
    assert "| order_id |" in joined["odibi/sample"].value.replace("  ", " ")
    assert joined["odibi/duration_ms"].value > 0 and joined["odibi/rows_per_second"].value > 0
    story = Path(joined["odibi/story"].value)
    assert story.exists() and story.name == "story.html"
    assert mats["obs/save_totals"]["dagster/uri"].value.endswith("out/totals.parquet")


def test_column_lineage_for_join_alias_and_aggregate(ran) -> None:
    _, instance, result = ran
    mats = _materializations(instance, result.run_id)
    lineage = mats["obs/joined"]["dagster/column_lineage"].value
    deps = {
        col: {(d.asset_key.to_user_string(), d.column_name) for d in dl} for col, dl in lineage.deps_by_column.items()
    }
    assert deps["customer"] == {("obs/customers", "name")}
    assert deps["country"] == {("obs/customers", "country")}
    assert deps["amount"] == {("obs/orders_enriched", "amount")}
    agg = mats["obs/country_totals"]["dagster/column_lineage"].value.deps_by_column
    assert {(d.asset_key.to_user_string(), d.column_name) for d in agg["customers"]} == {("obs/joined", "customer")}


def test_store_logs_observation(ran) -> None:
    _, instance, result = ran
    obs = [
        r.dagster_event.event_specific_data.asset_observation
        for r in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ASSET_OBSERVATION)
    ]
    store = [o for o in obs if o.asset_key.to_user_string() == "obs/save_totals"]
    assert store and store[0].metadata["odibi/rows_written"].value == 3


def test_tracker_json_in_odibi_shape(ran) -> None:
    tmp, _, result = ran
    tracker = json.loads((tmp / ".odibi" / "stories" / "obs" / result.run_id / "tracker.json").read_text())
    assert {"pipeline_id", "start_time", "steps", "summary"} <= set(tracker)
    steps = {s["step_name"]: s for s in tracker["steps"]}
    assert set(steps) == {"read_orders", "read_customers", "enrich_orders", "join_orders", "by_country", "save_totals"}
    join = steps["join_orders"]
    assert join["status"] == "success" and join["row_delta"] == -1
    assert join["before_snapshot"]["row_count"] == 5 and join["after_snapshot"]["row_count"] == 4
    assert set(join["schema_diff"]) == {"added_columns", "removed_columns", "changed_types"}
    assert tracker["summary"]["success_count"] == 6 and tracker["summary"]["failed_count"] == 0


def test_story_has_every_step_and_escapes_data(ran) -> None:
    tmp, _, result = ran
    html = (tmp / ".odibi" / "stories" / "obs" / result.run_id / "story.html").read_text()
    for step in ("read_orders", "read_customers", "enrich_orders", "join_orders", "by_country", "save_totals"):
        assert step in html
    assert "Joins orders to customers." in html
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "http://" not in html.replace("http://www.w3.org", "")  # nothing fetched from the network


def test_checks_become_asset_checks(ran) -> None:
    _, _, result = ran
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evals) == {"accepted_values__status", "not_null__order_id", "row_count", "sql"}
    assert all(e.passed for e in evals.values())
    assert evals["not_null__order_id"].metadata["failing_rows"].value == 0


def test_failing_checks_report_rows_and_blocking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODIBI_TEST_TOKEN", SECRET)
    cfg = _write_pipeline(tmp_path, check_fail=True)
    result = _run(cfg, dg.DagsterInstance.ephemeral())
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    bad = evals["accepted_values__status"]
    assert not bad.passed and bad.severity == dg.AssetCheckSeverity.WARN
    assert bad.metadata["failing_rows"].value == 1
    assert "refunded" in bad.metadata["failing_sample"].value
    assert result.success  # a warning check does not stop the pipeline


def test_hooks_fire_in_priority_order_and_a_raising_hook_does_not_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ODIBI_TEST_TOKEN", SECRET)
    cfg = _write_pipeline(tmp_path, hook_raises=True)
    result = _run(cfg, dg.DagsterInstance.ephemeral())
    assert result.success
    calls = [json.loads(line) for line in (tmp_path / "hook_calls.jsonl").read_text().splitlines()]
    by_step: dict[str, list[str]] = {}
    for c in calls:
        by_step.setdefault(c["data"]["step_name"], []).append(c["tag"])
    assert by_step["join_orders"] == ["high", "medium", "low"]
    assert len(by_step) == 6
    sample = next(c["data"] for c in calls if c["data"]["step_name"] == "join_orders")
    assert sample["event"] == "node_complete" and sample["layer"] == "transform"
    assert sample["pipeline_name"] == "obs" and sample["duration_ms"] >= 0
    warnings = [r for r in result.all_events if r.event_type_value == "ENGINE_EVENT" or r.is_step_failure]
    assert not [w for w in warnings if w.is_step_failure]


def test_secret_never_leaves_the_step(ran) -> None:
    tmp, instance, result = ran
    # The function saw the real token ...
    assert "True" in "".join(
        str(m["odibi/sample"].value)
        for k, m in _materializations(instance, result.run_id).items()
        if k == "obs/orders_enriched"
    )
    # ... but no event, tracker file, story or metrics file contains it.
    for rec in instance.all_logs(result.run_id):
        assert SECRET not in str(rec), rec
    for path in (tmp / ".odibi" / "stories").rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path


def test_secret_in_an_error_message_is_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODIBI_TEST_TOKEN", SECRET)
    failing = "def enrich_fail(orders, token):\n    raise ValueError(f'cannot use token {token}')\n"
    cfg = _write_pipeline(tmp_path, extra=failing)
    cfg.write_text(cfg.read_text().replace(".enrich\n", ".enrich_fail\n"))
    instance = dg.DagsterInstance.ephemeral()
    result = _run(cfg, instance)
    assert not result.success
    text = "\n".join(str(r) for r in instance.all_logs(result.run_id))
    assert "cannot use token ***" in text
    assert SECRET not in text
    tracker = tmp_path / ".odibi" / "stories" / "obs" / result.run_id / "steps"
    assert all(SECRET not in p.read_text() for p in tracker.glob("*.json"))


def test_metrics_export_json_and_prometheus(ran) -> None:
    tmp, _, result = ran
    run_dir = tmp / ".odibi" / "stories" / "obs" / result.run_id
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert json.dumps(metrics).count("join_orders") >= 1
    prom = (run_dir / "metrics.prom").read_text()
    assert "# TYPE" in prom and 'pipeline="obs"' in prom and 'step="join_orders"' in prom


def test_column_schema_change_checks_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODIBI_TEST_TOKEN", SECRET)
    cfg = _write_pipeline(tmp_path)
    cfg.write_text(cfg.read_text().replace("metrics: true\n", "metrics: true\ncolumn_schema_change_checks: true\n"))
    defs = build_definitions(cfg)
    keys = defs.resolve_asset_graph().asset_check_keys
    schema_checks = {k.asset_key.to_user_string() for k in keys if "schema" in k.name}
    assert schema_checks >= {"obs/joined", "obs/orders"}
    instance = dg.DagsterInstance.ephemeral()
    first = defs.resolve_job_def("obs").execute_in_process(instance=instance)
    assert first.success
    # Dagster's own check reads our dagster/column_schema: a changed SQL output schema is flagged.
    cfg.write_text(cfg.read_text().replace("o.amount, o.status", "o.amount, o.status, o.order_id AS order_ref"))
    second = build_definitions(cfg).resolve_job_def("obs").execute_in_process(instance=instance, raise_on_error=False)
    changed = [
        e
        for e in second.get_asset_check_evaluations()
        if e.asset_key.to_user_string() == "obs/joined" and "schema" in e.check_name
    ]
    assert changed and not changed[0].passed
