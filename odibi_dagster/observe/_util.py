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
import struct
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic_core import to_jsonable_python

from odibi_dagster.engines.base import SampleRows
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


def atomic_write_text(
    path: str | os.PathLike[str], text: str, encoding: str = "utf-8", *, durable: bool = True
) -> Path:
    """Write ``text`` to ``path`` atomically (temp file in the same folder + ``os.replace``).

    Readers in other processes see either the old file or the new one, never half of one.
    ``durable``: fsync the temp file before the rename (what survives a power loss); files
    rewritten all the time (a run's tracker records) skip it.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(target.parent / temp_name(str(target)))
    try:
        # 0o666 through open(): the file gets the umask's mode, like every other output.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "w", encoding=encoding, newline="") as fh:
            fh.write(text)
            if durable:
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

    pydantic-core's ``to_jsonable_python`` does the walk: mappings (keys as text), sequences
    and sets as lists, dates ISO, decimals and UUIDs as text, NaN/inf ``None``. The fallback
    covers what it does not know: numpy and pyarrow values, pandas' missing values, memoryviews,
    other mappings. Frame cells go through :func:`json_safe_records` first: pydantic-core renders
    NaT, pandas timestamps, timedeltas, NaN decimals and non-UTF-8 bytes otherwise (or fails).
    """
    return to_jsonable_python(value, inf_nan_mode="null", fallback=_unknown)


def json_safe_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`json_safe` of a frame's ``to_dict(orient="records")`` (a sample).

    Cells of the types pydantic-core knows but renders otherwise keep their own form: NaT
    ``None`` (pydantic-core fails on it), timestamps ``isoformat()`` (nanoseconds, ``+00:00``),
    timedeltas ``str()``, NaN decimals ``None``, bytes that are not UTF-8 ``base64:``-prefixed.
    """
    return json_safe([{str(k): _cell(v) for k, v in record.items()} for record in records])


def sample_records(sample: SampleRows) -> list[dict[str, Any]]:
    """A :class:`SampleRows` as records (column -> value), each value as a pandas sample of the
    same file would give it: a ``float`` (float32) column in its short form (1.1, not
    1.100000023841858), like ``snapshot_to_dict`` keeps a pandas float32 column."""
    floats = [i for i, t in enumerate(sample.types) if t == "float"]
    records = []
    for row in sample.rows:
        values = list(row)
        for i in floats:
            values[i] = _short_float32(values[i])
        records.append(dict(zip(sample.columns, values, strict=True)))
    return records


def _short_float32(value: Any) -> Any:
    """The shortest decimal form of a float32 value (what numpy prints), as a float."""
    if not isinstance(value, float) or math.isnan(value) or math.isinf(value):
        return value
    for digits in range(1, 10):
        short = float(f"{value:.{digits}g}")
        if struct.unpack("f", struct.pack("f", short))[0] == value:
            return short
    return value


def _cell(value: Any) -> Any:
    pd = sys.modules.get("pandas")  # loaded once a frame exists: code servers never import it
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
    return value


def _unknown(value: Any) -> Any:
    """``to_jsonable_python``'s fallback: values of types pydantic-core does not serialise."""
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.datetime64 | np.timedelta64):
        import pandas as pd

        # tolist() of a nanosecond datetime64 is a bare int; go through pandas instead.
        if np.isnat(value):
            return None
        return _cell(pd.Timestamp(value) if isinstance(value, np.datetime64) else pd.Timedelta(value))
    if isinstance(value, memoryview):
        return _cell(value)
    if isinstance(value, Mapping):  # a mapping that is not a dict
        return {str(k): v for k, v in value.items()}
    # numpy scalars / arrays and pyarrow scalars expose tolist()/item()/as_py().
    for attr in ("as_py", "tolist", "item"):
        fn = getattr(value, attr, None)
        if callable(fn):
            try:
                result = fn()
            except Exception:
                break
            return [_cell(v) for v in result] if isinstance(result, list) else _cell(result)
    pd = sys.modules.get("pandas")
    if pd is not None:
        try:
            if pd.isna(value):
                return None
        except (TypeError, ValueError):
            pass
    return str(value)


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`json_safe` output."""
    return json.dumps(json_safe(value), ensure_ascii=False, **kwargs)
