"""Keep secrets out of metadata, logs, tracker JSON and stories.

Two layers: :class:`Redactor` replaces every occurrence of the known secret values
(resolved from ``{{ env.NAME }}`` / ``{"secret": "NAME"}``), and :func:`redact_url`
scrubs credentials that have a recognisable shape (URL passwords, ``password=``,
``AccountKey=``, SAS signatures) even when nobody declared them as secrets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

__all__ = ["MASK", "SECRET_KEYS", "Redactor", "redact_params", "redact_url"]

MASK = "***"
_MIN_SECRET_LEN = 4  # shorter values ("1", "true") would mask half the story

# user:password@ in any scheme://... (the user is kept: in abfs://container@account it is
# the container name, which is no secret).
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@?#]*):(?P<pw>[^@\s/?#]*)@")
# Connection-string parts whose value runs to the next ';' (a SAS token contains '&').
_CONN_PART = re.compile(r"(?i)(?P<key>\b(?:SharedAccessSignature|AccountKey)\s*=)(?P<val>[^;]*)")
# Names of params and key=value parts whose value is a credential.
SECRET_KEYS = (
    "password",
    "passwd",
    "pwd",
    "sig",
    "client_secret",
    "secret",
    "access_token",
    "refresh_token",
    "token",
    "sas_token",
    "api_key",
    "apikey",
    "account_key",
)
# key=value in query strings, DSNs and ODBC/JDBC strings; the value ends at ; & or whitespace.
_KEY_VALUE = re.compile(
    r"(?i)(?P<key>(?<![A-Za-z0-9_])(?:" + "|".join(SECRET_KEYS) + r")\s*=\s*)(?P<val>\{[^}]*\}|[^;&\s]*)"
)


def redact_url(url: str) -> str:
    """``url`` (or a connection string, or any text holding one) with credentials masked.

    Masks the password of ``scheme://user:password@host`` and the values of
    ``password=``, ``pwd=``, ``AccountKey=``, ``SharedAccessSignature=``, ``sig=``,
    ``token=``, ``secret=`` and similar query or connection-string parts.
    """
    if not url:
        return url
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:{MASK}@", url)
    text = _CONN_PART.sub(lambda m: f"{m.group('key')}{MASK}" if m.group("val") else m.group(0), text)
    return _KEY_VALUE.sub(
        lambda m: f"{m.group('key')}{MASK}" if m.group("val") and m.group("val") != MASK else m.group(0),
        text,
    )


def redact_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with inline credentials masked: values of :data:`SECRET_KEYS` keys (at any
    depth; ``{"secret": NAME}`` references are kept, they hold no secret) and credential-shaped
    parts of every string (see :func:`redact_url`)."""

    def walk(key: str, value: Any) -> Any:
        if isinstance(value, Mapping):
            if set(value) == {"secret"}:
                return dict(value)
            return {k: walk(str(k), v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(key, v) for v in value]
        if isinstance(value, str):
            return MASK if key.lower() in SECRET_KEYS and value else redact_url(value)
        return value

    return {k: walk(str(k), v) for k, v in params.items()}


class Redactor:
    """Replaces known secret values with ``***`` throughout nested structures.

    Secrets shorter than 4 characters are ignored. URL-encoded forms of each secret are
    masked too, since secrets often travel inside connection URLs. Strings additionally
    go through :func:`redact_url` unless ``scrub_patterns=False``.
    """

    def __init__(self, secret_values: Iterable[str] = (), *, scrub_patterns: bool = True) -> None:
        self._scrub = scrub_patterns
        self._variants: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*secret_values)

    @property
    def has_secrets(self) -> bool:
        """Whether any secret value is registered."""
        return self._pattern is not None

    def add(self, *secret_values: str) -> None:
        """Register more secret values (shorter than 4 characters: ignored)."""
        for secret in secret_values:
            if isinstance(secret, str) and len(secret) >= _MIN_SECRET_LEN:
                self._variants.update({secret, quote(secret, safe=""), quote_plus(secret)})
        if self._variants:
            # Longest first, so a secret containing another one is masked whole.
            ordered = sorted(self._variants, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(s) for s in ordered))

    def redact_text(self, text: str) -> str:
        """``text`` with every secret (and credential-shaped part) masked."""
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        if self._scrub:
            text = redact_url(text)
        return text

    def redact(self, obj: Any) -> Any:
        """A copy of ``obj`` with secrets masked in every string, key and value.

        Walks dicts, lists, tuples and sets; other values are returned unchanged
        (exceptions are turned into their redacted message).
        """
        if isinstance(obj, str):
            return self.redact_text(obj)
        if isinstance(obj, Mapping):
            return {self.redact(k): self.redact(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.redact(v) for v in obj]
        if isinstance(obj, tuple):
            items = [self.redact(v) for v in obj]
            # Named tuples keep their type.
            return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
        if isinstance(obj, set | frozenset):
            return type(obj)(self.redact(v) for v in obj)
        if isinstance(obj, BaseException):
            return self.redact_text(str(obj))
        return obj

    __call__ = redact
