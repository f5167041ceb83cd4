"""ODIBI's Tracker for Dagster runs: one JSON record per step execution, merged on demand.

Steps of one run may execute in separate processes or on separate machines sharing
the stories folder, so nothing is kept only in memory: ``start_step`` and
``end_step`` each (re)write the step's own file atomically, and ``export_lineage``
merges whatever step files exist into ODIBI's lineage JSON. Two steps never write
the same file, so concurrent writers cannot clobber each other. The stories folder
may be a blob-store URL (a remote work dir, for workers that share no disk): see
:mod:`odibi_dagster.observe.run_files`.

Layout::

    <stories_dir>/<pipeline>/<run_id>/steps/<step>.json   one per step execution
    <stories_dir>/<pipeline>/<run_id>/tracker.json        merged lineage (save())
    <stories_dir>/<pipeline>/<run_id>/story.html          the HTML story (StoryGenerator)
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

from odibi_dagster.engines import paths
from odibi_dagster.engines.base import Snapshot
from odibi_dagster.observe._util import dumps, json_safe, json_safe_records, safe_name
from odibi_dagster.observe.redact import Redactor
from odibi_dagster.observe.run_files import run_files
from odibi_dagster.observe.snapshot import schema_diff

__all__ = ["RunTracker", "run_dir", "snapshot_to_dict", "summarize"]

StepStatus = Literal["success", "failed"]


class StoryWriter(Protocol):
    """What :meth:`RunTracker.publish` needs from a story renderer (``StoryGenerator``)."""

    def render(self, lineage: Mapping[str, Any], graph: Mapping[str, Any] | None = None) -> str: ...


# Keys every step record has, in ODIBI's StepExecution order; ``extra`` cannot override them.
_CORE_KEYS = (
    "step_name",
    "layer",
    "start_time",
    "end_time",
    "duration_ms",
    "status",
    "before_snapshot",
    "after_snapshot",
    "schema_diff",
    "row_delta",
    "error_message",
    "inputs",
    "outputs",
    "sql",
    "explanation",
)
_SOURCE_LAYERS = {"ingest"}
_SINK_LAYERS = {"store", "publish"}


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def run_dir(stories_dir: str | os.PathLike[str], pipeline: str, run_id: str) -> Path:
    """``<stories_dir>/<pipeline>/<run_id>``: where a run's tracker files and story live."""
    return Path(stories_dir) / safe_name(pipeline) / safe_name(run_id)


def snapshot_to_dict(
    snapshot: Snapshot, name: str, *, sample_rows: int = 5, timestamp: str | None = None
) -> dict[str, Any]:
    """ODIBI's snapshot dict: ``{"name", "timestamp", "row_count", "schema", "sample_data"}``.

    ``schema`` is a list of ``[column, type]`` pairs and ``sample_data`` a list of
    JSON-safe records (dates as ISO text, decimals as text, NaN as null).
    """
    sample: list[dict[str, Any]] = []
    if snapshot.sample is not None and sample_rows > 0:
        frame = snapshot.sample.head(sample_rows).copy()
        frame.columns = [str(c) for c in frame.columns]
        for column in frame.columns[frame.dtypes.astype(str) == "float32"]:
            # float32 values widen to float64 noise (99.99 -> 99.98999786...): keep their short form.
            frame[column] = frame[column].astype(str).astype("float64")
        sample = json_safe_records(frame.to_dict(orient="records"))
    return {
        "name": name,
        "timestamp": timestamp or _now().isoformat(),
        "row_count": int(snapshot.row_count),
        "schema": [[str(c), str(t)] for c, t in snapshot.schema],
        "sample_data": sample,
    }


def _parse_time(value: Any) -> float | None:
    try:
        return _dt.datetime.fromisoformat(str(value)).timestamp()
    except (TypeError, ValueError):
        return None


def _rows(snapshot: Mapping[str, Any] | None) -> int | None:
    if not snapshot:
        return None
    value = snapshot.get("row_count")
    return int(value) if isinstance(value, int | float) else None


