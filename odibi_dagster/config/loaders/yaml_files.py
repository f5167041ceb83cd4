"""YAML configs: the document, the line of each step and top-level key, duplicate keys YAML
would silently drop, and protection against recursive or exploding aliases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from odibi_dagster.config import load_cache
from odibi_dagster.config.errors import Problem
from odibi_dagster.config.loaders.raw import RawPipeline, empty, failed, parsed

# libyaml's parser when PyYAML was built with it: some 30x faster than the pure-Python one,
# which was most of a 1,000-pipeline definitions load.
FastLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def compose_yaml(text: str) -> yaml.Node | None:
    """The document's node tree (marks give each node's line). A syntax error is raised with
    the pure-Python parser's message and line, which are clearer than libyaml's."""
    try:
        return yaml.compose(text, Loader=FastLoader)
    except yaml.YAMLError:
        return yaml.compose(text, Loader=yaml.SafeLoader)


def construct_yaml(node: yaml.Node | None) -> Any:
    """The plain value of a composed document (``yaml.safe_load`` without parsing again)."""
    if node is None:
        return None
    loader = FastLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


_NOT_A_CONFIG = "YAML config must be a list of steps or a mapping"


def read_yaml(p: Path) -> RawPipeline:
    """Read one YAML config (a list of steps or a pipeline document). A document read before,
    unchanged, comes from the load cache (:mod:`~odibi_dagster.config.load_cache`)."""
    text = p.read_text(encoding="utf-8-sig")
    key = load_cache.cache_key("yaml", text)
    cached = _cached_document(key)
    if cached is not None:
        data, step_lines, key_lines = cached
        return parsed(p, data, _NOT_A_CONFIG, lambda _: step_lines, key_lines)
    try:
        node = compose_yaml(text)
        alias_problem = _alias_problem(node)
        if alias_problem is not None:
            return failed(p, f"invalid YAML: {alias_problem[0]}", alias_problem[1])
        data = construct_yaml(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        msg = getattr(exc, "problem", None) or str(exc)
        return failed(p, f"invalid YAML: {msg}", line)
    except RecursionError:
        return failed(p, "invalid YAML: nested too deeply")
    if data is None:  # an empty file, or only comments
        return empty(p)
    step_lines, key_lines = _yaml_step_lines(node), _yaml_key_lines(node)
    raw = parsed(p, data, _NOT_A_CONFIG, lambda _: step_lines, key_lines)
    duplicates = _yaml_duplicate_keys(node, str(p))
    raw.problems.extend(duplicates)
    if not duplicates:
        _remember_document(key, data, step_lines, key_lines)
    return raw


def _cached_document(key: str) -> tuple[Any, dict[int, int], dict[str, int]] | None:
    stored = load_cache.current().get(key)
    if stored is None:
        return None
    try:
        data, step_lines, key_lines = json.loads(stored)
        return data, {int(k): v for k, v in step_lines.items()}, key_lines
    except (ValueError, TypeError, AttributeError):
        return None  # damaged: parse again


def _remember_document(key: str, data: Any, step_lines: dict[int, int], key_lines: dict[str, int]) -> None:
    """Keep a document whose value JSON carries unchanged (not one with dates, sets or
    non-string keys, which YAML has and JSON has not: those are parsed each time)."""
    try:
        text = json.dumps([data, step_lines, key_lines])
        if json.loads(text)[0] != data:
            return
    except (TypeError, ValueError):
        return
    load_cache.current().put(key, text)


#: Nodes a YAML document may expand to once its aliases are followed: far above any real
#: pipeline, far below what nested aliases ("billion laughs") can make a loader build.
MAX_YAML_NODES = 200_000


def _alias_problem(root: yaml.Node | None) -> tuple[str, int | None] | None:
    """A recursive alias, or aliases expanding past :data:`MAX_YAML_NODES`, in a composed
    document: (message, line). PyYAML builds both without complaint, and everything that
    walks the result then runs for ever or runs out of memory."""
    if root is None:
        return None
    sizes: dict[int, int] = {}  # node id -> expanded size
    state: dict[int, int] = {}  # 1: on the current path, 2: done
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if children_done:
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            state[key] = 2
            if sizes[key] > MAX_YAML_NODES:
                return (f"aliases expand the document past {MAX_YAML_NODES:,} nodes", node.start_mark.line + 1)
            continue
        if state.get(key) == 2:
            continue
        state[key] = 1
        stack.append((node, True))
        for child in children:
            if state.get(id(child)) == 1:
                return (
                    "an alias refers to a node that contains it (recursive aliases are not supported)",
                    child.start_mark.line + 1,
                )
            if state.get(id(child)) != 2:
                stack.append((child, False))
    return None


def _yaml_duplicate_keys(node: yaml.Node | None, file: str) -> list[Problem]:
    """YAML keeps only the last of duplicate keys; report them with their line."""
    problems: list[Problem] = []
    todo = [node]
    while todo:
        current = todo.pop()
        if isinstance(current, yaml.SequenceNode):
            todo.extend(current.value)
        elif isinstance(current, yaml.MappingNode):
            seen: set[str] = set()
            names = [
                v.value
                for k, v in current.value
                if isinstance(k, yaml.ScalarNode) and k.value == "name" and isinstance(v, yaml.ScalarNode)
            ]
            name = names[-1] if names else None
            for key, value in current.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen and key.value != "<<":
                        problems.append(
                            Problem(
                                file,
                                name,
                                key.value,
                                f"duplicate key '{key.value}' (YAML keeps only the last)",
                                key.start_mark.line + 1,
                            )
                        )
                    seen.add(key.value)
                todo.append(value)
    return problems


def _yaml_key_lines(node: yaml.Node | None) -> dict[str, int]:
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def _yaml_step_lines(node: yaml.Node | None) -> dict[int, int]:
    seq = None
    if isinstance(node, yaml.SequenceNode):
        seq = node
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "steps" and isinstance(value, yaml.SequenceNode):
                seq = value
    if seq is None:
        return {}
    return {i: item.start_mark.line + 1 for i, item in enumerate(seq.value)}
