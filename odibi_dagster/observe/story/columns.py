"""The story's column lineage: a table per SQL step and the column path view.

Both come from the run's tracker records through :mod:`odibi_dagster.observe.column_paths`.
The page holds every column once, as a hidden line with its text (:meth:`ColumnOrigin.text`'s
parts), its direct sources and the datasets read from it whose columns are not known, all as
numeric ids; the page's script walks those edges the way :meth:`ColumnGraph.upstream` and
:meth:`ColumnGraph.used_by` do, so the story shows the lines ``odibi-dagster lineage`` prints
while its size stays linear in the columns (a path per column would be quadratic in the depth).
Nothing from the run reaches the script: ids are numbers and texts are escaped HTML.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from odibi_dagster.observe import column_paths as cp

__all__ = ["column_view"]


class _Ids:
    """Numeric ids in the order first seen."""

    def __init__(self) -> None:
        self.by_key: dict[Any, int] = {}
        self.order: list[Any] = []

    def __call__(self, key: Any) -> int:
        if key not in self.by_key:
            self.by_key[key] = len(self.order)
            self.order.append(key)
        return self.by_key[key]


def _step_table(graph: cp.ColumnGraph, step: cp.StepColumns, ids: _Ids) -> dict[str, Any]:
    """The per-step table of a SQL step: output column, its expression, the input columns."""
    if step.lineage is None:
        return {"rows": [], "note": f"Column {step.lineage_note}."}
    dataset = step.outputs[0] if step.outputs else step.name
    rows = []
    for row in step.lineage:
        origin = graph.origin(dataset, str(row.get("column")))
        rows.append(
            {
                "column": origin.column,
                "id": ids((dataset, origin.column)),
                "expression": origin.expression,
                "sources": [{"label": f"{d}.{c}", "id": ids((d, c))} for d, c in origin.sources],
            }
        )
    return {"rows": rows, "note": "" if rows else "The SQL has no output column."}


def column_view(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The template's view of column lineage: ``{"tables": {step: table}, "groups": [...],
    "hops": [...], "opaque": [...], "words": {...}}`` (``groups`` empty when no column is known)."""
    graph = cp.ColumnGraph(cp.steps_from_records(records), default_missing="not produced in this run")
    ids, opaque_ids = _Ids(), _Ids()
    known = graph.all_refs()
    for ref in known:  # known columns first: their ids order the "used by" list as in the CLI
        ids(ref)
    tables = {step.name: _step_table(graph, step, ids) for step in graph.steps if step.kind == "sql"}
    hops: list[dict[str, Any]] = []
    known_set = set(known)
    while len(hops) < len(ids.order):  # sources may name columns not known otherwise: they get lines too
        ref = ids.order[len(hops)]
        origin = graph.origin(*ref)
        hops.append(
            {
                "id": ids(ref),
                "label": origin.label,
                "detail": origin.detail,
                "src": " ".join(str(ids(source)) for source in origin.sources),
                "known": ref in known_set,
                "opaque": " ".join(str(opaque_ids(node)) for node in graph.opaque_consumers(ref[0])),
            }
        )
    groups: dict[str, list[dict[str, Any]]] = {}
    for hop, ref in zip(hops, ids.order, strict=True):
        groups.setdefault(ref[0], []).append({"id": hop["id"], "label": hop["label"]})
    return {
        "tables": tables,
        "groups": [{"dataset": dataset, "options": options} for dataset, options in groups.items()],
        "hops": hops,
        "opaque": [{"id": number, "name": name} for name, number in opaque_ids.by_key.items()],
        "words": {
            "arrow": cp.ARROW,
            "see_above": cp.SEE_ABOVE,
            "used_by": cp.USED_BY,
            "nothing": cp.USED_BY_NOTHING,
            "also": cp.ALSO_READ_BY,
            "not_known": cp.NOT_KNOWN,
        },
    }
