"""Everything the assets of one pipeline need at run time, decided at definition time.

A :class:`PipelinePlan` is built once per pipeline by ``build_definitions`` and is
small and picklable: runs in other processes rebuild it from the code location.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import dagster as dg

from odibi_dagster.config.graph import StepGraph
from odibi_dagster.config.models import DATA_LAYERS, PipelineConfig, Step
from odibi_dagster.config.names import dagster_name

ODIBI_BASE_DIR_ENV = "ODIBI_BASE_DIR"
PANDAS_ENGINE_KEY = "odibi_pandas"
SPARK_ENGINE_KEY = "odibi_spark"
#: The one dataset store every pipeline's steps persist and read their datasets through.
DATASET_STORE_KEY = "odibi_datasets"
# Azure storage URLs (adlfs's and WASB's schemes): a Spark session needs hadoop-azure for them.
_AZURE_URL = re.compile(r"^\s*(?:abfss?|az|wasbs?)://", re.IGNORECASE)


@dataclass
class PipelinePlan:
    """Resolved names, keys and directories of one pipeline's Dagster objects."""

    pipeline: PipelineConfig
    asset_keys: dict[str, dg.AssetKey]  # dataset -> key
    sink_keys: dict[str, dg.AssetKey]  # store/publish step -> key
    data_root: str  # relative paths in the config resolve against this
    work_dir: str  # datasets, stories, tracker JSON
    graph_edges: list[tuple[str, str]] = field(default_factory=list)
    #: Ingest step -> key of its source files' observable source asset (see ``translate.sources``).
    source_keys: dict[str, dg.AssetKey] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.pipeline.name

    @cached_property
    def external_keys(self) -> dict[str, dg.AssetKey]:
        """Dataset -> key of the asset outside the pipeline that produces it (``external_inputs``)."""
        return {name: dg.AssetKey(ext.asset_key) for name, ext in self.pipeline.external_inputs.items()}

    def input_key(self, dataset: str) -> dg.AssetKey:
        """The asset key a step input depends on: the pipeline's own dataset or an external input."""
        return self.asset_keys[dataset] if dataset in self.asset_keys else self.external_keys[dataset]

    @cached_property
    def steps_by_op(self) -> dict[str, str]:
        """Dagster op name -> step name."""
        return {self.op_name(s): s.name for s in self.pipeline.steps}

    @cached_property
    def step_graph(self) -> StepGraph:
        """The steps and the edges between them (datasets and connections)."""
        return StepGraph((s.name for s in self.pipeline.steps), self.graph_edges)

    @cached_property
    def uses_azure_storage(self) -> bool:
        """Whether the pipeline reads or writes Azure storage: its work dir or data root, a step's
        value or path param, or an external input's path is an ``abfs[s]://``/``wasb[s]://`` URL."""
        texts = [self.work_dir, self.data_root, *(ext.path for ext in self.pipeline.external_inputs.values())]
        for step in self.pipeline.steps:
            texts += _strings(step.value)
            texts += _strings(step.params)
        return any(_AZURE_URL.match(text) for text in texts)

    def connection_key(self, connect_step: str) -> str:
        return self.pipeline.connection_key(connect_step)

    @property
    def job_name(self) -> str:
        return dagster_name(self.name)

    @property
    def stories_dir(self) -> str:
        """Tracker records and stories: under the work dir, a blob store too (workers that share
        no disk all see it; see ``observe.run_files``)."""
        if "://" in self.work_dir:
            return self.work_dir.rstrip("/") + "/stories"
        return os.path.join(self.work_dir, "stories")

    @property
    def latest_metrics_path(self) -> str:
        """``<work_dir>/metrics/<pipeline>.prom``: the Prometheus text of the pipeline's latest run,
        in one folder for every pipeline (a node_exporter ``--collector.textfile.directory``)."""
        name = dagster_name(self.name) + ".prom"
        if "://" in self.work_dir:
            return self.work_dir.rstrip("/") + "/metrics/" + name
        return os.path.join(self.work_dir, "metrics", name)

    def op_name(self, step: Step) -> str:
        return f"{dagster_name(self.name)}__{dagster_name(step.name)}"

    def engine_key(self, step: Step) -> str:
        return SPARK_ENGINE_KEY if self.pipeline.step_engine(step) == "spark" else PANDAS_ENGINE_KEY

    def ingests_by_reference(self, step: Step) -> bool:
        """Whether ``step`` may record its source by reference (``ingest_mode: reference``).

        Only plain file ingests qualify: no custom reader or API, no connection or secret in
        the params (the manifest stores them), every consumer on the same engine (it reads the
        source with the ingest's reader options), no checks on Spark (checks run in DuckDB), and
        a source that no store/publish step of this pipeline writes. Runtime adds: the source
        resolves to existing files in a lazily readable format.
        """
        pipeline = self.pipeline
        if pipeline.ingest_mode != "reference" or step.layer != "ingest" or step.type in ("function", "api"):
            return False
        if mentions_secret_or_connection(step.params):
            return False
        engine = pipeline.step_engine(step)
        if engine == "spark" and step.checks:
            return False
        outputs = set(step.outputs.values())
        for other in pipeline.steps:
            if outputs & set(other.inputs.values()) and pipeline.step_engine(other) != engine:
                return False
            if (
                other.layer in ("store", "publish")
                and other.value
                and self.resolve_path(other.value) == self.resolve_path(step.value)
            ):
                return False
        return True

    def resolve_path(self, value: str) -> str:
        """A config path: URLs and absolute paths as they are, others against the data root."""
        if "://" in value or os.path.isabs(value):
            if value.startswith("sqlite:///") and not value.startswith("sqlite:////"):
                rel = value[len("sqlite:///") :]
                if rel and rel != ":memory:" and not os.path.isabs(rel):
                    return "sqlite:///" + self._join_root(rel)
            return value
        return self._join_root(value)

    def _join_root(self, rel: str) -> str:
        # Local paths are normalised (no ``pipelines/../output`` in URIs and logs), keeping a
        # trailing separator: ``out/dir/`` names a directory target.
        joined = os.path.join(self.data_root, rel)
        if "://" in joined:
            return joined
        norm = os.path.normpath(joined)
        return norm + os.sep if rel.endswith(("/", os.sep)) and not norm.endswith(os.sep) else norm

    def resolve_value(self, value: str, params: dict) -> str:
        """An ingest/store step's value: a path (see :meth:`resolve_path`), except when the step
        reads or writes a database through a connection (``connection_string`` / ``jdbc_url``,
        e.g. from ``params.connection``): then the value is a table name or a query, as is."""
        if params.get("connection_string") or params.get("jdbc_url"):
            return value
        return self.resolve_path(value)

    def graph(self) -> dict:
        """The step graph for the story picture."""
        return {
            "nodes": [{"name": s.name, "layer": s.layer} for s in self.pipeline.steps],
            "edges": [list(e) for e in self.graph_edges],
        }


