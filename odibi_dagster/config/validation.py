"""ODIBI's ConfigValidator, extended: every problem of every config in one error.

Runs before any Dagster object exists. Each problem names the file, the step and
the field. Messages keep ODIBI CORE's wording where it has one ("Duplicate step
names found", "Circular dependency: a → b → a", "has invalid layer").
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jinja2
import sqlglot
from pydantic import ValidationError

from odibi_dagster.config.errors import ConfigValidationError, Problem
from odibi_dagster.config.imports import FunctionImportError, binding_problem, resolve_callable
from odibi_dagster.config.loaders import RawPipeline, discover, read_raw
from odibi_dagster.config.models import (
    DATA_LAYERS,
    SINK_LAYERS,
    VALID_ENGINES,
    VALID_EVENTS,
    VALID_LAYERS,
    VALID_TYPES,
    FileWatchSensorConfig,
    PipelineConfig,
    PollingSensorConfig,
    RetryConfig,
    Step,
)
from odibi_dagster.config.names import dagster_name
from odibi_dagster.config.roots import odibi_project_root
from odibi_dagster.config.sql import dialect_for, parse_sql, referenced_tables
from odibi_dagster.config.templating import (
    KNOWN_VARIABLES,
    PARTITION_VARIABLES,
    UnsafeTemplate,
    has_template,
    render_sql,
    sample_variables,
    template_variables,
)

# Longest chain of dependent steps a pipeline may have: Dagster walks its graph recursively,
# and build_definitions raises the recursion limit to match (see translate.definitions).
MAX_CHAIN_DEPTH = 10_000
_SENSOR_TAGS = {"file_watch", "incremental", "interval"}
# Dagster's names (ops, outputs, checks): letters, digits and underscores.
_DAGSTER_NAME = re.compile(r"^[A-Za-z0-9_]+$")


# Filesystems a file-watch sensor can list (through fsspec): local folders and blob stores.
WATCHABLE_PROTOCOLS = frozenset({"file", "abfs", "abfss", "az", "s3", "gs", "gcs", "memory"})


def _loc_to_field(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as a field path: ``sensors[0].path``, ``inputs.data``."""
    out = ""
    prev: Any = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in str(part) or "(" in str(part):
            pass  # pydantic's validator/union markers, e.g. ``function-after[...]``
        elif isinstance(prev, int) and part in _SENSOR_TAGS and out.startswith("sensors"):
            pass  # the discriminator tag of a sensor
        else:
            out += f".{part}" if out else str(part)
        prev = part
    return out or "-"


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _pydantic_message(err: dict[str, Any]) -> str:
    kind = err.get("type", "")
    if kind == "missing":
        return f"missing required field '{err['loc'][-1]}'" if err.get("loc") else "missing required field"
    if kind == "extra_forbidden":
        return f"unknown key '{err['loc'][-1]}'"
    msg = str(err.get("msg", "invalid value"))
    if kind.startswith("value_error") or kind.startswith("assertion_error"):
        return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if ("input" in err and not isinstance(err["input"], dict | list)) or kind.endswith("_type"):
        # Say what was found: "Input should be a valid string (got int: 5)".
        return f"{msg} (got {type(err.get('input')).__name__}: {_short(err.get('input'))})"
    return msg


def _field_root(field: str | None) -> str | None:
    return re.split(r"[.\[]", field, maxsplit=1)[0] if field else None


class _Collector:
    def __init__(self, raw: RawPipeline):
        self.file = raw.file
        self.lines = raw.lines
        self.key_lines = raw.key_lines
        self.problems: list[Problem] = list(raw.problems)
        self.step_lines: dict[str, int] = {}
        # step -> top-level fields whose shape was wrong: derived problems on them are noise.
        self.bad_fields: dict[str, set[str]] = {}
        self.layer_defaulted: set[str] = set()  # steps without 'layer' (ODIBI's default: transform)
        self.maybe_produced: set[str] = set()  # datasets named by malformed or dropped steps
        self.disabled_outputs: dict[str, str] = {}  # dataset -> disabled step producing it

    def add(
        self, step: Step | str | None, field: str | None, message: str, line: int | None = None, *, shape: bool = False
    ) -> None:
        if isinstance(step, Step):
            line = line if line is not None else step.line
            step = step.name
        if not shape and step is not None and _field_root(field) in self.bad_fields.get(step, ()):
            return  # already reported as a wrong shape; a second problem would only confuse
        if line is None and step is not None:
            line = self.step_lines.get(step)
        if line is None and step is None and field:  # a pipeline setting: the line of its key
            line = self.key_lines.get(str(_field_root(field)))
        self.problems.append(Problem(self.file, step, field, message, line))

    def has_bad(self, step: Step, field: str) -> bool:
        return field in self.bad_fields.get(step.name, ())


