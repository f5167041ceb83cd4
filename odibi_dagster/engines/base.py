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
class Snapshot:
    """ODIBI's tracker snapshot of a frame: rows, schema (column, type) and a sample."""

    row_count: int
    schema: tuple[tuple[str, str], ...]
    sample: pd.DataFrame | None = None

    @property
    def columns(self) -> list[str]:
        return [c for c, _ in self.schema]


@runtime_checkable
class EngineContext(Protocol):
    """ODIBI CORE's EngineContext: read, write, execute_sql, register_temp,
    collect_sample, get_secret, plus the persistence hooks the IO managers need."""

    engine: str

    def read(self, source: str, **params: Any) -> Any:
        """Read ``source`` (path, URL, table) into a frame. ``params`` are reader options
        (``format``/``source_type``, ``table``, ``query``, ``connection_string``, ...)."""
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

    def collect_sample(self, df: Any, n: int = 5) -> pd.DataFrame:
        """The first ``n`` rows as pandas, without collecting the whole frame."""
        ...

    def get_secret(self, key: str) -> str:
        """A secret by name (environment variable or configured secret store)."""
        ...

    def to_pandas(self, df: Any) -> pd.DataFrame:
        """The whole frame as pandas (used by ``function`` steps only)."""
        ...

    def load(self, ref: DatasetRef) -> Any:
        """A lazy frame over a persisted dataset."""
        ...

    def persist(self, df: Any, path: str, format: DatasetFormat = "parquet") -> WriteInfo:
        """Persist a dataset between steps at ``path`` atomically (IO manager)."""
        ...

    def snapshot(self, df: Any, sample_rows: int = 5) -> Snapshot:
        """Rows, schema and a small sample of ``df`` without collecting it."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
