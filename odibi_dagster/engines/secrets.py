"""Secrets: where their values come from, and the one rule that keeps them out of text.

:class:`SecretResolver` is the only place a secret is looked up: ``{"secret": NAME}`` params
(at any depth), ODIBI's ``context.get_secret(NAME)`` on both engines, and the step runtime.
A name is looked up in the configured store (a mapping or a callable), then as the
environment variable ``NAME``, then ``NAME`` in upper case. Every value handed out is
remembered by the resolver's :class:`Redactor`.

The masking rule (:class:`Redactor`, :func:`redact_url`) lives here, in the lowest layer that
needs it: an engine's errors can quote a JDBC URL with its password, and an engine is also
used outside odibi's runtime (in a hand-written asset), where nothing else would mask them.
:mod:`odibi_dagster.observe.redact` uses the same rule for metadata, logs, tracker files and
stories.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

__all__ = [
    "MASK",
    "SECRET_KEYS",
    "Redactor",
    "SecretNotFoundError",
    "SecretResolver",
    "SecretSource",
    "is_secret_ref",
    "redact_url",
]

#: A secret store: a mapping, or a callable ``name -> value | None`` (it may raise KeyError).
SecretSource = Mapping[str, str] | Callable[[str], str | None]

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


class Redactor:
    """Replaces known secret values with ``***`` throughout nested structures.

    Secrets shorter than 4 characters are ignored. URL-encoded forms of each secret are
    masked too, since secrets often travel inside connection URLs. Strings additionally
    go through :func:`redact_url` unless ``scrub_patterns=False``.
    """

    def __init__(self, secret_values: Iterable[str | None] = (), *, scrub_patterns: bool = True) -> None:
        self._scrub = scrub_patterns
        self._variants: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*secret_values)

    @property
    def has_secrets(self) -> bool:
        """Whether any secret value is registered."""
        return self._pattern is not None

    @property
    def key(self) -> tuple[bool, frozenset[str]]:
        """What decides this redactor's output: two redactors with equal keys redact alike."""
        return self._scrub, frozenset(self._variants)

    def add(self, *secret_values: str | None) -> None:
        """Register more secret values (shorter than 4 characters, or not text: ignored)."""
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


class SecretNotFoundError(KeyError):
    """A secret that is neither in the configured secrets nor in the environment.

    ``where`` says which param referenced it (``params.password``), when one did.
    """

    def __init__(self, key: str, where: str | None = None) -> None:
        super().__init__(key)
        self.key = key
        self.where = where

    def __str__(self) -> str:  # KeyError would repr() the message; keep it readable
        at = f"{self.where}: " if self.where else ""
        return (
            f"{at}secret {self.key!r} is not set: define the environment variable {self.key} "
            f"or add it to the engine's secrets"
        )


def is_secret_ref(value: Any) -> bool:
    """Whether ``value`` is a secret reference, ``{"secret": NAME}``."""
    return isinstance(value, Mapping) and set(value) == {"secret"}


class SecretResolver:
    """Looks secrets up by name and resolves ``{"secret": NAME}`` references in params.

    ``source`` is consulted before the environment (see the module docstring). Every value
    handed out, and every plain value of a credential param (``password``, ``token`` ...),
    is added to ``redactor``, so :meth:`redact` masks them in any text.
    """

    def __init__(self, source: SecretSource | None = None, redactor: Redactor | None = None) -> None:
        self.source = source
        self.redactor = redactor if redactor is not None else Redactor()

    def _lookup(self, name: str) -> str | None:
        if callable(self.source):
            try:
                value = self.source(name)
            except KeyError:  # a store that raises for unknown names: fall back to the environment
                value = None
        elif self.source is not None:
            value = self.source.get(name)
        else:
            value = None
        if value is None:
            value = os.environ.get(name)
        if value is None and name.upper() != name:
            value = os.environ.get(name.upper())
        return None if value is None else str(value)

    def get(self, name: str) -> str:
        """The secret ``name``; raises :class:`SecretNotFoundError` (naming it, never a value)."""
        value = self._lookup(name)
        if value is None:
            raise SecretNotFoundError(name)
        self.redactor.add(value)
        return value

    def resolve(self, value: Any, where: str = "params") -> Any:
        """``value`` with every ``{"secret": NAME}`` (at any depth) replaced by the secret."""
        if is_secret_ref(value):
            name = str(value["secret"])
            found = self._lookup(name)
            if found is None:
                raise SecretNotFoundError(name, where)
            self.redactor.add(found)
            return found
        if isinstance(value, Mapping):
            return {k: self.resolve(v, f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return value

    def resolve_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Reader/writer ``params`` with secrets resolved; credential params count as secrets."""
        out = {key: self.resolve(value, f"params.{key}") for key, value in params.items()}
        self.redactor.add(*(v for k, v in out.items() if k.lower() in SECRET_KEYS and isinstance(v, str)))
        return out

    def redact(self, text: str) -> str:
        """``text`` with the secrets handed out so far (and credential-shaped parts) masked."""
        return self.redactor.redact_text(text)
