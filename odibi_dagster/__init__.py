"""odibi_dagster: run ODIBI CORE's config-driven pipelines on Dagster.

The public API is what this module exports; everything else is internal. Names are
imported on first use, so ``odibi-dagster`` starts (and handles Ctrl-C) before Dagster loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from odibi_dagster._lazy import lazy_exports

if TYPE_CHECKING:
    from odibi_dagster.components.pipeline import OdibiPipelineComponent
    from odibi_dagster.config.errors import ConfigValidationError, Problem
    from odibi_dagster.config.models import PipelineConfig, Step
    from odibi_dagster.config.validation import load_pipeline, load_pipelines, validate_pipeline
    from odibi_dagster.engines.base import DatasetRef, EngineContext, Snapshot, WriteInfo
    from odibi_dagster.engines.pandas_resource import PandasDuckDBEngine
    from odibi_dagster.engines.spark import SparkEngine
    from odibi_dagster.io.dataset_io_manager import OdibiIOManager
    from odibi_dagster.io.dataset_store import OdibiDatasetStore
    from odibi_dagster.observe.metadata_keys import OdibiMetadataSet
    from odibi_dagster.translate.assets import StepInvocation
    from odibi_dagster.translate.connections import OdibiConnection
    from odibi_dagster.translate.definitions import build_definitions
    from odibi_dagster.translate.translator import OdibiStep, OdibiTranslator, OdibiTranslatorSettings

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "OdibiPipelineComponent": "odibi_dagster.components.pipeline",
    "ConfigValidationError": "odibi_dagster.config.errors",
    "Problem": "odibi_dagster.config.errors",
    "PipelineConfig": "odibi_dagster.config.models",
    "Step": "odibi_dagster.config.models",
    "load_pipeline": "odibi_dagster.config.validation",
    "load_pipelines": "odibi_dagster.config.validation",
    "validate_pipeline": "odibi_dagster.config.validation",
    "DatasetRef": "odibi_dagster.engines.base",
    "EngineContext": "odibi_dagster.engines.base",
    "Snapshot": "odibi_dagster.engines.base",
    "WriteInfo": "odibi_dagster.engines.base",
    "OdibiConnection": "odibi_dagster.translate.connections",
    "StepInvocation": "odibi_dagster.translate.assets",
    "PandasDuckDBEngine": "odibi_dagster.engines.pandas_resource",
    "OdibiIOManager": "odibi_dagster.io.dataset_io_manager",
    "OdibiDatasetStore": "odibi_dagster.io.dataset_store",
    "build_definitions": "odibi_dagster.translate.definitions",
    "OdibiStep": "odibi_dagster.translate.translator",
    "OdibiTranslator": "odibi_dagster.translate.translator",
    "OdibiTranslatorSettings": "odibi_dagster.translate.translator",
    "OdibiMetadataSet": "odibi_dagster.observe.metadata_keys",
    "SparkEngine": "odibi_dagster.engines.spark",
}


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)


__all__ = [
    "ConfigValidationError",
    "DatasetRef",
    "EngineContext",
    "OdibiConnection",
    "OdibiDatasetStore",
    "OdibiIOManager",
    "OdibiMetadataSet",
    "OdibiPipelineComponent",
    "OdibiStep",
    "OdibiTranslator",
    "OdibiTranslatorSettings",
    "PandasDuckDBEngine",
    "PipelineConfig",
    "Problem",
    "Snapshot",
    "SparkEngine",
    "Step",
    "StepInvocation",
    "WriteInfo",
    "__version__",
    "build_definitions",
    "load_pipeline",
    "load_pipelines",
    "validate_pipeline",
]