def _strings_in(value: Any) -> set[str]:
    """Dataset names a malformed ``outputs`` value may have meant."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return {v for v in value.values() if isinstance(v, str)}
    if isinstance(value, list | tuple):
        return {v for v in value if isinstance(v, str)}
    return set()


def _step_label(item: Any, index: int) -> str:
    if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"].strip():
        return item["name"]
    return f"#{index + 1}"


def _parse_document(raw: RawPipeline, col: _Collector) -> tuple[PipelineConfig | None, list[Step]]:
    doc = dict(raw.document or {})
    steps_raw = doc.pop("steps", None)
    if raw.default_name and "pipeline" not in doc:
        doc["pipeline"] = raw.default_name
    pipeline: PipelineConfig | None = None
    try:
        pipeline = PipelineConfig.model_validate({**doc, "steps": []})
    except ValidationError as exc:
        for err in exc.errors():
            col.add(None, _loc_to_field(err["loc"]), _pydantic_message(err))
        external = doc.get("external_inputs")
        if isinstance(external, dict):  # inputs naming them are not "not produced" on top
            col.maybe_produced |= {k for k in external if isinstance(k, str)}
    if steps_raw is None:
        col.add(None, "steps", "missing required field 'steps'")
        return pipeline, []
    if not isinstance(steps_raw, list):
        col.add(None, "steps", "steps must be a list")
        return pipeline, []
    if not steps_raw:
        col.add(None, "steps", "Config is empty - no steps found")
        return pipeline, []
    steps: list[Step] = []
    for i, item in enumerate(steps_raw):
        label = _step_label(item, i)
        line = raw.lines.get(i)
        if line is not None:
            col.step_lines.setdefault(label, line)
        if not isinstance(item, dict):
            col.add(label, None, f"a step must be a mapping, got {type(item).__name__}: {_short(item)}", line)
            continue
        bad_fields: set[Any] = set()
        if "line" in item:  # set by the loader, not by users
            col.add(label, "line", "unknown key 'line'", line, shape=True)
            bad_fields.add("line")
        try:
            step = Step.model_validate({k: v for k, v in item.items() if k not in bad_fields})
        except ValidationError as exc:
            for err in exc.errors():
                col.add(label, _loc_to_field(err["loc"]), _pydantic_message(err), line, shape=True)
                if err["loc"]:
                    bad_fields.add(err["loc"][0])
            # Drop the broken fields and keep checking the rest of the step, so one
            # typo does not hide the step's other problems.
            try:
                step = Step.model_validate({k: v for k, v in item.items() if k not in bad_fields})
            except ValidationError:
                col.maybe_produced |= _strings_in(item.get("outputs"))
                continue
        if "outputs" in bad_fields:
            col.maybe_produced |= _strings_in(item.get("outputs"))
        col.bad_fields.setdefault(step.name, set()).update(str(f) for f in bad_fields)
        if "layer" not in item and "layer" not in bad_fields:
            col.layer_defaulted.add(step.name)
        if not step.name.strip():
            col.add(label, "name", "name must not be empty", line)
            continue
        step.line = line
        if step.enabled:
            steps.append(step)
        else:
            for dataset in step.outputs.values():
                col.disabled_outputs.setdefault(dataset, step.name)
    return pipeline, steps


def _check_names_and_outputs(steps: list[Step], col: _Collector) -> None:
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


def _case_hint(value: str, valid: Iterable[str], what: str) -> str:
    if value.strip().lower() in valid:
        return f"; {what} names are lower-case: use '{value.strip().lower()}'"
    return ""


def _invalid(step: str, what: str, value: str, valid: tuple[str, ...]) -> str:
    # ODIBI's wording ("Step 'x' has invalid layer: 'y'"), the valid values and a hint for 'Ingest'.
    return f"Step '{step}' has invalid {what}: '{value}' (valid: {', '.join(valid)})" + _case_hint(value, valid, what)


def _check_step_kinds(steps: list[Step], col: _Collector) -> None:
    for s in steps:
        if s.layer not in VALID_LAYERS:
            col.add(s, "layer", _invalid(s.name, "layer", s.layer, VALID_LAYERS))
        # An invalid pipeline engine is reported once, at the pipeline, not again for every step.
        if s.engine is not None and s.engine not in VALID_ENGINES:
            col.add(s, "engine", _invalid(s.name, "engine", s.engine, VALID_ENGINES))
        if s.type not in VALID_TYPES:
            col.add(s, "type", _invalid(s.name, "type", s.type, VALID_TYPES))
        if col.has_bad(s, "layer"):
            continue  # a layer of the wrong type: the rules of a guessed layer would only add noise
        defaulted = (
            " (the step has no 'layer', so ODIBI's default 'transform' applies)"
            if s.name in col.layer_defaulted
            else ""
        )
        if s.layer == "transform":
            if not s.inputs:
                col.add(s, "inputs", "transform step has no inputs" + defaulted)
            if s.type not in ("sql", "function") and s.type in VALID_TYPES:
                col.add(s, "type", f"transform step must be of type 'sql' or 'function', not '{s.type}'" + defaulted)
        if s.layer in DATA_LAYERS and not s.outputs:
            col.add(s, "outputs", f"{s.layer} step has no outputs")
        if s.layer == "ingest" and not s.value.strip():
            col.add(s, "value", "ingest step has an empty value (expected a source path, URL or table)")
        if s.layer in SINK_LAYERS:
            if not s.inputs:
                col.add(s, "inputs", f"{s.layer} step has no inputs")
            if not s.value.strip():
                col.add(s, "value", f"{s.layer} step has an empty value (expected a target path or table)")
        if s.layer == "connect":
            if not s.value.strip():
                col.add(s, "value", "connect step has an empty value (expected a connection string)")
            if s.inputs or s.outputs:
                col.add(s, "inputs" if s.inputs else "outputs", "connect steps take no inputs or outputs")
        if s.layer in SINK_LAYERS and s.outputs:
            col.add(s, "outputs", f"{s.layer} steps write a target and produce no datasets; remove 'outputs'")


def _check_inputs_and_cycles(steps: list[Step], col: _Collector, external: Iterable[str] = ()) -> None:
    producers = {ds: s.name for s in steps for ds in s.outputs.values()}
    known = set(external) | col.maybe_produced
    for s in steps:
        for logical, dataset in s.inputs.items():
            if dataset in producers or dataset in known:
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
    graph: dict[str, list[str]] = {s.name: [] for s in steps}
    for s in steps:
        for dataset in s.inputs.values():
            if dataset in producers:
                graph[s.name].append(producers[dataset])
    # Iterative DFS (deep pipelines must not hit the recursion limit); also measures chain depth.
    state: dict[str, int] = {}  # 1 = on stack, 2 = done
    depth: dict[str, int] = {}
    reported: set[frozenset[str]] = set()
    for root in graph:
        if root in state:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = []
        while stack:
            node, idx = stack.pop()
            if idx == 0:
                state[node] = 1
                path.append(node)
            deps = graph[node]
            if idx < len(deps):
                stack.append((node, idx + 1))
                nxt = deps[idx]
                if state.get(nxt) == 1:
                    cycle = [*path[path.index(nxt) :], nxt]
                    key = frozenset(cycle)
                    if key not in reported:
                        reported.add(key)
                        # ODIBI prints the path in dependency order: a needs b needs a.
                        col.add(cycle[0], "inputs", f"Circular dependency: {' → '.join(cycle)}")
                elif nxt not in state:
                    stack.append((nxt, 0))
            else:
                state[node] = 2
                depth[node] = 1 + max((depth.get(d, 0) for d in deps), default=0)
                path.pop()
    deepest = max(depth, key=depth.__getitem__, default=None)
    if not reported and deepest is not None and depth[deepest] > MAX_CHAIN_DEPTH:
        col.add(
            deepest,
            "inputs",
            f"step '{deepest}' ends a chain of {depth[deepest]:,} dependent steps; "
            f"at most {MAX_CHAIN_DEPTH:,} are supported (split the pipeline)",
        )


def _check_templates(text: str, where: str, step: Step, partitioned: bool, col: _Collector) -> bool:
    """Check the variables of one template string; False when it cannot be rendered."""
    if not has_template(text):
        return True
    try:
        used = template_variables(text)
    except jinja2.TemplateSyntaxError as exc:
        col.add(step, where, f"template syntax error: {exc.message} (line {exc.lineno})")
        return False
    ok = True
    for var in sorted(used - KNOWN_VARIABLES):
        col.add(step, where, f"unknown template variable '{var}' (known: {', '.join(sorted(KNOWN_VARIABLES))})")
        ok = False
    if not partitioned:
        for var in sorted(used & PARTITION_VARIABLES):
            col.add(step, where, f"template variable '{var}' is only defined when the pipeline has partitions")
            ok = False
    return ok


def _walk_strings(obj: Any, prefix: str) -> Iterable[tuple[str, str]]:
    if isinstance(obj, str):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk_strings(v, f"{prefix}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk_strings(v, f"{prefix}[{i}]")


# An ingest query runs on its source database (SQLite, Postgres, SQL Server...): any dialect may parse it.
SOURCE_DIALECTS = ("sqlite", "postgres", "mysql", "tsql", "oracle", "snowflake", "bigquery")


def _check_sql(
    sql: str,
    step: Step,
    where: str,
    engine: str,
    allowed: set[str] | None,
    partitioned: bool,
    col: _Collector,
    *,
    any_dialect: bool = False,
) -> None:
    """SQL must parse in the engine's dialect and read only ``allowed`` tables (None: skip that part)."""
    dialect = dialect_for(engine)
    try:
        rendered = render_sql(sql, sample_variables(partitioned), dialect)
    except UnsafeTemplate as exc:
        col.add(step, where, f"SQL template is not safe: {exc}")
        return
    except Exception as exc:  # e.g. {{ env.A.B }}: the template is fine, its rendering is not
        col.add(step, where, f"SQL cannot be rendered: {type(exc).__name__}: {exc}")
        return
    try:
        statements = parse_sql(rendered, dialect)
    except sqlglot.errors.SqlglotError as exc:  # ParseError, TokenError (an unclosed quote)
        if any_dialect and any(_parses(rendered, d) for d in SOURCE_DIALECTS):
            return
        first = str(exc).splitlines()[0] if str(exc) else "syntax error"
        errors = getattr(exc, "errors", None) or []
        if errors and errors[0].get("highlight"):
            # Name the offending token: "Unexpected token at 'FRM' (line 1, column 10)".
            e = errors[0]
            first = (
                f"{e.get('description') or 'syntax error'} at '{e['highlight']}' "
                f"(line {e.get('line')}, column {e.get('col')})"
            )
        first = re.sub(r"<class 'sqlglot\.[\w.]*?(\w+)'>", r"\1", first)  # "missing for <class '...Where'>"
        col.add(step, where, f"SQL does not parse ({dialect} dialect): {first}")
        return
    except RecursionError:
        col.add(step, where, f"SQL does not parse ({dialect} dialect): nested too deeply")
        return
    if allowed is None:
        return
    # DuckDB and Spark resolve table names case-insensitively.
    folded = {a.lower() for a in allowed}
    for table in sorted(referenced_tables(statements, dialect)):
        if table.lower() not in folded:
            names = ", ".join(sorted(allowed)) or "none"
            col.add(step, where, f"SQL names table '{table}' which is not one of the step's inputs ({names})")


