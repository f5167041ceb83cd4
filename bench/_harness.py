"""Shared plumbing of the side-by-side benches: fresh child processes, paired ratios, tables.

Every bench runs each variant in a fresh process (``python bench/<name>.py --child ...``) that
prints one JSON line as its last line of output; the parent pairs the two sides of each
repeat, so a noisy moment of the machine hits both sides of a ratio, and reports medians.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: this checkout first on PYTHONPATH, no ambient odibi/Dagster homes."""
    env = {k: v for k, v in os.environ.items() if k not in ("ODIBI_BASE_DIR", "DAGSTER_HOME")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env | (extra or {})


def run_child(
    script: str, args: Sequence[str], timeout: float = 3600, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``python <script> --child <args>`` in a fresh process (``env`` added to its
    environment); its JSON line, plus the whole process's wall time (``proc_s``) and peak RSS
    (``proc_peak_mb``, from ``wait4``)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, script, "--child", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(env),
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    # communicate() reaped the child; its rusage is in RUSAGE_CHILDREN only as a maximum, so
    # the child reports its own peak too (VmHWM) and we keep the wait-time figure as a check.
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"child {' '.join(args)} failed ({proc.returncode}):\n{stderr[-4000:]}")
    lines = [line for line in stdout.strip().splitlines() if line.startswith("{")]
    return {"proc_s": wall, **json.loads(lines[-1])}


def proc_status(pid: int | str = "self") -> dict[str, float]:
    """Current and peak resident memory (MB) and CPU time (s, user + system, all threads) of a
    process, from /proc. CPU time is steadier than wall time on a machine shared with others."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out["rss_mb" if name == "VmRSS" else "peak_mb"] = int(value.split()[0]) / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    out["cpu_s"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    return out


def self_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def process_group(cmd: Sequence[str], log: Path, cwd: Path | None = None) -> Iterator[subprocess.Popen]:
    """A server process in its own process group (loopback only: the caller passes 127.0.0.1),
    stopped as a group (SIGTERM, then SIGKILL) when the block ends."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            list(cmd), cwd=cwd, env=child_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        stop_process_group(proc)


def stop_process_group(
    proc: subprocess.Popen, signals: Sequence[tuple[int, float]] = ((signal.SIGTERM, 15), (signal.SIGKILL, 10))
) -> None:
    """Send each signal in turn to the process group, waiting up to its seconds for the leader to
    exit; then kill what is left of the group (children that outlived the leader)."""
    for sig, wait in signals:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            break


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def paired(rows: Sequence[dict[str, Any]], field: str, a: str = "odibi", b: str = "hand") -> dict[str, float]:
    """Medians of one figure for both sides and the median of the per-repeat ratios a/b."""
    return {
        a: median([r[a][field] for r in rows]),
        b: median([r[b][field] for r in rows]),
        "ratio": median([r[a][field] / r[b][field] for r in rows if r[b][field]]),
    }


def print_table(title: str, header: Sequence[str], lines: Sequence[Sequence[Any]]) -> None:
    """A plain fixed-width table (numbers right-aligned, two decimals unless already text)."""

    def cell(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    cells = [[cell(v) for v in line] for line in lines]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True))))
    for c in cells:
        print("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(c, widths, strict=True))))
