"""OdibiTranslator: how a step becomes an AssetSpec, one overridable method per attribute.

Modelled on ``DagsterDbtTranslator``: subclass it and override any ``get_*``
method, then pass an instance to ``build_definitions(..., translator=...)``.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from dataclasses import dataclass
from typing import Any

import dagster as dg

from odibi_dagster.config.freshness import build_freshness_policy
from odibi_dagster.config.models import SINK_LAYERS, PipelineConfig, Step
from odibi_dagster.config.names import asset_key_part, dagster_name
from odibi_dagster.config.partitions import build_partitions_def
from odibi_dagster.engines.formats.table import storage_kind
from odibi_dagster.observe.metadata_keys import ENGINE_TAG, LAYER_TAG, OdibiMetadataSet
from odibi_dagster.observe.redact import redact_params, redact_url

_TAG_VALUE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class OdibiStep:
    """What the translator looks at: a step, the dataset it produces (None for
    store/publish), its pipeline, and the key prefix given to ``build_definitions``."""

    pipeline: PipelineConfig
    step: Step
    dataset: str | None = None
    key_prefix: tuple[str, ...] = ()

    @property
    def engine(self) -> str:
        return self.pipeline.step_engine(self.step)

    @property
    def is_sink(self) -> bool:
        return self.step.layer in SINK_LAYERS


def storage_format(step: Step, engine: str, dataset: str | None) -> str:
    """The storage format a step's asset lives in (a kind in the UI), from the one format table."""
    if dataset is not None and not (step.params.get("format") or step.params.get("source_type")):
        return "delta" if engine == "spark" else "parquet"  # an intermediate dataset of the dataset store
    return storage_kind(step.value, step.params) or ("delta" if engine == "spark" else "files")


@dataclass(frozen=True)
class OdibiTranslatorSettings:
    """Switches of :class:`OdibiTranslator`, as ``DagsterDbtTranslatorSettings`` are for dbt.

    Attributes:
        enable_code_references: a code reference to the config file and the step's line
            (``dagster/code_references``, "Open in editor" in the UI).
        enable_code_versions: a code version per step (a hash of its value, params and engine),
            so changing a step marks its assets stale.
        enable_asset_checks: the steps' ``checks:`` become Dagster asset checks.
        enable_automation_conditions: a step's ``metadata.automation`` becomes its automation condition.
        automation_waits_for_blocking_checks: an automated step also waits until the blocking
            checks of the assets it reads have passed (``all_deps_blocking_checks_passed``).
        enable_freshness_policies: ``freshness:`` (pipeline, or a step's ``metadata.freshness``)
            becomes the assets' freshness policy.
        enable_pools: ``metadata.pool`` and connections become the steps' concurrency pools.
    """

    enable_code_references: bool = True
    enable_code_versions: bool = True
    enable_asset_checks: bool = True
    enable_automation_conditions: bool = True
    automation_waits_for_blocking_checks: bool = True
    enable_freshness_policies: bool = True
    enable_pools: bool = True