def _parses(sql: str, dialect: str) -> bool:
    try:
        parse_sql(sql, dialect)
    except Exception:
        return False
    return True


def _check_step_details(pipeline: PipelineConfig, steps: list[Step], col: _Collector) -> None:
    partitioned = pipeline.partitions is not None
    connect_steps = {s.name for s in steps if s.layer == "connect"}
    search = pipeline.module_dirs
    for s in steps:
        engine = pipeline.step_engine(s)
        texts_ok = _check_templates(s.value, "value", s, partitioned, col)
        for where, text in _walk_strings(s.params, "params"):
            _check_templates(text, where, s, partitioned, col)
        if s.type == "sql" and s.value.strip() and texts_ok and s.layer != "connect":
            allowed = set(s.inputs) if not col.has_bad(s, "inputs") else None
            if s.layer == "ingest":
                allowed = None  # an ingest query reads its source database's tables, not step inputs
            _check_sql(s.value, s, "value", engine, allowed, partitioned, col, any_dialect=s.layer == "ingest")
        if s.type == "sql" and s.layer == "transform" and not s.value.strip():
            col.add(s, "value", "sql step has an empty value (expected a SQL query)")
        if s.type == "function":
            if not s.value.strip():
                col.add(s, "value", "function step has an empty value (expected 'package.module.function')")
            else:
                try:
                    fn = resolve_callable(s.value, search)
                except FunctionImportError as exc:
                    col.add(s, "value", str(exc))
                else:
                    # A connection's params are known only at run time: such steps are checked then.
                    problem = None if "connection" in s.params else binding_problem(fn, list(s.inputs), list(s.params))
                    if problem is not None:
                        col.add(s, "inputs" if s.inputs and "input" in problem else "value", problem)
        conn = s.params.get("connection")
        if conn is not None and (not isinstance(conn, str) or conn not in connect_steps):
            known = ", ".join(sorted(connect_steps)) or "none"
            col.add(s, "params.connection", f"connection '{conn}' is not a connect step (connect steps: {known})")
        for key, value in s.params.items():
            if (
                isinstance(value, dict)
                and "secret" in value
                and (set(value) != {"secret"} or not isinstance(value["secret"], str))
            ):
                col.add(s, f"params.{key}", 'a secret reference must be exactly {"secret": "ENV_VAR_NAME"}')
        check_names: dict[tuple[str | None, str], int] = {}
        for i, check in enumerate(s.checks):
            if check.name is not None and not _DAGSTER_NAME.match(check.name):
                col.add(
                    s,
                    f"checks[{i}].name",
                    f"check name '{check.name}' may hold only letters, digits and '_' (a Dagster name)",
                )
            target = check.dataset or next(iter(s.outputs.values()), None)
            first = check_names.setdefault((target, check.check_name), i)
            if first != i:
                col.add(
                    s,
                    f"checks[{i}]",
                    f"check '{check.check_name}' is declared twice on the same "
                    f"dataset (also checks[{first}]); give one a different 'name'",
                )
            if check.sql is not None:
                allowed = {"data", *s.inputs, *s.outputs}
                _check_sql(check.sql, s, f"checks[{i}].sql", engine, allowed, partitioned, col)
            if check.dataset is not None and check.dataset not in s.outputs.values():
                col.add(s, f"checks[{i}].dataset", f"'{check.dataset}' is not an output of this step")
            if s.layer not in DATA_LAYERS and s.layer in VALID_LAYERS:
                col.add(s, f"checks[{i}]", "checks apply to ingest and transform steps (their output datasets)")
        if s.partition_mapping is not None and not partitioned:
            col.add(s, "partition_mapping", "a partition mapping needs pipeline 'partitions'")
        _check_retry(s.retry, s, "retry", col)
        for key in ("owner", "owners"):
            if key in s.metadata:
                _check_owners(s.metadata[key], s, f"metadata.{key}", col)
        if "tags" in s.metadata:
            _check_tags(s.metadata["tags"], s, "metadata.tags", col)


