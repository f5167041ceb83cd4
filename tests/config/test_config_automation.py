"""Automation settings in the config: ``freshness`` (pipeline, and a step's ``metadata.freshness``),
``metadata.pool`` and ``metadata.automation``; their durations, and the problems validation
reports (naming file, step and field) for bad values."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from odibi_config_helpers import assert_only, ingest, problems_of, sql_step, store

from odibi_dagster import load_pipeline
from odibi_dagster.config.freshness import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("26h", dt.timedelta(hours=26)),
        ("90m", dt.timedelta(minutes=90)),
        ("2d", dt.timedelta(days=2)),
        ("1w", dt.timedelta(weeks=1)),
        ("1h30m", dt.timedelta(minutes=90)),
        ("1d 12h", dt.timedelta(hours=36)),
        ("45s", dt.timedelta(seconds=45)),
        ("PT26H", dt.timedelta(hours=26)),
        ("P1DT2H", dt.timedelta(hours=26)),
        ("01:30:00", dt.timedelta(minutes=90)),
        (3600, dt.timedelta(hours=1)),
        (dt.timedelta(minutes=5), dt.timedelta(minutes=5)),
    ],
)
def test_durations_in_the_short_and_iso_forms(text: Any, expected: dt.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["soon", "26 hours", "-5m", "0s", 0, True, None, ""])
def test_what_is_not_a_duration(text: Any) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_durations_print_as_written() -> None:
    assert [format_duration(parse_duration(t)) for t in ("26h", "90m", "2d", "45s", "1d 30m")] == [
        "26h",
        "1h30m",
        "2d",
        "45s",
        "24h30m",
    ]


def _doc(read_metadata: dict[str, Any] | None = None, **settings: Any) -> dict[str, Any]:
    return {
        "pipeline": "p",
        **settings,
        "steps": [
            ingest(metadata=read_metadata or {}),
            sql_step(inputs={"data": "raw"}),
            store(),
        ],
    }


def test_freshness_of_the_pipeline_and_of_a_step(files) -> None:
    path = files.yaml(
        _doc(
            {"freshness": {"deadline_cron": "0 9 * * *", "lower_bound_delta": "1h", "timezone": "Europe/Paris"}},
            freshness={"fail_window": "26h", "warn_window": "25h"},
        )
    )
    pipeline = load_pipeline(path)
    assert pipeline.freshness is not None
    assert (pipeline.freshness.fail_window, pipeline.freshness.warn_window) == (
        dt.timedelta(hours=26),
        dt.timedelta(hours=25),
    )
    read, filt, _ = pipeline.steps
    own = pipeline.step_freshness(read)
    assert own is not None and own.deadline_cron == "0 9 * * *" and own.lower_bound_delta == dt.timedelta(hours=1)
    assert pipeline.step_freshness(filt) == pipeline.freshness  # the pipeline's is the default
    # `freshness: null` on a step turns the default off for it.
    off = load_pipeline(files.yaml(_doc({"freshness": None}, freshness={"fail_window": "2d"}), "off.yaml"))
    assert off.step_freshness(off.steps[0]) is None and off.step_freshness(off.steps[1]) is not None


def test_pools_default_to_the_connection_a_step_uses(files) -> None:
    steps = [
        {"layer": "connect", "name": "warehouse", "value": "sqlite:///wh.db"},
        {"layer": "connect", "name": "shared db", "value": "sqlite:///other.db", "metadata": {"pool": "shared_db"}},
        ingest(params={"connection": "warehouse", "table": "orders"}, value="orders"),
        ingest("read_b", params={"connection": "shared db", "table": "orders"}, value="orders", out="raw_b"),
        sql_step(inputs={"data": "raw"}, metadata={"pool": "heavy_sql"}),
        store(params={"connection": "warehouse", "mode": "overwrite"}, value="out_table", metadata={"pool": None}),
        store("write_b", dataset="raw_b", value="b.parquet"),
    ]
    pipeline = load_pipeline(files.yaml({"pipeline": "sales", "steps": steps}))
    pools = {s.name: pipeline.step_pool(s) for s in pipeline.steps if s.layer != "connect"}
    assert pools == {
        "read": "sales__warehouse",  # named after the connection (its resource key)
        "read_b": "shared_db",  # the connect step's own pool
        "filter": "heavy_sql",  # a step's own pool wins
        "write": None,  # `pool: null`: none, even with a connection
        "write_b": None,  # no connection, no pool
    }


BAD = [
    (
        {"freshness": {"fail_window": "25h", "warn_window": "26h"}},
        {},
        (None, "freshness.warn_window", "warn_window (26h) must be shorter than fail_window (25h)"),
    ),
    (
        {"freshness": {"fail_window": "soon"}},
        {},
        (None, "freshness.fail_window", "'soon' is not a duration"),
    ),
    (
        {},
        {"freshness": {"fail_window": "soon"}},
        ("read", "metadata.freshness.fail_window", "'soon' is not a duration (use e.g. 26h, 90m, 2d"),
    ),
    (
        {},
        {"freshness": {"fail_window": "1h", "warn_window": "1h"}},
        ("read", "metadata.freshness.warn_window", "warn_window (1h) must be shorter than fail_window (1h)"),
    ),
    (
        {},
        {"freshness": {"fail_window": "30s"}},
        ("read", "metadata.freshness.fail_window", "30s is shorter than 1 minute"),
    ),
    (
        {},
        {"freshness": {"warn_window": "1h"}},
        ("read", "metadata.freshness", "needs exactly one of 'fail_window' or 'deadline_cron'"),
    ),
    (
        {},
        {"freshness": {"deadline_cron": "0 9 * * *"}},
        ("read", "metadata.freshness", "'deadline_cron' goes with 'lower_bound_delta'"),
    ),
    (
        {},
        {"freshness": {"deadline_cron": "0 25 * * *", "lower_bound_delta": "1h"}},
        ("read", "metadata.freshness.deadline_cron", "'0 25 * * *' is not a valid cron expression"),
    ),
    (
        {},
        {"freshness": {"deadline_cron": "0 9 * * *", "lower_bound_delta": "2d"}},
        ("read", "metadata.freshness.lower_bound_delta", "lower_bound_delta (2d) is longer than the shortest"),
    ),
    (
        {},
        {"freshness": {"deadline_cron": "0 9 * * *", "lower_bound_delta": "1h", "timezone": "Mars/Base"}},
        ("read", "metadata.freshness.timezone", "unknown timezone 'Mars/Base'"),
    ),
    (
        {},
        {"freshness": {"fail_window": "1d", "grace": "1h"}},
        ("read", "metadata.freshness.grace", "unknown key 'grace'"),
    ),
    ({}, {"pool": "two words"}, ("read", "metadata.pool", "pool 'two words' must be a name without spaces")),
    ({}, {"pool": 5}, ("read", "metadata.pool", "pool 5 must be a name without spaces")),
    ({}, {"automation": "sometimes"}, ("read", "metadata.automation", "unknown automation 'sometimes' (valid: eager")),
    ({}, {"automation": "on_cron: 0 25 * * *"}, ("read", "metadata.automation", "'0 25 * * *' is not a valid cron")),
]


@pytest.mark.parametrize(("settings", "metadata", "expected"), BAD, ids=[e[2][1] + ":" + e[2][2][:20] for e in BAD])
def test_bad_automation_settings_name_file_step_and_field(files, settings, metadata, expected) -> None:
    path = files.yaml(_doc(metadata, **settings))
    assert_only(problems_of(path), expected, file=path)


def test_good_automation_settings_validate(files) -> None:
    for i, metadata in enumerate(
        [
            {"automation": "eager", "pool": "db", "freshness": {"fail_window": "PT26H"}},
            {"automation": "on_missing", "freshness": {"deadline_cron": "@daily", "lower_bound_delta": "1d"}},
            {"automation": "on_cron:0 2 * * *", "pool": None, "freshness": None},
        ]
    ):
        assert load_pipeline(files.yaml(_doc(metadata), f"good{i}.yaml")).steps[0].metadata == metadata
