"""Where one run's tracker records and story live: a local folder, or a blob-store prefix.

Steps of a run may execute on machines that share no disk, with the pipeline's work dir on
a blob store (``abfs://...``). Their tracker records must then live there too, or each worker
would keep its own part of the story. The two kinds of storage differ in what makes a write
safe for readers in other processes:

* a local folder: a temp file renamed into place, and a cross-process lock around "merge
  the records, then write the story" (:class:`LocalRunFiles`, the behaviour since the start);
* a blob store: a blob becomes visible only once its upload is complete, so every write is
  one whole upload. Blob stores have no lock, and none is needed: each step writes only its
  own record blobs, and a run's last publish comes after every other step ended (see
  ``StepExecution.update_story``), so the last story written merges every final record.
  Listings are re-read every time, since other machines add records (:class:`RemoteRunFiles`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import time
from collections.abc import Iterator
from pathlib import Path

from odibi_dagster.engines import paths
from odibi_dagster.observe._util import atomic_write_text

__all__ = ["LocalRunFiles", "RemoteRunFiles", "Stamp", "run_files", "stamp_of"]

#: What tells a replaced file from the one read before: inode, size, mtime and ctime (ns).
Stamp = tuple[int, int, int, int]


def stamp_of(st: os.stat_result) -> Stamp:
    """The :data:`Stamp` of a ``stat`` result."""
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class LocalRunFiles:
    """A run folder on a local (or shared network) disk."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def location(self, *parts: str) -> Path:
        """The path of a file under the run folder."""
        return self.root.joinpath(*parts)

    def read_text(self, *parts: str) -> str | None:
        """A file's text, ``None`` when it does not exist (yet) or cannot be read."""
        try:
            return self.location(*parts).read_text(encoding="utf-8")
        except OSError:
            return None

    def write_text(self, text: str, *parts: str) -> Path:
        """Write a file atomically (temp file + rename), not fsynced: run files are rewritten at
        every step start and end and re-merged at every publish, and a forced write to disk
        each time cost more than the rest of a small step's record keeping (about 5 ms here)."""
        return atomic_write_text(self.location(*parts), text, durable=False)

    def texts(self, folder: str, suffix: str) -> list[str]:
        """The texts of the files ``<folder>/*<suffix>`` (unreadable ones skipped)."""
        found = (self.read_text(folder, name) for name, _ in self.listing(folder, suffix))
        return [t for t in found if t is not None]

    def listing(self, folder: str, suffix: str) -> list[tuple[str, Stamp | None]]:
        """``(name, stamp)`` of the files ``<folder>/*<suffix>``. A file is only ever replaced
        whole, so an unchanged stamp (inode, size, modification and change times) means
        unchanged content: a reader may keep what it parsed before."""
        try:
            entries = list(os.scandir(self.location(folder)))
        except OSError:
            return []
        out: list[tuple[str, Stamp | None]] = []
        for entry in entries:
            if not entry.name.endswith(suffix) or entry.name.startswith("."):
                continue
            try:
                out.append((entry.name, stamp_of(entry.stat())))
            except OSError:
                continue
        return out

    def stamp(self, *parts: str) -> Stamp | None:
        """The stamp of one file (see :meth:`listing`), ``None`` when it does not exist."""
        try:
            return stamp_of(self.location(*parts).stat())
        except OSError:
            return None

    def age_seconds(self, *parts: str) -> float | None:
        """Seconds since a file was last written, ``None`` when it does not exist."""
        try:
            return time.time() - self.location(*parts).stat().st_mtime
        except FileNotFoundError:
            return None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """An exclusive, cross-process lock on the run folder (``<run_dir>/.lock``, through
        ``filelock``, Dagster's own dependency, so it works on every OS)."""
        from filelock import FileLock

        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / ".lock")):
            yield


class RemoteRunFiles:
    """A run folder on a blob store (any fsspec URL: ``abfs://``, ``s3://``, ``memory://``...)."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")
        self.fs = paths.fs_for(self.root)

    def location(self, *parts: str) -> str:
        """The URL of a file under the run folder."""
        return paths.join(self.root, *parts)

    def read_text(self, *parts: str) -> str | None:
        """A blob's text, ``None`` when it does not exist (yet)."""
        try:
            return bytes(self.fs.cat_file(self.location(*parts))).decode("utf-8")
        except (FileNotFoundError, OSError):
            return None

    def write_text(self, text: str, *parts: str) -> str:
        """Upload a blob whole: readers see the old one or the new one."""
        url = self.location(*parts)
        self.fs.pipe_file(url, text.encode("utf-8"))
        return url

    def _names(self, folder: str, suffix: str) -> list[str]:
        """The URLs of the blobs ``<folder>/*<suffix>``, listed afresh (other machines add them)."""
        prefix = self.location(folder)
        self.fs.invalidate_cache(prefix)
        try:
            return [str(n) for n in self.fs.ls(prefix, detail=False) if str(n).endswith(suffix)]
        except FileNotFoundError:
            return []

    def listing(self, folder: str, suffix: str) -> list[tuple[str, Stamp | None]]:
        """``(name, None)`` of the blobs ``<folder>/*<suffix>``, listed afresh: a blob has no
        stamp a reader can trust, so every merge reads every record."""
        return [(paths.basename(n), None) for n in self._names(folder, suffix)]

    def stamp(self, *parts: str) -> Stamp | None:
        """Always ``None`` (see :meth:`listing`)."""
        return None

    def texts(self, folder: str, suffix: str) -> list[str]:
        """The texts of the blobs ``<folder>/*<suffix>``, listed afresh (other machines add them)."""
        names = self._names(folder, suffix)
        blobs = self.fs.cat(names, on_error="omit") if names else {}
        return [bytes(b).decode("utf-8") for b in blobs.values()]

    def age_seconds(self, *parts: str) -> float | None:
        """Seconds since a blob was last written, ``None`` when it does not exist."""
        url = self.location(*parts)
        self.fs.invalidate_cache(paths.parent(url))
        try:
            info = self.fs.info(url)
        except FileNotFoundError:
            return None
        # adlfs: last_modified; local and sftp: mtime; s3: LastModified; memory (replaced whole): created
        modified = next((info[k] for k in ("last_modified", "mtime", "LastModified", "created") if info.get(k)), None)
        if isinstance(modified, _dt.datetime):
            return time.time() - modified.timestamp()
        return time.time() - float(modified) if isinstance(modified, int | float) else 0.0

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """No lock on a blob store (see the module's docstring for why none is needed)."""
        yield


def run_files(stories_dir: str | os.PathLike[str], *parts: str) -> LocalRunFiles | RemoteRunFiles:
    """The run folder ``<stories_dir>/<parts...>``: remote when ``stories_dir`` is a URL."""
    root = str(stories_dir)
    if paths.is_remote(root):
        return RemoteRunFiles(paths.join(root, *parts))
    return LocalRunFiles(Path(paths.local_path(root)).joinpath(*parts))