def _valid_owner(owner: Any) -> bool:
    from dagster._core.definitions.utils import is_valid_owner

    # Dagster's own rule, and a team name the translator keeps (letters, digits, '_', '.', '-').
    if not isinstance(owner, str) or not is_valid_owner(owner):
        return False
    return not owner.startswith("team:") or re.fullmatch(r"team:[\w.-]+", owner) is not None


def _check_owners(value: Any, step: Step | None, where: str, col: _Collector) -> None:
    owners = [value] if isinstance(value, str) else value
    if not isinstance(owners, list):
        col.add(step, where, f"owners must be a list of emails or 'team:NAME' (got {type(value).__name__})")
        return
    for i, owner in enumerate(owners):
        if not _valid_owner(owner):
            field = where if isinstance(value, str) else f"{where}[{i}]"
            col.add(
                step,
                field,
                f"owner {_short(owner)} must be an email address or 'team:NAME' (Dagster rejects other owners)",
            )


def _check_tags(value: Any, step: Step | None, where: str, col: _Collector) -> None:
    from dagster._utils.tags import VALID_TAG_KEY_EXPLANATION, is_valid_tag_key

    if not isinstance(value, dict):
        col.add(step, where, f"tags must be a mapping of key: value (got {type(value).__name__})")
        return
    for key in value:
        if not isinstance(key, str) or not is_valid_tag_key(key):
            col.add(step, f"{where}.{key}", f"invalid tag key {_short(key)}: {VALID_TAG_KEY_EXPLANATION}")
        elif key.startswith("dagster/"):
            col.add(step, f"{where}.{key}", f"tag key '{key}' uses Dagster's reserved prefix 'dagster/'")


