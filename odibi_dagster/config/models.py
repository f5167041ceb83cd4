"""Pydantic models of ODIBI CORE steps and of the pipeline document that wraps them.

Shapes only: these models reject unknown keys and wrong types. Cross-step rules
(duplicates, missing inputs, cycles, SQL, imports, cron...) live in ``validation``
so that every problem is reported at once with ODIBI's wording.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from odibi_dagster.config.freshness import FreshnessConfig
from odibi_dagster.config.names import dagster_name

VALID_LAYERS = ("connect", "ingest", "transform", "store", "publish")
VALID_ENGINES = ("pandas", "spark")
VALID_TYPES = ("sql", "function", "config_op", "api")
DATA_LAYERS = ("ingest", "transform")
SINK_LAYERS = ("store", "publish")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class _OneOf(_Strict):
    """A model that needs exactly one of two fields: ``one_of = (first, second, what)``."""

    one_of: ClassVar[tuple[str, str, str]]

    @model_validator(mode="after")
    def _exactly_one_of(self) -> Self:
        first, second, what = self.one_of
        if (getattr(self, first) is None) == (getattr(self, second) is None):
            raise ValueError(f"{what} needs exactly one of '{first}' or '{second}'")
        return self


def _none_to_empty(value: Any) -> Any:
    # ODIBI's Step dataclass turns None into {} for params/inputs/outputs/metadata.
    return {} if value is None else value


def _scalar_text(value: Any) -> Any:
    # YAML reads `start: 2024-01-01` as a date and `values: [1, 2]` as numbers: keep them as text.
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


class RetryConfig(_Strict):
    """Retries of a failing step (ODIBI's retry logic, run by Dagster's RetryPolicy)."""

    max_retries: int = Field(0, ge=0, le=100)
    delay_seconds: float = Field(0, ge=0)
    backoff: Literal["linear", "exponential"] | None = None
    jitter: Literal["full", "plus_minus"] | None = None


class AcceptedValues(_Strict):
    column: str
    values: list[Any] = Field(min_length=1)


class RowCountBounds(_Strict):
    min: int | None = Field(None, ge=0)
    max: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> RowCountBounds:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


CHECK_KINDS = ("not_null", "unique", "accepted_values", "row_count", "expected_columns", "sql")


class CheckConfig(_Strict):
    """One data check on a step's output, e.g. ``{not_null: [id], severity: error}``."""

    not_null: list[str] | None = Field(None, min_length=1)
    unique: list[str] | None = Field(None, min_length=1)
    accepted_values: AcceptedValues | None = None
    row_count: RowCountBounds | None = None
    expected_columns: list[str] | None = Field(None, min_length=1)
    sql: str | None = None
    severity: Literal["error", "warn"] = "warn"
    name: str | None = None
    description: str | None = None
    dataset: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> CheckConfig:
        kinds = [k for k in CHECK_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"a check needs exactly one of {', '.join(CHECK_KINDS)} (got {kinds or 'none'})")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in CHECK_KINDS if getattr(self, k) is not None)

    @property
    def check_name(self) -> str:
        """``name:``, else a name derived from the kind and columns, made a valid Dagster name."""
        if self.name:
            return self.name
        arg = getattr(self, self.kind)
        if isinstance(arg, list):
            derived = f"{self.kind}__{'_'.join(str(a) for a in arg)}"
        elif isinstance(arg, AcceptedValues):
            derived = f"accepted_values__{arg.column}"
        else:
            derived = self.kind
        return dagster_name(derived)


class PartitionMappingConfig(_Strict):
    """How a step reads upstream partitions: identity (default) or a trailing window."""

    type: Literal["identity", "window", "all"] = "identity"
    start_offset: int = Field(0, le=0)
    end_offset: int = Field(0, le=0)


