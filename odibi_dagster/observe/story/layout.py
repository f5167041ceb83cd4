"""The story's picture of the step graph, laid out in Python (no JavaScript library, no
network): columns are topological levels of a :class:`StepGraph`, rows are ordered by one
barycenter pass, and edges that span several columns pass between the nodes they cross."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from odibi_dagster.config.graph import StepGraph

# Graph geometry (px). Columns are topological depths, left to right.
_NODE_W, _NODE_H, _COL_GAP, _ROW_GAP, _PAD = 172, 48, 56, 22, 20
_LABEL_CHARS = 22

STATUS_CLASSES = {
    "success": "success",
    "failed": "failed",
    "running": "running",
    "skipped": "skipped",
    "cached": "cached",  # reused by a --changed-only run: its inputs and code had not changed
}

_Gaps = dict[int, list[tuple[float, float]]]  # column -> free vertical intervals


def _read_graph(nodes: Sequence[Mapping[str, Any]], edges: Iterable[Sequence[str]]) -> tuple[StepGraph, dict[str, str]]:
    """The graph (nodes in the order first named, self-loops dropped) and each node's layer."""
    graph = StepGraph()
    layer_of: dict[str, str] = {}
    for node in nodes:
        name = str(node.get("name"))
        if name not in layer_of:
            graph.add_node(name)
            layer_of[name] = str(node.get("layer") or "")
    for edge in edges:
        src, dst = str(edge[0]), str(edge[1])
        for name in (src, dst):
            if name not in layer_of:
                graph.add_node(name)
                layer_of[name] = ""
        if src != dst:
            graph.add_edge(src, dst)
    return graph, layer_of


def _columns(graph: StepGraph) -> tuple[dict[str, int], dict[int, list[str]]]:
    """Each node's column (its topological level; nodes on a cycle after everything else) and
    each column's nodes, ordered by the mean row of their predecessors (one barycenter pass)."""
    order = graph.nodes
    depth = graph.levels()
    leftover_depth = max(depth.values(), default=-1) + 1
    for name in order:
        depth.setdefault(name, leftover_depth)
    columns: dict[int, list[str]] = {}
    for name in order:
        columns.setdefault(depth[name], []).append(name)
    index = {name: i for i, name in enumerate(order)}
    row_of: dict[str, float] = {}

    def barycenter(name: str) -> tuple[float, int]:
        rows = [row_of[p] for p in graph.predecessors(name) if p in row_of]
        return (sum(rows) / len(rows) if rows else float("inf"), index[name])

    for d in sorted(columns):
        col = columns[d]
        if d > 0:
            col.sort(key=barycenter)
        for i, name in enumerate(col):
            row_of[name] = i
    return depth, columns


def _place_nodes(
    columns: dict[int, list[str]], layer_of: Mapping[str, str], statuses: Mapping[str, str], height: float
) -> tuple[dict[str, tuple[float, float]], list[dict[str, Any]]]:
    """Each node's top-left corner, columns centred vertically, and the nodes as drawn."""
    pos: dict[str, tuple[float, float]] = {}
    out_nodes = []
    for d in sorted(columns):
        col = columns[d]
        col_height = len(col) * _NODE_H + (len(col) - 1) * _ROW_GAP
        top = _PAD + (height - 2 * _PAD - col_height) / 2  # centre short columns vertically
        for i, name in enumerate(col):
            x = _PAD + d * (_NODE_W + _COL_GAP)
            y = top + i * (_NODE_H + _ROW_GAP)
            pos[name] = (x, y)
            label = name if len(name) <= _LABEL_CHARS else name[: _LABEL_CHARS - 1] + "…"
            status = statuses.get(name, "pending")
            out_nodes.append(
                {
                    "name": name,
                    "layer": layer_of[name],
                    "status": status,
                    "css": STATUS_CLASSES.get(status, "pending"),
                    "x": round(x, 1),
                    "y": round(y, 1),
                    "w": _NODE_W,
                    "h": _NODE_H,
                    "label": label,
                }
            )
    return pos, out_nodes


