"""Keep secrets out of metadata, logs, tracker JSON and stories.

Two layers: :class:`Redactor` replaces every occurrence of the known secret values
(resolved from ``{{ env.NAME }}`` / ``{"secret": "NAME"}``), and :func:`redact_url`
scrubs credentials that have a recognisable shape (URL passwords, ``password=``,
``AccountKey=``, SAS signatures) even when nobody declared them as secrets.

The rule itself lives in :mod:`odibi_dagster.engines.secrets`, the lowest layer that needs
it (an engine masks the JDBC URL in its own errors); this module is where the layers above
take it from, plus :func:`redact_params` for the params shown in the UI.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from odibi_dagster.engines.secrets import MASK, SECRET_KEYS, Redactor, is_secret_ref, redact_url

__all__ = ["MASK", "SECRET_KEYS", "Redactor", "redact_params", "redact_url"]


def redact_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with inline credentials masked: values of :data:`SECRET_KEYS` keys (at any
    depth; ``{"secret": NAME}`` references are kept, they hold no secret) and credential-shaped
    parts of every string (see :func:`redact_url`)."""

    def walk(key: str, value: Any) -> Any:
        if isinstance(value, Mapping):
            if is_secret_ref(value):
                return dict(value)
            return {k: walk(str(k), v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(key, v) for v in value]
        if isinstance(value, str):
            return MASK if key.lower() in SECRET_KEYS and value else redact_url(value)
        return value

    return {k: walk(str(k), v) for k, v in params.items()}
