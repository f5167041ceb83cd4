"""Names and outputs: step names and datasets must be unique, also once made Dagster names,
and a store/publish step must not share its asset key with a dataset."""

from __future__ import annotations

from collections import Counter

from odibi_dagster.config.models import SINK_LAYERS, Step
from odibi_dagster.config.names import dagster_name
from odibi_dagster.config.validation.collector import Collector


def _check_step_names(steps: list[Step], col: Collector) -> None:
    counts = Counter(s.name for s in steps)
    dupes = sorted(n for n, c in counts.items() if c > 1)
    for s in steps:
        if s.name in dupes:
            col.add(s, "name", f"Duplicate step names found: {dupes}")
    # Step names become Dagster op names (other characters turn into '_'): they must stay distinct.
    by_safe: dict[str, str] = {}
    for s in steps:
        if s.name in dupes:
            continue
        other = by_safe.setdefault(dagster_name(s.name), s.name)
        if other != s.name:
            col.add(
                s,
                "name",
                f"step name '{s.name}' and step '{other}' both become the Dagster name "
                f"'{dagster_name(s.name)}' (only letters, digits and '_' are kept); "
                "rename one",
            )


def _check_outputs(steps: list[Step], col: Collector) -> dict[str, tuple[int, str]]:
    """Each dataset has one producer; returns dataset -> (index, name) of its first producer."""
    producers: dict[str, tuple[int, str]] = {}
    for index, s in enumerate(steps):
        for logical, dataset in s.outputs.items():
            if dataset in producers and producers[dataset][0] != index:
                col.add(
                    s,
                    f"outputs.{logical}",
                    f"Duplicate output '{dataset}': also produced by step '{producers[dataset][1]}'",
                )
            elif dataset in producers:
                col.add(s, f"outputs.{logical}", f"Duplicate output '{dataset}' within the step")
            producers.setdefault(dataset, (index, s.name))
        safe_outputs: dict[str, str] = {}
        for logical, dataset in s.outputs.items():
            other = safe_outputs.setdefault(dagster_name(dataset), dataset)
            if other != dataset:
                col.add(
                    s,
                    f"outputs.{logical}",
                    f"outputs '{other}' and '{dataset}' both become the Dagster "
                    f"name '{dagster_name(dataset)}'; rename one",
                )
    return producers


def check_names_and_outputs(steps: list[Step], col: Collector) -> None:
    """Step names, output datasets and the asset keys they become are all distinct."""
    _check_step_names(steps, col)
    producers = _check_outputs(steps, col)
    # Store/publish assets are keyed [pipeline, step], datasets [pipeline, dataset]: they must differ.
    for s in steps:
        if s.layer in SINK_LAYERS and s.name in producers:
            col.add(
                s,
                "name",
                f"{s.layer} step '{s.name}' has the name of dataset '{s.name}' (produced by "
                f"step '{producers[s.name][1]}'): both would be asset [pipeline, '{s.name}']; "
                "rename one",
            )
