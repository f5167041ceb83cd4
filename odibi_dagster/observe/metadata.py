"""Dagster materialization metadata for a data asset, from tracker snapshots.

Standard keys (``dagster/row_count``, ``dagster/partition_row_count``,
``dagster/column_schema``, ``dagster/column_lineage``, ``dagster/uri``) make Dagster's
own schema-change and metadata-bounds checks and its UI work unchanged; ``odibi/*``
keys carry ODIBI's tracker fields (schema diff, row delta, sample, timing, story).
"""

from __future__ import annotations

import datetime as _dt
import math
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import dagster as dg

from odibi_dagster.engines.base import SampleRows, Snapshot
from odibi_dagster.observe._util import sample_records
from odibi_dagster.observe.metadata_keys import OdibiMetadataSet
from odibi_dagster.observe.redact import Redactor, redact_url
from odibi_dagster.observe.snapshot import schema_diff

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["column_schema", "dataset_metadata", "sample_markdown"]

ELLIPSIS = "…"


def column_schema(snapshot: Snapshot) -> dg.TableSchema:
    """The snapshot's schema as a Dagster ``TableSchema`` (name and Arrow type per column)."""
    return dg.TableSchema(columns=[dg.TableColumn(name=str(c), type=str(t)) for c, t in snapshot.schema])


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    pd = sys.modules.get("pandas")  # samples are pandas frames: pandas is loaded when one is shown
    if pd is not None and (value is pd.NaT or value is pd.NA):
        return True
    return isinstance(value, float) and math.isnan(value)


def _cell_text(value: Any) -> str:
    if isinstance(value, _dt.datetime | _dt.date):  # pd.Timestamp included
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    return str(value)


def _md_cell(text: str, max_chars: int) -> str:
    if max_chars > 0 and len(text) > max_chars:
        text = text[: max(max_chars - 1, 0)] + ELLIPSIS  # cut before escaping: count what users see
    # Backslash first so the escapes we add stay unambiguous; <, > and & as entities so no raw
    # HTML reaches the markdown renderer; pipes would split cells, newlines would end the row.
    text = text.replace("\\", "\\\\").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("|", "\\|").replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")
    return text


def sample_markdown(
    sample: pd.DataFrame | SampleRows | None,
    *,
    rows: int = 5,
    max_cell_chars: int = 40,
    redactor: Redactor | None = None,
) -> str:
    """A small markdown table of the first ``rows`` rows of ``sample``.

    Values longer than ``max_cell_chars`` are cut with "…"; pipes, newlines and HTML
    are escaped so every value stays inside its cell as plain text.
    """
    if sample is None or len(sample.columns) == 0:
        return "_no sample_"
    head = sample.head(rows)
    if isinstance(head, SampleRows):
        records: Iterable[Iterable[Any]] = (r.values() for r in sample_records(head))
    else:
        records = head.itertuples(index=False, name=None)
    redact = redactor.redact_text if redactor is not None else (lambda s: s)
    header = "| " + " | ".join(_md_cell(redact(str(c)), max_cell_chars) for c in head.columns) + " |"
    # Missing values (None, NaN, NaT, NA) show as an italic null, unlike an empty string.
    rule = "| " + " | ".join("---" for _ in head.columns) + " |"
    lines = [header, rule]
    for record in records:
        cells = ("*null*" if _is_missing(v) else _md_cell(redact(_cell_text(v)), max_cell_chars) for v in record)
        lines.append("| " + " | ".join(cells) + " |")
    if len(head) == 0:
        lines.append("| " + " | ".join("" for _ in head.columns) + " |")
    return "\n".join(lines)


def dataset_metadata(
    after: Snapshot,
    before: Snapshot | None,
    *,
    duration_s: float,
    lineage: dg.TableColumnLineage | None = None,
    uri: str | None = None,
    story_path: str | None = None,
    sample_rows: int = 5,
    max_cell_chars: int = 40,
    partition: bool = False,
    total_row_count: int | None = None,
    redactor: Redactor | None = None,
) -> dict[str, Any]:
    """Materialization metadata of a data asset, standard Dagster keys plus ODIBI's tracker fields.

    ``after`` is the snapshot of what the step produced, ``before`` the snapshot of its
    (main) input, ``None`` for sources. With ``partition=True`` the snapshot's count is
    ``dagster/partition_row_count`` and ``dagster/row_count`` is ``total_row_count``
    (the whole asset) when given, else the partition's count. ``uri`` goes through
    :func:`~odibi_dagster.observe.redact.redact_url` (and ``redactor``) so no credential
    reaches Dagster's event log.
    """
    md: dict[str, Any] = {}
    rows = int(after.row_count)
    if partition:
        md["dagster/partition_row_count"] = dg.MetadataValue.int(rows)
        md["dagster/row_count"] = dg.MetadataValue.int(int(total_row_count if total_row_count is not None else rows))
    else:
        md["dagster/row_count"] = dg.MetadataValue.int(rows)
    md["dagster/column_schema"] = dg.MetadataValue.table_schema(column_schema(after))
    if lineage is not None:
        md["dagster/column_lineage"] = dg.MetadataValue.column_lineage(lineage)
    if uri:
        clean = redactor.redact_text(uri) if redactor is not None else redact_url(uri)
        md["dagster/uri"] = dg.MetadataValue.text(clean)

    duration_ms = max(float(duration_s), 0.0) * 1000.0
    md.update(
        OdibiMetadataSet(
            schema_diff=dg.MetadataValue.json(schema_diff(before, after)) if before is not None else None,
            rows_before=int(before.row_count) if before is not None else None,
            row_delta=rows - int(before.row_count) if before is not None else None,
            sample=dg.MetadataValue.md(
                sample_markdown(after.sample, rows=sample_rows, max_cell_chars=max_cell_chars, redactor=redactor)
            ),
            duration_ms=round(duration_ms, 3),
            rows_per_second=round(rows / duration_s, 3) if duration_s > 0 else None,
            story=dg.MetadataValue.path(story_path) if story_path else None,
        )
    )
    return md
