"""File-watch sensor tick over a big folder: odibi_dagster vs a minimal hand-written sensor.

    python bench/file_watch.py --files 10000 --new 10 --repeat 3

A folder holds ``--files`` small CSV files, all handled by earlier ticks; ``--new`` files
arrive; one tick is timed. Each variant runs in a fresh process against a real, SQLite-backed
``DagsterInstance`` in a temporary DAGSTER_HOME, and evaluates the sensor the way the daemon's
code server does: ``sensor_def.evaluate_tick(dg.build_sensor_context(instance=..., cursor=...,
definitions=...))`` (run requests resolved against the job, partitions checked).

* **odibi, dynamic**: ``partitions: {type: dynamic}`` and a file watch with
  ``dynamic_partitions: true`` (one partition per file). The earlier state is made by the
  sensor itself: its first tick over the ``--files`` files, whose dynamic partitions are added
  to the instance as the daemon would, and whose cursor is kept.
* **odibi, unpartitioned**: a file watch on an unpartitioned pipeline (one run at a time). The
  earlier state is the cursor after every file was handled (``FileWatchCursor.advance`` over
  the folder, what the sensor's own ticks converge to; starting one run per tick, 10,000 ticks
  would take too long here).
* **hand, dynamic / unpartitioned**: a minimal hand-written sensor: ``os.scandir`` the folder,
  a cursor holding the newest change time (``max(mtime, ctime)``) handled, one ``RunRequest``
  per newer file with the file as run config, and (dynamic) one ``build_add_request`` for
  their partitions.

The tick is the median of ``--ticks`` evaluations of the same state after one untimed one (a
code server's sensor is warm; an evaluation changes nothing until the daemon applies it).
Also prints the size of odibi's cursor for the unpartitioned pipeline with ``--files`` files
waiting (the first tick over the folder while a run of the sensor is in flight).
Targets (issue 15): tick <= 2x, that cursor < 64 KB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _harness import paired, print_table, run_child  # noqa: E402

DATA = HERE / "data"
TICK_TARGET, CURSOR_TARGET_KB = 2.0, 64
MODES = ("dynamic", "unpartitioned")
SIDES = ("odibi", "hand")


def make_files(folder: Path, start: int, count: int, age_s: float) -> None:
    """``count`` small CSV files ``f<start..>.csv``, last modified ``age_s`` seconds ago (settled)."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.time() - age_s
    for i in range(start, start + count):
        path = folder / f"sales_{i:06d}.csv"
        path.write_text(f"id,amount\n{i},{i % 100}.5\n")
        os.utime(path, (stamp, stamp))


def odibi_defs(root: Path, folder: Path, mode: str):
    from odibi_dagster import build_definitions

    doc: dict[str, Any] = {
        "pipeline": f"watch_{mode}",
        "sensors": [
            {
                "type": "file_watch",
                "path": str(folder),
                "pattern": "*.csv",
                "step": "ingest_sales",
                "dynamic_partitions": mode == "dynamic",
            }
        ],
        "steps": [
            {
                "layer": "ingest",
                "name": "ingest_sales",
                "value": str(folder / "sales_000000.csv"),
                "outputs": {"data": "raw"},
            },
            {
                "layer": "transform",
                "name": "clean",
                "type": "sql",
                "value": "SELECT id, amount FROM raw WHERE amount > 0",
                "inputs": {"raw": "raw"},
                "outputs": {"data": "clean"},
            },
            {
                "layer": "store",
                "name": "save",
                "value": str(root / "out" / "clean.parquet"),
                "inputs": {"data": "clean"},
            },
        ],
    }
    if mode == "dynamic":
        doc["partitions"] = {"type": "dynamic"}
    cfg = root / f"{doc['pipeline']}.json"
    cfg.write_text(json.dumps(doc))
    defs = build_definitions(cfg, base_dir=root / "work")
    (sensor,) = defs.get_repository_def().sensor_defs
    return defs, sensor


def hand_defs(folder: Path, mode: str):
    """A minimal hand-written file sensor and the job it starts (same shape as odibi's)."""
    import dagster as dg

    pdef = dg.DynamicPartitionsDefinition(name="hand_files") if mode == "dynamic" else None

    @dg.asset(partitions_def=pdef, config_schema={"source": str})
    def raw(context) -> None:
        return None

    job = dg.define_asset_job("hand_watch", selection=[raw], partitions_def=pdef)

    @dg.sensor(job=job, minimum_interval_seconds=30)
    def hand_file_sensor(context):
        since = int(context.cursor or 0)
        new = []
        for entry in os.scandir(folder):
            if entry.name.endswith(".csv"):
                st = entry.stat()
                changed = max(st.st_mtime_ns, st.st_ctime_ns)
                if changed > since:
                    new.append((changed, entry.name, entry.path))
        new.sort()
        requests = [
            dg.RunRequest(
                run_key=f"{name}|{changed}",
                partition_key=name if pdef is not None else None,
                run_config={"ops": {"raw": {"config": {"source": path}}}},
            )
            for changed, name, path in new
        ]
        return dg.SensorResult(
            run_requests=requests,
            cursor=str(max([since, *(c for c, _, _ in new)])),
            dynamic_partitions_requests=[pdef.build_add_request([n for _, n, _ in new])] if pdef and new else None,
        )

    return dg.Definitions(assets=[raw], jobs=[job], sensors=[hand_file_sensor]), hand_file_sensor


