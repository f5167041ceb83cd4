"""Every validation rule: a config that breaks it (the problem names file, step, field and
says what is wrong) and the same config fixed (valid). Configs are real files in tmp_path."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from config_support import assert_only, find, good_steps, ingest, problems_of, sql_step, store

from odibi_dagster import ConfigValidationError, load_pipeline, load_pipelines, validate_pipeline

DB_URL = "postgresql://odibi@db.example.com/warehouse"


def doc(steps: list[dict[str, Any]] | None = None, **settings: Any) -> dict[str, Any]:
    return {"pipeline": "p", **settings, "steps": good_steps() if steps is None else steps}


def chain(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    """SQL transforms named by (name, input dataset); each produces ``<name>_out``."""
    return [sql_step(name, "SELECT * FROM x", inputs={"x": source}, out=f"{name}_out") for name, source in pairs]


@dataclass
class Case:
    id: str
    bad: Any
    expected: list[tuple[str | None, str | None, str]]
    good: Any = field(default_factory=doc)


CASES = [
    # --- ODIBI's ConfigValidator rules -------------------------------------------------------
    Case("empty_list", [], [(None, "steps", "Config is empty - no steps found")]),
    Case("empty_document", doc([]), [(None, "steps", "Config is empty - no steps found")]),
    Case("no_steps_key", {"pipeline": "p"}, [(None, "steps", "missing required field 'steps'")]),
    Case("steps_not_a_list", {"steps": {"a": 1}}, [(None, "steps", "steps must be a list")]),
    Case(
        "step_not_a_mapping",
        [ingest(), "filter"],
        [("#2", None, "a step must be a mapping, got str")],
        good_steps()[:1],
    ),
    Case(
        "missing_name",
        [ingest(), {"layer": "store", "value": "o.csv", "inputs": {"data": "raw"}}],
        [("#2", "name", "missing required field 'name'")],
        [ingest(), {"layer": "store", "name": "w", "value": "o.csv", "inputs": {"data": "raw"}}],
    ),
    Case(
        "blank_name",
        [ingest(), store(name="  ", dataset="raw")],
        [("#2", "name", "name must not be empty")],
        [ingest(), store(dataset="raw")],
    ),
    Case(
        "name_not_text",
        [ingest(), store(name=7, dataset="raw")],
        [("#2", "name", "Input should be a valid string (got int: 7)")],
        [ingest(), store(dataset="raw")],
    ),
    Case(
        "duplicate_step_names",
        [ingest("read"), ingest("read", out="raw2"), sql_step(), store()],
        [("read", "name", "Duplicate step names found: ['read']")] * 2,
    ),
    Case(
        "duplicate_outputs",
        [ingest("a"), ingest("b"), sql_step(), store()],
        [("b", "outputs.data", "Duplicate output 'raw': also produced by step 'a'")],
    ),
    Case(
        "duplicate_outputs_in_one_step",
        [{**ingest(), "outputs": {"data": "raw", "copy": "raw"}}, sql_step(), store()],
        [("read", "outputs.copy", "Duplicate output 'raw' within the step")],
    ),
    Case(
        "input_not_produced",
        [ingest(), sql_step(inputs={"data": "raw_dta"}), store()],
        [("filter", "inputs.data", "Input 'raw_dta' is not produced by any step")],
    ),
    Case(
        "input_of_disabled_step",
        [ingest(enabled=False), sql_step(), store()],
        [("filter", "inputs.data", "Input 'raw' is not produced by any step (its step 'read' is disabled)")],
        [ingest(enabled=True), sql_step(), store()],
    ),
    Case(
        "cycle",
        [ingest(), *chain(("a", "b_out"), ("b", "c_out"), ("c", "a_out"))],
        [("a", "inputs", "Circular dependency: a → b → c → a")],
        [ingest(), *chain(("a", "raw"), ("b", "a_out"), ("c", "b_out"))],
    ),
    Case(
        "self_dependency",
        [ingest(), *chain(("a", "a_out"))],
        [("a", "inputs", "Circular dependency: a → a")],
        [ingest(), *chain(("a", "raw"))],
    ),
    Case(
        "two_cycles",
        [ingest(), *chain(("a", "b_out"), ("b", "a_out"), ("c", "c_out"))],
        [("a", "inputs", "Circular dependency: a → b → a"), ("c", "inputs", "Circular dependency: c → c")],
        [ingest(), *chain(("a", "raw"), ("b", "a_out"), ("c", "b_out"))],
    ),
    Case(
        "unknown_layer",
        [ingest(layer="bronze"), sql_step(), store()],
        [
            (
                "read",
                "layer",
                "Step 'read' has invalid layer: 'bronze' (valid: connect, ingest, transform, store, publish)",
            )
        ],
    ),
    Case(
        "capitalised_layer_in_json",
        [ingest(layer="Ingest"), sql_step(), store()],
        [("read", "layer", "Step 'read' has invalid layer: 'Ingest'")],
    ),
    Case(
        "unknown_step_engine",
        [ingest(engine="polars"), sql_step(), store()],
        [("read", "engine", "Step 'read' has invalid engine: 'polars' (valid: pandas, spark)")],
        [ingest(engine="spark"), sql_step(engine="spark"), store(engine="spark")],
    ),
    Case(
        "unknown_pipeline_engine",
        doc(engine="duckdb"),
        [(None, "engine", "invalid engine: 'duckdb' (valid: pandas, spark)")],
        doc(engine="spark"),
    ),
    Case(
        "unknown_type",
        [ingest(type="python"), sql_step(), store()],
        [("read", "type", "Step 'read' has invalid type: 'python' (valid: sql, function, config_op, api)")],
        [ingest(type="api"), sql_step(), store()],
    ),
    Case(
        "transform_without_inputs",
        [ingest(), sql_step(sql="SELECT 1 AS x", inputs={}), store()],
        [("filter", "inputs", "transform step has no inputs")],
    ),
    Case(
        "transform_config_op",
        [ingest(), sql_step(type="config_op"), store()],
        [("filter", "type", "transform step must be of type 'sql' or 'function', not 'config_op'")],
    ),
    Case(
        "transform_without_layer",
        [ingest(), {k: v for k, v in sql_step(type="config_op").items() if k != "layer"}, store()],
        [("filter", "type", "(the step has no 'layer', so ODIBI's default 'transform' applies)")],
        [ingest(), {k: v for k, v in sql_step().items() if k != "layer"}, store()],
    ),
    Case(
        "ingest_empty_value",
        [ingest(value=""), sql_step(), store()],
        [("read", "value", "ingest step has an empty value")],
    ),
    Case(
        "ingest_null_value",
        [ingest(value=None), sql_step(), store()],
        [("read", "value", "ingest step has an empty value")],
    ),
    Case(
        "ingest_blank_value",
        [ingest(value="   "), sql_step(), store()],
        [("read", "value", "ingest step has an empty value")],
    ),
    Case(
        "ingest_without_outputs",
        [{**ingest(), "outputs": {}}, ingest("b", out="raw2")],
        [("read", "outputs", "ingest step has no outputs")],
        [ingest(), ingest("b", out="raw2")],
    ),
    Case(
        "store_without_inputs",
        [ingest(), sql_step(), store(inputs={})],
        [("write", "inputs", "store step has no inputs")],
    ),
    Case(
        "publish_without_inputs",
        [ingest(), sql_step(), store(layer="publish", inputs=None)],
        [("write", "inputs", "publish step has no inputs")],
        [ingest(), sql_step(), store(layer="publish")],
    ),
    Case(
        "store_empty_value",
        [ingest(), sql_step(), store(value="")],
        [("write", "value", "store step has an empty value")],
    ),
    Case(
        "store_with_outputs",
        [ingest(), sql_step(), store(outputs={"data": "written"})],
        [("write", "outputs", "store steps write a target and produce no datasets")],
    ),
    Case(
        "connect_empty_value",
        [{"layer": "connect", "name": "db", "value": ""}, *good_steps()],
        [("db", "value", "connect step has an empty value")],
        [{"layer": "connect", "name": "db", "value": "sqlite:///warehouse.db"}, *good_steps()],
    ),
    # --- shapes and unknown keys ------------------------------------------------------------
    Case(
        "inputs_list",
        [ingest(), sql_step(inputs=["raw"]), store()],
        [("filter", "inputs", "Input should be a valid dictionary (got list: ['raw'])")],
    ),
    Case(
        "inputs_value_not_text",
        [ingest(), sql_step(inputs={"data": 5}), store()],
        [("filter", "inputs.data", "Input should be a valid string (got int: 5)")],
    ),
    Case(
        "outputs_string",
        [{**ingest(), "outputs": "raw"}, sql_step(), store()],
        [("read", "outputs", "Input should be a valid dictionary (got str: 'raw')")],
    ),
    Case(
        "params_list",
        [ingest(params=["header"]), sql_step(), store()],
        [("read", "params", "Input should be a valid dictionary (got list: ['header'])")],
        [ingest(params={"header": True}), sql_step(), store()],
    ),
    Case(
        "layer_not_text",
        [ingest(layer=["ingest"]), sql_step(), store()],
        [("read", "layer", "Input should be a valid string (got list: ['ingest'])")],
    ),
    Case(
        "value_number",
        [ingest(value=42), sql_step(), store()],
        [("read", "value", "Input should be a valid string (got int: 42)")],
    ),
    Case(
        "unknown_step_key",
        [ingest(descrption="typo"), sql_step(), store()],
        [("read", "descrption", "unknown key 'descrption'")],
        [ingest(metadata={"description": "fixed"}), sql_step(), store()],
    ),
    Case(
        "line_key_is_reserved",
        [ingest(line=3), sql_step(), store()],
        [("read", "line", "unknown key 'line'")],
    ),
    Case(
        "unknown_pipeline_key",
        doc(schedul={"cron": "0 2 * * *"}),
        [(None, "schedul", "unknown key 'schedul'")],
        doc(schedule={"cron": "0 2 * * *"}),
    ),
    Case(
        "retry_negative",
        doc(retry={"max_retries": -1}),
        [(None, "retry.max_retries", "Input should be greater than or equal to 0")],
        doc(retry={"max_retries": 2, "delay_seconds": 5}),
    ),
    # --- SQL ----------------------------------------------------------------------------------
    Case(
        "sql_does_not_parse",
        [ingest(), sql_step(sql="SELECT * FROM data WHERE"), store()],
        [("filter", "value", "SQL does not parse (duckdb dialect)")],
    ),
    Case(
        "sql_spark_dialect",
        [ingest(), sql_step(sql='SELECT {"a": 1} AS s FROM data', engine="spark"), store()],
        [("filter", "value", "SQL does not parse (spark dialect)")],
        [ingest(), sql_step(sql="SELECT `a b`, to_date(d, 'yyyy-MM-dd') FROM data", engine="spark"), store()],
    ),
    Case(
        "sql_pipeline_engine_spark",
        doc([ingest(), sql_step(sql='SELECT {"a": 1} FROM data'), store()], engine="spark"),
        [("filter", "value", "SQL does not parse (spark dialect)")],
        doc([ingest(), sql_step(sql="SELECT `a b` FROM data"), store()], engine="spark"),
    ),
    Case(
        "sql_duckdb_rejects_backticks",
        [ingest(), sql_step(sql="SELECT `a b` FROM data"), store()],
        [("filter", "value", "SQL does not parse (duckdb dialect)")],
        [ingest(), sql_step(sql='SELECT {"a": 1} AS s, "a b" FROM data'), store()],
    ),
    Case(
        "sql_empty_value",
        [ingest(), sql_step(sql="  "), store()],
        [("filter", "value", "sql step has an empty value (expected a SQL query)")],
    ),
    Case(
        "sql_unknown_table",
        [ingest(), sql_step(sql="SELECT * FROM orders"), store()],
        [("filter", "value", "SQL names table 'orders' which is not one of the step's inputs (data)")],
    ),
    Case(
        "sql_table_is_dataset_not_logical_name",
        [ingest(), sql_step(sql="SELECT * FROM raw"), store()],
        [("filter", "value", "SQL names table 'raw' which is not one of the step's inputs (data)")],
    ),
    Case(
        "sql_in_check",
        [ingest(checks=[{"sql": "SELECT * FROM other WHERE x IS NULL"}]), sql_step(), store()],
        [("read", "checks[0].sql", "SQL names table 'other'")],
        [ingest(checks=[{"sql": "SELECT * FROM data WHERE x IS NULL"}]), sql_step(), store()],
    ),
    # --- templates ------------------------------------------------------------------------------
    Case(
        "template_unknown_in_path",
        [ingest(value="data/{{ date }}.csv"), sql_step(), store()],
        [("read", "value", "unknown template variable 'date'")],
        [ingest(value="data/{{ run_id }}/{{ env.HOME }}.csv"), sql_step(), store()],
    ),
    Case(
        "template_unknown_in_sql",
        [ingest(), sql_step(sql="SELECT * FROM data WHERE d = {{ day }}"), store()],
        [("filter", "value", "unknown template variable 'day'")],
        [ingest(), sql_step(sql="SELECT * FROM data WHERE r = {{ run_id }}"), store()],
    ),
    Case(
        "template_unknown_in_params",
        # A database source: its reader options are not a file reader's, so any key is the database's.
        [ingest(value=DB_URL, params={"options": {"path": "{{ bucket }}/x"}}), sql_step(), store()],
        [("read", "params.options.path", "unknown template variable 'bucket'")],
        [ingest(value=DB_URL, params={"options": {"path": "{{ env.BUCKET }}/x"}}), sql_step(), store()],
    ),
    Case(
        "template_partition_without_partitions",
        doc([ingest(value="in/{{ partition_key }}.csv"), sql_step(), store()]),
        [
            (
                "read",
                "value",
                "template variable 'partition_key' is only defined when the pipeline has partitions",
            )
        ],
        doc(
            [
                ingest(value="in/{{ partition_key }}.csv"),
                sql_step(sql="SELECT * FROM data WHERE ts >= {{ partition_start }} AND ts < {{ partition_end }}"),
                store(),
            ],
            partitions={"type": "daily", "start": "2024-01-01"},
        ),
    ),
    Case(
        "template_syntax_error",
        [ingest(value="in/{{ run_id .csv"), sql_step(), store()],
        [("read", "value", "template syntax error")],
    ),
    # --- schedules, partitions, sensors, hooks -------------------------------------------------
    Case(
        "bad_cron",
        doc(schedule={"cron": "0 25 * * *"}),
        [(None, "schedule.cron", "'0 25 * * *' is not a valid cron expression")],
        doc(schedule={"cron": "0 2 * * *", "timezone": "Europe/Paris"}),
    ),
    Case(
        "cron_and_every",
        doc(schedule={"cron": "0 2 * * *", "every": "5m"}),
        [(None, "schedule", "a schedule needs exactly one of 'cron' or 'every'")],
        doc(schedule={"every": "5m"}),
    ),
    Case(
        "bad_interval",
        doc(schedule={"every": "soon"}),
        [(None, "schedule.every", "'soon' is not an interval")],
        doc(schedule={"every": 300}),
    ),
    Case(
        "bad_schedule_timezone",
        doc(schedule={"cron": "@daily", "timezone": "Mars/Olympus"}),
        [(None, "schedule.timezone", "unknown timezone 'Mars/Olympus'")],
        doc(schedule={"cron": "@daily"}),
    ),
    Case(
        "daily_partitions_without_start",
        doc(partitions={"type": "daily"}),
        [(None, "partitions", "bad partition settings: daily partitions need a 'start' date")],
        doc(partitions={"type": "daily", "start": "2024-01-01"}),
    ),
    Case(
        "partition_start_not_a_date",
        doc(partitions={"type": "daily", "start": "2024-13-01"}),
        [(None, "partitions.start", "'2024-13-01' is not a date")],
        doc(partitions={"type": "hourly", "start": "2024-01-01T00:00"}),
    ),
    Case(
        "partition_end_before_start",
        doc(partitions={"type": "monthly", "start": "2024-06-01", "end": "2024-01-01"}),
        [(None, "partitions", "partition end '2024-01-01' is not after start '2024-06-01'")],
        doc(partitions={"type": "monthly", "start": "2024-01-01", "end": "2024-06-01"}),
    ),
    Case(
        "unknown_partition_type",
        doc(partitions={"type": "yearly", "start": "2024-01-01"}),
        [
            (
                None,
                "partitions.type",
                "Input should be 'daily', 'hourly', 'weekly', 'monthly', 'static' or 'dynamic' (got str: 'yearly')",
            )
        ],
        doc(partitions={"type": "weekly", "start": "2024-01-01"}),
    ),
    Case(
        "static_partitions_without_values",
        doc(partitions={"type": "static"}),
        [(None, "partitions", "static partitions need a non-empty 'values' list")],
        doc(partitions={"type": "static", "values": ["north", "south"]}),
    ),
    Case(
        "static_partition_duplicates",
        doc(partitions={"type": "static", "values": ["a", "b", "a"]}),
        [(None, "partitions", "static partition values are not unique: ['a']")],
        doc(partitions={"type": "dynamic"}),
    ),
    Case(
        "partition_timezone",
        doc(partitions={"type": "daily", "start": "2024-01-01", "timezone": "Nowhere"}),
        [(None, "partitions.timezone", "unknown timezone 'Nowhere'")],
        doc(partitions={"type": "daily", "start": "2024-01-01", "timezone": "America/New_York"}),
    ),
    Case(
        "partition_mapping_without_partitions",
        doc([ingest(), sql_step(partition_mapping={"type": "window", "start_offset": -2}), store()]),
        [("filter", "partition_mapping", "a partition mapping needs pipeline 'partitions'")],
        doc(
            [ingest(), sql_step(partition_mapping={"type": "window", "start_offset": -2}), store()],
            partitions={"type": "daily", "start": "2024-01-01"},
        ),
    ),
    Case(
        "sensor_unknown_step",
        doc(sensors=[{"type": "file_watch", "path": "in", "step": "reed"}]),
        [(None, "sensors[0].step", "sensor names unknown step 'reed'")],
        doc(sensors=[{"type": "file_watch", "path": "in", "pattern": "*.csv", "step": "read"}]),
    ),
    Case(
        "sensor_not_ingest",
        doc(sensors=[{"type": "file_watch", "path": "in", "step": "filter"}]),
        [(None, "sensors[0].step", "sensor step 'filter' must be an ingest step, not transform")],
    ),
    Case(
        "sensor_unknown_type",
        doc(sensors=[{"type": "webhook", "path": "in", "step": "read"}]),
        [
            (
                None,
                "sensors[0]",
                "Input tag 'webhook' found using 'type' does not match any of the expected tags",
            )
        ],
    ),
    Case(
        "sensor_unknown_key",
        doc(sensors=[{"type": "file_watch", "path": "in", "step": "read", "glob": "*"}]),
        [(None, "sensors[0].glob", "unknown key 'glob'")],
    ),
    Case(
        "sensor_dynamic_partitions",
        doc(sensors=[{"type": "file_watch", "path": "in", "step": "read", "dynamic_partitions": True}]),
        [
            (
                None,
                "sensors[0].dynamic_partitions",
                "dynamic_partitions needs pipeline 'partitions: {type: dynamic}'",
            )
        ],
        doc(
            partitions={"type": "dynamic"},
            sensors=[{"type": "file_watch", "path": "in", "step": "read", "dynamic_partitions": True}],
        ),
    ),
    Case(
        "file_watch_path_not_a_filesystem",
        doc(sensors=[{"type": "file_watch", "path": "https://example.com/in", "step": "read"}]),
        [
            (
                None,
                "sensors[0].path",
                "'https://example.com/in': file-watch sensors watch a local folder or a "
                "blob-store prefix (abfs://, abfss://, az://, file://, gcs://, gs://, memory://, "
                "s3://)",
            )
        ],
        doc(sensors=[{"type": "file_watch", "path": "abfs://landing/in", "step": "read"}]),
    ),
    Case(
        "polling_sensor_source",
        doc(
            sensors=[
                {
                    "type": "incremental",
                    "step": "read",
                    "source": "warehouse",
                    "table": "orders",
                    "watermark_column": "ts",
                }
            ]
        ),
        [(None, "sensors[0].source", "'warehouse' is neither a URL nor a connect step")],
        doc(
            sensors=[
                {
                    "type": "incremental",
                    "step": "read",
                    "source": "sqlite:///w.db",
                    "table": "orders",
                    "watermark_column": "ts",
                }
            ]
        ),
    ),
    Case(
        "polling_sensor_table_and_query",
        doc(
            sensors=[
                {
                    "type": "interval",
                    "step": "read",
                    "source": "sqlite:///w.db",
                    "table": "t",
                    "query": "SELECT 1",
                    "watermark_column": "ts",
                }
            ]
        ),
        [(None, "sensors[0]", "a polling sensor needs exactly one of 'table' or 'query'")],
    ),
    Case(
        "hook_unknown_event",
        doc(hooks=[{"event": "on_success", "function": "json.dumps"}]),
        [(None, "hooks[0].event", "unknown event 'on_success' (valid: pipeline_start, pipeline_complete")],
        doc(hooks=[{"event": "pipeline_complete", "function": "json.dumps", "priority": "high"}]),
    ),
    Case(
        "hook_step_event_hint",
        doc(hooks=[{"event": "Node_Complete", "function": "json.dumps"}]),
        [(None, "hooks[0].event", "did you mean 'node_complete'?")],
        # The walkthrough's step_* names are aliases of node_*.
        doc(hooks=[{"event": "step_complete", "function": "json.dumps", "steps": ["filter"]}]),
    ),
    Case(
        "hook_function_does_not_import",
        doc(hooks=[{"event": "pipeline_error", "function": "alerts_zz9.notify"}]),
        [(None, "hooks[0].function", "cannot import module 'alerts_zz9'")],
        doc(hooks=[{"event": "pipeline_error", "function": "logging.warning"}]),
    ),
    Case(
        "hook_unknown_step",
        doc(hooks=[{"event": "node_error", "function": "json.dumps", "steps": ["reed"]}]),
        [(None, "hooks[0].steps", "hook names unknown step 'reed'")],
    ),
    Case(
        "explanation_unknown_step",
        doc(explanations={"fliter": "typo"}),
        [(None, "explanations.fliter", "explanation for unknown step 'fliter'")],
        doc(explanations={"filter": "Keeps the rows above 100."}),
    ),
    # --- owners, tags, checks, connections, secrets, Dagster names ---------------------------
    Case(
        "pipeline_owner",
        doc(owners=["bob", "team:data-eng"]),
        [(None, "owners[0]", "owner 'bob' must be an email address or 'team:NAME'")],
        doc(owners=["bob@example.com", "team:data-eng"]),
    ),
    Case(
        "step_owner",
        doc([ingest(metadata={"owner": "data team"}), sql_step(), store()]),
        [("read", "metadata.owner", "owner 'data team' must be an email address or 'team:NAME'")],
        doc([ingest(metadata={"owner": "ana@example.org"}), sql_step(), store()]),
    ),
    Case(
        "step_owners_list",
        doc([ingest(metadata={"owners": ["ana@example.org", "team:", "a@b.c"]}), sql_step(), store()]),
        [
            ("read", "metadata.owners[1]", "owner 'team:' must be"),
            ("read", "metadata.owners[2]", "owner 'a@b.c'"),
        ],
        doc([ingest(metadata={"owners": ["ana@example.org", "team:finance"]}), sql_step(), store()]),
    ),
    Case(
        "step_owners_not_a_list",
        doc([ingest(metadata={"owners": {"ana": 1}}), sql_step(), store()]),
        [("read", "metadata.owners", "owners must be a list of emails or 'team:NAME'")],
    ),
    Case(
        "pipeline_tag_key",
        doc(tags={"cost center": "42"}),
        [(None, "tags.cost center", "invalid tag key")],
        doc(tags={"cost_center": 42, "domain/sales": "emea"}),
    ),
    Case(
        "step_tag_key",
        doc([ingest(metadata={"tags": {"dagster/kind": "x"}}), sql_step(), store()]),
        [("read", "metadata.tags.dagster/kind", "reserved prefix 'dagster/'")],
        doc([ingest(metadata={"tags": {"tier": "gold"}}), sql_step(), store()]),
    ),
    Case(
        "check_empty_columns",
        [ingest(checks=[{"not_null": []}]), sql_step(), store()],
        [("read", "checks[0].not_null", "List should have at least 1 item")],
        [ingest(checks=[{"not_null": ["id"]}, {"unique": ["id"]}]), sql_step(), store()],
    ),
    Case(
        "check_two_kinds",
        [ingest(checks=[{"not_null": ["id"], "unique": ["id"]}]), sql_step(), store()],
        [("read", "checks[0]", "a check needs exactly one of not_null, unique")],
    ),
    Case(
        "check_duplicate",
        [
            ingest(checks=[{"not_null": ["id"]}, {"not_null": ["id"], "severity": "error"}]),
            sql_step(),
            store(),
        ],
        [
            (
                "read",
                "checks[1]",
                "check 'not_null__id' is declared twice on the same dataset (also checks[0])",
            )
        ],
        [
            ingest(checks=[{"not_null": ["id"]}, {"not_null": ["id"], "severity": "error", "name": "id_strict"}]),
            sql_step(),
            store(),
        ],
    ),
    Case(
        "check_name_chars",
        [ingest(checks=[{"row_count": {"min": 1}, "name": "has rows"}]), sql_step(), store()],
        [("read", "checks[0].name", "check name 'has rows' may hold only letters, digits and '_'")],
        [
            ingest(checks=[{"row_count": {"min": 1}, "name": "has_rows"}, {"not_null": ["order id"]}]),
            sql_step(),
            store(),
        ],
    ),
    Case(
        "check_row_count_bounds",
        [ingest(checks=[{"row_count": {"min": 5, "max": 1}}]), sql_step(), store()],
        [("read", "checks[0].row_count", "min (5) is greater than max (1)")],
    ),
    Case(
        "check_dataset",
        [ingest(checks=[{"unique": ["id"], "dataset": "raww"}]), sql_step(), store()],
        [("read", "checks[0].dataset", "'raww' is not an output of this step")],
        [ingest(checks=[{"unique": ["id"], "dataset": "raw"}]), sql_step(), store()],
    ),
    Case(
        "check_on_store",
        [ingest(), sql_step(), store(checks=[{"not_null": ["id"]}])],
        [("write", "checks[0]", "checks apply to ingest and transform steps")],
    ),
    Case(
        "connection_not_a_connect_step",
        [ingest(params={"connection": "warehouse"}), sql_step(), store()],
        [("read", "params.connection", "connection 'warehouse' is not a connect step (connect steps: none)")],
        [
            {"layer": "connect", "name": "warehouse", "value": "sqlite:///w.db"},
            ingest(value="orders", params={"connection": "warehouse"}),
            sql_step(),
            store(),
        ],
    ),
    Case(
        "secret_reference",
        [ingest(value=DB_URL, params={"password": {"secret": "PW", "default": "x"}}), sql_step(), store()],
        [("read", "params.password", 'a secret reference must be exactly {"secret": "ENV_VAR_NAME"}')],
        [ingest(value=DB_URL, params={"password": {"secret": "PW"}, "table": "t"}), sql_step(), store()],
    ),
    Case(
        "step_names_same_dagster_name",
        [ingest("read data"), ingest("read_data", out="raw2"), sql_step(), store()],
        [("read_data", "name", "step name 'read_data' and step 'read data' both become the Dagster name")],
        [ingest("read data"), ingest("read-more", out="raw2"), sql_step(), store()],
    ),
    # --- external inputs: datasets another code location's assets produce ------------------
    Case(
        "external_input_undeclared",
        doc([ingest(), sql_step(inputs={"data": "raw", "t": "targets"}), store()]),
        [("filter", "inputs.t", "Input 'targets' is not produced by any step")],
        doc(
            [ingest(), sql_step(inputs={"data": "raw", "t": "targets"}), store()],
            external_inputs={"targets": {"asset_key": "team/targets", "path": "shared/targets.parquet"}},
        ),
    ),
    Case(
        "external_input_produced_in_the_pipeline",
        doc(external_inputs={"raw": {"asset_key": ["team", "raw"], "path": "raw.parquet"}}),
        [(None, "external_inputs.raw", "dataset 'raw' is produced by step 'read'; external inputs are datasets")],
        doc(external_inputs={"team_raw": {"asset_key": ["team", "raw"], "path": "raw.parquet"}}),
    ),
    Case(
        "external_input_key_and_path",
        doc(external_inputs={"t": {"asset_key": "team//t", "path": "t/{{ partition_key }}.parquet"}}),
        [
            (None, "external_inputs.t.asset_key", "asset key ['team', '', 't'] has an empty part"),
            (None, "external_inputs.t.path", "an external input's path is not a template"),
        ],
        doc(external_inputs={"t": {"asset_key": "team/t", "path": "t/targets.parquet", "format": "parquet"}}),
    ),
    Case(
        "external_input_shape",
        doc(
            [ingest(), sql_step(inputs={"data": "raw", "t": "t"}), store()],
            external_inputs={"t": {"asset_key": [], "path": "t.parquet", "format": "csv"}},
        ),
        [
            (None, "external_inputs.t.asset_key", "List should have at least 1 item"),
            (None, "external_inputs.t.format", "Input should be 'parquet' or 'delta'"),
        ],
        doc(
            [ingest(), sql_step(inputs={"data": "raw", "t": "t"}), store()],
            external_inputs={"t": {"asset_key": ["t"], "path": "t", "format": "delta"}},
        ),
    ),
    Case(
        "store_named_like_a_dataset",
        [ingest(), sql_step(), store(name="filtered")],
        [("filtered", "name", "store step 'filtered' has the name of dataset 'filtered'")],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rule_rejects_with_file_step_field_and_message(files, case: Case) -> None:
    path = files.json(copy.deepcopy(case.bad), f"{case.id}.json")
    problems = problems_of(path)
    assert_only(problems, *case.expected, file=path)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rule_accepts_the_fixed_config(files, case: Case) -> None:
    path = files.json(copy.deepcopy(case.good), f"{case.id}.json")
    [pipeline] = load_pipelines(path)
    assert pipeline.source == path
    # In memory too: the same document validates without a file.
    validate_pipeline(copy.deepcopy(case.good))


def test_capitalised_values_say_how_to_fix_them(files) -> None:
    path = files.json([ingest(layer="Ingest", engine="Pandas"), sql_step(type="SQL"), store()])
    problems = problems_of(path)
    assert find(problems, "read", "layer", "Step 'read' has invalid layer: 'Ingest'").message.endswith(
        "; layer names are lower-case: use 'ingest'"
    )
    assert "use 'pandas'" in find(problems, "read", "engine", "invalid engine: 'Pandas'").message
    assert "use 'sql'" in find(problems, "filter", "type", "invalid type: 'SQL'").message
    assert len(problems) == 3


def test_problems_carry_the_line_of_their_step(files) -> None:
    path = files.json([ingest(), sql_step(sql="SELECT * FROM nope"), store(value="")])
    problems = problems_of(path)
    text = path.read_text().splitlines()
    for p in problems:
        assert p.line is not None
        assert f'"name": "{p.step}"' in text[p.line - 1]
        assert str(p).startswith(f"{path}:{p.line}: step '{p.step}': {p.field}: ")


def test_every_problem_is_reported_at_once(files, tmp_path: Path) -> None:
    """One config with many mistakes: one ConfigValidationError listing all of them."""
    bad = {
        "pipeline": "many",
        "engine": "pandas",
        "owners": ["nobody"],
        "schedule": {"cron": "every day"},
        "partitions": {"type": "daily", "start": "yesterday"},
        "hooks": [{"event": "pipeline_done", "function": "no_such_module_q.fn"}],
        "sensors": [{"type": "file_watch", "path": "in", "step": "ghost"}],
        "steps": [
            ingest(layer="bronze"),
            ingest("read", out="raw2"),
            sql_step(sql="SELECT * FROM orders WHERE", inputs={"data": "missing"}),
            {
                "layer": "transform",
                "name": "fn",
                "type": "function",
                "value": "no_such_module_q.clean",
                "inputs": {"df": "filtered"},
                "outputs": {"data": "clean"},
            },
            store(value="", inputs={"data": "clean"}),
            sql_step("loop", inputs={"data": "loop_out"}, out="loop_out"),
            {"name": "no_layer_no_type", "value": "x"},
        ],
    }
    path = files.yaml(bad, "many.yaml")
    with pytest.raises(ConfigValidationError) as info:
        load_pipelines(path)
    problems = info.value.problems
    expected = [
        (None, "owners[0]", "owner 'nobody'"),
        (None, "schedule.cron", "'every day' is not a valid cron expression"),
        (None, "partitions.start", "'yesterday' is not a date"),
        (None, "hooks[0].event", "unknown event 'pipeline_done'"),
        (None, "hooks[0].function", "cannot import module 'no_such_module_q'"),
        (None, "sensors[0].step", "sensor names unknown step 'ghost'"),
        ("read", "name", "Duplicate step names found: ['read']"),
        ("read", "layer", "invalid layer: 'bronze'"),
        ("filter", "inputs.data", "Input 'missing' is not produced by any step"),
        ("filter", "value", "SQL does not parse (duckdb dialect)"),
        ("fn", "value", "cannot import module 'no_such_module_q'"),
        ("write", "value", "store step has an empty value"),
        ("loop", "inputs", "Circular dependency: loop → loop"),
        ("no_layer_no_type", "inputs", "transform step has no inputs (the step has no 'layer'"),
        ("no_layer_no_type", "outputs", "transform step has no outputs"),
        ("no_layer_no_type", "type", "must be of type 'sql' or 'function', not 'config_op'"),
    ]
    for step, fld, message in expected:
        assert find(problems, step, fld, message).file == str(path)
    assert len(problems) == len(expected) + 1  # the duplicate name is reported on both steps
    rendered = str(info.value).splitlines()
    assert rendered[0] == f"{len(problems)} problems in pipeline config:"
    assert len(rendered) == len(problems) + 1


def test_all_files_of_a_directory_are_reported_together(files) -> None:
    files.json([ingest(value="")], "a.json")
    files.yaml({"steps": [ingest(layer="silver")]}, "b.yaml")
    files.json(good_steps(), "ok.json")
    problems = problems_of(files.root)
    assert {Path(p.file).name for p in problems} == {"a.json", "b.yaml"}
    assert len(problems) == 2


def test_function_paths(files) -> None:
    (files.root / "odibi_rule_funcs_a1.py").write_text(
        "CONSTANT = 3\n\ndef clean(df):\n    return df\n", encoding="utf-8"
    )
    (files.root / "odibi_rule_broken_a1.py").write_text("def oops(:\n", encoding="utf-8")
    (files.root / "odibi_rule_exits_a1.py").write_text("import sys\nsys.exit(3)\n", encoding="utf-8")

    def fn(name: str, value: str) -> dict[str, Any]:
        return {
            "layer": "transform",
            "name": name,
            "type": "function",
            "value": value,
            "inputs": {"df": "raw"},
            "outputs": {"data": f"{name}_out"},
        }

    bad = [
        ingest(),
        fn("missing_module", "odibi_rule_nowhere_a1.clean"),
        fn("missing_attr", "odibi_rule_funcs_a1.cleen"),
        fn("not_callable", "odibi_rule_funcs_a1.CONSTANT"),
        fn("not_dotted", "clean"),
        fn("empty", ""),
        fn("broken", "odibi_rule_broken_a1.oops"),
        fn("exits", "odibi_rule_exits_a1.main"),
    ]
    path = files.json(bad, "functions.json")
    assert_only(
        problems_of(path),
        ("missing_module", "value", "cannot import module 'odibi_rule_nowhere_a1'"),
        ("missing_attr", "value", "module 'odibi_rule_funcs_a1' has no attribute 'cleen'"),
        ("not_callable", "value", "'odibi_rule_funcs_a1.CONSTANT' is not callable"),
        ("not_dotted", "value", "'clean' is not a dotted path to a function"),
        ("empty", "value", "function step has an empty value"),
        ("broken", "value", "importing module 'odibi_rule_broken_a1' failed: SyntaxError"),
        ("exits", "value", "importing module 'odibi_rule_exits_a1' failed: SystemExit"),
        file=path,
    )
    # A module next to the config (the config's directory is searched) and "module:function".
    good = [
        ingest(),
        fn("a", "odibi_rule_funcs_a1.clean"),
        fn("b", "odibi_rule_funcs_a1:clean"),
        fn("c", "json.dumps"),
    ]
    pipeline = load_pipeline(files.json(good, "functions_ok.json"))
    assert [s.value for s in pipeline.steps[1:]] == [
        "odibi_rule_funcs_a1.clean",
        "odibi_rule_funcs_a1:clean",
        "json.dumps",
    ]


def test_pipeline_names_must_differ_across_files(files) -> None:
    files.json(good_steps(), "sales.json")
    files.yaml({"pipeline": "sales", "steps": good_steps()}, "other.yaml")
    files.yaml({"pipeline": "daily-sales", "steps": good_steps()}, "x.yaml")
    files.yaml({"pipeline": "daily sales", "steps": good_steps()}, "y.yaml")
    problems = problems_of(files.root)
    find(problems, None, "pipeline", "pipeline name 'sales' is also used by")
    find(problems, None, "pipeline", "both become the Dagster job 'daily_sales'")
    assert len(problems) == 2


def test_a_valid_config_keeps_its_values(files) -> None:
    path = files.yaml(
        {
            "pipeline": "kept",
            "owners": ["team:data"],
            "tags": {"tier": 1},
            "partitions": {"type": "daily", "start": "2024-01-01"},
            "schedule": {"cron": "0 2 * * *"},
            "steps": [
                ingest(value="in/{{ partition_key }}.csv", metadata={"owner": "ana@example.org"}),
                sql_step(),
                store(),
            ],
        },
        "kept.yaml",
    )
    pipeline = load_pipeline(path)
    assert pipeline.name == "kept"
    assert pipeline.tags == {"tier": "1"}
    assert pipeline.partitions is not None and pipeline.partitions.start == "2024-01-01"
    lines = path.read_text().splitlines()
    assert [lines[s.line - 1].lstrip().startswith("- layer:") for s in pipeline.steps] == [True] * 3
    assert pipeline.step("read").value == "in/{{ partition_key }}.csv"
    # Validating the model again (as build_definitions does) keeps the lines.
    again = validate_pipeline(pipeline)
    assert [s.line for s in again.steps] == [s.line for s in pipeline.steps]
    assert again.source == path
