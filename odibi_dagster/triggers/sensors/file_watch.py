"""ODIBI's file watch as a sensor: one run per new or changed file, its state in the cursor."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from odibi_dagster.config.models import FileWatchSensorConfig, Step
from odibi_dagster.config.partitions import (
    build_partitions_def,
    file_from_partition_key,
    file_partition_key,
    latest_complete_partition,
    partition_for_path,
)
from odibi_dagster.engines import paths
from odibi_dagster.plan import PipelinePlan
from odibi_dagster.triggers.sensors.common import (
    CURSOR_VERSION,
    FILE_MTIME_TAG,
    FILE_SIZE_TAG,
    FILE_TAG,
    SENSOR_TAG,
    configured_sensor,
    run_in_flight,
    step_run_config,
)
from odibi_dagster.triggers.sensors.files import WatchedFile, scan_files


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
    #: Complete files that wait for their turn (``limit``) and are not kept in ``pending``: found
    #: again past the watermark. Only said in the tick's message; not part of the stored cursor.
    waiting: int = field(default=0, compare=False)

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
        the first ``limit`` wait for a later evaluation: the watermark stays at or before the
        oldest of them, and only those complete by the second rule (seen unchanged, not yet
        settled) are kept in ``pending``, so thousands of waiting files never fill the cursor.
        """
        ready: list[WatchedFile] = []
        handled: dict[str, tuple[str, int]] = {}
        pending: dict[str, tuple[str, int]] = {}
        waiting_since: int | None = None  # the oldest change of a complete file that waits its turn
        waiting = 0
        for f in sorted(files, key=lambda f: (f.changed_ns, f.rel)):
            if f.changed_ns < self.watermark_ns:
                continue
            if self.done.get(f.rel) == f.signature:
                handled[f.rel] = (f.signature, f.changed_ns)
                continue
            settled = now_ns - f.mtime_ns >= settle_ns
            if not settled and self.pending.get(f.rel) != f.signature:
                pending[f.rel] = (f.signature, f.changed_ns)  # still being written
            elif limit is not None and len(ready) >= limit:
                waiting_since = f.changed_ns if waiting_since is None else waiting_since
                if not settled:  # complete only because the last evaluation saw it unchanged
                    pending[f.rel] = (f.signature, f.changed_ns)
                else:
                    waiting += 1
            else:
                ready.append(f)
                handled[f.rel] = (f.signature, f.changed_ns)
        if pending or waiting_since is not None:
            watermark = min([ct for _, ct in pending.values()] + [ct for ct in (waiting_since,) if ct is not None])
        else:
            watermark = max([self.watermark_ns, *(ct for _, ct in handled.values())])
        done = {rel: sig for rel, (sig, ct) in handled.items() if ct >= watermark}
        return ready, FileWatchCursor(watermark, done, {rel: sig for rel, (sig, _) in pending.items()}, waiting)


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
    watch = _FileWatch(plan, cfg, name)
    description = (
        f"Starts {plan.name} for each new or changed file matching '{cfg.pattern}' in "
        f"{watch.root}{' (recursively)' if cfg.recursive else ''}; the file goes to step "
        f"'{watch.step.name}'" + (", one dynamic partition per file" if watch.dynamic else "")
    )

    @configured_sensor(cfg, name, job, description)
    def _file_watch(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        return watch.evaluate(context)

    return _file_watch


class _FileWatch:
    """One file-watch sensor: what it watches, and one evaluation of it."""

    def __init__(self, plan: PipelinePlan, cfg: FileWatchSensorConfig, name: str) -> None:
        self.plan, self.cfg, self.name = plan, cfg, name
        self.step = plan.pipeline.step(cfg.step)
        self.pdef = build_partitions_def(plan.pipeline.partitions, plan.name)
        self.dynamic = _is_dynamic_target(plan, cfg) and isinstance(self.pdef, dg.DynamicPartitionsDefinition)
        self.settle_ns = int(cfg.settle_seconds * 1e9)
        self.root = file_watch_root(plan, cfg)

    def evaluate(self, context: dg.SensorEvaluationContext) -> dg.SensorResult:
        root, cfg = self.root, self.cfg
        if not paths.is_remote(root) and not os.path.isdir(root):  # blob "folders" exist once a blob does
            return dg.SensorResult(skip_reason=f"{root} does not exist (yet)", cursor=context.cursor)
        cursor = FileWatchCursor.parse(context.cursor)
        skipped: list[str] = []
        files = scan_files(
            root,
            cfg.pattern,
            cfg.recursive,
            follow_symlinks=cfg.follow_symlinks,
            skipped=skipped,
            changed_since_ns=cursor.watermark_ns,
        )
        for line in skipped:  # one bad entry never stops the sensor: it is skipped, and said so
            context.log.warning(f"odibi: skipped {line}")
        limit = None
        busy: str | None = None
        if self.pdef is None:
            # Unpartitioned: every run writes the same datasets, so runs of this sensor go one
            # at a time (as ODIBI's file watch does); files wait in the cursor meanwhile.
            busy = run_in_flight(context.instance, self.name)
            limit = 0 if busy else 1
        ready, cursor = cursor.advance(files, time.time_ns(), self.settle_ns, limit)
        requests, new_keys = self._requests(context, ready)
        count = len(cursor.pending) + cursor.waiting
        if busy:
            waiting = f"; {count} file(s) wait for run {busy} to finish" if count else ""
        else:
            waiting = f"; {count} file(s) still being written" if count else ""
        return dg.SensorResult(
            run_requests=requests or None,
            skip_reason=None if requests else f"no new or changed files{waiting}",
            cursor=cursor.dumps(),
            dynamic_partitions_requests=[self.pdef.build_add_request(new_keys)] if new_keys else None,
        )

    def _requests(
        self, context: dg.SensorEvaluationContext, ready: list[WatchedFile]
    ) -> tuple[list[dg.RunRequest], list[str]]:
        """A run request per ready file (none for a file that names no partition), and the
        dynamic partitions to add for them."""
        pdef = self.pdef
        requests: list[dg.RunRequest] = []
        new_keys: list[str] = []
        for f in ready:
            key: str | None = None
            if self.dynamic:
                key = file_partition_key(f.rel)
                # Every ready file's partition, known or not: the daemon adds the new ones and
                # records the others as skipped (it asks the instance per key anyway), which
                # spares each tick a read of every partition the folder's history made.
                if key not in new_keys:
                    new_keys.append(key)
            elif pdef is not None:
                key = partition_for_path(pdef, f.rel)
                if key is None and isinstance(pdef, dg.TimeWindowPartitionsDefinition):
                    key = latest_complete_partition(pdef, None)
                if key is None:
                    context.log.warning(f"odibi: {f.rel} names no partition of {self.plan.name}; no run started")
                    continue
            requests.append(self._request(f, key))
        return requests, new_keys

    def _request(self, f: WatchedFile, key: str | None) -> dg.RunRequest:
        return dg.RunRequest(
            run_key=f.run_key,
            partition_key=key,
            run_config=step_run_config(self.plan, self.step, source=f.path),
            tags={
                SENSOR_TAG: self.name,
                FILE_TAG: f.rel[:1000],
                FILE_SIZE_TAG: str(f.size),
                FILE_MTIME_TAG: _mtime_text(f.mtime_ns),
            },
        )