def _evaluate(defs, sensor, instance, cursor: str | None):
    import dagster as dg

    # As the code server does: the instance's ref (partition lookups go through it), entered.
    with dg.build_sensor_context(
        instance=instance, instance_ref=instance.get_ref(), cursor=cursor, definitions=defs, sensor_name=sensor.name
    ) as ctx:
        return sensor.evaluate_tick(ctx)


def _apply(instance, data) -> None:
    """What the daemon does with a tick's dynamic partition requests."""
    for request in data.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))


def child(side: str, mode: str, files: int, new: int, ticks: int) -> dict[str, Any]:
    import dagster as dg

    root = Path(tempfile.mkdtemp(prefix=f"file_watch_{side}_{mode}_", dir=DATA))
    folder = root / "incoming"
    try:
        make_files(folder, 0, files, age_s=3600)
        (root / "dagster_home").mkdir()
        with dg.DagsterInstance.local_temp(str(root / "dagster_home")) as instance:
            defs, sensor = odibi_defs(root, folder, mode) if side == "odibi" else hand_defs(folder, mode)
            cursor = _prior_cursor(side, mode, defs, sensor, instance, folder)
            make_files(folder, files, new, age_s=120)
            _evaluate(defs, sensor, instance, cursor)  # untimed: a code server's sensor is warm
            times, data = [], None
            for _ in range(ticks):
                started = time.perf_counter()
                data = _evaluate(defs, sensor, instance, cursor)
                times.append(time.perf_counter() - started)
            assert data is not None and len(data.run_requests or []) == (
                new if side == "hand" or mode == "dynamic" else 1
            ), len(data.run_requests or [])
            out = {"tick_ms": statistics.median(times) * 1000, "requests": len(data.run_requests or [])}
            out["cursor_kb"] = len((data.cursor or "").encode()) / 1024
            if side == "odibi" and mode == "unpartitioned":
                out["waiting_cursor_kb"] = _waiting_cursor_kb(defs, sensor, instance)
            return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _prior_cursor(side: str, mode: str, defs, sensor, instance, folder: Path) -> str | None:
    """The cursor (and instance state) after every file now in ``folder`` was handled."""
    if side == "odibi" and mode == "unpartitioned":
        from odibi_dagster.triggers.sensors import FileWatchCursor, scan_files

        _, cursor = FileWatchCursor().advance(scan_files(str(folder), "*.csv"), time.time_ns(), 0)
        return cursor.dumps()
    data = _evaluate(defs, sensor, instance, None)  # the first tick: every file is new
    _apply(instance, data)
    return data.cursor


def _waiting_cursor_kb(defs, sensor, instance) -> float:
    """odibi's cursor after a tick over the folder while one of the sensor's runs is in flight."""
    from odibi_dagster.triggers.sensors import SENSOR_TAG

    job = defs.resolve_job_def(sensor.job_name)
    run = instance.create_run_for_job(job, tags={SENSOR_TAG: sensor.name})  # NOT_STARTED: in flight
    data = _evaluate(defs, sensor, instance, None)
    assert not data.run_requests, "a run is in flight: the sensor must wait"
    instance.delete_run(run.run_id)
    return len((data.cursor or "").encode()) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--new", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ticks", type=int, default=5, help="evaluations per process (median)")
    parser.add_argument("--json", action="store_true", help="also print one JSON line with every figure")
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        side, mode = args.child
        print(json.dumps(child(side, mode, args.files, args.new, args.ticks)))
        return
    DATA.mkdir(parents=True, exist_ok=True)
    common = ["--files", str(args.files), "--new", str(args.new), "--ticks", str(args.ticks)]
    rows: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    for rep in range(args.repeat):
        for mode in MODES:
            row = {}
            for side in SIDES if rep % 2 == 0 else SIDES[::-1]:
                row[side] = run_child(__file__, [side, mode, *common])
            rows[mode].append(row)
            o, h = row["odibi"], row["hand"]
            print(
                f"  {mode:<13} repeat {rep + 1}: tick {o['tick_ms']:.1f} vs {h['tick_ms']:.1f} ms "
                f"({o['tick_ms'] / h['tick_ms']:.2f}x), cursor {o['cursor_kb']:.2f} vs {h['cursor_kb']:.2f} KB",
                flush=True,
            )
    lines, summary = [], {}
    for mode in MODES:
        p = paired(rows[mode], "tick_ms")
        lines.append(
            [
                f"{mode}: tick ms",
                p["odibi"],
                p["hand"],
                f"{p['ratio']:.2f}x",
                "ok" if p["ratio"] <= TICK_TARGET else f"> {TICK_TARGET}x",
            ]
        )
        c = paired(rows[mode], "cursor_kb")
        lines.append([f"{mode}: cursor KB after the tick", c["odibi"], c["hand"], f"{c['ratio']:.2f}x", ""])
        summary[mode] = {"tick_ms": p, "cursor_kb": c}
    waiting = statistics.median(r["odibi"]["waiting_cursor_kb"] for r in rows["unpartitioned"])
    lines.append(
        [
            f"unpartitioned: cursor KB, {args.files:,} files waiting",
            waiting,
            "-",
            "",
            "ok" if waiting < CURSOR_TARGET_KB else f">= {CURSOR_TARGET_KB} KB",
        ]
    )
    summary["waiting_cursor_kb"] = waiting
    print_table(
        f"file-watch tick, {args.files:,} files, {args.new} new (median of {args.repeat}, ratios paired per repeat)",
        ["figure", "odibi", "hand-written", "ratio", "target"],
        lines,
    )
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
