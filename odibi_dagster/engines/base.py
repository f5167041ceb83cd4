"""The EngineContext contract every engine implements (ODIBI CORE's EngineContext).

An engine context lives for one step execution. It reads sources, runs SQL over
inputs registered under their logical names, writes targets, and persists the
datasets that flow between steps. Frames are engine-native and lazy where the
engine allows it (a DuckDB relation, a Spark DataFrame); pandas DataFrames and
Arrow tables are accepted everywhere a frame is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:  # pandas loads only where a frame is made: code servers never need it
    import pandas as pd

DatasetFormat = Literal["parquet", "delta", "source"]


@dataclass(frozen=True)
class DatasetRef:
    """A dataset persisted between steps: Parquet files, one Delta table, or the
    manifests of a source ingested by reference (``format="source"``, see
    :mod:`odibi_dagster.engines.source_ref`).

    The IO managers hand these to downstream steps instead of loaded data, so a
    SQL step can query the files directly and never converts them to pandas.
    ``paths`` holds one entry per partition (a single entry when unpartitioned).
    """

    paths: tuple[str, ...]
    format: DatasetFormat = "parquet"
    asset_key: tuple[str, ...] = ()
    partition_keys: tuple[str, ...] = ()


@dataclass
class WriteInfo:
    """What a write produced: where, in which format, how many rows, which version."""

    uri: str
    format: str
    rows: int | None = None
    version: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SampleRows:
    """A few rows as plain Python values, column names and row tuples: a sample DuckDB read
    from a dataset, so describing a SQL step's output never needs pandas."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    #: The columns' Arrow type names (as in a snapshot's schema), same order as ``columns``.
    types: tuple[str, ...] = ()
    #: The Arrow table the rows were read from, when there was one: a manifest stores it as it
    #: is (building Arrow arrays from Python values makes pyarrow import pandas).
    arrow: Any = field(default=None, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.rows)

    def head(self, n: int) -> SampleRows:
        """The first ``n`` rows."""
        n = max(int(n), 0)
        return SampleRows(
            self.columns, self.rows[:n], self.types, self.arrow.slice(0, n) if self.arrow is not None else None
        )


def arrow_sample(table: Any) -> SampleRows:
    """A few rows of an Arrow table as :class:`SampleRows` (Python values, Arrow type names)."""
    columns = [column.to_pylist() for column in table.columns]
    return SampleRows(
        tuple(table.column_names),
        tuple(zip(*columns, strict=True)),
        tuple(str(f.type) for f in table.schema),
        table,
    )


@dataclass(frozen=True)
class Snapshot:
    """ODIBI's tracker snapshot of a frame: rows, schema (column, type) and a sample (a pandas
    frame, or :class:`SampleRows` where the sample was read without pandas)."""

    row_count: int
    schema: tuple[tuple[str, str], ...]
    sample: pd.DataFrame | SampleRows | None = None

    @property
    def columns(self) -> list[str]:
        return [c for c, _ in self.schema]


@runtime_checkable
class EngineContext(Protocol):
    """What odibi's runtime calls on an engine context, and no more (ODIBI CORE's
    EngineContext: read, write, execute_sql, register_temp; plus the dataset hooks).

    Both engines' contexts implement it (``PandasDuckDBContext``, ``SparkEngineContext``)
    and offer more for direct use: ODIBI's ``get_secret`` and ``collect_sample``, and
    ``persist`` (the dataset store calls the engines' ``persist_frame`` functions).
    """

    def read(self, source: str, **params: Any) -> Any:
        """Read ``source`` (path, URL, table) into a frame. ``params`` are reader options
        (``format``/``source_type``, ``table``, ``query``, ``connection_string``, ...)."""
        ...

    def source_format(self, source: str, params: dict[str, Any]) -> str:
        """The canonical format ``read(source, **params)`` would use (see
        :mod:`odibi_dagster.engines.formats.table`); ValueError when there is none."""
        ...

    def read_schema(self, df: Any, fmt: str) -> str | None:
        """The schema a read of format ``fmt`` inferred, in the engine's own form, to hand back
        to the reader of a source ingested by reference (None: nothing to pin)."""
        ...

    def write(self, df: Any, target: str, **params: Any) -> WriteInfo:
        """Write ``df`` to ``target`` atomically. ``params``: ``format``/``source_type``,
        ``mode`` (overwrite | append | merge), writer options."""
        ...

    def execute_sql(self, query: str) -> Any:
        """Run ``query`` over the registered temp tables and return a (lazy) frame."""
        ...

    def register_temp(self, name: str, df: Any) -> None:
        """Make ``df`` (a frame, pandas, Arrow or a :class:`DatasetRef`) queryable as ``name``."""
        ...

    def load(self, ref: DatasetRef) -> Any:
        """A lazy frame over a persisted dataset."""
        ...

    def to_pandas(self, df: Any) -> pd.DataFrame:
        """The whole frame as pandas (used by ``function`` steps only)."""
        ...

    def snapshot(self, df: Any, sample_rows: int = 5) -> Snapshot:
        """Rows, schema and a small sample of ``df`` without collecting it."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