def _valid_timezone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError, IsADirectoryError ('America'), OSError
        return False
    return True


def _check_retry(retry: RetryConfig | None, step: Step | None, where: str, col: _Collector) -> None:
    # Dagster's RetryPolicy refuses a backoff or jitter without a delay to grow or jitter.
    if retry is not None and retry.max_retries > 0 and not retry.delay_seconds:
        for name in ("backoff", "jitter"):
            if getattr(retry, name) is not None:
                col.add(step, f"{where}.{name}", f"{name} needs a delay: set delay_seconds above 0")


def _check_pipeline(pipeline: PipelineConfig, steps: list[Step], col: _Collector) -> None:
    from odibi_dagster.config.partitions import build_partitions_def
    from odibi_dagster.config.schedules import interval_seconds, is_valid_cron

    if pipeline.engine not in VALID_ENGINES:
        col.add(
            None,
            "engine",
            f"invalid engine: '{pipeline.engine}' (valid: {', '.join(VALID_ENGINES)})"
            + _case_hint(pipeline.engine, VALID_ENGINES, "engine"),
        )
    if pipeline.partitions is not None:
        if not _valid_timezone(pipeline.partitions.timezone):
            col.add(None, "partitions.timezone", f"unknown timezone '{pipeline.partitions.timezone}'")
        else:
            dates_ok = True
            for key in ("start", "end"):
                value = getattr(pipeline.partitions, key)
                if value is not None and pipeline.partitions.type not in ("static", "dynamic"):
                    try:
                        dt.datetime.fromisoformat(value)
                    except ValueError:
                        dates_ok = False
                        col.add(None, f"partitions.{key}", f"'{value}' is not a date (YYYY-MM-DD or ISO datetime)")
            if dates_ok:
                try:
                    build_partitions_def(pipeline.partitions, pipeline.name)
                except Exception as exc:
                    col.add(None, "partitions", f"bad partition settings: {exc}")
    if pipeline.schedule is not None:
        sch = pipeline.schedule
        if sch.cron is not None and not is_valid_cron(sch.cron):
            col.add(None, "schedule.cron", f"'{sch.cron}' is not a valid cron expression")
        if sch.every is not None:
            try:
                interval_seconds(sch.every)
            except (ValueError, TypeError) as exc:
                col.add(None, "schedule.every", str(exc))
        if not _valid_timezone(sch.timezone):
            col.add(None, "schedule.timezone", f"unknown timezone '{sch.timezone}'")
    by_name = {s.name: s for s in steps}
    for i, sensor in enumerate(pipeline.sensors):
        where = f"sensors[{i}].step"
        target = by_name.get(sensor.step)
        if target is None:
            col.add(None, where, f"sensor names unknown step '{sensor.step}'")
        elif target.layer != "ingest":
            col.add(None, where, f"sensor step '{sensor.step}' must be an ingest step, not {target.layer}")
        if (
            isinstance(sensor, FileWatchSensorConfig)
            and sensor.dynamic_partitions
            and (pipeline.partitions is None or pipeline.partitions.type != "dynamic")
        ):
            col.add(
                None,
                f"sensors[{i}].dynamic_partitions",
                "dynamic_partitions needs pipeline 'partitions: {type: dynamic}'",
            )
        if isinstance(sensor, PollingSensorConfig) and "://" not in sensor.source and sensor.source not in by_name:
            col.add(None, f"sensors[{i}].source", f"'{sensor.source}' is neither a URL nor a connect step")
        if (
            isinstance(sensor, FileWatchSensorConfig)
            and "://" in sensor.path
            and sensor.path.split("://", 1)[0].lower() not in WATCHABLE_PROTOCOLS
        ):
            col.add(
                None,
                f"sensors[{i}].path",
                f"'{sensor.path}': file-watch sensors watch a local folder or a blob-store prefix "
                f"({', '.join(p + '://' for p in sorted(WATCHABLE_PROTOCOLS))})",
            )
        if (
            isinstance(sensor, PollingSensorConfig)
            and pipeline.partitions is not None
            and pipeline.partitions.type in ("static", "dynamic")
        ):
            col.add(
                None,
                f"sensors[{i}].type",
                f"a {sensor.type} sensor needs an unpartitioned or "
                f"time-partitioned pipeline (partitions are {pipeline.partitions.type})",
            )
    _check_retry(pipeline.retry, None, "retry", col)
    for i, hook in enumerate(pipeline.hooks):
        if hook.event not in VALID_EVENTS:
            hint = ""
            if hook.event.lower().replace("step_", "node_") in VALID_EVENTS:
                hint = f"; did you mean '{hook.event.lower().replace('step_', 'node_')}'?"
            col.add(None, f"hooks[{i}].event", f"unknown event '{hook.event}' (valid: {', '.join(VALID_EVENTS)}){hint}")
        try:
            resolve_callable(hook.function, pipeline.module_dirs)
        except FunctionImportError as exc:
            col.add(None, f"hooks[{i}].function", str(exc))
        for name in hook.steps or []:
            if name not in by_name:
                col.add(None, f"hooks[{i}].steps", f"hook names unknown step '{name}'")
    for name in pipeline.explanations:
        if name not in by_name:
            col.add(None, f"explanations.{name}", f"explanation for unknown step '{name}'")
    _check_owners(pipeline.owners, None, "owners", col)
    _check_tags(pipeline.tags, None, "tags", col)
    # Schedules and sensors share one namespace in Dagster: their explicit names must differ.
    named: dict[str, str] = {}
    triggers = [("schedule.name", pipeline.schedule)] if pipeline.schedule is not None else []
    triggers += [(f"sensors[{i}].name", sensor) for i, sensor in enumerate(pipeline.sensors)]
    for where, trigger in triggers:
        if trigger.name:
            first = named.setdefault(dagster_name(trigger.name), where)
            if first != where:
                other = first.removesuffix(".name")
                col.add(
                    None,
                    where,
                    f"name '{trigger.name}' is also the name of {other} (schedules and sensors need distinct names)",
                )


