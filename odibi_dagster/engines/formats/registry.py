"""The one registry of readers and writers, keyed by format (and engine).

Each format family's module registers its engine's reader and writer here
(:mod:`~odibi_dagster.engines.formats.csv` ... for pandas+DuckDB,
:mod:`odibi_dagster.engines.spark.io` for Spark). An engine reads and writes through
:func:`read` and :func:`write`: the format is resolved with the one format table
(:mod:`~odibi_dagster.engines.formats.table`), implied options are added (``tsv``: tab), and
the registered function is called. A format the table does not know fails with the same
error on every engine; one the engine has no reader or writer for names the ones it has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from odibi_dagster.engines.base import WriteInfo
from odibi_dagster.engines.formats.table import FORMATS, directory_format, implied_params, resolve_format

__all__ = ["FormatIO", "accepted_params", "format_io", "read", "register", "resolve", "supported_formats", "write"]

#: ``reader(handle, source, **params) -> frame``: ``handle`` is the engine's connection or context.
Reader = Callable[..., Any]
#: ``writer(handle, frame, target, **params) -> WriteInfo``.
Writer = Callable[..., WriteInfo]
DirectoryProbe = Callable[[str], str | None]


@dataclass(frozen=True)
class FormatIO:
    """One engine's reader and writer of one format, and the params each accepts (checked
    before a run; None: not checked there)."""

    reader: Reader | None = None
    writer: Writer | None = None
    reader_params: frozenset[str] | None = None
    writer_params: frozenset[str] | None = None


_KNOWN = frozenset(spec.name for spec in FORMATS)
_REGISTRY: dict[str, dict[str, FormatIO]] = {}  # format -> engine -> its reader and writer


def register(engine: str, formats: str | Iterable[str], io: FormatIO) -> None:
    """Register ``engine``'s reader and writer of each of ``formats`` (canonical names)."""
    for fmt in [formats] if isinstance(formats, str) else formats:
        if fmt not in _KNOWN:
            raise ValueError(f"{fmt!r} is not in the format table")
        _REGISTRY.setdefault(fmt, {})[engine] = io


def supported_formats(engine: str, kind: str | None = None) -> list[str]:
    """The formats ``engine`` reads or writes (``kind`` ``reader`` / ``writer``: only those)."""
    out = []
    for fmt, by_engine in _REGISTRY.items():
        io = by_engine.get(engine)
        if io is not None and (kind is None or getattr(io, kind) is not None):
            out.append(fmt)
    return sorted(out)


def format_io(engine: str, fmt: str, kind: str | None = None) -> FormatIO:
    """``engine``'s reader and writer of ``fmt``; ValueError naming the formats it has."""
    io = _REGISTRY.get(fmt, {}).get(engine)
    if io is None or (kind is not None and getattr(io, kind) is None):
        what = f"{kind}s" if kind else "formats"
        raise ValueError(
            f"format {fmt!r} is not supported by the {engine} engine; "
            f"its {what}: {', '.join(supported_formats(engine, kind))}"
        )
    return io


def resolve(engine: str, source: str, params: Mapping[str, Any], directory: DirectoryProbe = directory_format) -> str:
    """The canonical format of ``source`` (see :func:`table.resolve_format`), which ``engine`` must have."""
    fmt = resolve_format(source, params, directory)
    format_io(engine, fmt)
    return fmt


def read(
    engine: str, handle: Any, source: str, params: Mapping[str, Any], directory: DirectoryProbe = directory_format
) -> Any:
    """Read ``source`` with ``engine``'s reader of its format."""
    fmt = resolve_format(source, params, directory)
    reader = format_io(engine, fmt, "reader").reader
    assert reader is not None
    return reader(handle, source, **{**implied_params(source, params), **params})


def write(
    engine: str,
    handle: Any,
    frame: Any,
    target: str,
    params: Mapping[str, Any],
    directory: DirectoryProbe = directory_format,
) -> WriteInfo:
    """Write ``frame`` to ``target`` with ``engine``'s writer of its format."""
    fmt = resolve_format(target, params, directory)
    writer = format_io(engine, fmt, "writer").writer
    assert writer is not None
    return writer(handle, frame, target, **{**implied_params(target, params), **params})


def accepted_params(engine: str, fmt: str, kind: str) -> frozenset[str] | None:
    """The params ``engine``'s ``kind`` (``reader`` / ``writer``) of ``fmt`` accepts, for
    validation; None when they are not checked before a run."""
    io = _REGISTRY.get(fmt, {}).get(engine)
    if io is None:
        return None
    return io.reader_params if kind == "reader" else io.writer_params
