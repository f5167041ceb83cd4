"""StepGraph: the one step graph validation, the plan, the story and the run walk."""

from __future__ import annotations

import graphlib

import pytest

from odibi_dagster.config.graph import StepGraph
from odibi_dagster.config.models import Step


def _step(
    name: str, inputs: dict[str, str] | None = None, outputs: dict[str, str] | None = None, connection: str = ""
) -> Step:
    params = {"connection": connection} if connection else {}
    return Step(name=name, inputs=inputs or {}, outputs=outputs or {}, params=params)


def test_edges_follow_datasets_and_connections() -> None:
    steps = [
        Step(name="db", layer="connect", value="sqlite:///x.db"),
        _step("read", outputs={"data": "raw"}, connection="db"),
        _step("clean", inputs={"data": "raw", "again": "raw"}, outputs={"data": "clean"}),
        _step("store", inputs={"data": "clean"}),
    ]
    graph = StepGraph.of_steps(steps)
    assert graph.nodes == ["db", "read", "clean", "store"]
    assert graph.edges == [("db", "read"), ("read", "clean"), ("clean", "store")]  # each edge once
    assert StepGraph.of_steps(steps, connections=False).edges == [("read", "clean"), ("clean", "store")]
    assert graph.static_order() == ["db", "read", "clean", "store"]
    assert graph.levels() == {"db": 0, "read": 1, "clean": 2, "store": 3}
    assert graph.ancestors("store") == {"db", "read", "clean"}
    assert graph.descendants("read") == {"clean", "store"}
    assert graph.predecessors("clean") == ["read"] and graph.successors("clean") == ["store"]
    assert not graph.has_cycle() and graph.cycles() == []


def test_cycles_in_odibi_words_and_levels_around_them() -> None:
    graph = StepGraph("abcd", [("a", "b"), ("c", "b"), ("b", "c"), ("a", "d"), ("d", "d")])
    # b reads from c, which reads from b; d reads from itself.
    assert graph.cycles() == [["b", "c", "b"], ["d", "d"]]
    assert graph.levels() == {"a": 0}  # steps on (or after) a cycle have no level
    with pytest.raises(graphlib.CycleError):
        graph.static_order()


def test_any_can_run_skips_ended_steps_and_those_after_a_failure() -> None:
    graph = StepGraph("abcd", [("a", "b"), ("b", "c")])
    assert graph.any_can_run("abc", {}.get)
    assert not graph.any_can_run("bc", {"a": "failed"}.get)  # blocked by a failed ancestor
    assert graph.any_can_run("bcd", {"a": "failed"}.get)  # d does not depend on a
    assert not graph.any_can_run("abc", {"a": "success", "b": "success", "c": "failed"}.get)
