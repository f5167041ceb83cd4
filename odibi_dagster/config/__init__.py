"""Pipeline configs: models, loaders (JSON, YAML, SQLite, CSV) and validation."""

from odibi_dagster.config.errors import ConfigValidationError, Problem
from odibi_dagster.config.models import PipelineConfig, Step
from odibi_dagster.config.validation import load_pipeline, load_pipelines, validate_pipeline

__all__ = [
    "ConfigValidationError",
    "PipelineConfig",
    "Problem",
    "Step",
    "load_pipeline",
    "load_pipelines",
    "validate_pipeline",
]
