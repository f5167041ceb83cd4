"""``OdibiPipelineComponent``: ODIBI pipelines in a ``dg`` project's ``defs.yaml``.

```yaml
type: odibi_dagster.components.OdibiPipelineComponent
attributes:
  paths: [pipelines/]          # config files or folders, relative to this defs.yaml
  key_prefix: [odibi]          # optional
```
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from odibi_dagster.translate.definitions import build_definitions


class OdibiPipelineComponent(dg.Component, dg.Resolvable, dg.Model):
    """Loads ODIBI pipeline configs (JSON, YAML, SQLite, CSV) as Dagster definitions."""

    paths: list[str] = Field(description="Config files or directories, relative to the component's folder.")
    key_prefix: list[str] | None = Field(None, description="Prefix for every asset key.")
    base_dir: str | None = Field(None, description="Where relative paths resolve and working files go.")

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        root = Path(context.path)
        paths = [p if Path(p).is_absolute() else root / p for p in self.paths]
        base = None
        if self.base_dir is not None:
            remote_or_absolute = "://" in self.base_dir or Path(self.base_dir).is_absolute()
            base = self.base_dir if remote_or_absolute else root / self.base_dir
        return build_definitions(*paths, key_prefix=self.key_prefix, base_dir=base)