class OdibiTranslator:
    """Decides the AssetSpec of each step. Override ``get_*`` methods to change it;
    ``settings`` switches whole features off (see :class:`OdibiTranslatorSettings`)."""

    def __init__(self, settings: OdibiTranslatorSettings | None = None) -> None:
        self._settings = settings or OdibiTranslatorSettings()

    @property
    def settings(self) -> OdibiTranslatorSettings:
        """The translator's settings (all features on by default)."""
        return self._settings

    def get_asset_key(self, node: OdibiStep) -> dg.AssetKey:
        """``[prefix..., pipeline, dataset]``, or ``[prefix..., pipeline, step]`` for store/publish."""
        last = node.step.name if node.dataset is None else node.dataset
        return dg.AssetKey([*node.key_prefix, asset_key_part(node.pipeline.name), asset_key_part(last)])

    def get_source_asset_key(self, node: OdibiStep) -> dg.AssetKey:
        """The key of an ingest step's source files, an observable source asset upstream of the
        ingest: ``[prefix..., pipeline, "source", step]``."""
        return dg.AssetKey(
            [*node.key_prefix, asset_key_part(node.pipeline.name), "source", asset_key_part(node.step.name)]
        )

    def get_group_name(self, node: OdibiStep) -> str | None:
        """The pipeline (sanitised to Dagster's group-name rules)."""
        return dagster_name(node.pipeline.name)

    def get_description(self, node: OdibiStep) -> str | None:
        """``metadata.description`` (or the pipeline's explanation of the step) plus the SQL."""
        parts = []
        text = node.step.metadata.get("description") or node.pipeline.explanations.get(node.step.name)
        if text:
            parts.append(str(text))
        value = redact_url(node.step.value)  # an inline password never reaches the UI
        if node.step.type == "sql":
            parts.append(f"```sql\n{value.strip()}\n```")
        elif node.step.type == "function":
            parts.append(f"Function: `{value}`")
        elif value:
            verb = "Reads" if node.step.layer == "ingest" else "Writes"
            parts.append(f"{verb} `{value}`")
        return "\n\n".join(parts) or None

    def get_metadata(self, node: OdibiStep) -> dict[str, Any]:
        """Definition metadata: step identity, the config file and (``enable_code_references``) a
        code reference to the step's line in it."""
        source = node.pipeline.source.resolve() if node.pipeline.source is not None else None
        md: dict[str, Any] = {
            **OdibiMetadataSet(
                step=node.step.name,
                layer=node.step.layer,
                type=node.step.type,
                inputs=dg.MetadataValue.json(node.step.inputs) if node.step.inputs else None,
                config=dg.MetadataValue.path(str(source)) if source is not None else None,
            )
        }
        if source is not None and self.settings.enable_code_references:
            with warnings.catch_warnings():  # code references are beta in Dagster; we want them in the UI
                warnings.simplefilter("ignore", dg.BetaWarning)
                md["dagster/code_references"] = dg.CodeReferencesMetadataValue(
                    code_references=[
                        dg.LocalFileCodeReference(
                            file_path=str(source), line_number=node.step.line, label="ODIBI config"
                        )
                    ]
                )
        return md

    def get_tags(self, node: OdibiStep) -> dict[str, str]:
        """``odibi/layer`` and ``odibi/engine``, plus the pipeline's and step's tags."""
        tags = {k: _TAG_VALUE.sub("_", str(v))[:63] for k, v in node.pipeline.tags.items()}
        step_tags = node.step.metadata.get("tags")
        if isinstance(step_tags, dict):
            tags.update({str(k): _TAG_VALUE.sub("_", str(v))[:63] for k, v in step_tags.items()})
        tags.update({LAYER_TAG: node.step.layer, ENGINE_TAG: node.engine})
        return tags

    def get_kinds(self, node: OdibiStep) -> set[str]:
        """``odibi``, the engine (``duckdb`` or ``spark``) and the storage format."""
        engine_kind = "spark" if node.engine == "spark" else "duckdb"
        return {"odibi", engine_kind, storage_format(node.step, node.engine, node.dataset)}

    def get_owners(self, node: OdibiStep) -> list[str]:
        """``metadata.owner(s)`` of the step, else the pipeline's ``owners`` (emails or ``team:x``)."""
        owners = node.step.metadata.get("owners") or node.step.metadata.get("owner") or node.pipeline.owners
        if isinstance(owners, str):
            owners = [owners]
        return [str(o) for o in owners or []]  # validation checked them with Dagster's own rule

    def get_code_version(self, node: OdibiStep) -> str | None:
        """A hash of the step's value, params and engine: changing them marks the asset stale
        (``None`` without ``enable_code_versions``)."""
        if not self.settings.enable_code_versions:
            return None
        # Of the masked value and params: no hash of a password in the definitions.
        payload = json.dumps(
            {
                "value": redact_url(node.step.value),
                "params": redact_params(node.step.params),
                "engine": node.engine,
                "type": node.step.type,
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def get_partitions_def(self, node: OdibiStep) -> dg.PartitionsDefinition | None:
        """The pipeline's partitions."""
        return build_partitions_def(node.pipeline.partitions, node.pipeline.name)

    def get_automation_condition(self, node: OdibiStep) -> dg.AutomationCondition | None:
        """``metadata.automation: eager | on_missing | on_cron:<expr>`` on the step, else none
        (always none without ``enable_automation_conditions``).

        With ``automation_waits_for_blocking_checks`` (the default) the condition also needs every
        blocking check of the step's inputs to have passed: an upstream step whose blocking check
        failed has still materialized its dataset, and this keeps its downstream from running on it.
        """
        spec = node.step.metadata.get("automation")
        if not spec or not self.settings.enable_automation_conditions:
            return None
        spec = str(spec)
        condition: dg.AutomationCondition | None = None
        if spec == "eager":
            condition = dg.AutomationCondition.eager()
        elif spec == "on_missing":
            condition = dg.AutomationCondition.on_missing()
        elif spec.startswith("on_cron:"):
            condition = dg.AutomationCondition.on_cron(spec.split(":", 1)[1].strip())
        if condition is not None and self.settings.automation_waits_for_blocking_checks:
            condition = condition & dg.AutomationCondition.all_deps_blocking_checks_passed()
        return condition

    def get_freshness_policy(self, node: OdibiStep) -> dg.FreshnessPolicy | None:
        """The step's ``metadata.freshness``, else the pipeline's ``freshness`` (``fail_window`` /
        ``warn_window``, or ``deadline_cron`` / ``lower_bound_delta``); none without
        ``enable_freshness_policies``."""
        config = node.pipeline.step_freshness(node.step)
        if config is None or not self.settings.enable_freshness_policies:
            return None
        return build_freshness_policy(config)

    def get_pool(self, node: OdibiStep) -> str | None:
        """The concurrency pool of the step's op: its ``metadata.pool``, else the pool of the
        connection it uses (the connect step's ``metadata.pool``, by default the connection's
        resource key ``<pipeline>__<connect step>``); none without ``enable_pools``."""
        return node.pipeline.step_pool(node.step) if self.settings.enable_pools else None

    def get_retry_policy(self, node: OdibiStep) -> dg.RetryPolicy | None:
        """The step's ``retry``, else the pipeline's."""
        retry = node.step.retry or node.pipeline.retry
        if retry is None or retry.max_retries == 0:
            return None
        backoff = {"linear": dg.Backoff.LINEAR, "exponential": dg.Backoff.EXPONENTIAL}.get(retry.backoff or "")
        jitter = {"full": dg.Jitter.FULL, "plus_minus": dg.Jitter.PLUS_MINUS}.get(retry.jitter or "")
        return dg.RetryPolicy(
            max_retries=retry.max_retries, delay=retry.delay_seconds or None, backoff=backoff, jitter=jitter
        )

    def get_asset_spec(self, node: OdibiStep, deps: list[dg.AssetKey | dg.AssetDep] | None = None) -> dg.AssetSpec:
        """Compose the AssetSpec from the ``get_*`` methods."""
        return dg.AssetSpec(
            key=self.get_asset_key(node),
            deps=deps or [],
            description=self.get_description(node),
            metadata=self.get_metadata(node),
            group_name=self.get_group_name(node),
            code_version=self.get_code_version(node),
            automation_condition=self.get_automation_condition(node),
            freshness_policy=self.get_freshness_policy(node),
            owners=self.get_owners(node),
            tags=self.get_tags(node),
            kinds=self.get_kinds(node),
            partitions_def=self.get_partitions_def(node),
        )
