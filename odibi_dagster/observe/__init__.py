"""Observability: ODIBI's Tracker, snapshots, SQL column lineage, metadata, story, metrics.

Pure library code; ``translate/`` wires it into Dagster assets. Run files live under
``<stories_dir>/<pipeline>/<run_id>/``: ``steps/<step>.json``, ``tracker.json``,
``story.html``, ``metrics.json`` and ``metrics.prom``.
"""

from odibi_dagster._lazy import lazy_exports

# Name -> its module, imported at first use: importing ``observe.metadata_keys`` (as every
# definitions load does) must not import the SQL lineage, story and metrics code with it.
_EXPORTS = {
    "sql_column_lineage": ".lineage",
    "sql_output_columns": ".lineage",
    "column_schema": ".metadata",
    "dataset_metadata": ".metadata",
    "sample_markdown": ".metadata",
    "OdibiMetadataSet": ".metadata_keys",
    "metrics_from_lineage": ".metrics",
    "to_prometheus": ".metrics",
    "write_metrics": ".metrics",
    "Redactor": ".redact",
    "redact_url": ".redact",
    "schema_diff": ".snapshot",
    "snapshot_frame_pandas": ".snapshot",
    "snapshot_ref": ".snapshot",
    "snapshot_table_arrow": ".snapshot",
    "StoryGenerator": ".story",
    "latest_story": ".story",
    "story_path": ".story",
    "RunTracker": ".tracker",
    "run_dir": ".tracker",
    "snapshot_to_dict": ".tracker",
    "summarize": ".tracker",
}


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)


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
