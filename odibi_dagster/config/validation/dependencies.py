"""Dependencies between steps: every input has a producer, no step depends on itself (ODIBI's
"Circular dependency: a → b → a"), and no chain is longer than Dagster can walk."""

from __future__ import annotations

from collections.abc import Iterable

from odibi_dagster.config.graph import StepGraph
from odibi_dagster.config.models import PipelineConfig, Step
from odibi_dagster.config.templating import has_template
from odibi_dagster.config.validation.collector import Collector

# Longest chain of dependent steps a pipeline may have: Dagster walks its graph recursively,
# and build_definitions raises the recursion limit to match (see translate.definitions).
MAX_CHAIN_DEPTH = 10_000


def _check_inputs(steps: list[Step], col: Collector, external: Iterable[str]) -> None:
    known = {ds for s in steps for ds in s.outputs.values()} | set(external) | col.maybe_produced
    for s in steps:
        for logical, dataset in s.inputs.items():
            if dataset in known:
                continue
            if dataset in col.disabled_outputs:
                col.add(
                    s,
                    f"inputs.{logical}",
                    f"Input '{dataset}' is not produced by any step "
                    f"(its step '{col.disabled_outputs[dataset]}' is disabled)",
                )
            else:
                col.add(s, f"inputs.{logical}", f"Input '{dataset}' is not produced by any step")


def check_inputs_and_cycles(steps: list[Step], col: Collector, external: Iterable[str] = ()) -> None:
    """Inputs are produced (by a step or as one of the ``external`` inputs), the steps form no
    cycle and no chain passes :data:`MAX_CHAIN_DEPTH`."""
    _check_inputs(steps, col, external)
    # ODIBI's check follows datasets only: a connect step reads nothing, so it closes no cycle.
    graph = StepGraph.of_steps(steps, connections=False)
    cycles = graph.cycles()
    for cycle in cycles:
        col.add(cycle[0], "inputs", f"Circular dependency: {' → '.join(cycle)}")
    if cycles:
        return
    levels = graph.levels()
    # The first step (in config order) that ends a longest chain.
    deepest = max(graph.nodes, key=levels.__getitem__, default=None)
    if deepest is not None and levels[deepest] + 1 > MAX_CHAIN_DEPTH:
        col.add(
            deepest,
            "inputs",
            f"step '{deepest}' ends a chain of {levels[deepest] + 1:,} dependent steps; "
            f"at most {MAX_CHAIN_DEPTH:,} are supported (split the pipeline)",
        )


def check_external_inputs(pipeline: PipelineConfig, steps: list[Step], col: Collector) -> None:
    """External inputs name datasets nobody in the pipeline produces, by a usable key and path."""
    producers = {ds: s.name for s in steps for ds in s.outputs.values()}
    for name, ext in pipeline.external_inputs.items():
        where = f"external_inputs.{name}"
        if name in producers:
            col.add(
                None,
                where,
                f"dataset '{name}' is produced by step '{producers[name]}'; external inputs are datasets "
                "produced outside the pipeline",
            )
        if any(not part.strip() for part in ext.asset_key):
            col.add(None, f"{where}.asset_key", f"asset key {ext.asset_key} has an empty part")
        if has_template(ext.path):
            # Read before the step's partition or run variables exist: the path is fixed.
            col.add(None, f"{where}.path", "an external input's path is not a template; write it out")
