"""Process targets for the multi-writer tracker test (kept small: children import only this)."""

from __future__ import annotations

import time

from odibi_dagster.engines.base import Snapshot
from odibi_dagster.observe.story import StoryGenerator
from odibi_dagster.observe.tracker import RunTracker

ATTEMPTS = 5


def run_step(stories: str, index: int, barrier) -> None:
    """One step in its own process: many rewrites of its own record, racing the others."""
    tracker = RunTracker(stories, "pipe", "run-mp")
    barrier.wait()
    name = f"step_{index:02d}"
    for attempt in range(ATTEMPTS):
        tracker.start_step(name, "transform", inputs={"i": f"ds_{index - 1}"}, outputs={"o": f"ds_{index}"})
        tracker.end_step(name, "success", after=Snapshot(index * 10 + attempt, (("id", "int64"),)))
        # as the runtime does after every step: merge and rewrite story, tracker.json, metrics
        tracker.publish(StoryGenerator(), None, metrics=True)


def read_lineage(stories: str, steps: int, barrier, result) -> None:
    """A reader merging while writers write: every record it sees must be complete JSON."""
    tracker = RunTracker(stories, "pipe", "run-mp")
    barrier.wait()
    merges = 0
    deadline = time.time() + 20
    while time.time() < deadline:
        records = tracker.export_lineage()["steps"]
        # steps() skips unreadable files, so a torn write would show up as a missing step
        # once every step has been seen.
        assert all(r["step_name"].startswith("step_") for r in records)
        merges += 1
        if len(records) == steps and all(r["status"] == "success" and r.get("attempt") == ATTEMPTS for r in records):
            break
    result.put(merges)
