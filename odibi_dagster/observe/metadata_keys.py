"""Every ``odibi/*`` key: the typed metadata set, and the tags of odibi's assets and ops.

Metadata (on asset definitions, materializations, observations and check results) is built
through :class:`OdibiMetadataSet`, Dagster's ``NamespacedMetadataSet``, so each key is
written in one place with one type. Tags are not metadata: the asset and op tags are the
constants below; the run tags of sensors and of the CLI live with what sets them
(``triggers.sensors.common`` and ``translate.cli_run``).
"""

from __future__ import annotations

from typing import Any

import dagster as dg

# Not re-exported at dagster's top level; its integrations (dagster-dbt, -dlt, -tableau) import it so.
from dagster._core.definitions.metadata import NamespacedMetadataSet
from dagster_shared.dagster_model import DagsterModel

__all__ = ["ENGINE_TAG", "LAYER_TAG", "PIPELINE_TAG", "STEP_TAG", "OdibiMetadataSet"]

#: Asset tags (the translator): the step's layer and engine.
LAYER_TAG = "odibi/layer"
ENGINE_TAG = "odibi/engine"
#: Op tags of a step's op and the job tag of a pipeline's job.
STEP_TAG = "odibi/step"
PIPELINE_TAG = "odibi/pipeline"

# Raw values as Dagster's own normalisation wraps them (str -> text, int, float).
_WRAP: dict[type, Any] = {str: dg.MetadataValue.text, int: dg.MetadataValue.int, float: dg.MetadataValue.float}


class OdibiMetadataSet(NamespacedMetadataSet):
    """The ``odibi/*`` metadata entries, typed. Unset fields are left out.

    Splat it into a metadata dict (``{**OdibiMetadataSet(duration_ms=1.5), ...}``): values
    come out as Dagster metadata values (``odibi/duration_ms`` a ``FloatMetadataValue``), as
    Dagster would normalise them, so a dict built here compares equal to what Dagster stores.
    """

    # Asset definitions (the translator): which step, and where its config is.
    step: str | None = None
    layer: str | None = None
    type: str | None = None
    inputs: dg.JsonMetadataValue | None = None
    config: dg.PathMetadataValue | None = None
    # Data asset materializations: the tracker's comparison with the step's (first) input.
    schema_diff: dg.JsonMetadataValue | None = None
    rows_before: int | None = None
    row_delta: int | None = None
    sample: dg.MarkdownMetadataValue | None = None
    # Store/publish materializations: how the target was written.
    format: str | None = None
    mode: str | None = None
    # Timing and the run's story (data and sink assets).
    duration_ms: float | None = None
    rows_per_second: float | None = None
    story: dg.PathMetadataValue | None = None
    delta_version: int | None = None
    ingest_mode: str | None = None
    # Data versions: the version of each partition (a range run's materialization carries one
    # data version for the whole range), a step reused by a --changed-only run (``hit``), and
    # the file count of an observed source.
    data_version: str | None = None
    cache: str | None = None
    source_files: int | None = None
    # Observations: the target a store/publish step wrote, the connection a step used.
    written_to: str | None = None
    rows_written: int | None = None
    connection: str | None = None
    connection_target: str | None = None
    # Asset check results.
    check: str | None = None
    check_error: str | None = None

    def __init__(self, **values: Any) -> None:
        # NamespacedMetadataSet.__init__ checks every field's annotation on every instance (0.3 ms:
        # a 5,000-step definitions build makes one per asset). The fields are checked once below.
        DagsterModel.__init__(self, **values)

    @classmethod
    def namespace(cls) -> str:
        return "odibi"

    def keys(self) -> list[str]:
        """The keys of the fields that are set, in the fields' order."""
        return [self._namespaced_key(name) for name in _FIELDS if getattr(self, name) is not None]

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)
        wrap = _WRAP.get(type(value))
        return wrap(value) if wrap is not None else value


_FIELDS = tuple(OdibiMetadataSet.model_fields)
# Dagster's check that every field holds a metadata type, run once for the class.
NamespacedMetadataSet.__init__(OdibiMetadataSet.model_construct())
