"""Column-level paths across a pipeline: where a dataset's column comes from, hop by hop.

Every hop is a :class:`ColumnOrigin`: one column of one dataset and the step that produced
it. The hops come from per-step facts (:class:`StepColumns`):

- a SQL step: its column lineage as :func:`~odibi_dagster.observe.lineage.lineage_record`
  wrote it (the same analysis as ``dagster/column_lineage``): per output column, its expression
  and the input columns behind it; none for literals and ``COUNT(*)``;
- an ingest step: each column is the source's column of the same name;
- a store/publish step (named by the step): each column is its (first) input's column;
- a function step is opaque: a column is linked to the inputs' columns *of the same name*,
  marked as assumed (the function may compute it otherwise), and a column no input has is a
  dead end naming the inputs.

The story builds the facts from the run's tracker records (:func:`steps_from_records`),
``odibi-dagster lineage`` from the config and the input schemas (``translate.config_lineage``);
both print :meth:`ColumnGraph.path_lines` / :meth:`ColumnOrigin.text`, so they agree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

__all__ = ["ColumnGraph", "ColumnOrigin", "Hop", "StepColumns", "steps_from_records"]

Ref = tuple[str, str]  # (dataset, or a store/publish step; column)
StepKind = Literal["ingest", "sql", "function", "sink"]

# The words of a path's lines; the story's script assembles the same lines from them.
SEE_ABOVE = " (see above)"
ARROW = "← "
USED_BY = "used by: "
USED_BY_NOTHING = "no other column"
ALSO_READ_BY = "; also read by "
NOT_KNOWN = ", whose columns are not known"


@dataclass(frozen=True)
class StepColumns:
    """What one step tells about its columns."""

    name: str
    layer: str
    kind: StepKind
    #: Datasets read, in the step's order (a store/publish step writes the first).
    inputs: tuple[str, ...] = ()
    #: Datasets written; a store/publish step's columns are named by the step itself.
    outputs: tuple[str, ...] = ()
    #: The output's columns; ``None`` when not known (not run, or no schema without a run).
    columns: tuple[str, ...] | None = None
    #: SQL steps: ``lineage_record`` rows; ``None`` when not known (``lineage_note`` says why).
    lineage: tuple[Mapping[str, Any], ...] | None = None
    lineage_note: str = "lineage unknown: the SQL could not be analysed"
    #: Ingest: what it read; store/publish: where it wrote.
    source: str | None = None

    @property
    def nodes(self) -> tuple[str, ...]:
        """The names its columns go by: its output datasets, or the step for a store/publish."""
        return (self.name,) if self.kind == "sink" else self.outputs


@dataclass(frozen=True)
class ColumnOrigin:
    """One hop of a column path: a column, the step that produced it and from which columns."""

    dataset: str
    column: str
    step: str | None = None
    kind: str = "unknown"  # ingest, sql, function, sink (layer store/publish), unknown
    layer: str = ""
    expression: str | None = None
    sources: tuple[Ref, ...] = ()
    source: str | None = None
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.dataset}.{self.column}"

    @property
    def detail(self) -> str:
        """Everything after the label: what the column is, then ``[step; note]``."""
        what = ""
        if self.kind == "sql" and self.expression is not None:
            what = f" = {_one_line(self.expression)}"
        elif self.kind == "ingest":
            what = f" = column '{self.column}' of {_one_line(self.source or '?')}"
        elif self.kind == "sink":
            what = f" = written to {_one_line(self.source or '?')}"
        where = f"{self.layer if self.kind == 'sink' else self.kind} step {self.step}" if self.step else ""
        bracket = "; ".join(part for part in (where, self.note) if part)
        return f"{what}  [{bracket}]" if bracket else what

    def text(self) -> str:
        """The hop as one line: ``gold.total = SUM(amount)  [sql step build_gold]``."""
        return self.label + self.detail


@dataclass(frozen=True)
class Hop:
    """A hop of an upstream path at ``depth`` (0: the column asked about); ``repeated``: its
    own upstream was shown already (a column reached twice through a diamond)."""

    depth: int
    origin: ColumnOrigin
    repeated: bool = False

    def text(self) -> str:
        head = "  " * self.depth + (ARROW if self.depth else "")
        return head + (self.origin.label + SEE_ABOVE if self.repeated else self.origin.text())


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@dataclass
class ColumnGraph:
    """Every known column of a pipeline with its :class:`ColumnOrigin`, from the steps' facts.

    ``missing`` explains a dataset no step (of these) produces, e.g. "external input" or
    "not produced in this run".
    """

    steps: Sequence[StepColumns]
    missing: Mapping[str, str] = field(default_factory=dict)
    default_missing: str = "no step produces it"

    def __post_init__(self) -> None:
        self._producer: dict[str, StepColumns] = {}
        self._consumers: dict[str, list[StepColumns]] = {}
        for step in self.steps:
            for node in step.nodes:
                self._producer.setdefault(node, step)
            for dataset in step.inputs:
                self._consumers.setdefault(dataset, []).append(step)
        self._origins: dict[Ref, ColumnOrigin] = {}
        self._dependents: dict[Ref, list[Ref]] | None = None

    # -- datasets and columns ----------------------------------------------------------------

    def datasets(self) -> dict[str, tuple[str, ...] | None]:
        """Every dataset (and store/publish step) with its columns, sources first."""
        out: dict[str, tuple[str, ...] | None] = {}
        for step in self.steps:
            for dataset in step.inputs:
                if dataset not in self._producer:
                    out.setdefault(dataset, None)
            for node in step.nodes:
                out.setdefault(node, self.columns(node))
        return out

    def columns(self, dataset: str) -> tuple[str, ...] | None:
        """The columns of ``dataset`` when known."""
        step = self._producer.get(dataset)
        if step is None:
            return None
        if step.columns is not None:
            return step.columns
        if step.kind == "sql" and step.lineage is not None:
            return tuple(str(row.get("column")) for row in step.lineage)
        if step.kind == "sink" and step.inputs:
            return self.columns(step.inputs[0])
        return None

    def _find_column(self, dataset: str, column: str) -> str | None:
        columns = self.columns(dataset)
        if columns is None:
            return None
        if column in columns:
            return column
        folded = [c for c in columns if c.casefold() == column.casefold()]
        return folded[0] if len(folded) == 1 else None

    def resolve(self, spec: str) -> Ref:
        """``DATASET.COLUMN`` (DATASET a dataset or a store/publish step; names may hold dots) as a ref.

        Raises ``LookupError`` naming what exists when the dataset or the column is unknown.
        A dataset whose columns are not known accepts any column.
        """
        datasets = self.datasets()
        splits = [(spec[:i], spec[i + 1 :]) for i in range(len(spec) - 1, 0, -1) if spec[i] == "."]
        for dataset, column in splits:  # the longest dataset name first
            match = dataset if dataset in datasets else _casefold_match(dataset, datasets)
            if match is None or not column:
                continue
            if datasets[match] is None:
                return match, column
            found = self._find_column(match, column)
            if found is None:
                shown = ", ".join(datasets[match] or ())
                raise LookupError(f"dataset '{match}' has no column '{column}'; its columns: {shown}")
            return match, found
        shown = ", ".join(datasets)
        if "." not in spec:
            raise LookupError(f"'{spec}' is not DATASET.COLUMN; datasets: {shown}")
        raise LookupError(f"no dataset or store step named '{spec.rsplit('.', 1)[0]}'; datasets: {shown}")

    # -- origins -----------------------------------------------------------------------------

    def origin(self, dataset: str, column: str) -> ColumnOrigin:
        """Where ``dataset.column`` comes from (one hop)."""
        key = (dataset, column)
        if key not in self._origins:
            self._origins[key] = self._compute_origin(dataset, column)
        return self._origins[key]

    def _compute_origin(self, dataset: str, column: str) -> ColumnOrigin:
        step = self._producer.get(dataset)
        if step is None:
            return ColumnOrigin(dataset, column, note=self.missing.get(dataset, self.default_missing))
        base = ColumnOrigin(dataset, column, step.name, step.kind, step.layer)
        if step.kind == "ingest":
            return replace(base, source=step.source)
        if step.kind == "sink":
            upstream = step.inputs[0] if step.inputs else None
            sources = ((upstream, self._find_column(upstream, column) or column),) if upstream else ()
            return replace(base, source=step.source, sources=sources)
        if step.kind == "sql":
            return self._sql_origin(base, step)
        return self._function_origin(base, step)

    def _sql_origin(self, base: ColumnOrigin, step: StepColumns) -> ColumnOrigin:
        if step.lineage is None:
            return replace(base, note=step.lineage_note)
        rows = [r for r in step.lineage if str(r.get("column")) == base.column] or [
            r for r in step.lineage if str(r.get("column")).casefold() == base.column.casefold()
        ]
        if not rows:
            return replace(base, note="not a column of the step's SQL result")
        row = rows[0]
        sources = tuple((str(d), str(c)) for d, c in row.get("sources") or ())
        note = "" if sources else "no source column"
        return replace(base, expression=str(row.get("expression") or "*"), sources=sources, note=note)

    def _function_origin(self, base: ColumnOrigin, step: StepColumns) -> ColumnOrigin:
        # A function is opaque: an input column of the same name is the honest best guess, and
        # is marked as such; without one the path ends here.
        sources = tuple(
            (dataset, found) for dataset in step.inputs if (found := self._find_column(dataset, base.column))
        )
        if sources:
            return replace(base, sources=sources, note="lineage unknown, same-named input column assumed")
        inputs = ", ".join(step.inputs) or "no input"
        return replace(base, note=f"lineage unknown, computed from {inputs}")

    # -- paths -------------------------------------------------------------------------------

    def upstream(self, dataset: str, column: str) -> list[Hop]:
        """The column's upstream path, depth first: each hop followed by the hops of its sources.

        A column reached a second time is listed again as ``repeated`` without its upstream.
        """
        hops: list[Hop] = []
        expanded: set[Ref] = set()
        stack: list[tuple[int, Ref]] = [(0, (dataset, column))]
        while stack:  # iterative: chains may be thousands of steps deep
            depth, ref = stack.pop()
            origin = self.origin(*ref)
            if ref in expanded:
                hops.append(Hop(depth, origin, repeated=True))
                continue
            expanded.add(ref)
            hops.append(Hop(depth, origin))
            stack.extend((depth + 1, source) for source in reversed(origin.sources))
        return hops

    def all_refs(self) -> list[Ref]:
        """Every column of every dataset whose columns are known, in dataset order."""
        return [(dataset, c) for dataset, columns in self.datasets().items() for c in columns or ()]

    def downstream(self, dataset: str, column: str) -> list[Ref]:
        """Every column computed from ``dataset.column``, directly or not, nearest first."""
        if self._dependents is None:
            self._dependents = {}
            for ref in self.all_refs():
                for source in self.origin(*ref).sources:
                    self._dependents.setdefault(source, []).append(ref)
        seen: dict[Ref, None] = {}
        frontier = [(dataset, column)]
        while frontier:
            found = []
            for ref in frontier:
                for dependent in self._dependents.get(ref, ()):
                    if dependent not in seen:
                        seen[dependent] = None
                        found.append(dependent)
            frontier = found
        return list(seen)

    def opaque_consumers(self, dataset: str) -> list[str]:
        """The datasets (and store steps) read from ``dataset`` whose columns are not known."""
        nodes = (node for step in self._consumers.get(dataset, ()) for node in step.nodes)
        return list(dict.fromkeys(node for node in nodes if self.columns(node) is None))

    def used_by(self, dataset: str, column: str) -> str:
        """The line naming what is computed from the column, and the datasets read from it or
        from those whose columns are not known (so what they take from it is not either)."""
        reached = self.downstream(dataset, column)
        labels = [f"{d}.{c}" for d, c in reached]
        datasets = dict.fromkeys(d for d, _ in [(dataset, column), *reached])
        opaque = list(dict.fromkeys(node for d in datasets for node in self.opaque_consumers(d)))
        text = USED_BY + (", ".join(labels) if labels else USED_BY_NOTHING)
        return text + (ALSO_READ_BY + ", ".join(opaque) + NOT_KNOWN if opaque else "")

    def path_lines(self, dataset: str, column: str) -> list[str]:
        """The upstream path as text lines, then the ``used by:`` line (the CLI's output)."""
        return [hop.text() for hop in self.upstream(dataset, column)] + [self.used_by(dataset, column)]


def _casefold_match(name: str, names: Iterable[str]) -> str | None:
    found = [n for n in names if n.casefold() == name.casefold()]
    return found[0] if len(found) == 1 else None


# -- facts from tracker records ------------------------------------------------------------------


def _schema_columns(snapshot: Any) -> tuple[str, ...] | None:
    if not isinstance(snapshot, Mapping) or not isinstance(snapshot.get("schema"), list):
        return None
    return tuple(str(pair[0]) for pair in snapshot["schema"] if isinstance(pair, list | tuple) and pair)


def _datasets(value: Any) -> tuple[str, ...]:
    if isinstance(value, Mapping):
        return tuple(str(v) for v in value.values())
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    return ()


def _record_step(record: Mapping[str, Any]) -> StepColumns | None:
    layer = str(record.get("layer") or "")
    name = str(record.get("step_name") or "")
    common: dict[str, Any] = {"name": name, "layer": layer, "inputs": _datasets(record.get("inputs"))}
    if layer in ("store", "publish"):
        target = record.get("target")
        columns = _schema_columns(record.get("before_snapshot"))
        return StepColumns(kind="sink", columns=columns, source=None if target is None else str(target), **common)
    outputs = _datasets(record.get("outputs"))
    columns = _schema_columns(record.get("after_snapshot"))
    if layer == "ingest":
        source = record.get("source")
        return StepColumns(
            kind="ingest", outputs=outputs, columns=columns, source=None if source is None else str(source), **common
        )
    if layer != "transform":
        return None
    if record.get("sql"):
        rows = record.get("column_lineage")
        lineage = tuple(r for r in rows if isinstance(r, Mapping)) if isinstance(rows, list) else None
        if "column_lineage" not in record:  # written when the step succeeds
            common["lineage_note"] = "lineage unknown: the step has not succeeded in this run"
        return StepColumns(kind="sql", outputs=outputs, columns=columns, lineage=lineage, **common)
    return StepColumns(kind="function", outputs=outputs, columns=columns, **common)


def steps_from_records(records: Iterable[Mapping[str, Any]]) -> list[StepColumns]:
    """The facts of a run's tracker records (``RunTracker.export_lineage()["steps"]``).

    A step with several records (one per partition of a range run, or a retry) is taken from
    its last successful record, else its last one.
    """
    chosen: dict[str, Mapping[str, Any]] = {}
    for record in records:
        name = str(record.get("step_name") or "")
        previous = chosen.get(name)
        if previous is None or record.get("status") == "success" or previous.get("status") != "success":
            chosen[name] = record
    return [step for step in map(_record_step, chosen.values()) if step is not None]
