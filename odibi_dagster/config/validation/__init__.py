"""ODIBI's ConfigValidator, extended: every problem of every config in one error.

Runs before any Dagster object exists. Each problem names the file, the step and
the field. Messages keep ODIBI CORE's wording where it has one ("Duplicate step
names found", "Circular dependency: a → b → a", "has invalid layer").

One module per kind of rule: ``collector`` (problems and their wording), ``document``
(shapes), ``names``, ``kinds``, ``dependencies`` (inputs, cycles, chain depth),
``sql`` (SQL and templates), ``steps`` (step details), ``policies`` (retry, owners,
tags), ``pipeline`` (pipeline settings) and ``load`` (the entry points).
"""

from odibi_dagster.config.validation.dependencies import MAX_CHAIN_DEPTH
from odibi_dagster.config.validation.load import load_pipeline, load_pipelines, validate_pipeline, validate_raw
from odibi_dagster.config.validation.pipeline import WATCHABLE_PROTOCOLS
from odibi_dagster.config.validation.sql import SOURCE_DIALECTS

__all__ = [
    "MAX_CHAIN_DEPTH",
    "SOURCE_DIALECTS",
    "WATCHABLE_PROTOCOLS",
    "load_pipeline",
    "load_pipelines",
    "validate_pipeline",
    "validate_raw",
]