def _check_external_inputs(pipeline: PipelineConfig, steps: list[Step], col: _Collector) -> None:
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


def validate_raw(raw: RawPipeline) -> tuple[PipelineConfig | None, list[Problem]]:
    """Validate one raw config; returns the model (when valid) and every problem found."""
    col = _Collector(raw)
    if raw.document is None:
        return None, col.problems
    pipeline, steps = _parse_document(raw, col)
    source = Path(raw.file) if raw.file and not raw.file.startswith("<") else None
    _check_names_and_outputs(steps, col)
    _check_step_kinds(steps, col)
    _check_inputs_and_cycles(steps, col, pipeline.external_inputs if pipeline is not None else ())
    if pipeline is not None:
        pipeline = pipeline.model_copy(update={"steps": steps}).with_source(source)
        if raw.odibi_format:
            root, others = odibi_project_root(pipeline)
            pipeline.with_data_root(root, tuple(others))
        _check_step_details(pipeline, steps, col)
        _check_pipeline(pipeline, steps, col)
        _check_external_inputs(pipeline, steps, col)
    if raw.document.get("steps") and not steps and not col.problems:
        col.add(None, "steps", "Config is empty - no enabled steps found")
    if pipeline is not None and raw.odibi_format:
        pipeline.with_odibi_origin(raw.disabled_csv_rows)
    if col.problems:
        return None, col.problems
    return pipeline, []