class RunTracker:
    """Per-run tracker writing ODIBI step records, safe across processes.

    ``stories_dir`` is the root of all stories, a folder or a blob-store URL; records go under
    ``<stories_dir>/<pipeline>/<run_id>/``. Every record passes through ``redactor``
    (when given) before it is written. Paths (``run_dir``, ``story_path``...) are ``Path``s
    in a folder and URLs (text) on a blob store.
    """

    def __init__(
        self,
        stories_dir: str | os.PathLike[str],
        pipeline: str,
        run_id: str,
        redactor: Redactor | None = None,
        *,
        sample_rows: int = 5,
    ) -> None:
        self.pipeline = pipeline
        self.run_id = run_id
        self.redactor = redactor
        self.sample_rows = sample_rows
        self.files = run_files(stories_dir, safe_name(pipeline), safe_name(run_id))
        self.run_dir = self.files.root
        self._clock: dict[str, float] = {}  # precise durations when start and end share a process

    # -- paths -----------------------------------------------------------------------------

    @property
    def tracker_path(self) -> Path | str:
        """``<run_dir>/tracker.json``."""
        return self.files.location("tracker.json")

    @property
    def story_path(self) -> Path | str:
        """``<run_dir>/story.html`` (rendered by the StoryGenerator)."""
        return self.files.location("story.html")

    def step_path(self, step_name: str) -> Path | str:
        """``<run_dir>/steps/<step>.json`` (the step name made file-system safe)."""
        return self.files.location("steps", self._step_file(step_name))

    @staticmethod
    def _step_file(step_name: str) -> str:
        return f"{safe_name(step_name)}.json"

    def published_age(self) -> float | None:
        """Seconds since the run's tracker JSON was last published, ``None`` before the first publish."""
        return self.files.age_seconds("tracker.json")

    # -- records ---------------------------------------------------------------------------

    def read_step(self, step_name: str) -> dict[str, Any] | None:
        """The current record of ``step_name``, ``None`` if it has none yet."""
        return self._parse(self.files.read_text("steps", self._step_file(step_name)))

    @staticmethod
    def _parse(text: str | None) -> dict[str, Any] | None:
        if text is None:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def _write(self, step_name: str, record: dict[str, Any]) -> dict[str, Any]:
        safe = json_safe(record)
        if self.redactor is not None:
            safe = self.redactor.redact(safe)
        self.files.write_text(json.dumps(safe, ensure_ascii=False, indent=2), "steps", self._step_file(step_name))
        return safe

    def start_step(
        self,
        step_name: str,
        layer: str,
        *,
        inputs: Any = None,
        outputs: Any = None,
        sql: str | None = None,
        explanation: str | None = None,
        before: Snapshot | None = None,
        record_name: str | None = None,
        partition_key: str | None = None,
        attempt: int | None = None,
    ) -> dict[str, Any]:
        """Record that ``step_name`` started (status ``running``) with its input snapshot.

        ``record_name`` names the record (default: the step name); a run over a range of
        partitions keeps one record per partition, ``<step>@<partition>``. Starting the same
        record again (a retry) replaces it; ``attempt`` is Dagster's attempt number (without
        it, the previous record's attempt plus one). Returns the record as written.
        """
        record = record_name or step_name
        previous = self.read_step(record) if attempt is None else None
        started = _now()
        self._clock[record] = time.perf_counter()
        fields: dict[str, Any] = {
            "step_name": step_name,
            "layer": layer,
            "start_time": started.isoformat(),
            "end_time": None,
            "duration_ms": None,
            "status": "running",
            "before_snapshot": (
                snapshot_to_dict(before, "before", sample_rows=self.sample_rows, timestamp=started.isoformat())
                if before is not None
                else None
            ),
            "after_snapshot": None,
            "schema_diff": None,
            "row_delta": None,
            "error_message": None,
            "inputs": inputs if inputs is not None else {},
            "outputs": outputs if outputs is not None else {},
            "sql": sql,
            "explanation": explanation,
            "attempt": attempt if attempt is not None else (int(previous.get("attempt", 1)) + 1 if previous else 1),
            "pid": os.getpid(),
        }
        if partition_key is not None:
            fields["partition_key"] = partition_key
        return self._write(record, fields)

    def end_step(
        self,
        step_name: str,
        status: StepStatus | str,
        *,
        after: Snapshot | None = None,
        error_message: str | None = None,
        extra: Mapping[str, Any] | None = None,
        record_name: str | None = None,
    ) -> dict[str, Any]:
        """Record that ``step_name`` finished with ``status`` (``success`` or ``failed``).

        Computes ODIBI's ``schema_diff`` and ``row_delta`` against the before snapshot,
        the end time and ``duration_ms``. ``extra`` adds fields to the record (it cannot
        replace the standard ones); ``record_name`` is the one given to ``start_step``.
        Works from another process than ``start_step``:
        the start time is read back from the step file. Returns the record as written.
        """
        ended = _now()
        key = record_name or step_name
        record = self.read_step(key)
        if record is None:
            # end without start (the starting process died, or start was never called)
            record = {key: None for key in _CORE_KEYS}
            record.update(step_name=step_name, layer=None, start_time=ended.isoformat(), inputs={}, outputs={})
        began = self._clock.pop(key, None)
        if began is not None:
            duration_ms = (time.perf_counter() - began) * 1000.0
        else:
            start = _parse_time(record.get("start_time"))
            duration_ms = max(ended.timestamp() - start, 0.0) * 1000.0 if start is not None else 0.0
        record["end_time"] = ended.isoformat()
        record["duration_ms"] = round(duration_ms, 3)
        record["status"] = status
        record["error_message"] = error_message
        if after is not None:
            record["after_snapshot"] = snapshot_to_dict(
                after, "after", sample_rows=self.sample_rows, timestamp=ended.isoformat()
            )
        before = record.get("before_snapshot")
        current = record.get("after_snapshot")
        if before and current:
            # Snapshots are stored as [col, type] pairs, which schema_diff accepts directly.
            record["schema_diff"] = schema_diff(before.get("schema") or [], current.get("schema") or [])
            before_rows, after_rows = _rows(before), _rows(current)
            if before_rows is not None and after_rows is not None:
                record["row_delta"] = after_rows - before_rows
        for field, value in (extra or {}).items():
            if field not in _CORE_KEYS:
                record[field] = value
        return self._write(key, record)

    def cached_step(
        self,
        step_name: str,
        layer: str | None,
        *,
        inputs: Any = None,
        outputs: Any = None,
        after: Snapshot | None = None,
        record_name: str | None = None,
        partition_key: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Record ODIBI's ``cached`` state: ``step_name`` did not run in this run, its last output
        was still current (see ``odibi-dagster run --changed-only``). ``after`` describes that
        output (rows and schema of its last materialization). Returns the record as written."""
        now = _now().isoformat()
        record: dict[str, Any] = dict.fromkeys(_CORE_KEYS)
        record.update(
            step_name=step_name,
            layer=layer,
            start_time=now,
            end_time=now,
            duration_ms=0.0,
            status="cached",
            after_snapshot=(
                None if after is None else snapshot_to_dict(after, "after", sample_rows=self.sample_rows, timestamp=now)
            ),
            inputs=inputs if inputs is not None else {},
            outputs=outputs if outputs is not None else {},
        )
        if partition_key is not None:
            record["partition_key"] = partition_key
        for field, value in (extra or {}).items():
            if field not in _CORE_KEYS:
                record[field] = value
        return self._write(record_name or step_name, record)

    # -- lineage ---------------------------------------------------------------------------

    def steps(self) -> list[dict[str, Any]]:
        """All step records of the run (from every process), ordered by start time."""
        records = [r for r in map(self._parse, self.files.texts("steps", ".json")) if r is not None]
        records.sort(key=lambda r: (str(r.get("start_time") or ""), str(r.get("step_name") or "")))
        return records

    def export_lineage(self) -> dict[str, Any]:
        """The run's lineage in ODIBI's ``export_lineage`` shape, merged from all step files.

        ``{"pipeline_id", "pipeline", "run_id", "start_time", "steps": [...], "summary":
        {"total_steps", "success_count", "failed_count", "running_count", "cached_count",
        "cache_hits", "cache_misses", "total_duration_ms", "rows_in", "rows_out", ...}}``.
        """
        steps = self.steps()
        starts = [s["start_time"] for s in steps if s.get("start_time")]
        lineage = {
            "pipeline_id": f"{self.pipeline}:{self.run_id}",
            "pipeline": self.pipeline,
            "run_id": self.run_id,
            "start_time": min(starts) if starts else None,
            "steps": steps,
            "summary": summarize(steps),
        }
        return self.redactor.redact(lineage) if self.redactor is not None else lineage

    def save(self) -> Path | str:
        """Write the merged lineage to ``<run_dir>/tracker.json`` atomically and return its path."""
        return self.files.write_text(dumps(self.export_lineage(), indent=2), "tracker.json")

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """An exclusive, cross-process lock on the run folder (``<run_dir>/.lock``).

        Hold it around "merge the step files, then write story/tracker.json" so that
        two steps finishing at once cannot leave an older merge on disk last. Step
        files themselves never need it. Not re-entrant (do not call :meth:`publish`
        while holding it). On a blob store there is no lock (see ``run_files``).
        """
        with self.files.lock():
            yield

    def publish(
        self,
        story: StoryWriter | None = None,
        graph: Mapping[str, Any] | None = None,
        *,
        metrics: bool = False,
        latest_metrics: str | os.PathLike[str] | None = None,
    ) -> dict[str, Any]:
        """Merge the step files and write ``tracker.json``, the story (when ``story`` is given,
        e.g. a ``StoryGenerator``) and ``metrics.json``/``metrics.prom``, all under :meth:`lock`.
        With ``metrics``, ``latest_metrics`` (a ``.prom`` file outside the run folder, e.g. in a
        node_exporter textfile directory) gets the run's Prometheus text too.

        Steps call it while the run goes (see ``StepExecution.update_story`` for when);
        whichever process publishes last writes the freshest merge. Returns the lineage written.
        """
        with self.lock():
            lineage = self.export_lineage()
            if story is not None:
                self.files.write_text(story.render(lineage, graph), "story.html")
            self.files.write_text(dumps(lineage, indent=2), "tracker.json")
            if metrics:
                from odibi_dagster.observe.metrics import metrics_texts

                texts = metrics_texts(lineage)
                for name, text in texts.items():
                    self.files.write_text(text, name)
                if latest_metrics is not None:
                    latest = str(latest_metrics)
                    run_files(paths.parent(latest)).write_text(texts["metrics.prom"], paths.basename(latest))
            return lineage


def summarize(steps: list[Mapping[str, Any]]) -> dict[str, Any]:
    """ODIBI's run summary over step records.

    ``total_duration_ms`` sums step durations (ODIBI's definition); ``wall_clock_ms``
    is first start to last end, which is shorter when steps ran in parallel.
    ``rows_in`` counts rows produced by source steps (layer ``ingest``, or steps without
    inputs), ``rows_out`` rows handed to sink steps (layers ``store``/``publish``, or,
    without those, steps whose outputs no other step reads). Steps reused by a
    ``--changed-only`` run (status ``cached``) are ``cache_hits`` and count in none of the
    times and rows; every other record is a ``cache_miss`` (it ran).
    """
    statuses = [str(s.get("status")) for s in steps]
    durations = [float(s["duration_ms"]) for s in steps if isinstance(s.get("duration_ms"), int | float)]
    # Reused (cached) steps processed no rows in this run.
    ran = [s for s in steps if s.get("status") != "cached"]

    def produced(step: Mapping[str, Any]) -> int:
        return _rows(step.get("after_snapshot")) or 0

    def consumed(step: Mapping[str, Any]) -> int:
        rows = _rows(step.get("after_snapshot"))
        return rows if rows is not None else (_rows(step.get("before_snapshot")) or 0)

    sources = [s for s in ran if s.get("layer") in _SOURCE_LAYERS] or [s for s in ran if not s.get("inputs")]
    sinks = [s for s in ran if s.get("layer") in _SINK_LAYERS]
    if not sinks:
        read = {str(v) for s in steps for v in _values(s.get("inputs"))}
        sinks = [s for s in ran if not any(str(v) in read for v in _values(s.get("outputs")))]

    starts = [t for t in (_parse_time(s.get("start_time")) for s in ran) if t is not None]
    ends = [t for t in (_parse_time(s.get("end_time")) for s in ran) if t is not None]
    return {
        "total_steps": len(steps),
        "success_count": statuses.count("success"),
        "failed_count": statuses.count("failed"),
        "running_count": statuses.count("running"),
        # ODIBI's cache: steps reused without running (hits) and steps that ran (misses).
        "cached_count": statuses.count("cached"),
        "cache_hits": statuses.count("cached"),
        "cache_misses": len(ran),
        "total_duration_ms": round(sum(durations), 3),
        "wall_clock_ms": round((max(ends) - min(starts)) * 1000.0, 3) if starts and ends else 0.0,
        "rows_in": sum(produced(s) for s in sources),
        "rows_out": sum(consumed(s) for s in sinks),
    }


def _values(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        return list(value.values())
    if isinstance(value, list | tuple | set):
        return list(value)
    return [] if value is None else [value]
