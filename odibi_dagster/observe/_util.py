"""Small helpers shared by the observe modules: atomic writes and JSON-safe values."""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import decimal
import json
import math
import os
import re
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from odibi_dagster.engines.paths import temp_name

_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.\-]")


def safe_name(name: str) -> str:
    """A file-system safe form of ``name`` (step, pipeline or run id).

    Names that had to be changed get a short hash suffix so two different names can
    never map to the same file.
    """
    cleaned = _SAFE_NAME.sub("_", name).strip(".") or "_"
    if cleaned != name:
        import hashlib

        cleaned = f"{cleaned}-{hashlib.sha1(name.encode('utf-8')).hexdigest()[:8]}"
    return cleaned


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (temp file in the same folder + ``os.replace``).

    Readers in other processes see either the old file or the new one, never half of one.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(target.parent / temp_name(str(target)))
    try:
        # 0o666 through open(): the file gets the umask's mode, like every other output.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "w", encoding=encoding, newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        # Never leave temp files behind when the write fails half way.
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


def json_safe(value: Any) -> Any:
    """Convert ``value`` into something ``json.dumps`` accepts without losing its meaning.

    Dates become ISO strings, decimals strings (exact), bytes ``base64:``-prefixed text,
    NaN/NaT/inf ``None``, numpy scalars and arrays plain Python values.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    # pandas and numpy values only exist once something loaded them (a frame's sample):
    # look them up instead of importing them, so code servers never load pandas.
    pd, np = sys.modules.get("pandas"), sys.modules.get("numpy")
    if pd is not None and value is pd.NaT:  # NaT is a datetime too: test it first
        return None
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):  # pd.Timestamp included
        return value.isoformat()
    if isinstance(value, _dt.timedelta):  # pd.Timedelta included
        return str(value)
    if isinstance(value, decimal.Decimal):
        return str(value) if value.is_finite() else None
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(raw).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if np is not None and isinstance(value, np.datetime64 | np.timedelta64):
        import pandas as pd

        # tolist() of a nanosecond datetime64 is a bare int; go through pandas instead.
        if np.isnat(value):
            return None
        return pd.Timestamp(value).isoformat() if isinstance(value, np.datetime64) else str(pd.Timedelta(value))
    # numpy scalars / arrays and pyarrow scalars expose tolist()/item()/as_py().
    for attr in ("as_py", "tolist", "item"):
        fn = getattr(value, attr, None)
        if callable(fn):
            try:
                return json_safe(fn())
            except Exception:
                break
    if pd is not None:
        try:
            if pd.isna(value):
                return None
        except (TypeError, ValueError):
            pass
    return str(value)


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`json_safe` output (never raises on odd values)."""
    return json.dumps(json_safe(value), ensure_ascii=False, **kwargs)
