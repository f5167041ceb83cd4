"""Property tests: generated valid pipelines validate; random mutations of them either
validate or raise ConfigValidationError (never another exception), in memory and as
JSON/YAML files. Deterministic (derandomize) and quick."""

from __future__ import annotations

import copy
import itertools
import json
import string
from typing import Any

import pytest
import yaml
from dagster._core.definitions.utils import DISALLOWED_NAMES
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from odibi_dagster import (
    ConfigValidationError,
    PipelineConfig,
    Step,
    load_pipelines,
    validate_pipeline,
)

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)

# Dagster refuses these as op/output/input names (a known translate issue: dagster_name keeps them).
RESERVED = set(DISALLOWED_NAMES)
NAME = st.text(string.ascii_lowercase + "_", min_size=1, max_size=10).filter(lambda s: s not in RESERVED)
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=24)
SCALARS = (
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats(allow_nan=False, allow_infinity=False) | TEXT
)
JUNK = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)
BIG = st.sampled_from(
    [[], {}, "", " ", [None] * 500, list(range(2000)), "x" * 20_000, {"k" * 200: "v" * 5000}, [[[[[[]]]]]]]
)
DOMAIN = st.sampled_from(
    [
        "ingest", "transform", "store", "publish", "connect", "Ingest", "TRANSFORM", "bronze",
        "sql", "function", "config_op", "api", "SQL", "python",
        "pandas", "spark", "Pandas", "polars", "", "   ", "\n", "é", "名前", "🙂",
        "data.csv", "in/{{ partition_key }}.csv", "{{ nope }}", "{{", "{% if %}", "{{ env.A.B }}",
        "{{ run_id }}",
        "SELECT * FROM data", "SELECT 'abc", "SELECT * FROM t WHERE", "WITH x AS (SELECT 1) SELECT * FROM x",
        "SELECT * FROM read_csv('{{ partition_key }}')", "SELECT `a` FROM data", 'SELECT {"a": 1}',
        "json.dumps", "os.sep", "no_such_module_p.fn", "nodots", ":", "a..b", ".x",
        "0 2 * * *", "bad cron", "2024-01-01", "UTC", "America", "team:x", "a@b.co", "nobody",
    ]
)  # fmt: skip
ANY_VALUE = (DOMAIN | JUNK | BIG).map(copy.deepcopy)  # BIG's values are shared: never mutate them
STEP_KEYS = sorted(set(Step.model_fields) - {"line"})
DOC_KEYS = sorted(PipelineConfig.model_fields)