def load_pipelines(*paths: str | Path, project: str | None = None, enabled_only: bool = True) -> list[PipelineConfig]:
    """Load and validate every config at ``paths`` (files or directories).

    Raises :class:`ConfigValidationError` listing every problem of every file.
    """
    problems: list[Problem] = []
    pipelines: list[PipelineConfig] = []
    files: list[Path] = []
    seen_files: set[Path] = set()
    for p in paths:
        try:
            found_files = discover(p)
        except OSError as exc:  # an unreadable directory
            problems.append(Problem(str(p), None, None, f"cannot read: {exc}"))
            continue
        if not found_files:
            problems.append(Problem(str(p), None, None, "no config files found"))
        for f in found_files:  # a file named twice (itself and its directory) is loaded once
            key = f.resolve() if f.exists() else f
            if key not in seen_files:
                seen_files.add(key)
                files.append(f)
    for f in files:
        try:
            for raw in read_raw(f, project=project, enabled_only=enabled_only):
                pipeline, found = validate_raw(raw)
                problems.extend(found)
                if pipeline is not None:
                    pipelines.append(pipeline)
        except Exception as exc:  # a bug of ours must still be one line naming the file, not a traceback
            problems.append(Problem(str(f), None, None, f"cannot validate: {type(exc).__name__}: {exc}"))
    seen: dict[str, str] = {}
    seen_safe: dict[str, str] = {}
    for p in pipelines:
        if p.name in seen:
            problems.append(
                Problem(str(p.source), None, "pipeline", f"pipeline name '{p.name}' is also used by {seen[p.name]}")
            )
        elif seen_safe.get(dagster_name(p.name), p.name) != p.name:
            other = seen_safe[dagster_name(p.name)]
            problems.append(
                Problem(
                    str(p.source),
                    None,
                    "pipeline",
                    f"pipeline names '{p.name}' and '{other}' ({seen[other]}) both become "
                    f"the Dagster job '{dagster_name(p.name)}'; rename one",
                )
            )
        seen.setdefault(p.name, str(p.source))
        seen_safe.setdefault(dagster_name(p.name), p.name)
    if problems:
        raise ConfigValidationError(problems)
    return pipelines


