"""Dagster components (``dg``) of odibi_dagster."""

from odibi_dagster.components.pipeline import OdibiPipelineComponent

__all__ = ["OdibiPipelineComponent"]
