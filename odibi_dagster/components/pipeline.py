"""``OdibiPipelineComponent``: ODIBI pipelines in a ``dg`` project's ``defs.yaml``.

```yaml
type: odibi_dagster.OdibiPipelineComponent
attributes:
  paths: [pipelines/]                  # config files or folders, relative to this defs.yaml
  key_prefix: [odibi]                  # optional
  translation:                         # optional: per-step AssetSpec attributes, templated
    group_name: "odibi_{{ pipeline.name }}"
    tags: {layer: "{{ step.layer }}"}
  translation_settings: {enable_code_references: false}
```

Like dagster-dbt's ``DbtProjectComponent``: ``translation`` goes on top of
:class:`~odibi_dagster.OdibiTranslator` (``get_asset_spec`` is the hook for Python), and
``execute`` is what each step's asset runs (override it to wrap or replace a step's execution).
``post_processing`` works as for every component.
"""

# No postponed annotations: Dagster's Resolvable reads the fields' annotations as types.

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any

import dagster as dg
import pydantic
from dagster.components.utils.translation import TranslationFn, TranslationFnResolver

from odibi_dagster.components.scaffolder import OdibiPipelineScaffolder
from odibi_dagster.translate.assets import StepInvocation
from odibi_dagster.translate.definitions import build_definitions
from odibi_dagster.translate.translator import OdibiStep, OdibiTranslator, OdibiTranslatorSettings


def _template_vars(node: OdibiStep) -> Mapping[str, Any]:
    """What ``translation`` templates see (Dagster adds ``spec``, the AssetSpec so far)."""
    return {"step": node.step, "pipeline": node.pipeline, "dataset": node.dataset, "node": node}


def _resolve_settings(context: dg.ResolutionContext, model: Any) -> OdibiTranslatorSettings | None:
    if model is None:
        return None
    return OdibiTranslatorSettings(**context.resolve_value(model.model_dump(exclude_unset=True)))


# `translation_settings:` in YAML: the fields of OdibiTranslatorSettings, as a model dg can check.
_SettingsModel = pydantic.create_model(
    "OdibiTranslatorSettingsModel",
    __base__=dg.Model,
    __doc__="The switches of OdibiTranslatorSettings (all on by default).",
    **{f.name: (bool, f.default) for f in fields(OdibiTranslatorSettings)},
)


@dg.scaffold_with(OdibiPipelineScaffolder)
@dataclass
class OdibiPipelineComponent(dg.Component, dg.Resolvable):
    """Loads ODIBI pipeline configs (JSON, YAML, SQLite, CSV) as Dagster definitions: an asset
    per dataset and per store/publish step, checks, a job per pipeline, schedules and sensors.

    ``dg scaffold defs odibi_dagster.OdibiPipelineComponent NAME`` writes a starter pipeline.
    """

    paths: list[str]
    key_prefix: list[str] | None = None
    base_dir: str | None = None
    translation: (
        Annotated[
            TranslationFn[OdibiStep],
            TranslationFnResolver[OdibiStep](template_vars_for_translation_fn=_template_vars),
        ]
        | None
    ) = None
    translation_settings: (
        Annotated[
            OdibiTranslatorSettings,
            dg.Resolver(_resolve_settings, model_field_type=_SettingsModel | None),
        ]
        | None
    ) = None

    @property
    def settings(self) -> OdibiTranslatorSettings:
        """The translator settings (``translation_settings:``, all features on by default)."""
        return self.translation_settings or OdibiTranslatorSettings()

    def get_asset_spec(self, node: OdibiStep) -> dg.AssetSpec:
        """The AssetSpec of one step's asset before ``translation``: :class:`OdibiTranslator`'s.
        Override it in a subclass to change specs in Python."""
        return OdibiTranslator(settings=self.settings).get_asset_spec(node)

    def execute(self, context: dg.AssetExecutionContext, step: StepInvocation) -> Iterator[Any]:
        """What the asset of ``step`` runs: by default the step itself (``step.execute()``: its
        inputs, engine, tracker record, story and checks). Override it to wrap or replace it,
        e.g. to log around it or to run one step elsewhere; yield what the step yields."""
        yield from step.execute()

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        root = Path(context.path)
        root = root.parent if root.is_file() else root  # a component.py: paths are relative to its folder
        paths = [p if Path(p).is_absolute() else root / p for p in self.paths]
        base = None
        if self.base_dir is not None:
            remote_or_absolute = "://" in self.base_dir or Path(self.base_dir).is_absolute()
            base = self.base_dir if remote_or_absolute else root / self.base_dir
        return build_definitions(
            *paths,
            translator=_ComponentTranslator(self),
            key_prefix=self.key_prefix,
            base_dir=base,
            step_runner=self.execute,
        )


class _ComponentTranslator(OdibiTranslator):
    """The component's specs: ``get_asset_spec`` of the component, then its ``translation``.

    Keys come from the translated spec too, so that dependencies, checks and jobs follow a key
    the translation changed. Dependencies and partitions stay the pipeline's: the config decides
    them, and the step's runtime relies on them.
    """

    def __init__(self, component: OdibiPipelineComponent) -> None:
        super().__init__(settings=component.settings)
        self._component = component
        self._specs: dict[tuple[int, str, str | None, tuple[str, ...]], dg.AssetSpec] = {}

    def _spec(self, node: OdibiStep) -> dg.AssetSpec:
        cache_key = (id(node.pipeline), node.step.name, node.dataset, node.key_prefix)
        if cache_key not in self._specs:
            base = self._component.get_asset_spec(node)
            spec = base if self._component.translation is None else self._component.translation(base, node)
            if list(spec.deps) != list(base.deps) or spec.partitions_def != base.partitions_def:
                raise ValueError(
                    f"translation of step '{node.step.name}' changes its deps or partitions_def: those come from "
                    "the pipeline config (the step's `inputs` and the pipeline's `partitions`)"
                )
            self._specs[cache_key] = spec
        return self._specs[cache_key]

    def get_asset_key(self, node: OdibiStep) -> dg.AssetKey:
        return self._spec(node).key

    def get_asset_spec(self, node: OdibiStep, deps: list[dg.AssetKey | dg.AssetDep] | None = None) -> dg.AssetSpec:
        return self._spec(node).replace_attributes(deps=deps or [])
