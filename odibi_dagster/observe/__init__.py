"""Observability: ODIBI's Tracker, snapshots, SQL column lineage, metadata, story, metrics.

Pure library code; ``translate/`` wires it into Dagster assets. Run files live under
``<stories_dir>/<pipeline>/<run_id>/``: ``steps/<step>.json``, ``tracker.json``,
``story.html``, ``metrics.json`` and ``metrics.prom``.
"""

from odibi_dagster.observe.lineage import sql_column_lineage, sql_output_columns
from odibi_dagster.observe.metadata import column_schema, dataset_metadata, sample_markdown
from odibi_dagster.observe.metadata_keys import OdibiMetadataSet
from odibi_dagster.observe.metrics import metrics_from_lineage, to_prometheus, write_metrics
from odibi_dagster.observe.redact import Redactor, redact_url
from odibi_dagster.observe.snapshot import (
    schema_diff,
    snapshot_frame_pandas,
    snapshot_ref,
    snapshot_table_arrow,
)
from odibi_dagster.observe.story import StoryGenerator, latest_story, story_path
from odibi_dagster.observe.tracker import RunTracker, run_dir, snapshot_to_dict, summarize

__all__ = [
    "OdibiMetadataSet",
    "Redactor",
    "RunTracker",
    "StoryGenerator",
    "column_schema",
    "dataset_metadata",
    "latest_story",
    "metrics_from_lineage",
    "redact_url",
    "run_dir",
    "sample_markdown",
    "schema_diff",
    "snapshot_frame_pandas",
    "snapshot_ref",
    "snapshot_table_arrow",
    "snapshot_to_dict",
    "sql_column_lineage",
    "sql_output_columns",
    "story_path",
    "summarize",
    "to_prometheus",
    "write_metrics",
]
