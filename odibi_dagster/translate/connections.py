"""Connect steps as Dagster resources."""

from __future__ import annotations

from typing import Any

import dagster as dg

from odibi_dagster.config.templating import EnvNamespace, render_text
from odibi_dagster.observe.redact import redact_params, redact_url

# Connections whose URL or params hold inline credentials: (resource key, URL as shown) -> the
# real URL and params. Kept in the memory of each process that built the definitions (the
# code server, run workers and step processes all do), never in Dagster's config or storage.
_INLINE: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}


class OdibiConnection(dg.ConfigurableResource):
    """A connection declared by a ``connect`` step (database URL, JDBC URL, storage account).

    ``url`` may hold ``{{ env.NAME }}`` placeholders, and params ``{"secret": NAME}``
    references; both are resolved when the connection is used, so the secret never sits in
    the definitions or the UI. A URL or param with an inline password
    (``postgresql://user:pw@host/db``) is shown with the password masked; the real value
    stays in the memory of the processes that loaded the config (see :meth:`for_step`).
    Steps use it through ``params.connection: <connect step name>``.
    """

    url: str
    params: dict[str, Any] = {}  # noqa: RUF012 - pydantic copies defaults
    # Set when url/params are the masked forms of inline credentials: the resource key they are
    # registered under in this process.
    inline_credentials_of: str | None = None

    @classmethod
    def for_step(cls, resource_key: str, url: str, params: dict[str, Any]) -> OdibiConnection:
        """The resource of a connect step, inline credentials moved out of its config."""
        shown_url, shown_params = redact_url(url), redact_params(params)
        if shown_url == url and shown_params == params:
            return cls(url=url, params=dict(params))
        _INLINE[(resource_key, shown_url)] = (url, dict(params))
        return cls(url=shown_url, params=shown_params, inline_credentials_of=resource_key)

    def _real(self) -> tuple[str, dict[str, Any]]:
        if self.inline_credentials_of is None:
            return self.url, dict(self.params)
        try:
            return _INLINE[(self.inline_credentials_of, self.url)]
        except KeyError:
            raise dg.Failure(
                description=(
                    f"connection '{self.inline_credentials_of}' ({self.url}) has an inline password, which is "
                    "never stored in Dagster: this process has not loaded the pipeline config that declares it. "
                    "Load the definitions with build_definitions, or give the password as {{ env.NAME }} in the "
                    'URL or {"secret": NAME} in the params'
                )
            ) from None

    def resolved(self) -> tuple[str, dict[str, str]]:
        """The URL with environment placeholders filled in, and the secret values used."""
        env = EnvNamespace()
        url = render_text(self._real()[0], {"env": env})
        return url, dict(env.used)

    def reader_params(self) -> tuple[dict[str, Any], dict[str, str]]:
        """Params a reader/writer gets from this connection, and the secrets in them."""
        url, secrets = self.resolved()
        key = "jdbc_url" if url.startswith("jdbc:") else "connection_string"
        real_url, params = self._real()
        if real_url != url or self.inline_credentials_of is not None:
            # Inline credentials (URL and params) are secrets too: redact them wherever they appear.
            secrets.update(_inline_secret_values(real_url, params))
        return {key: url, **params}, secrets


def _inline_secret_values(url: str, params: dict[str, Any]) -> dict[str, str]:
    """The credential values a URL and params hold inline, by where they are."""
    from urllib.parse import unquote, urlsplit

    out: dict[str, str] = {}
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        out["url.password"] = unquote(password)
    for key, value in params.items():
        if isinstance(value, str) and redact_params({key: value})[key] != value:
            out[f"params.{key}"] = value
    return out