def _strings(value: object) -> list[str]:
    """Every string in ``value`` (params: at any depth)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def mentions_secret_or_connection(value: object) -> bool:
    """Whether params hold a secret reference, a connection or credentials (at any depth)."""
    if isinstance(value, dict):
        if "secret" in value or any(
            k in value for k in ("connection", "connection_string", "jdbc_url", "url", "password", "storage_options")
        ):
            return True
        return any(mentions_secret_or_connection(v) for v in value.values())
    if isinstance(value, list):
        return any(mentions_secret_or_connection(v) for v in value)
    return False


def make_plan(pipeline: PipelineConfig, key_for, base_dir: str | os.PathLike[str] | None) -> PipelinePlan:
    """Resolve keys and directories. ``key_for(step, dataset)`` gives the asset key."""
    base = base_dir if base_dir is not None else os.environ.get(ODIBI_BASE_DIR_ENV)
    config_dir = pipeline.config_dir.resolve()
    if base is not None:
        base_str = str(base)
        data_root = base_str if "://" in base_str else str(Path(base_str).resolve())
        work_dir = data_root if "://" in data_root else os.path.join(data_root, ".odibi")
    else:
        # The config's folder, or ODIBI's project root for ODIBI's own config forms; working
        # files stay beside the config either way (where `odibi-dagster story` looks).
        data_root = str(pipeline.data_root.resolve())
        work_dir = os.path.join(str(config_dir), ".odibi")
    asset_keys = {ds: key_for(s, ds) for s in pipeline.steps if s.layer in DATA_LAYERS for ds in s.outputs.values()}
    sink_keys = {s.name: key_for(s, None) for s in pipeline.steps if s.layer in ("store", "publish")}
    edges = sorted(StepGraph.of_steps(pipeline.steps).edges)
    return PipelinePlan(pipeline, asset_keys, sink_keys, data_root, work_dir, edges)
