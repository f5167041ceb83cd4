"""The step graph of a pipeline: which step reads from which, on the standard library's
:mod:`graphlib`.

One graph serves validation (cycles, chain depth), the plan (its edges), the story (the
picture's columns are topological levels) and the run (which steps can still run). An edge
``(a, b)`` means step ``b`` reads from step ``a``: a dataset ``a`` produces, or ``a`` is
the connect step named by ``b``'s ``params.connection``.
"""

from __future__ import annotations

import contextlib
import graphlib
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from odibi_dagster.config.models import Step


class StepGraph:
    """Steps (by name, in the order first named) and the edges between them (producer first)."""

    def __init__(self, nodes: Iterable[str] = (), edges: Iterable[tuple[str, str]] = ()) -> None:
        self._preds: dict[str, list[str]] = {}
        self._succs: dict[str, list[str]] = {}
        self._edges: list[tuple[str, str]] = []
        for node in nodes:
            self.add_node(node)
        for src, dst in edges:
            self.add_edge(src, dst)

    @classmethod
    def of_steps(cls, steps: Sequence[Step], *, connections: bool = True) -> StepGraph:
        """The graph of a pipeline's steps: the producer of each input dataset (the last one,
        should two steps produce it) and, with ``connections``, the connect step of each
        ``params.connection``."""
        producers = {ds: s.name for s in steps for ds in s.outputs.values()}
        edges: list[tuple[str, str]] = []
        for s in steps:
            edges.extend((producers[ds], s.name) for ds in s.inputs.values() if ds in producers)
            conn = s.params.get("connection")
            if connections and isinstance(conn, str):
                edges.append((conn, s.name))
        return cls((s.name for s in steps), edges)

    def add_node(self, node: str) -> None:
        """Add ``node`` (no edge) unless it is there."""
        if node not in self._preds:
            self._preds[node] = []
            self._succs[node] = []

    def add_edge(self, src: str, dst: str) -> None:
        """``dst`` reads from ``src`` (a repeated edge is kept once; a self-loop is a cycle)."""
        self.add_node(src)
        self.add_node(dst)
        if src not in self._preds[dst]:
            self._preds[dst].append(src)
            self._succs[src].append(dst)
            self._edges.append((src, dst))

    @property
    def nodes(self) -> list[str]:
        return list(self._preds)

    @property
    def edges(self) -> list[tuple[str, str]]:
        """Every edge once, in the order first added."""
        return list(self._edges)

    def predecessors(self, node: str) -> list[str]:
        """The steps ``node`` reads from."""
        return list(self._preds.get(node, ()))

    def successors(self, node: str) -> list[str]:
        """The steps that read from ``node``."""
        return list(self._succs.get(node, ()))

    def _sorter(self) -> graphlib.TopologicalSorter[str]:
        return graphlib.TopologicalSorter(self._preds)

    def has_cycle(self) -> bool:
        try:
            self._sorter().prepare()
        except graphlib.CycleError:
            return True
        return False

    def static_order(self) -> list[str]:
        """Every step after the steps it reads from (raises :class:`graphlib.CycleError`)."""
        return list(self._sorter().static_order())

    def levels(self) -> dict[str, int]:
        """Topological level of each step: 0 for a step that reads from none, else one more than
        the deepest step it reads from. Steps on a cycle, or after one, have no level."""
        sorter = self._sorter()
        with contextlib.suppress(graphlib.CycleError):
            sorter.prepare()  # on a cycle, graphlib still hands out every step no cycle blocks
        level: dict[str, int] = {}
        while sorter.is_active():
            ready = sorter.get_ready()
            for node in ready:
                level[node] = max((level[p] + 1 for p in self._preds[node]), default=0)
            sorter.done(*ready)
        return level

    def cycles(self) -> list[list[str]]:
        """Every cycle, as ODIBI CORE's ``_validate_no_cycles`` words it: a path in dependency
        order, ``[a, b, a]`` for "a reads from b, which reads from a"; one path per set of steps.

        graphlib says whether there is a cycle, but names only one, not necessarily the path
        ODIBI's depth-first walk (steps in order, inputs in order) reports first: that walk is
        kept, iterative so that deep pipelines do not hit the recursion limit.
        """
        if not self.has_cycle():
            return []
        state: dict[str, int] = {}  # 1 = on the path, 2 = done
        found: list[list[str]] = []
        seen: set[frozenset[str]] = set()
        for root in self._preds:
            if root in state:
                continue
            stack: list[tuple[str, int]] = [(root, 0)]
            path: list[str] = []
            while stack:
                node, idx = stack.pop()
                if idx == 0:
                    state[node] = 1
                    path.append(node)
                deps = self._preds[node]
                if idx == len(deps):
                    state[node] = 2
                    path.pop()
                    continue
                stack.append((node, idx + 1))
                nxt = deps[idx]
                if state.get(nxt) == 1:
                    cycle = [*path[path.index(nxt) :], nxt]
                    if frozenset(cycle) not in seen:
                        seen.add(frozenset(cycle))
                        found.append(cycle)
                elif nxt not in state:
                    stack.append((nxt, 0))
        return found

    def ancestors(self, node: str) -> set[str]:
        """Every step ``node`` reads from, directly or not."""
        return self._reach(node, self._preds)

    def descendants(self, node: str) -> set[str]:
        """Every step that reads from ``node``, directly or not."""
        return self._reach(node, self._succs)

    @staticmethod
    def _reach(node: str, links: dict[str, list[str]]) -> set[str]:
        out: set[str] = set()
        todo = list(links.get(node, ()))
        while todo:
            current = todo.pop()
            if current not in out:
                out.add(current)
                todo.extend(links.get(current, ()))
        return out

    def any_can_run(self, steps: Iterable[str], status: Callable[[str], str | None]) -> bool:
        """Whether one of ``steps`` has not ended (``status`` None) and can still run: no step
        it reads from, directly or not, has status ``"failed"``.

        ``status`` is called lazily (it may read files) and the walk is memoised and iterative
        (deep chains, no recursion limit).
        """
        memo: dict[str, bool] = {}  # step -> whether a step before it failed

        def blocked(name: str) -> bool:
            stack = [name]
            while stack:
                current = stack[-1]
                if current in memo:
                    stack.pop()
                    continue
                ups = self._preds.get(current, [])
                pending = [up for up in ups if up not in memo]
                if pending:
                    stack.extend(pending)
                    continue
                memo[current] = any(status(up) == "failed" or memo[up] for up in ups)
                stack.pop()
            return memo[name]

        return any(status(name) is None and not blocked(name) for name in steps)
