"""What loading configs learnt from parsing them, kept on disk between loads.

Every process that loads the definitions reads and validates every config: the code server,
and each run's worker again. Parsing is most of that: about 1 ms per SQL statement with
sqlglot (0.7 s per 1,000 steps, and the import of sqlglot itself), and 4 ms per YAML file
with the walks that find each step's line. Both outcomes depend on nothing but the text
parsed and the library versions, so they are stored in a small SQLite file under the user's
cache folder, keyed by a hash of those (and of the code that reads a parse), much as
dagster-dbt parses a project once into its manifest. Two kinds are kept:

* ``sql``: the tables a rendered statement reads, or its parse error
  (:func:`~odibi_dagster.config.validation.sql.sql_outcome`);
* ``yaml``: a document's value and lines (:func:`~odibi_dagster.config.loaders.yaml_files.read_yaml`).

The cache is best effort: a folder that cannot be written, a locked or damaged file, and
``ODIBI_CACHE_DIR=off`` all mean parsing every time, never a failed load.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from importlib import metadata
from pathlib import Path

CACHE_DIR_ENV = "ODIBI_CACHE_DIR"
_FILE = "load-cache.sqlite"


def cache_dir() -> Path | None:
    """Where the cache lives: ``$ODIBI_CACHE_DIR``, else ``$XDG_CACHE_HOME/odibi_dagster``
    (``~/.cache/odibi_dagster``); None when switched off."""
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured is not None:
        return None if configured.strip().lower() in ("", "off", "0", "false") else Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "odibi_dagster"


# The modules whose code makes the outcomes: their text is part of every key, so an edit to
# them (a checkout of odibi_dagster between releases) is never answered from an older outcome.
_PRODUCERS = ("sql.py", "validation/sql.py", "loaders/yaml_files.py")


@cache
def _versions() -> str:
    """What every outcome depends on besides its text: the parsers' versions and the code that
    turns a parse into an outcome."""
    found = []
    for dist in ("sqlglot", "PyYAML"):
        try:
            found.append(metadata.version(dist))
        except metadata.PackageNotFoundError:
            found.append("?")
    code = hashlib.blake2b(digest_size=16)
    for name in _PRODUCERS:
        code.update((Path(__file__).parent / name).read_bytes())
    return "|".join([*found, code.hexdigest()])


def cache_key(kind: str, *parts: str) -> str:
    """The key of what parsing ``parts`` told, for ``kind`` (``sql``, ``yaml``)."""
    text = "\0".join((_versions(), kind, *parts))
    return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


class LoadCache:
    """Outcomes by key, looked up one at a time; new ones are written together by :meth:`flush`,
    which also closes the file (a load opens it once)."""

    MAX_ROWS = 200_000  # about 30 MB on disk; past it the oldest outcomes go

    def __init__(self, folder: Path | None) -> None:
        self._path = folder / _FILE if folder is not None else None
        self._db: sqlite3.Connection | None = None
        self._new: dict[str, str] = {}

    def _connection(self) -> sqlite3.Connection | None:
        if self._db is None and self._path is not None:
            try:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self._path, timeout=2, check_same_thread=False)
                db.execute("CREATE TABLE IF NOT EXISTS outcome (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                self._db = db
            except (sqlite3.Error, OSError):
                self._path = None  # not writable or damaged: parse every time in this process
        return self._db

    def get(self, key: str) -> str | None:
        """The stored outcome of ``key`` (from :func:`cache_key`), or None."""
        text = self._new.get(key)
        if text is None and (db := self._connection()) is not None:
            try:
                row = db.execute("SELECT value FROM outcome WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error:
                row = None
            text = row[0] if row else None
        return text

    def put(self, key: str, outcome: str) -> None:
        """Remember ``outcome`` (a JSON text) for ``key``; written by :meth:`flush`."""
        if self._path is not None:
            self._new[key] = outcome

    def flush(self) -> None:
        """Write the outcomes learnt since the last flush in one transaction, and close the file."""
        new, self._new = self._new, {}
        db, self._db = self._connection() if new else self._db, None
        if db is None:
            return
        try:
            if new:
                with db:
                    db.executemany("INSERT OR REPLACE INTO outcome (key, value) VALUES (?, ?)", new.items())
                    db.execute(
                        "DELETE FROM outcome WHERE rowid <= (SELECT MAX(rowid) FROM outcome) - ?", (self.MAX_ROWS,)
                    )
        except sqlite3.Error:
            pass  # locked by another loader for too long, or damaged: the next load parses again
        finally:
            db.close()


_current: LoadCache | None = None


def current() -> LoadCache:
    """The cache of this process (opened lazily at the configured folder)."""
    global _current
    if _current is None:
        _current = LoadCache(cache_dir())
    return _current


@contextmanager
def load_cache() -> Iterator[LoadCache]:
    """Use the process's cache for a load; what it learnt is written when the load ends."""
    cache_ = current()
    try:
        yield cache_
    finally:
        cache_.flush()


def reset() -> None:
    """Forget the process's cache (the next use re-reads ``$ODIBI_CACHE_DIR``): for tests."""
    global _current
    _current = None
