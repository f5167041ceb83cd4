"""odibi_dagster: run ODIBI CORE's config-driven pipelines on Dagster.

The public API is what this module exports; everything else is internal.
"""

from odibi_dagster.components.pipeline import OdibiPipelineComponent
from odibi_dagster.config.errors import ConfigValidationError, Problem
from odibi_dagster.config.models import PipelineConfig, Step
from odibi_dagster.config.validation import load_pipeline, load_pipelines, validate_pipeline
from odibi_dagster.engines.base import DatasetRef, EngineContext, Snapshot, WriteInfo
from odibi_dagster.engines.connections import OdibiConnection
from odibi_dagster.engines.pandas_duckdb import PandasDuckDBEngine
from odibi_dagster.io.dataset_io_manager import OdibiIOManager
from odibi_dagster.translate.definitions import build_definitions
from odibi_dagster.translate.translator import OdibiStep, OdibiTranslator

__version__ = "0.1.0"


def __getattr__(name: str):
    # Spark is an optional extra: import its resource only when asked for.
    if name == "SparkEngine":
        from odibi_dagster.engines.spark import SparkEngine

        return SparkEngine
    raise AttributeError(name)


__all__ = [
    "ConfigValidationError",
    "DatasetRef",
    "EngineContext",
    "OdibiConnection",
    "OdibiIOManager",
    "OdibiPipelineComponent",
    "OdibiStep",
    "OdibiTranslator",
    "PandasDuckDBEngine",
    "PipelineConfig",
    "Problem",
    "Snapshot",
    "SparkEngine",
    "Step",
    "WriteInfo",
    "__version__",
    "build_definitions",
    "load_pipeline",
    "load_pipelines",
    "validate_pipeline",
]