def _free_gaps(columns: dict[int, list[str]], pos: Mapping[str, tuple[float, float]], height: float) -> _Gaps:
    """Free vertical intervals per column, so edges spanning several columns pass between
    the nodes of the columns they cross instead of under them."""
    gaps: _Gaps = {}
    for d, col in columns.items():
        tops = sorted(pos[n][1] for n in col)
        free, cursor = [], 0.0
        for top in tops:
            free.append((cursor, top))
            cursor = top + _NODE_H
        free.append((cursor, float(height)))
        gaps[d] = free
    return gaps


def _lane(gaps: _Gaps, d: int, want: float) -> float:
    """The height nearest ``want`` at which an edge crosses column ``d`` between its nodes."""

    def distance(gap: tuple[float, float]) -> float:
        return 0.0 if gap[0] <= want <= gap[1] else min(abs(want - gap[0]), abs(want - gap[1]))

    top, bottom = min(gaps[d], key=distance)
    margin = min(8.0, (bottom - top) / 2)
    return min(max(want, top + margin), bottom - margin)


def _curve(ax: float, ay: float, bx: float, by: float) -> str:
    mid = (ax + bx) / 2
    return f" C{mid:.1f},{ay:.1f} {mid:.1f},{by:.1f} {bx:.1f},{by:.1f}"


def _edge_path(
    src: str, dst: str, pos: Mapping[str, tuple[float, float]], depth: Mapping[str, int], gaps: _Gaps
) -> str:
    """The SVG path of one edge: from the right of ``src`` to the left of ``dst``."""
    (x1, y1), (x2, y2) = pos[src], pos[dst]
    sx, sy = x1 + _NODE_W, y1 + _NODE_H / 2
    tx, ty = x2, y2 + _NODE_H / 2
    if tx <= sx:  # back edge of a cycle: loop under the nodes
        low = max(y1, y2) + _NODE_H + _ROW_GAP / 2
        return f"M{sx:.1f},{sy:.1f} C{sx + 40:.1f},{low:.1f} {tx - 40:.1f},{low:.1f} {tx:.1f},{ty:.1f}"
    d_attr = f"M{sx:.1f},{sy:.1f}"
    ax, ay = sx, sy
    first, last = depth[src] + 1, depth[dst]
    for d in range(first, last):
        cx = _PAD + d * (_NODE_W + _COL_GAP)
        share = (d - depth[src]) / (last - depth[src])
        cy = _lane(gaps, d, sy + (ty - sy) * share)
        d_attr += _curve(ax, ay, cx, cy) + f" L{cx + _NODE_W:.1f},{cy:.1f}"
        ax, ay = cx + _NODE_W, cy
    return d_attr + _curve(ax, ay, tx - 6, ty)


def graph_layout(
    nodes: Sequence[Mapping[str, Any]],
    edges: Iterable[Sequence[str]],
    statuses: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Lay the step graph out in columns by topological depth (longest path from a source).

    Returns ``{"width", "height", "nodes": [{name, layer, status, x, y, w, h, label}],
    "edges": [{"source", "target", "d"}]}`` with SVG coordinates. Nodes on a cycle (which
    validation rejects) are put after everything else instead of failing.
    """
    graph, layer_of = _read_graph(nodes, edges)
    depth, columns = _columns(graph)
    tallest = max((len(c) for c in columns.values()), default=0)
    height = _PAD * 2 + tallest * _NODE_H + max(tallest - 1, 0) * _ROW_GAP
    width = _PAD * 2 + len(columns) * _NODE_W + max(len(columns) - 1, 0) * _COL_GAP
    pos, out_nodes = _place_nodes(columns, layer_of, statuses or {}, height)
    gaps = _free_gaps(columns, pos, height)
    out_edges = [
        {"source": src, "target": dst, "d": _edge_path(src, dst, pos, depth, gaps)} for src, dst in graph.edges
    ]
    return {"width": max(width, 1), "height": max(height, 1), "nodes": out_nodes, "edges": out_edges}
