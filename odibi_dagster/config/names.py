"""How user-chosen names (pipelines, steps, datasets, checks, triggers) become Dagster names.

Dagster names (ops, outputs, jobs, checks, groups, resource keys) may hold only
``[A-Za-z0-9_]``. One mapping is used everywhere so validation can see the
collisions the translation would make:

* ASCII characters outside that set become ``_`` (``sales-daily`` -> ``sales_daily``);
  two names that collide that way are rejected at validation.
* A name holding any non-ASCII character (``名前``, ``café``, a U+202E override) keeps
  its ASCII-folded letters and gains a hash of the whole original name
  (``café`` -> ``cafe_u1c0a7e5e``), so distinct names stay distinct and the result
  is the same in every process and release.
"""

from __future__ import annotations

import hashlib
import keyword
import re
import unicodedata

_NOT_NAME_CHAR = re.compile(r"[^A-Za-z0-9_]")
# Characters Dagster's AssetKey.to_python_identifier turns into '_' itself (check output names).
_ASSET_KEY_PART = re.compile(r"^[A-Za-z0-9_.-]+$")


def dagster_name(text: str) -> str:
    """A valid Dagster (and Python) name for ``text``: stable, and distinct for distinct non-ASCII names."""
    if text.isascii():
        out = _NOT_NAME_CHAR.sub("_", text)
    else:
        folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        out = f"{_NOT_NAME_CHAR.sub('_', folded).strip('_') or 'u'}_u{digest}"
    if not out or out[0].isdigit():
        out = f"_{out}"
    from dagster._core.definitions.utils import DISALLOWED_NAMES  # here: configs load without Dagster

    while out in DISALLOWED_NAMES or keyword.iskeyword(out):  # 'input', 'type', 'config', 'from', ...
        out = f"{out}_"
    return out


def asset_key_part(text: str) -> str:
    """A component of an asset key for ``text``.

    Kept as written when Dagster can derive op and check names from it (letters,
    digits, ``_``, ``-``, ``.``), so keys read like the config; otherwise :func:`dagster_name`.
    """
    return text if _ASSET_KEY_PART.match(text) else dagster_name(text)
