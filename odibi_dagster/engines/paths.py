"""Path helpers shared by the engines: local vs remote paths, fsspec filesystems, joins,
and the atomic-replace helper every file writer goes through.

Remote paths are anything with an fsspec protocol other than ``file`` (``abfs://``,
``az://``, ``abfss://`` through adlfs, ``memory://`` in tests, ``s3://`` ...).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when a filesystem is first needed, not with the definitions
    import fsspec

AZURE_PROTOCOLS = frozenset({"abfs", "abfss", "az"})

# ``C:\data`` / ``C:/data`` must not be taken for a URL with protocol ``c``.
_PROTOCOL_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]+)://")


def protocol_of(path: str) -> str | None:
    """The URL protocol of ``path`` (``"abfs"``, ``"file"``...), ``None`` for a plain path."""
    m = _PROTOCOL_RE.match(str(path))
    return m.group(1).lower() if m else None


def has_glob(path: str) -> bool:
    """Whether ``path`` is a glob pattern (``*``, ``?`` or ``[``)."""
    return any(ch in str(path) for ch in "*?[")


def is_remote(path: str) -> bool:
    """True when ``path`` lives on a non-local fsspec filesystem (``abfs://``, ``memory://``...)."""
    proto = protocol_of(path)
    return proto is not None and proto not in ("file", "local")


def local_path(path: str) -> str:
    """``path`` without a ``file://`` prefix (a no-op for plain paths)."""
    p = str(path)
    if protocol_of(p) in ("file", "local"):
        return p.split("://", 1)[1]
    return p


def parse_connection_string(conn_str: str) -> dict[str, str]:
    """The ``Key=Value`` parts of an Azure Storage connection string."""
    parts: dict[str, str] = {}
    for item in conn_str.split(";"):
        if "=" in item:
            k, v = item.split("=", 1)
            parts[k.strip()] = v.strip()
    return parts


def storage_options_for(path: str) -> dict[str, Any]:
    """fsspec storage options for ``path`` taken from the environment.

    Azure (``abfs``/``abfss``/``az``): ``AZURE_STORAGE_CONNECTION_STRING`` wins, else
    ``AZURE_STORAGE_ACCOUNT_NAME`` with ``AZURE_STORAGE_ACCOUNT_KEY`` or
    ``AZURE_STORAGE_SAS_TOKEN``. Other protocols get no options (their own env handling).
    """
    if protocol_of(path) not in AZURE_PROTOCOLS:
        return {}
    env = os.environ
    if env.get("AZURE_STORAGE_CONNECTION_STRING"):
        return {"connection_string": env["AZURE_STORAGE_CONNECTION_STRING"]}
    opts: dict[str, Any] = {}
    if env.get("AZURE_STORAGE_ACCOUNT_NAME"):
        opts["account_name"] = env["AZURE_STORAGE_ACCOUNT_NAME"]
    if env.get("AZURE_STORAGE_ACCOUNT_KEY"):
        opts["account_key"] = env["AZURE_STORAGE_ACCOUNT_KEY"]
    elif env.get("AZURE_STORAGE_SAS_TOKEN"):
        opts["sas_token"] = env["AZURE_STORAGE_SAS_TOKEN"]
    return opts


def delta_storage_options(path: str, extra: dict[str, Any] | None = None) -> dict[str, str] | None:
    """Storage options for ``deltalake`` (object_store keys) for ``path``.

    object_store already reads ``AZURE_STORAGE_ACCOUNT_NAME``/``_KEY`` from the
    environment; a connection string (Azurite, typically) is translated here because
    object_store does not understand it.
    """
    opts: dict[str, str] = {}
    if protocol_of(path) in AZURE_PROTOCOLS:
        conn_str = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
        if conn_str:
            parts = parse_connection_string(conn_str)
            if "AccountName" in parts:
                opts["azure_storage_account_name"] = parts["AccountName"]
            if "AccountKey" in parts:
                opts["azure_storage_account_key"] = parts["AccountKey"]
            if "SharedAccessSignature" in parts:
                opts["azure_storage_sas_key"] = parts["SharedAccessSignature"]
            endpoint = parts.get("BlobEndpoint")
            if endpoint:
                opts["azure_storage_endpoint"] = endpoint
                if endpoint.startswith("http://"):
                    opts["allow_http"] = "true"
                # No `use_emulator` here: object_store would then ignore this endpoint and call
                # Azurite's default port; the endpoint already addresses the emulator's account.
    if extra:
        opts.update({k: str(v) for k, v in extra.items()})
    return opts or None


def fs_for(path: str, **storage_options: Any) -> fsspec.AbstractFileSystem:
    """The fsspec filesystem for ``path``; Azure credentials come from the environment.

    fsspec methods accept the full URL, so callers pass ``path`` unchanged to them.
    """
    import fsspec

    proto = protocol_of(path) or "file"
    opts = {**storage_options_for(path), **storage_options}
    if proto in ("file", "local"):
        return fsspec.filesystem("file")
    return fsspec.filesystem(proto, **opts)


def join(base: str, *parts: str) -> str:
    """Join path parts; URLs always use ``/``, local paths use ``os.path.join``."""
    base = str(base)
    if protocol_of(base) is not None:
        out = base.rstrip("/")
        for p in parts:
            p = str(p).strip("/")
            if p:
                out = f"{out}/{p}"
        return out
    return os.path.join(base, *[str(p) for p in parts])


def parent(path: str) -> str:
    """The parent directory of ``path`` (URL-aware)."""
    if protocol_of(path) is not None:
        proto, rest = path.split("://", 1)
        rest = rest.rstrip("/")
        head = rest.rsplit("/", 1)[0] if "/" in rest else ""
        return f"{proto}://{head}"
    return os.path.dirname(os.path.abspath(path))


def basename(path: str) -> str:
    """The last component of ``path`` (URL-aware)."""
    return str(path).rstrip("/").rsplit("/", 1)[-1].rsplit(os.sep, 1)[-1]


def exists(path: str) -> bool:
    """Whether ``path`` exists (local or remote)."""
    if is_remote(path):
        return bool(fs_for(path).exists(path))
    return os.path.exists(local_path(path))


def isdir(path: str) -> bool:
    """Whether ``path`` is a directory (local or remote)."""
    if is_remote(path):
        return bool(fs_for(path).isdir(path))
    return os.path.isdir(local_path(path))


def _fsync_file(path: str) -> None:
    if os.path.isfile(path):
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())


def _fsync_dir(path: str) -> None:
    # Makes the rename itself durable; not supported everywhere (Windows), hence suppress.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


# Temp files beside a target name their writer (host tag and pid), so a later write to the
# same target can tell the leftovers of a killed writer from a write still in progress.
_HOST_TAG = hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:6]
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?:(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-)?[0-9a-f]{12}\.tmp(?:\.part|\.old)?$")
# Leftovers of another host (a shared filesystem) or of releases before the writer was
# named: removed once this old, as no write is expected to take that long.
STALE_TEMP_SECONDS = 24 * 3600


