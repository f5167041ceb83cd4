"""Connect steps as Dagster resources."""

from __future__ import annotations

from typing import Any

import dagster as dg

from odibi_dagster.config.templating import EnvNamespace, render_text


class OdibiConnection(dg.ConfigurableResource):
    """A connection declared by a ``connect`` step (database URL, JDBC URL, storage account).

    ``url`` may hold ``{{ env.NAME }}`` placeholders; they are rendered when the
    connection is used, so the secret never sits in the definitions or the UI.
    Steps use it through ``params.connection: <connect step name>``.
    """

    url: str
    params: dict[str, Any] = {}  # noqa: RUF012 - pydantic copies defaults

    def resolved(self) -> tuple[str, dict[str, str]]:
        """The URL with environment placeholders filled in, and the secret values used."""
        env = EnvNamespace()
        url = render_text(self.url, {"env": env})
        return url, dict(env.used)

    def reader_params(self) -> tuple[dict[str, Any], dict[str, str]]:
        """Params a reader/writer gets from this connection, and the secrets in them."""
        url, secrets = self.resolved()
        key = "jdbc_url" if url.startswith("jdbc:") else "connection_string"
        return {key: url, **self.params}, secrets
