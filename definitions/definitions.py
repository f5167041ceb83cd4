"""The example code location: every pipeline under ``pipelines/`` as Dagster definitions.

``dagster dev -w workspace.yaml`` (from the repository root) loads this file.
"""

from pathlib import Path

from odibi_dagster import build_definitions

defs = build_definitions(Path(__file__).parent / "pipelines")