def temp_name(path: str) -> str:
    """A hidden sibling name for a temporary file beside ``path``:
    ``.NAME.<host>-<pid>-<hex>.tmp`` (see :func:`remove_stale_temps`)."""
    return f".{basename(path)}.{_HOST_TAG}-{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp"


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def is_stale_temp(entry: str, target_name: str, mtime: float, now: float) -> bool:
    """Whether ``entry`` (a file name beside the target ``target_name``) is a temp file a
    killed writer of that target left: this host's with a dead pid, else older than
    :data:`STALE_TEMP_SECONDS`. Other files never are."""
    match = _TEMP_RE.match(entry)
    if match is None or match["name"] != target_name:
        return False
    if match["host"] == _HOST_TAG and match["pid"] is not None:
        return int(match["pid"]) != os.getpid() and not pid_alive(int(match["pid"]))
    return now - mtime > STALE_TEMP_SECONDS


def remove_stale_temps(target: str) -> list[str]:
    """Remove what killed writes to the local ``target`` left beside it; return the paths removed.

    Only names of the temp pattern for this very target are touched, and only when their
    writer is gone (see :func:`is_stale_temp`); errors (a file removed meanwhile) are ignored.
    """
    target = os.path.abspath(local_path(target.rstrip("/")))
    directory, name = os.path.split(target)
    removed: list[str] = []
    prefix = f".{name}."
    now = time.time()
    try:
        entries = [e for e in os.scandir(directory) if e.name.startswith(prefix)]
    except OSError:
        return removed
    for entry in entries:
        try:
            mtime = entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if is_stale_temp(entry.name, name, mtime, now):
            _remove(entry.path)
            removed.append(entry.path)
    return removed


# Checks every atomic_output of this context runs before it commits (see commit_guard).
_COMMIT_GUARDS: contextvars.ContextVar[tuple[Callable[[], None], ...]] = contextvars.ContextVar(
    "odibi_commit_guards", default=()
)


@contextlib.contextmanager
def commit_guard(check: Callable[[], None]) -> Iterator[None]:
    """Run ``check`` right before each :func:`atomic_output` inside this block commits.

    If ``check`` raises, that output is abandoned like a failed write: the temp file is
    removed and the previous target stays. Steps reading sources in place use it to refuse
    results computed while a source changed under them.
    """
    token = _COMMIT_GUARDS.set((*_COMMIT_GUARDS.get(), check))
    try:
        yield
    finally:
        _COMMIT_GUARDS.reset(token)


def _before_commit() -> None:
    for check in _COMMIT_GUARDS.get():
        check()


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """Yield a local temporary path; on success it atomically replaces ``path``.

    Local targets: the temp file is a hidden sibling in the same directory (so
    ``os.replace`` is an atomic rename on the same filesystem), fsynced first.
    Remote targets: the temp file is local and is uploaded with ``fs.put`` at the end
    (a blob upload only becomes visible once complete). If the body raises, the temp
    file is removed and the previous ``path`` is left untouched. Parent directories
    are created.
    """
    if is_remote(path):
        tmp_dir = tempfile.mkdtemp(prefix="odibi-")
        tmp = os.path.join(tmp_dir, basename(path) or "data")
        try:
            yield tmp
            _before_commit()
            fs = fs_for(path)
            with contextlib.suppress(Exception):  # blob stores have no real directories
                fs.makedirs(parent(path), exist_ok=True)
            fs.put(tmp, path, recursive=os.path.isdir(tmp))
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        return

    target = os.path.abspath(local_path(path))
    directory = os.path.dirname(target)
    os.makedirs(directory, exist_ok=True)
    remove_stale_temps(target)
    tmp = os.path.join(directory, temp_name(target))
    try:
        yield tmp
        if not os.path.exists(tmp):
            raise FileNotFoundError(f"writer produced no output for {path}")
        _before_commit()
        _fsync_file(tmp)
        os.replace(tmp, target)
        _fsync_dir(directory)
    except BaseException:
        _remove(tmp)
        raise