class Step(_Strict):
    """ODIBI CORE's Step: the unit of a config-driven pipeline.

    ``name`` is required; as in ODIBI's JSON loader ``layer`` defaults to ``transform``,
    ``type`` to ``config_op`` and ``engine`` to the pipeline's engine (``pandas`` for
    ODIBI's bare JSON lists).
    """

    layer: str = Field(
        "transform",
        description="connect, ingest, transform, store or publish "
        "(ODIBI's JSON loader defaults a missing layer to 'transform').",
    )
    name: str
    type: str = "config_op"
    engine: str | None = None
    value: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, str] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    checks: list[CheckConfig] = Field(default_factory=list)
    retry: RetryConfig | None = None
    partition_mapping: PartitionMappingConfig | None = None
    enabled: bool = True
    line: SkipJsonSchema[int | None] = Field(
        None, exclude=True, description="Line of the step in its file (set by the loader)."
    )

    # ODIBI writes null for "nothing": the JSON Schema says so too (json_schema_input_type).
    @field_validator("params", "metadata", mode="before", json_schema_input_type=dict[str, Any] | None)
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return _none_to_empty(v)

    @field_validator("inputs", "outputs", mode="before", json_schema_input_type=dict[str, str] | None)
    @classmethod
    def _none_is_no_datasets(cls, v: Any) -> Any:
        return _none_to_empty(v)

    @field_validator("value", mode="before", json_schema_input_type=str | None)
    @classmethod
    def _value_text(cls, v: Any) -> Any:
        return "" if v is None else v

    @field_validator("checks", mode="before", json_schema_input_type=list[CheckConfig] | None)
    @classmethod
    def _checks_list(cls, v: Any) -> Any:
        return [] if v is None else v


class PartitionsConfig(_Strict):
    """Partitions of a pipeline: time windows, a static list, or dynamic keys."""

    type: Literal["daily", "hourly", "weekly", "monthly", "static", "dynamic"]
    start: str | None = None
    end: str | None = None
    timezone: str = "UTC"
    values: list[str] | None = None
    name: str | None = None
    fmt: str | None = None
    end_offset: int = 0

    @field_validator("start", "end", mode="before")
    @classmethod
    def _date_text(cls, v: Any) -> Any:
        return _scalar_text(v)

    @field_validator("values", mode="before")
    @classmethod
    def _values_text(cls, v: Any) -> Any:
        return [_scalar_text(x) for x in v] if isinstance(v, list) else v


class ScheduleConfig(_OneOf):
    """A cron schedule (``cron``) or ODIBI's interval mode (``every: 300s``)."""

    cron: str | None = None
    every: str | int | None = None
    timezone: str = "UTC"
    name: str | None = None
    enabled: bool = True

    one_of: ClassVar[tuple[str, str, str]] = ("cron", "every", "a schedule")


class FileWatchSensorConfig(_Strict):
    """Start one run per new or changed file in ``path`` matching ``pattern``."""

    type: Literal["file_watch"]
    path: str
    pattern: str = "*"
    step: str
    recursive: bool = False
    min_interval_seconds: int = Field(30, ge=1)
    settle_seconds: float = Field(
        60,
        ge=0,
        description="A file untouched this long is complete; a younger one must keep its size "
        "and mtime over two evaluations before it starts a run.",
    )
    dynamic_partitions: bool = False
    follow_symlinks: bool = Field(
        False,
        description="Follow symbolic links whose target is outside `path` (links inside it are "
        "always followed); off, such links are skipped and said so in the tick's log.",
    )
    name: str | None = None
    enabled: bool = True


class PollingSensorConfig(_OneOf):
    """ODIBI's INTERVAL / INCREMENTAL streaming: poll a SQL source past a watermark."""

    type: Literal["incremental", "interval"]
    step: str
    source: str = Field(description="SQLAlchemy URL, or the name of a connect step")
    table: str | None = None
    query: str | None = None
    watermark_column: str
    start_value: str | int | float | None = None
    min_interval_seconds: int = Field(60, ge=1)
    name: str | None = None
    enabled: bool = True

    one_of: ClassVar[tuple[str, str, str]] = ("table", "query", "a polling sensor")


SensorConfig = Annotated[FileWatchSensorConfig | PollingSensorConfig, Field(discriminator="type")]

VALID_EVENTS = (
    "pipeline_start",
    "pipeline_complete",
    "pipeline_error",
    "node_start",
    "node_complete",
    "node_error",
)


# The Phase 3 orchestrator emits step_*; the EventBus of later phases calls them node_*.
EVENT_ALIASES = {"step_start": "node_start", "step_complete": "node_complete", "step_error": "node_error"}


class HookConfig(_Strict):
    """A function called on one of ODIBI's events, e.g. ``pipeline_complete``."""

    event: str
    function: str
    priority: Literal["high", "medium", "low"] = "medium"
    steps: list[str] | None = None

    @field_validator("event")
    @classmethod
    def _alias(cls, v: str) -> str:
        return EVENT_ALIASES.get(v, v)


class BackfillConfig(_Strict):
    """How backfills run: one run per partition, or single runs over a range."""

    policy: Literal["single_run", "multi_run"] = "multi_run"
    max_partitions_per_run: int | None = Field(None, ge=1)


