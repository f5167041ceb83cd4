"""Paths as the JVM sees them, and the Hadoop FileSystem moves that make Spark writes atomic.

Azure URLs become the form hadoop-azure reads (see :mod:`~odibi_dagster.engines.spark.azure`).
Hadoop's FileSystem API works for local paths and ``abfss://`` alike: a write goes to a
hidden sibling (the temp-name pattern of :mod:`odibi_dagster.engines.paths`, so what a
killed write left can be told apart and removed) and is renamed into place.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from odibi_dagster.engines import paths
from odibi_dagster.engines.spark.azure import hadoop_url

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


def qualify(path: str) -> str:
    """The path for the JVM: absolute local paths (it may resolve relative ones against another
    cwd), Azure URLs in hadoop-azure's form, other URIs unchanged."""
    if _URI.match(path) and not _WINDOWS_DRIVE.match(path):
        return hadoop_url(path)
    return os.path.abspath(os.path.expanduser(path))


def uri_of(path: str) -> str:
    """The path as the user wrote it, for metadata: local paths made absolute, URIs unchanged."""
    if _URI.match(path) and not _WINDOWS_DRIVE.match(path):
        return path
    return qualify(path)


def local_path(path: str) -> Path | None:
    """The local path of ``path`` (``file:`` URIs included), None for a remote URI."""
    if path.startswith("file:"):
        return Path(re.sub(r"^file:(//)?", "", path))
    if "://" in path:
        return None
    return Path(path)


def filesystem(spark: SparkSession, path: str) -> tuple[Any, Any]:
    """Hadoop's ``(FileSystem, Path)`` of ``path``."""
    jpath = spark._jvm.org.apache.hadoop.fs.Path(path)
    return jpath.getFileSystem(spark._jsc.hadoopConfiguration()), jpath


def exists(spark: SparkSession, path: str) -> bool:
    """Whether ``path`` exists (local paths without the JVM)."""
    local = local_path(path)
    if local is not None:
        return local.exists()
    fs, jpath = filesystem(spark, path)
    return bool(fs.exists(jpath))


def sibling_tmp(target: str, tag: str) -> str:
    """A hidden temp path beside ``target`` (``.old`` for the backup of a replaced target)."""
    parent, _, name = target.rstrip("/").rpartition("/")
    return f"{parent}/{paths.temp_name(name)}" + (".old" if tag == "old" else "")


def remove_stale_temps(spark: SparkSession, target: str) -> None:
    """Remove what killed writes to ``target`` left beside it (see ``paths.remove_stale_temps``)."""
    parent, _, name = target.rstrip("/").rpartition("/")
    try:
        fs, jparent = filesystem(spark, parent)
        if not fs.exists(jparent):
            return
        now = time.time()
        for status in fs.listStatus(jparent):
            entry = status.getPath()
            if paths.is_stale_temp(entry.getName(), name, status.getModificationTime() / 1000, now):
                fs.delete(entry, True)
    except Exception:
        log.debug("could not list %s for stale temp files", parent, exc_info=True)


def replace(spark: SparkSession, tmp: str, target: str) -> None:
    """Move ``tmp`` to ``target``, replacing what was there (old copy removed last)."""
    fs, t = filesystem(spark, target)
    _, s = filesystem(spark, tmp)
    backup = None
    if fs.exists(t):
        backup = filesystem(spark, sibling_tmp(target, "old"))[1]
        if not fs.rename(t, backup):
            raise OSError(f"could not move {target} aside")
    else:
        fs.mkdirs(t.getParent())
    if not fs.rename(s, t):
        if backup is not None:
            fs.rename(backup, t)
        raise OSError(f"could not move {tmp} to {target}")
    if backup is not None:
        fs.delete(backup, True)


def remove_quietly(spark: SparkSession, path: str) -> None:
    """Delete ``path`` if it exists; errors are only logged (cleanup after a failure)."""
    try:
        fs, jpath = filesystem(spark, path)
        if fs.exists(jpath):
            fs.delete(jpath, True)
    except Exception:
        log.debug("could not remove %s", path)


def move_single_part(spark: SparkSession, tmp: str, target: str) -> None:
    """Move the one part file Spark wrote into the directory ``tmp`` to the file ``target``."""
    fs, tdir = filesystem(spark, tmp)
    parts = [s.getPath() for s in fs.listStatus(tdir) if s.getPath().getName().startswith("part-")]
    if len(parts) != 1:
        raise OSError(f"expected one part file in {tmp}, found {len(parts)}")
    part_tmp = filesystem(spark, sibling_tmp(target, "part"))[1]
    fs.rename(parts[0], part_tmp)
    fs.delete(tdir, True)
    replace(spark, str(part_tmp.toString()), target)