def load_pipeline(path: str | Path, *, project: str | None = None, enabled_only: bool = True) -> PipelineConfig:
    """Load and validate one pipeline config file (JSON, YAML, SQLite or CSV)."""
    pipelines = load_pipelines(path, project=project, enabled_only=enabled_only)
    if len(pipelines) != 1:
        names = ", ".join(p.name for p in pipelines)
        raise ConfigValidationError(
            [Problem(str(path), None, "project", f"holds {len(pipelines)} pipelines ({names}); pass project=...")]
        )
    return pipelines[0]


def validate_pipeline(
    config: PipelineConfig | list[dict[str, Any]] | dict[str, Any] | list[Step], file: str = "<config>"
) -> PipelineConfig:
    """Validate an in-memory config: a PipelineConfig, a document dict, or a list of steps."""
    lines: dict[int, int] = {}
    if isinstance(config, PipelineConfig):
        source = config.source
        doc = config.model_dump(exclude_none=True, exclude_defaults=False)
        doc["steps"] = [s.model_dump(exclude_none=True) for s in config.steps]
        # Keep each step's line in its file (``line`` is not part of the dump).
        lines = {i: s.line for i, s in enumerate(config.steps) if s.line is not None}
        file = str(source) if source is not None else file
        default = config.name
    else:
        if isinstance(config, list | tuple):
            config = {"steps": [s.model_dump(exclude_none=True) if isinstance(s, Step) else s for s in config]}
        if not isinstance(config, dict):
            raise ConfigValidationError(
                [
                    Problem(
                        file,
                        None,
                        None,
                        f"a config must be a list of steps or a pipeline mapping, got {type(config).__name__}",
                    )
                ]
            )
        doc = config
        source = None
        default = "pipeline"
    pipeline, problems = validate_raw(RawPipeline(file, doc, lines=lines, default_name=default))
    if problems:
        raise ConfigValidationError(problems)
    assert pipeline is not None
    return pipeline.with_source(source)