@st.composite
def valid_configs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid pipeline document: ingests, SQL/function transforms over earlier datasets, stores,
    in random order, with optional pipeline settings."""
    names = draw(st.lists(NAME, min_size=2, max_size=10, unique=True))
    engine = draw(st.sampled_from(["pandas", "spark"]))
    partitioned = draw(st.booleans())
    n_ingest = draw(st.integers(1, max(1, len(names) // 2)))
    steps: list[dict[str, Any]] = []
    datasets: list[str] = []
    for i, name in enumerate(names):
        dataset = "D" + name  # upper-case: never a step name (store assets are keyed by step name)
        if i < n_ingest:
            value = f"in/{{{{ partition_key }}}}/{name}.csv" if partitioned else f"in/{name}.csv"
            steps.append({"layer": "ingest", "name": name, "value": value, "outputs": {"data": dataset}})
            datasets.append(dataset)
            continue
        kind = draw(st.sampled_from(["sql", "join", "function", "store", "publish"]))
        picked = draw(st.lists(st.sampled_from(datasets), min_size=1, max_size=2, unique=True))
        inputs = {f"t{j}": ds for j, ds in enumerate(picked)}
        if kind in ("store", "publish"):
            steps.append({"layer": kind, "name": name, "value": f"out/{name}.parquet", "inputs": {"data": picked[0]}})
            continue
        step: dict[str, Any] = {
            "layer": "transform",
            "name": name,
            "inputs": inputs,
            "outputs": {"data": dataset},
        }
        if kind == "function":
            step.update(type="function", value="builtins.dict")
        else:
            tables = list(inputs)
            sql = f"SELECT * FROM {tables[0]}"
            if len(tables) > 1:
                sql = f"WITH a AS (SELECT * FROM {tables[0]}) SELECT * FROM a JOIN {tables[1]} USING (id)"
            if partitioned:
                sql += " WHERE day = {{ partition_key }}"
            step.update(type="sql", value=sql)
        if draw(st.booleans()):
            step["checks"] = [{"not_null": ["id"]}, {"row_count": {"min": 1}, "severity": "error"}]
        if draw(st.booleans()):
            step["metadata"] = {"owner": "ana@example.com", "description": "generated"}
        steps.append(step)
        datasets.append(dataset)
    order = draw(st.permutations(range(len(steps))))
    doc: dict[str, Any] = {"pipeline": "generated", "engine": engine, "steps": [steps[i] for i in order]}
    if partitioned:
        doc["partitions"] = {"type": draw(st.sampled_from(["daily", "monthly"])), "start": "2024-01-01"}
    if draw(st.booleans()):
        doc["schedule"] = {"cron": "0 2 * * *"}
        doc["owners"] = ["team:data", "ana@example.com"]
        doc["hooks"] = [{"event": "pipeline_complete", "function": "json.dumps"}]
        doc["sensors"] = [{"type": "file_watch", "path": "incoming", "step": steps[0]["name"]}]
    return doc


ODIBI_SIMPLE = [
    {"layer": "ingest", "name": "read_sample_csv", "type": "config_op", "engine": "pandas",
     "value": "data/sample.csv", "outputs": {"data": "raw_data"}},
    {"layer": "transform", "name": "filter_high_value", "type": "sql", "engine": "pandas",
     "value": "SELECT * FROM data WHERE value > 100 ORDER BY id", "inputs": {"data": "raw_data"},
     "outputs": {"data": "filtered_data"}},
    {"layer": "store", "name": "write_filtered_parquet", "type": "config_op", "engine": "pandas",
     "value": "out/filtered.parquet", "inputs": {"data": "filtered_data"}},
]  # fmt: skip


NESTED_KEYS = [
    "timezone", "start", "end", "cron", "every", "type", "values", "step", "path", "pattern", "event",
    "function", "steps", "source", "table", "query", "watermark_column", "owner", "owners", "tags", "dataset",
    "not_null", "unique", "min", "max", "row_count", "severity", "name", "connection", "secret", "priority",
    "dynamic_partitions", "max_retries", "start_offset",
]  # fmt: skip
SETTINGS_VALUES: dict[str, list[Any]] = {
    "partitions": [
        {"type": "daily"}, {"type": "daily", "start": "2024-02-30"}, {"type": "static", "values": []},
        {"type": "static", "values": ["a", "a"]}, {"type": "dynamic", "name": 5},
        {"type": "hourly", "start": "2024-01-01", "timezone": "America"},
        {"type": "weekly", "start": "2024-01-01T00:00:00+05:00", "end": "2023-01-01"},
        {"type": "monthly", "start": "2024-01-01", "fmt": "%Y"}, {"type": "daily", "start": "2024-01-01",
                                                               "end_offset": "x"},
    ],
    "schedule": [{"cron": "* * *"}, {"every": "1s"}, {"every": True}, {"every": -(10**12)},
                 {"cron": "0 2 * * *", "timezone": "Mars"}, {"cron": "0 2 * * *", "timezone": "America"}, {}],
    "sensors": [[{"type": "file_watch", "path": "x", "step": "nope", "dynamic_partitions": True}],
                [{"type": "incremental", "step": "x", "source": "db", "watermark_column": "t"}],
                [{"type": "interval", "step": "x", "source": "sqlite:///x.db", "query": "SELECT",
                  "table": "t", "watermark_column": "t"}], [{"type": None}], [[]]],
    "hooks": [[{"event": "step_done", "function": "nope.fn", "steps": ["zz"]}],
              [{"event": "node_error", "function": "os.sep", "priority": "urgent"}], [{"function": 3}]],
    "owners": [["bob", 3, None], "team:x", ["team:", "a@b.c", "ok@example.com"]],
    "tags": [{"bad key": "v", "dagster/x": 1}, {"k": None}, ["a"]],
    "retry": [{"max_retries": -1}, {"max_retries": 10**9}, {"delay_seconds": "soon"}],
    "explanations": [{"ghost": "explained"}, {"x": 3}],
    "story": [{"sample_rows": -1}, {"max_cell_chars": 1}],
    "backfill": [{"policy": "all_at_once"}, {"max_partitions_per_run": 0}],
}  # fmt: skip


def _steps(doc: Any) -> list[Any]:
    if isinstance(doc, dict) and isinstance(doc.get("steps"), list):
        return doc["steps"]
    if isinstance(doc, list):
        return doc
    return []


def _dicts(node: Any, depth: int = 0) -> list[dict]:
    """Every mapping in the document (the document, steps, params, partitions, sensors...)."""
    if depth > 6:
        return []
    found: list[dict] = []
    if isinstance(node, dict):
        found.append(node)
        children = list(node.values())
    elif isinstance(node, list):
        children = node[:50]
    else:
        return found
    for child in children:
        found.extend(_dicts(child, depth + 1))
    return found


def mutate(doc: Any, data: st.DataObject) -> Any:
    """Apply 1-4 random mutations to a config document (dict or ODIBI list)."""
    for _ in range(data.draw(st.integers(1, 4), label="n_mutations")):
        steps = _steps(doc)
        dict_steps = [s for s in steps if isinstance(s, dict)]
        mappings = _dicts(doc)
        op = data.draw(
            st.sampled_from(
                ["drop", "rename", "junk", "domain", "duplicate", "cycle", "junk_step", "steps_junk",
                 "doc_junk", "setting", "setting", "setting", "unicode_name", "swap_io"]
            ),
            label="op",
        )  # fmt: skip
        target = data.draw(st.sampled_from(mappings)) if mappings else None
        keys = sorted({*STEP_KEYS, *DOC_KEYS, *NESTED_KEYS})
        if op == "drop" and target:
            target.pop(data.draw(st.sampled_from(sorted(target, key=str))), None)
        elif op == "rename" and target:
            key = data.draw(st.sampled_from(sorted(target, key=str)))
            target[data.draw(TEXT | st.sampled_from(keys))] = target.pop(key)
        elif op == "junk" and target is not None:
            target[data.draw(st.sampled_from(keys) | TEXT)] = data.draw(ANY_VALUE)
        elif op == "domain" and target is not None:
            existing = sorted((k for k in target if isinstance(k, str)), key=str)
            key = data.draw(st.sampled_from(existing) if existing and data.draw(st.booleans())
                            else st.sampled_from(keys))  # fmt: skip
            target[key] = data.draw(DOMAIN)
        elif op == "duplicate" and dict_steps:
            step = copy.deepcopy(data.draw(st.sampled_from(dict_steps)))
            if data.draw(st.booleans()):
                step["name"] = str(step.get("name", "")) + "_copy"
            steps.insert(data.draw(st.integers(0, len(steps))), step)
        elif op == "cycle" and len(dict_steps) >= 2:
            a, b = data.draw(st.lists(st.sampled_from(range(len(dict_steps))), min_size=2, max_size=2, unique=True))
            outs = dict_steps[b].get("outputs")
            if isinstance(outs, dict) and outs:
                dict_steps[a]["inputs"] = {"data": next(iter(outs.values()))}
                if data.draw(st.booleans()):
                    dict_steps[b]["inputs"] = dict(outs)  # a self-dependency too
        elif op == "junk_step":
            steps.insert(data.draw(st.integers(0, len(steps))), data.draw(JUNK | DOMAIN))
        elif op == "steps_junk" and isinstance(doc, dict):
            doc["steps"] = data.draw(ANY_VALUE)
        elif op == "doc_junk" and data.draw(st.integers(0, 9)) == 0:
            doc = data.draw(ANY_VALUE)
        elif op == "setting" and isinstance(doc, dict):
            key = data.draw(st.sampled_from(sorted(SETTINGS_VALUES)))
            value = (
                data.draw(JUNK)
                if data.draw(st.integers(0, 3)) == 0
                else data.draw(st.sampled_from(SETTINGS_VALUES[key]))
            )
            doc[key] = copy.deepcopy(value)
        elif op == "unicode_name" and dict_steps:
            data.draw(st.sampled_from(dict_steps))["name"] = data.draw(TEXT)
        elif op == "swap_io" and dict_steps:
            step = data.draw(st.sampled_from(dict_steps))
            step["inputs"], step["outputs"] = step.get("outputs"), step.get("inputs")
    return doc


# Mostly generated documents (settings mutate only documents), sometimes ODIBI's bare list.
BASES = st.one_of(valid_configs(), valid_configs(), valid_configs(), st.just(ODIBI_SIMPLE))


def check_outcome(doc: Any, file: str = "<config>") -> PipelineConfig | None:
    """validate_pipeline returns a PipelineConfig or raises ConfigValidationError with sound problems."""
    try:
        return validate_pipeline(doc, file=file)
    except ConfigValidationError as exc:
        assert_sound(exc, {file})
        return None


def assert_sound(exc: ConfigValidationError, files: set[str]) -> None:
    assert exc.problems
    for p in exc.problems:
        assert p.file in files
        assert isinstance(p.message, str) and p.message
        assert "\n" not in str(p)
        assert p.step is None or isinstance(p.step, str)
        assert p.field is None or isinstance(p.field, str)
    assert str(exc).count("\n") == len(exc.problems)


@SETTINGS
@given(doc=valid_configs())
def test_generated_valid_pipelines_validate(doc: dict[str, Any]) -> None:
    pipeline = validate_pipeline(copy.deepcopy(doc))
    assert [s.name for s in pipeline.steps] == [s["name"] for s in doc["steps"]]


@SETTINGS
@given(base=BASES, data=st.data())
def test_mutated_configs_validate_or_raise_config_validation_error(base: Any, data: st.DataObject) -> None:
    doc = mutate(copy.deepcopy(base), data)
    outcome = check_outcome(doc)
    event("valid" if outcome is not None else "invalid")


_counter = itertools.count()


@SETTINGS
@given(base=BASES, data=st.data(), fmt=st.sampled_from(["json", "yaml"]))
def test_mutated_config_files_load_or_raise_config_validation_error(
    tmp_path_factory: pytest.TempPathFactory, base: Any, data: st.DataObject, fmt: str
) -> None:
    doc = mutate(copy.deepcopy(base), data)
    path = tmp_path_factory.getbasetemp() / f"prop_{next(_counter)}.{fmt}"
    if fmt == "json":
        text = json.dumps(doc, ensure_ascii=data.draw(st.booleans()), default=str)
    else:
        text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    try:
        pipelines = load_pipelines(path)
    except ConfigValidationError as exc:
        assert_sound(exc, {str(path)})
    else:
        assert len(pipelines) == 1 and pipelines[0].source == path
    finally:
        path.unlink()


@settings(max_examples=100, deadline=None, derandomize=True)
@given(
    text=st.text(st.characters(exclude_categories=("Cs",)), max_size=200),
    fmt=st.sampled_from(["json", "yaml"]),
)
def test_arbitrary_file_contents(tmp_path_factory: pytest.TempPathFactory, text: str, fmt: str) -> None:
    """Whatever a file holds, the loader answers with pipelines or problems naming the file."""
    path = tmp_path_factory.getbasetemp() / f"raw_{next(_counter)}.{fmt}"
    path.write_text(text, encoding="utf-8")
    try:
        load_pipelines(path)
    except ConfigValidationError as exc:
        assert_sound(exc, {str(path)})
    finally:
        path.unlink()


@settings(max_examples=50, deadline=None, derandomize=True)
@given(doc=valid_configs())
def test_a_config_that_validates_builds(doc: dict[str, Any]) -> None:
    """The contract with translate: validate_pipeline passing means build_definitions succeeds."""
    import dagster as dg

    from odibi_dagster.translate.definitions import build_definitions

    defs = build_definitions(validate_pipeline(doc), base_dir="/tmp/odibi-config-property")
    assert dg.Definitions.validate_loadable(defs) is None


@pytest.mark.parametrize(
    ("key", "value"),
    [(k, v) for k, values in SETTINGS_VALUES.items() for v in values],
    ids=[f"{k}{i}" for k, values in SETTINGS_VALUES.items() for i in range(len(values))],
)
def test_every_bad_setting_is_a_problem_not_a_crash(key: str, value: Any) -> None:
    doc = {"pipeline": "settings", key: copy.deepcopy(value), "steps": copy.deepcopy(ODIBI_SIMPLE)}
    assert check_outcome(doc) is None


def odibi_first_cycle(steps: list[dict[str, Any]]) -> str | None:
    """ODIBI CORE's ``_validate_no_cycles`` (Phase 3 walkthrough, Mission 4), returning its message."""
    graph: dict[str, list[str]] = {}
    output_to_step: dict[str, str] = {}
    for step in steps:
        graph[step["name"]] = []
        for output_key in step["outputs"].values():
            output_to_step[output_key] = step["name"]
    for step in steps:
        for input_key in step["inputs"].values():
            if input_key in output_to_step:
                graph[step["name"]].append(output_to_step[input_key])
    visited: set[str] = set()
    rec_stack: set[str] = set()

    class Found(Exception):
        pass

    def has_cycle(node: str, path: list[str]) -> bool:
        visited.add(node)
        rec_stack.add(node)
        path.append(node)
        for neighbor in graph.get(node, []):
            if neighbor not in visited:
                if has_cycle(neighbor, path.copy()):
                    return True
            elif neighbor in rec_stack:
                cycle = path[path.index(neighbor) :] + [neighbor]  # noqa: RUF005 - ODIBI verbatim
                raise Found(f"Circular dependency: {' → '.join(cycle)}")
        rec_stack.remove(node)
        return False

    try:
        for node in graph:
            if node not in visited:
                has_cycle(node, [])
    except Found as found:
        return str(found)
    return None


@st.composite
def step_graphs(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=8, unique=True))
    return [
        {
            "layer": "transform",
            "name": n,
            "type": "sql",
            "value": "SELECT * FROM i0",
            "inputs": {f"i{j}": f"{m}_out" for j, m in enumerate(draw(st.lists(st.sampled_from(names), max_size=2)))},
            "outputs": {"data": f"{n}_out"},
        }
        for n in names
    ]


@SETTINGS
@given(steps=step_graphs())
def test_cycles_are_reported_as_odibi_reports_them(steps: list[dict[str, Any]]) -> None:
    """Our first cycle is ODIBI's, word for word; we also report every other cycle."""
    expected = odibi_first_cycle(steps)
    try:
        validate_pipeline(steps)
        cycles: list[str] = []
    except ConfigValidationError as exc:
        cycles = [p.message for p in exc.problems if p.message.startswith("Circular dependency")]
    if expected is None:
        assert cycles == []
    else:
        assert expected in cycles
