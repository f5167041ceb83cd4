"""The pandas+DuckDB engine's Dagster resource, apart from the engine itself.

Definitions bind this resource to every pandas step; DuckDB (some 14 MB resident) is imported
only when a step opens a context, so code servers and the webserver never load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:
    from odibi_dagster.engines.pandas_duckdb import PandasDuckDBContext
    from odibi_dagster.engines.secrets import SecretSource

__all__ = ["PandasDuckDBEngine"]


class PandasDuckDBEngine(dg.ConfigurableResource):
    """Dagster resource for the pandas+DuckDB engine: ``with engine.context() as ctx: ...``."""

    threads: int | None = None
    memory_limit: str | None = None
    temp_directory: str | None = None

    def context(self, secrets: SecretSource | None = None) -> PandasDuckDBContext:
        """A new :class:`PandasDuckDBContext` (one DuckDB connection); close it, or use ``with``."""
        from odibi_dagster.engines.pandas_duckdb import PandasDuckDBContext

        return PandasDuckDBContext(
            threads=self.threads,
            memory_limit=self.memory_limit,
            temp_directory=self.temp_directory,
            secrets=secrets,
        )
