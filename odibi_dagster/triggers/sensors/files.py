"""The files a file-watch sensor sees: a local folder or a blob-store prefix, read once per tick."""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from odibi_dagster.engines import paths


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


def _matcher(pattern: str) -> Callable[[str, str], bool]:
    """``matches(rel, name)``: ``pattern`` against the file name, or, when it holds a '/', against
    the relative path one component at a time (``sub/*.csv`` matches ``sub/a.csv``, not
    ``sub/x/a.csv``). Compiled once per scan: a tick tests every file of the folder."""
    if "/" not in pattern:
        match = re.compile(fnmatch.translate(pattern)).match
        return lambda rel, name: match(name) is not None
    wanted = [re.compile(fnmatch.translate(w)).match for w in pattern.strip("/").split("/")]

    def matches(rel: str, name: str) -> bool:
        parts = rel.split("/")
        return len(parts) == len(wanted) and all(m(p) is not None for m, p in zip(wanted, parts, strict=True))

    return matches


def _is_hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/"))


def _remote_mtime_ns(info: dict[str, Any]) -> int:
    stamp = info.get("last_modified") or info.get("mtime") or info.get("LastModified") or info.get("created")
    if isinstance(stamp, dt.datetime):
        return int(stamp.timestamp() * 1e9)
    if isinstance(stamp, int | float):
        return int(stamp * 1e9)
    return 0


def _scan_remote(root: str, pattern: str, recursive: bool, changed_since_ns: int) -> list[WatchedFile]:
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
    matches = _matcher(pattern)
    for name, info in found.items():
        name = str(name)
        if info.get("type", "file") != "file" or not name.startswith(base + "/"):
            continue
        rel = name[len(base) + 1 :]
        if (_is_hidden(rel) and not pattern.startswith(".")) or not matches(rel, rel.rsplit("/", 1)[-1]):
            continue
        mtime = _remote_mtime_ns(info)
        if mtime < changed_since_ns:
            continue
        out.append(WatchedFile(rel, f"{proto}://{name}", int(info.get("size") or 0), mtime, mtime))
    return out


def scan_files(
    root: str,
    pattern: str = "*",
    recursive: bool = False,
    *,
    follow_symlinks: bool = False,
    skipped: list[str] | None = None,
    changed_since_ns: int = 0,
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

    Only files that changed or arrived at or after ``changed_since_ns`` are returned (a sensor's
    watermark: the thousands of files handled before it cost a ``stat`` each, nothing more).
    """
    if paths.is_remote(root):
        return _scan_remote(root, pattern, recursive, changed_since_ns)
    return _LocalScan(root, pattern, recursive, follow_symlinks, skipped).files(changed_since_ns)


class _LocalScan:
    """One walk of a local folder (see :func:`scan_files`)."""

    def __init__(
        self, root: str, pattern: str, recursive: bool, follow_symlinks: bool, skipped: list[str] | None
    ) -> None:
        # Absolute once: the entries of an absolute folder are absolute (no abspath per file).
        self.root, self.pattern, self.recursive = os.path.abspath(root), pattern, recursive
        self.matches = _matcher(pattern)
        self.follow_symlinks, self.skipped = follow_symlinks, skipped
        self.show_hidden = pattern.startswith(".")
        self.real_root = os.path.realpath(root)
        self.seen_dirs: set[tuple[int, int]] = set()

    def files(self, changed_since_ns: int = 0) -> list[WatchedFile]:
        out: list[WatchedFile] = []
        try:
            root_st = os.stat(self.root)
        except OSError:
            return out
        self.seen_dirs.add((root_st.st_dev, root_st.st_ino))
        stack: list[tuple[str, str]] = [(self.root, "")]
        while stack:
            folder, prefix = stack.pop()
            for entry in self._entries(folder, prefix):
                if entry.name.startswith(".") and not self.show_hidden:
                    continue
                rel = f"{prefix}{entry.name}"
                st = self._stat(entry, rel)
                if st is None:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if self.recursive and self._first_visit(st, rel):
                        stack.append((entry.path, f"{rel}/"))
                    continue
                changed = max(st.st_mtime_ns, st.st_ctime_ns)
                if changed < changed_since_ns or not stat.S_ISREG(st.st_mode) or not self.matches(rel, entry.name):
                    continue
                out.append(WatchedFile(rel, entry.path, st.st_size, st.st_mtime_ns, changed))
        return out

    def _skip(self, rel: str, why: str) -> None:
        if self.skipped is not None:
            self.skipped.append(f"{rel}: {why}")

    def _outside(self, path: str) -> bool:
        real = os.path.realpath(path)
        return real != self.real_root and not real.startswith(self.real_root.rstrip(os.sep) + os.sep)

    def _entries(self, folder: str, prefix: str) -> list[os.DirEntry[str]]:
        try:
            return list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:  # no permission, too many levels of links, ...
            self._skip(prefix.rstrip("/") or ".", f"cannot be listed ({exc.strerror or exc})")
            return []

    def _stat(self, entry: os.DirEntry[str], rel: str) -> os.stat_result | None:
        """The entry's stat (through links), or None when it is skipped."""
        try:
            if entry.is_symlink() and not self.follow_symlinks and self._outside(entry.path):
                self._skip(
                    rel,
                    f"a link to {os.path.realpath(entry.path)}, outside the watched folder "
                    "(set follow_symlinks: true to follow it)",
                )
                return None
            return entry.stat()
        except FileNotFoundError:
            if entry.is_symlink():
                self._skip(rel, "a link to nothing")
            return None
        except OSError as exc:
            self._skip(rel, f"cannot be read ({exc.strerror or exc})")
            return None

    def _first_visit(self, st: os.stat_result, rel: str) -> bool:
        """Whether a folder is new to this walk (a link loop reaches one folder twice)."""
        if (st.st_dev, st.st_ino) in self.seen_dirs:
            self._skip(rel, "a folder already watched through another path (a link loop?)")
            return False
        self.seen_dirs.add((st.st_dev, st.st_ino))
        return True