class ExecutorConfig(_Strict):
    """How a run of the pipeline executes its steps (Dagster's executor).

    ``in_process`` (the default) runs every step in the run's own process: no per-step
    process start-up, which is what small and medium pipelines want in the UI.
    ``multiprocess`` runs each step in its own process, forked from a server that has
    Dagster, odibi_dagster and the engines imported already; ``max_concurrent`` caps how
    many run at once (default: the number of CPUs).
    """

    type: Literal["in_process", "multiprocess"] = "in_process"
    max_concurrent: int | None = Field(None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, v: Any) -> Any:
        # `executor: in_process` is the short form of `executor: {type: in_process}`.
        return {"type": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _concurrency_needs_processes(self) -> ExecutorConfig:
        if self.type == "in_process" and self.max_concurrent not in (None, 1):
            raise ValueError("max_concurrent needs type: multiprocess (in_process runs one step at a time)")
        return self


class StoryConfig(_Strict):
    sample_rows: int = Field(5, ge=0, le=1000)
    max_cell_chars: int = Field(40, ge=4)
    enabled: bool = True
    refresh_seconds: float = Field(
        2.0,
        ge=0,
        description="While a run is going, re-publish the story at most this often; it is always published when "
        "a step fails and when the run's last step ends. 0: at every step start and end.",
    )


class ExternalInputConfig(_Strict):
    """A dataset produced outside the pipeline, by an asset of another pipeline or another code
    location (a hand-written asset, say): steps name it in ``inputs`` like any dataset, their
    assets depend on ``asset_key`` (so the asset graph links the two), and they read the data
    that asset wrote at ``path``."""

    asset_key: list[str] = Field(
        min_length=1,
        description="Key of the producing asset, as a list of parts or 'part/part' (Dagster's user form).",
        json_schema_extra={"examples": [["team", "store_targets"], "team/store_targets"]},
    )
    path: str = Field(
        min_length=1,
        description="Where that asset writes the dataset: a Parquet file, folder or glob, or a Delta table; "
        "relative paths resolve like the steps' paths.",
    )
    format: Literal["parquet", "delta"] = "parquet"
    description: str | None = None

    @field_validator("asset_key", mode="before", json_schema_input_type=list[str] | str)
    @classmethod
    def _user_string(cls, v: Any) -> Any:
        # `team/store_targets` is how Dagster writes a key for people (AssetKey.to_user_string).
        return v.split("/") if isinstance(v, str) else v


class PipelineConfig(_Strict):
    """A pipeline document: pipeline-wide settings wrapping ODIBI steps."""

    pipeline: str | None = None
    description: str | None = None
    engine: str = "pandas"
    owners: list[str] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)
    partitions: PartitionsConfig | None = None
    schedule: ScheduleConfig | None = None
    observe_sources: str | None = Field(
        None,
        description="A cron expression: while Dagster's automation sensor runs, the ingest steps' source files "
        "are observed on this schedule, so a changed source marks its ingest stale without a click.",
        json_schema_extra={"examples": ["*/15 * * * *"]},
    )
    sensors: list[SensorConfig] = Field(default_factory=list)
    hooks: list[HookConfig] = Field(default_factory=list)
    retry: RetryConfig | None = None
    backfill: BackfillConfig | None = None
    freshness: FreshnessConfig | None = Field(
        None,
        description="Default freshness policy of the pipeline's assets (a step's `metadata.freshness` wins).",
        json_schema_extra={"examples": [{"fail_window": "26h", "warn_window": "25h"}]},
    )
    story: StoryConfig = Field(default_factory=StoryConfig)
    executor: ExecutorConfig = Field(
        default_factory=ExecutorConfig,
        json_schema_extra={"examples": ["in_process", {"type": "multiprocess", "max_concurrent": 4}]},
    )
    explanations: dict[str, str] = Field(default_factory=dict)
    column_schema_change_checks: bool = False
    metrics: bool = Field(False, description="Also write metrics.json and metrics.prom (Prometheus) per run.")
    ingest_mode: Literal["copy", "reference"] = Field(
        "copy",
        description="copy: every ingest is persisted as a Parquet/Delta dataset. reference: ingests of files "
        "(CSV, JSON, Parquet, Delta, Avro) record a fingerprinted manifest and downstream steps read "
        "the source itself; a source that changes afterwards fails loudly.",
    )
    external_inputs: dict[str, ExternalInputConfig] = Field(
        default_factory=dict,
        description="Datasets produced outside the pipeline (another code location's assets), by the name "
        "steps use in `inputs`.",
    )
    steps: list[Step]

    @field_validator("tags", mode="before")
    @classmethod
    def _tag_text(cls, v: Any) -> Any:
        # YAML `tier: 1` / `pii: false`: tag values are text.
        if not isinstance(v, dict):
            return v
        return {k: (str(x).lower() if isinstance(x, bool) else _scalar_text(x)) for k, x in v.items()}

    _source: Path | None = PrivateAttr(default=None)
    # Set by validation for ODIBI's own forms (see config.roots): the ODIBI project root, and
    # other folders that hold the same sources (an ambiguity `validate` reports).
    _data_root: Path | None = PrivateAttr(default=None)
    _data_root_alternatives: tuple[Path, ...] = PrivateAttr(default=())
    # Where this config depends on a documented difference from ODIBI CORE (`validate` prints them).
    _warnings: tuple[tuple[str | None, str, str], ...] = PrivateAttr(default=())
    # ODIBI's own config forms: rows of a CSV table skipped for enabled = 0 (None: not that form).
    _odibi_origin: int | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The file this pipeline was loaded from, if any."""
        return self._source

    @property
    def name(self) -> str:
        """``pipeline:`` or the source file's stem."""
        if self.pipeline:
            return self.pipeline
        if self._source is not None:
            return self._source.stem
        return "pipeline"

    @property
    def config_dir(self) -> Path:
        return self._source.parent if self._source is not None else Path.cwd()

    @property
    def data_root(self) -> Path:
        """The folder relative paths resolve against: the config's own, or for ODIBI's own
        config forms the ODIBI project root (see ``odibi_dagster.config.roots``)."""
        return self._data_root if self._data_root is not None else self.config_dir

    @property
    def data_root_alternatives(self) -> tuple[Path, ...]:
        """Other folders that hold this ODIBI-form config's sources as well as :attr:`data_root`."""
        return self._data_root_alternatives

    @property
    def module_dirs(self) -> list[Path]:
        """Folders ``function`` steps and hooks import their modules from: the config's, and
        the data root (ODIBI imports from its working directory, the project root)."""
        return list(dict.fromkeys([self.config_dir, self.data_root]))

    @property
    def compatibility_warnings(self) -> tuple[tuple[str | None, str, str], ...]:
        """``(step, field, message)`` where the config relies on a documented difference from ODIBI."""
        return self._warnings

    @property
    def odibi_form(self) -> bool:
        """Whether this came from ODIBI's own forms (a bare list of steps, a SQLite or CSV table)."""
        return self._odibi_origin is not None

    @property
    def disabled_csv_rows(self) -> int:
        """Rows of its CSV config table skipped for enabled = 0."""
        return self._odibi_origin or 0

    def with_odibi_origin(self, disabled_csv_rows: int = 0) -> PipelineConfig:
        self._odibi_origin = disabled_csv_rows
        return self

    def with_warnings(self, warnings: list[tuple[str | None, str, str]]) -> PipelineConfig:
        self._warnings = tuple(warnings)
        return self

    def with_data_root(self, root: Path, alternatives: tuple[Path, ...] = ()) -> PipelineConfig:
        self._data_root = root
        self._data_root_alternatives = alternatives
        return self

    def with_source(self, source: Path | None) -> PipelineConfig:
        self._source = source
        return self

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    def step_engine(self, step: Step) -> str:
        """The engine that runs ``step``: its own ``engine``, else the pipeline's (the one rule)."""
        return step.engine or self.engine

    def step_freshness(self, step: Step) -> FreshnessConfig | None:
        """The freshness ``step``'s assets must keep: its ``metadata.freshness`` (``null``: none),
        else the pipeline's ``freshness``. Validation has checked the metadata's shape."""
        if "freshness" in step.metadata:
            value = step.metadata["freshness"]
            return None if value is None else FreshnessConfig.model_validate(value)
        return self.freshness

    def connection_key(self, connect_step: str) -> str:
        """The resource key of a connect step, ``<pipeline>__<step>``: also its default pool."""
        return f"{dagster_name(self.name)}__{dagster_name(connect_step)}"

    def step_pool(self, step: Step) -> str | None:
        """The concurrency pool ``step`` runs in: its ``metadata.pool`` (``null``: none); else, for a
        step using a connection (``params.connection``), that connect step's ``metadata.pool`` or,
        by default, a pool named after the connection, so one database is not hit by every step
        at once."""
        if "pool" in step.metadata:
            return step.metadata["pool"]
        conn = step.params.get("connection")
        if not isinstance(conn, str):
            return None
        connect = next((s for s in self.steps if s.name == conn and s.layer == "connect"), None)
        if connect is not None and "pool" in connect.metadata:
            return connect.metadata["pool"]
        return self.connection_key(conn)
