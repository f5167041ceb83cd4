"""Imported once by the multiprocess executor's forkserver (see ``executors.PRELOAD_MODULES``).

Every step process is forked from that server, so what is imported here is never imported
again per step: Dagster's execution machinery and instance storage, odibi_dagster's run
path, DuckDB, Arrow and pandas (function steps and samples use it). Spark is not preloaded:
a JVM must not be forked.
"""

# ruff: noqa: F401
from __future__ import annotations

import contextlib

import dagster
import duckdb

# A step process opens the run's instance: its storage modules (SQLAlchemy, alembic) cost ~0.9 s.
# Dagster loads these modules lazily, so name the classes to import them for real.
from dagster._core.storage.base_storage import DagsterStorage
from dagster._core.storage.event_log.sqlite import SqliteEventLogStorage
from dagster._core.storage.runs.sqlite import SqliteRunStorage
from dagster._core.storage.schedules.sqlite import SqliteScheduleStorage
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage

import odibi_dagster.translate.api_ingest
import odibi_dagster.translate.cli_run
import odibi_dagster.translate.data_steps
import odibi_dagster.translate.definitions
import odibi_dagster.translate.runtime
import odibi_dagster.translate.sink_steps
import odibi_dagster.triggers.build

with contextlib.suppress(ImportError):  # optional at import time; the engine imports them when used
    import pandas
    import pyarrow
    import pyarrow.parquet
