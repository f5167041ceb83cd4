"""Sensors of a pipeline: file watch, polling/incremental, interval, pipeline events.

ODIBI's ScheduleManager file watch and StreamManager FILE_WATCH / INTERVAL /
INCREMENTAL modes become Dagster sensors. The state ODIBI kept in its checkpoint
directory (files seen, the watermark) lives in the sensor's cursor, which Dagster
stores with every tick; run keys make a request idempotent on top of that.

How the data reaches the step:

* file watch: the file's absolute path goes to the named ingest step as its run config
  ``{"ops": {<op>: {"config": {"source": path}}}}`` (``StepRunConfig.source``), so no
  template or quoting is involved; with dynamic partitions the partition key is the file's
  path relative to the watched directory, and a run of that partition without run config
  reads that file (``dynamic_file_source``).
* polling: the new range ``(watermark_start, watermark_end]`` goes to the ingest step as
  ``StepRunConfig.watermark_start / watermark_end`` and to the run's tags; a SQL ingest step
  reads only the new rows with ``{{ watermark_start }}`` / ``{{ watermark_end }}`` (rendered
  as SQL literals).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import json
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import dagster as dg

from odibi_dagster.config.models import FileWatchSensorConfig, PollingSensorConfig, Step
from odibi_dagster.config.names import dagster_name
from odibi_dagster.config.partitions import (
    build_partitions_def,
    file_from_partition_key,
    file_partition_key,
    latest_complete_partition,
    partition_for_path,
)
from odibi_dagster.engines import paths
from odibi_dagster.plan import PipelinePlan

SENSOR_TAG = "odibi/sensor"
FILE_TAG = "odibi/file"
FILE_SIZE_TAG = "odibi/file_size"
FILE_MTIME_TAG = "odibi/file_mtime"
WATERMARK_COLUMN_TAG = "odibi/watermark_column"
WATERMARK_START_TAG = "odibi/watermark_start"
WATERMARK_END_TAG = "odibi/watermark_end"
CURSOR_VERSION = 1
_IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def _status(enabled: bool) -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if enabled else dg.DefaultSensorStatus.STOPPED


def _step_config(plan: PipelinePlan, step: Step, **values: Any) -> dict[str, Any]:
    """Run config handing ``values`` to ``step`` (its ``StepRunConfig``)."""
    return {"ops": {plan.op_name(step): {"config": values}}}


# --------------------------------------------------------------------------- interval mode


def build_interval_sensor(plan: PipelinePlan, job: Any, seconds: int) -> dg.SensorDefinition:
    """ODIBI's interval mode (``schedule: {every: 300s}``): a run every ``seconds``.

    Dagster evaluates the sensor no more often than ``seconds`` (its minimum interval); each
    evaluation requests one run, keyed by a counter kept in the cursor. Time-partitioned
    pipelines run their latest complete partition, static ones every value, dynamic ones
    every known key.
    """
    sch = plan.pipeline.schedule
    pdef = build_partitions_def(plan.pipeline.partitions, plan.name)
    name = dagster_name(sch.name) if sch is not None and sch.name else f"{plan.job_name}_every_{seconds}s"

    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=seconds,
        default_status=_status(sch is not None and sch.enabled),
        description=f"Runs {plan.name} every {seconds}s (ODIBI interval mode)",
    )
    def _interval(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        tick = int(context.cursor or 0) + 1
        cursor = str(tick)
        # The counter orders the runs; the time keeps keys unique if the cursor is ever reset.
        base = f"interval-{tick}@{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"
        if pdef is None:
            return dg.SensorResult([dg.RunRequest(run_key=base)], cursor=cursor)
        if isinstance(pdef, dg.TimeWindowPartitionsDefinition):
            key = latest_complete_partition(pdef, None)
            keys = [key] if key is not None else []
        elif isinstance(pdef, dg.DynamicPartitionsDefinition):
            keys = list(context.instance.get_dynamic_partitions(pdef.name or ""))
        else:
            keys = list(pdef.get_partition_keys())
        if not keys:
            return dg.SensorResult(skip_reason=f"{plan.name} has no partitions yet", cursor=cursor)
        return dg.SensorResult([dg.RunRequest(run_key=f"{base}-{k}", partition_key=k) for k in keys], cursor=cursor)

    return _interval


# --------------------------------------------------------------------------- file watch


@dataclass(frozen=True)
class WatchedFile:
    """One file in a watched directory, as seen by one evaluation."""

    rel: str  # path relative to the watched directory, '/'-separated
    path: str  # absolute path
    size: int
    mtime_ns: int
    changed_ns: int  # max(mtime, ctime): when the file last changed *or arrived* (mv keeps mtime)

    @property
    def signature(self) -> str:
        return f"{self.size}:{self.mtime_ns}"

    @property
    def run_key(self) -> str:
        """Path, size and mtime: a rewritten file is a new run, the same file never twice."""
        key = f"{self.rel}|{self.size}|{self.mtime_ns}"
        if len(key) > 512:  # run keys are tags; keep them bounded however deep the path
            digest = hashlib.sha256(self.rel.encode()).hexdigest()[:16]
            key = f"{self.rel[:400]}…{digest}|{self.size}|{self.mtime_ns}"
        return key


def _matches(rel: str, name: str, pattern: str) -> bool:
    """``pattern`` against the file name, or, when it holds a '/', against the relative path
    one component at a time (``sub/*.csv`` matches ``sub/a.csv``, not ``sub/x/a.csv``)."""
    if "/" not in pattern:
        return fnmatch.fnmatchcase(name, pattern)
    parts, wanted = rel.split("/"), pattern.strip("/").split("/")
    if len(parts) != len(wanted):
        return False
    return all(fnmatch.fnmatchcase(p, w) for p, w in zip(parts, wanted, strict=True))


def _is_hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/"))


def _remote_mtime_ns(info: dict[str, Any]) -> int:
    stamp = info.get("last_modified") or info.get("mtime") or info.get("LastModified") or info.get("created")
    if isinstance(stamp, dt.datetime):
        return int(stamp.timestamp() * 1e9)
    if isinstance(stamp, int | float):
        return int(stamp * 1e9)
    return 0


def _scan_remote(root: str, pattern: str, recursive: bool) -> list[WatchedFile]:
    """Blobs under an ``abfs://``-style ``root``. A blob appears only once fully uploaded,
    so its last-modified time is both when it changed and when it arrived."""
    fs = paths.fs_for(root)
    proto = paths.protocol_of(root)
    base = str(fs._strip_protocol(root)).rstrip("/")
    try:
        found = fs.find(root, maxdepth=None if recursive else 1, detail=True)
    except (FileNotFoundError, NotADirectoryError):
        return []
    out: list[WatchedFile] = []
    for name, info in found.items():
        name = str(name)
        if info.get("type", "file") != "file" or not name.startswith(base + "/"):
            continue
        rel = name[len(base) + 1 :]
        if (_is_hidden(rel) and not pattern.startswith(".")) or not _matches(rel, rel.rsplit("/", 1)[-1], pattern):
            continue
        mtime = _remote_mtime_ns(info)
        out.append(WatchedFile(rel, f"{proto}://{name}", int(info.get("size") or 0), mtime, mtime))
    return out


def scan_files(
    root: str,
    pattern: str = "*",
    recursive: bool = False,
    *,
    follow_symlinks: bool = False,
    skipped: list[str] | None = None,
) -> list[WatchedFile]:
    """Files under ``root`` (a local folder, or a blob-store prefix such as ``abfs://c/in``)
    matching ``pattern``.

    Hidden files and folders (``.name``: the usual in-progress names of rsync, editors and
    Spark) are skipped unless the pattern itself starts with a dot. Files that vanish while
    the folder is read are skipped.

    Symbolic links are followed only while they stay inside ``root``, unless
    ``follow_symlinks``; a folder reached twice (a link loop) is read once. An entry that
    cannot be read (a dangling link, a loop the OS refuses, no permission) is skipped, never
    fatal: each skipped entry adds a line to ``skipped``.
    """
    if paths.is_remote(root):
        return _scan_remote(root, pattern, recursive)
    out: list[WatchedFile] = []
    show_hidden = pattern.startswith(".")
    real_root = os.path.realpath(root)

    def skip(rel: str, why: str) -> None:
        if skipped is not None:
            skipped.append(f"{rel}: {why}")

    def outside(path: str) -> bool:
        real = os.path.realpath(path)
        return real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep)

    try:
        root_st = os.stat(root)
        seen_dirs = {(root_st.st_dev, root_st.st_ino)}
    except OSError:
        return out
    stack: list[tuple[str, str]] = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:  # no permission, too many levels of links, ...
            skip(prefix.rstrip("/") or ".", f"cannot be listed ({exc.strerror or exc})")
            continue
        for entry in entries:
            if entry.name.startswith(".") and not show_hidden:
                continue
            rel = f"{prefix}{entry.name}"
            try:
                link = entry.is_symlink()
                if link and not follow_symlinks and outside(entry.path):
                    skip(
                        rel,
                        f"a link to {os.path.realpath(entry.path)}, outside the watched folder "
                        "(set follow_symlinks: true to follow it)",
                    )
                    continue
                st = entry.stat()
            except FileNotFoundError:
                if entry.is_symlink():
                    skip(rel, "a link to nothing")
                continue
            except OSError as exc:
                skip(rel, f"cannot be read ({exc.strerror or exc})")
                continue
            if stat.S_ISDIR(st.st_mode):
                if recursive:
                    if (st.st_dev, st.st_ino) in seen_dirs:
                        skip(rel, "a folder already watched through another path (a link loop?)")
                        continue
                    seen_dirs.add((st.st_dev, st.st_ino))
                    stack.append((entry.path, f"{rel}/"))
                continue
            if not stat.S_ISREG(st.st_mode) or not _matches(rel, entry.name, pattern):
                continue
            out.append(
                WatchedFile(
                    rel, os.path.abspath(entry.path), st.st_size, st.st_mtime_ns, max(st.st_mtime_ns, st.st_ctime_ns)
                )
            )
    return out


@dataclass
class FileWatchCursor:
    """What a file-watch sensor remembers between evaluations (kept small, see ``advance``).

    ``watermark_ns``: every file that changed or arrived before it has been handled.
    ``done``: files at or after the watermark already requested (relative path -> size:mtime).
    ``pending``: files seen last time that were still being written (relative path -> size:mtime).
    """

    watermark_ns: int = 0
    done: dict[str, str] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> FileWatchCursor:
        """The cursor stored by Dagster (a fresh one when there is none)."""
        if not text:
            return cls()
        data = json.loads(text)
        if data.get("v") != CURSOR_VERSION:
            raise ValueError(f"unknown file-watch cursor version {data.get('v')!r}")
        return cls(int(data["wm"]), dict(data.get("done", {})), dict(data.get("pending", {})))

    def dumps(self) -> str:
        """The cursor as compact JSON (what Dagster stores)."""
        data = {"v": CURSOR_VERSION, "wm": self.watermark_ns, "done": self.done, "pending": self.pending}
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def advance(
        self, files: list[WatchedFile], now_ns: int, settle_ns: int, limit: int | None = None
    ) -> tuple[list[WatchedFile], FileWatchCursor]:
        """The files to start runs for now, oldest change first, and the next cursor.

        A file is a candidate when it changed or arrived at or after the watermark and is not
        in ``done`` with the same size and mtime. A candidate starts a run once it is complete:
        untouched for ``settle_ns``, or seen with the same size and mtime by the previous
        evaluation; otherwise it goes to ``pending``. The watermark then moves up to the
        oldest pending file (or the newest handled one), and ``done`` keeps only files at or
        after it, so the cursor holds the files of the last instant and those still being
        written, never the whole directory's history. With ``limit``, complete files beyond
        the first ``limit`` stay pending and are ready on the next evaluation.
        """
        ready: list[WatchedFile] = []
        handled: dict[str, tuple[str, int]] = {}
        pending: dict[str, tuple[str, int]] = {}
        for f in sorted(files, key=lambda f: (f.changed_ns, f.rel)):
            if f.changed_ns < self.watermark_ns:
                continue
            if self.done.get(f.rel) == f.signature:
                handled[f.rel] = (f.signature, f.changed_ns)
            elif now_ns - f.mtime_ns >= settle_ns or self.pending.get(f.rel) == f.signature:
                if limit is not None and len(ready) >= limit:
                    pending[f.rel] = (f.signature, f.changed_ns)  # complete, but its turn comes later
                    continue
                ready.append(f)
                handled[f.rel] = (f.signature, f.changed_ns)
            else:
                pending[f.rel] = (f.signature, f.changed_ns)
        if pending:
            watermark = min(ct for _, ct in pending.values())
        else:
            watermark = max([self.watermark_ns, *(ct for _, ct in handled.values())])
        done = {rel: sig for rel, (sig, ct) in handled.items() if ct >= watermark}
        return ready, FileWatchCursor(watermark, done, {rel: sig for rel, (sig, _) in pending.items()})


def file_watch_root(plan: PipelinePlan, cfg: FileWatchSensorConfig) -> str:
    """The watched directory: ``path`` resolved against the config's directory (URLs as they are)."""
    resolved = plan.resolve_path(cfg.path)
    return resolved.rstrip("/") if paths.is_remote(resolved) else os.path.abspath(paths.local_path(resolved))


def _is_dynamic_target(plan: PipelinePlan, cfg: FileWatchSensorConfig) -> bool:
    parts = plan.pipeline.partitions
    return cfg.dynamic_partitions or (parts is not None and parts.type == "dynamic")


def dynamic_file_source(plan: PipelinePlan, step: Step, partition_key: str | None) -> str | None:
    """The file a run of dynamic partition ``partition_key`` reads, for the ingest step of a
    file-watch sensor with per-file partitions (None when that does not apply).

    Lets a single file be re-processed from the UI (or a backfill) without run config.
    A key that would leave the watched directory (``../``) is refused.
    """
    if partition_key is None or step.layer != "ingest":
        return None
    for cfg in plan.pipeline.sensors:
        if isinstance(cfg, FileWatchSensorConfig) and cfg.step == step.name and _is_dynamic_target(plan, cfg):
            root = file_watch_root(plan, cfg)
            rel = file_from_partition_key(partition_key)
            if paths.is_remote(root):
                outside = any(part in ("", ".", "..") for part in rel.split("/"))
                path = f"{root}/{rel}"
            else:
                path = os.path.abspath(os.path.join(root, rel))
                outside = os.path.commonpath([root, path]) != root
            if outside:
                raise dg.Failure(
                    description=f"step '{step.name}': partition key {partition_key!r} names a "
                    f"file outside the watched directory {root}"
                )
            return path
    return None


def _mtime_text(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC).isoformat()


_IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def _run_in_flight(instance: dg.DagsterInstance, sensor_name: str) -> str | None:
    """The id of a run this sensor started that has not finished yet, if any."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(tags={SENSOR_TAG: sensor_name}, statuses=_IN_FLIGHT), limit=1
    )
    return records[0].dagster_run.run_id if records else None


def build_file_watch_sensor(plan: PipelinePlan, job: Any, cfg: FileWatchSensorConfig, name: str) -> dg.SensorDefinition:
    """ODIBI's file watch: one run per new or changed file in ``path`` matching ``pattern``.

    Each run hands the file's absolute path to the ingest step ``step`` (run config
    ``source``) and is keyed by the file's path, size and mtime. Unpartitioned pipelines get
    one run at a time (their runs share datasets); partitioned ones run files concurrently. Partitioned pipelines:
    with dynamic partitions every file is its own partition (added by the sensor); time
    partitions take the date written in the file's path (else the latest complete
    partition); static partitions the path component equal to a value (else the file is
    skipped with a warning).
    """
    step = plan.pipeline.step(cfg.step)
    pdef = build_partitions_def(plan.pipeline.partitions, plan.name)
    dynamic = _is_dynamic_target(plan, cfg) and isinstance(pdef, dg.DynamicPartitionsDefinition)
    settle_ns = int(cfg.settle_seconds * 1e9)
    root = file_watch_root(plan, cfg)

    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=cfg.min_interval_seconds,
        default_status=_status(cfg.enabled),
        description=(
            f"Starts {plan.name} for each new or changed file matching '{cfg.pattern}' in "
            f"{root}{' (recursively)' if cfg.recursive else ''}; the file goes to step "
            f"'{step.name}'" + (", one dynamic partition per file" if dynamic else "")
        ),
    )
    def _file_watch(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        if not paths.is_remote(root) and not os.path.isdir(root):  # blob "folders" exist once a blob does
            return dg.SensorResult(skip_reason=f"{root} does not exist (yet)", cursor=context.cursor)
        cursor = FileWatchCursor.parse(context.cursor)
        skipped: list[str] = []
        files = scan_files(root, cfg.pattern, cfg.recursive, follow_symlinks=cfg.follow_symlinks, skipped=skipped)
        for line in skipped:  # one bad entry never stops the sensor: it is skipped, and said so
            context.log.warning(f"odibi: skipped {line}")
        limit = None
        busy: str | None = None
        if pdef is None:
            # Unpartitioned: every run writes the same datasets, so runs of this sensor go one
            # at a time (as ODIBI's file watch does); files wait in the cursor meanwhile.
            busy = _run_in_flight(context.instance, name)
            limit = 0 if busy else 1
        ready, cursor = cursor.advance(files, time.time_ns(), settle_ns, limit)
        requests: list[dg.RunRequest] = []
        new_keys: list[str] = []
        known: set[str] = set()
        if dynamic and ready:
            known = set(context.instance.get_dynamic_partitions(pdef.name or ""))
        for f in ready:
            key: str | None = None
            if dynamic:
                key = file_partition_key(f.rel)
                if key not in known:
                    new_keys.append(key)
                    known.add(key)
            elif pdef is not None:
                key = partition_for_path(pdef, f.rel)
                if key is None and isinstance(pdef, dg.TimeWindowPartitionsDefinition):
                    key = latest_complete_partition(pdef, None)
                if key is None:
                    context.log.warning(f"odibi: {f.rel} names no partition of {plan.name}; no run started")
                    continue
            requests.append(
                dg.RunRequest(
                    run_key=f.run_key,
                    partition_key=key,
                    run_config=_step_config(plan, step, source=f.path),
                    tags={
                        SENSOR_TAG: name,
                        FILE_TAG: f.rel[:1000],
                        FILE_SIZE_TAG: str(f.size),
                        FILE_MTIME_TAG: _mtime_text(f.mtime_ns),
                    },
                )
            )
        if busy:
            waiting = f"; {len(cursor.pending)} file(s) wait for run {busy} to finish" if cursor.pending else ""
        else:
            waiting = f"; {len(cursor.pending)} file(s) still being written" if cursor.pending else ""
        return dg.SensorResult(
            run_requests=requests or None,
            skip_reason=None if requests else f"no new or changed files{waiting}",
            cursor=cursor.dumps(),
            dynamic_partitions_requests=[pdef.build_add_request(new_keys)] if new_keys else None,
        )

    return _file_watch


# --------------------------------------------------------------------------- polling / incremental


def _jsonable(value: Any) -> Any:
    """A watermark as a JSON value that binds back to the same comparison."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, dt.datetime):
        return str(value)  # 'YYYY-MM-DD HH:MM:SS[.ffffff][+HH:MM]': SQL's timestamp literal form
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def polling_source_url(plan: PipelinePlan, cfg: PollingSensorConfig) -> str:
    """The SQLAlchemy URL a polling sensor queries: ``source`` itself or its connect step's URL
    (``{{ env.NAME }}`` filled in, relative SQLite paths against the config's directory)."""
    from odibi_dagster.config.templating import EnvNamespace, render_text

    url = cfg.source if "://" in cfg.source else plan.pipeline.step(cfg.source).value
    resolved = render_text(url, {"env": EnvNamespace()})
    return plan.resolve_path(resolved)


def poll_watermark(url: str, cfg: PollingSensorConfig, after: Any) -> tuple[Any, int]:
    """``(MAX(watermark_column), COUNT(*))`` of the rows past ``after`` (all rows when None)."""
    import sqlalchemy as sa

    column = sa.column(cfg.watermark_column)
    if cfg.table is not None:
        schema, _, table = cfg.table.rpartition(".")
        source: Any = sa.table(table, column, schema=schema or None)
    else:
        # A ':' in the user's query is text, not a bind parameter.
        source = sa.text(cfg.query.replace(":", r"\:")).columns(column).subquery("odibi_poll")
    col = source.c[cfg.watermark_column]
    stmt = sa.select(sa.func.max(col), sa.func.count()).select_from(source)
    if after is not None:
        stmt = stmt.where(col > sa.bindparam("odibi_after", after))
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            high, count = conn.execute(stmt).one()
    finally:
        engine.dispose()
    return _jsonable(high), int(count or 0)


def build_polling_sensor(plan: PipelinePlan, job: Any, cfg: PollingSensorConfig, name: str) -> dg.SensorDefinition:
    """ODIBI's INTERVAL / INCREMENTAL streaming: poll a SQL source past a watermark.

    Each evaluation asks the source for ``MAX(watermark_column)`` over the rows past the
    watermark in the cursor (``start_value`` at first); when there are new rows it starts one
    run for the range ``(watermark_start, watermark_end]`` and moves the cursor to its end.
    The range reaches the ingest step as run config (template variables
    ``watermark_start`` / ``watermark_end``) and run tags. Ranges are processed one at a time,
    in order: no new run is requested while the previous one is queued or running.
    """
    step = plan.pipeline.step(cfg.step)
    pdef = build_partitions_def(plan.pipeline.partitions, plan.name)
    what = f"table {cfg.table}" if cfg.table else "a query"
    where = cfg.source if "://" not in cfg.source else "its source"

    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=cfg.min_interval_seconds,
        default_status=_status(cfg.enabled),
        description=(
            f"Polls {what} on {where} for rows with {cfg.watermark_column} past the last "
            f"watermark and runs {plan.name} for them (step '{step.name}')"
        ),
    )
    def _poll(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        state = json.loads(context.cursor) if context.cursor else None
        start = state["watermark"] if state is not None else _jsonable(cfg.start_value)
        busy = context.instance.get_run_records(
            filters=dg.RunsFilter(tags={SENSOR_TAG: name}, statuses=_IN_PROGRESS), limit=1
        )
        if busy:
            run_id = busy[0].dagster_run.run_id
            return dg.SkipReason(f"run {run_id} for the previous range is still in progress")
        end, count = poll_watermark(polling_source_url(plan, cfg), cfg, start)
        if count == 0 or end is None:
            return dg.SkipReason(f"no rows with {cfg.watermark_column} past {start!r}")
        key: str | None = None
        if isinstance(pdef, dg.TimeWindowPartitionsDefinition):
            key = latest_complete_partition(pdef, None)
        elif pdef is not None:
            return dg.SkipReason("polling sensors need an unpartitioned or time-partitioned pipeline")
        range_text = f"{json.dumps(start)}..{json.dumps(end)}"
        request = dg.RunRequest(
            run_key=f"{cfg.watermark_column}:{range_text}",
            partition_key=key,
            run_config=_step_config(plan, step, watermark_start=start, watermark_end=end),
            tags={
                SENSOR_TAG: name,
                WATERMARK_COLUMN_TAG: cfg.watermark_column,
                WATERMARK_START_TAG: json.dumps(start),
                WATERMARK_END_TAG: json.dumps(end),
                "odibi/new_rows": str(count),
            },
        )
        context.log.info(f"odibi: {count} new row(s) in {range_text}")
        return dg.SensorResult([request], cursor=json.dumps({"v": CURSOR_VERSION, "watermark": end}))

    return _poll


# --------------------------------------------------------------------------- all sensors of a pipeline


def sensor_names(plan: PipelinePlan) -> Iterator[tuple[FileWatchSensorConfig | PollingSensorConfig, str]]:
    """Each configured sensor with its Dagster name (``name`` or ``<pipeline>__<kind>_<step>``)."""
    used: set[str] = set()
    for cfg in plan.pipeline.sensors:
        kind = "watch" if isinstance(cfg, FileWatchSensorConfig) else "poll"
        default = f"{plan.job_name}__{kind}_{dagster_name(cfg.step)}"
        base = dagster_name(cfg.name) if cfg.name else default
        name, n = base, 1
        while name in used:
            n += 1
            name = f"{base}_{n}"
        used.add(name)
        yield cfg, name


def build_sensors(plan: PipelinePlan, job: Any) -> list[Any]:
    """File-watch and polling sensors from ``sensors:``, the interval sensor of
    ``schedule: {every: ...}``, and run-status sensors for pipeline hooks."""
    from odibi_dagster.config.schedules import interval_seconds
    from odibi_dagster.triggers.hooks import build_hook_sensors

    out: list[Any] = []
    for cfg, name in sensor_names(plan):
        if isinstance(cfg, FileWatchSensorConfig):
            out.append(build_file_watch_sensor(plan, job, cfg, name))
        else:
            out.append(build_polling_sensor(plan, job, cfg, name))
    sch = plan.pipeline.schedule
    if sch is not None and sch.every is not None:
        out.append(build_interval_sensor(plan, job, interval_seconds(sch.every)))
    out += build_hook_sensors(plan, job)
    return out
