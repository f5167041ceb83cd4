"""``dg scaffold defs odibi_dagster.OdibiPipelineComponent NAME``: a starter pipeline that runs.

Writes, in the new defs folder, ``defs.yaml`` (or ``component.py`` with ``--format python``),
``pipeline.yaml`` (ingest a CSV, a SQL transform with checks, store a CSV) and the CSV it reads.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from odibi_dagster.config.names import dagster_name

PIPELINE_FILE = "pipeline.yaml"
SAMPLE_FILE = "data/orders.csv"

_DEFS_YAML = """\
type: {type_name}

attributes:
  # ODIBI configs (JSON, YAML, SQLite, CSV) or folders of them, relative to this file.
  paths: [{pipeline_file}]
  # translation:                       # per-step AssetSpec attributes, templated with
  #   group_name: "{{{{ pipeline.name }}}}"   # step, pipeline, dataset and spec
  #   tags: {{layer: "{{{{ step.layer }}}}"}}
  # translation_settings: {{enable_code_references: false}}
# post_processing:
#   assets: [{{target: "*", attributes: {{owners: ["team:data"]}}}}]
"""

_COMPONENT_PY = """\
import dagster as dg

from {module} import {name}


@dg.component_instance
def load(context: dg.ComponentLoadContext) -> {name}:
    return {name}(paths=["{pipeline_file}"])
"""

_PIPELINE_YAML = """\
# An ODIBI pipeline: every step becomes a Dagster asset (group `{name}`, job `{name}`).
# Materialize it from the UI, or: dg launch --job {name}
pipeline: {name}
description: Revenue per region, from the orders in data/orders.csv.
steps:
  - layer: ingest
    name: read_orders
    value: {sample_file}
    outputs: {{data: orders}}
    checks:
      - {{not_null: [order_id], severity: error}}   # blocking: a failure stops the steps below
      - {{unique: [order_id]}}
  - layer: transform
    name: revenue_by_region
    type: sql
    value: |
      SELECT region, COUNT(*) AS orders, ROUND(SUM(amount), 2) AS revenue
      FROM orders
      GROUP BY region
      ORDER BY region
    inputs: {{orders: orders}}
    outputs: {{data: revenue_by_region}}
    checks: [{{row_count: {{min: 1}}}}]
  - layer: store
    name: save_revenue
    value: output/revenue_by_region.csv
    inputs: {{data: revenue_by_region}}
"""

_REGIONS = ("north", "south", "east", "west")


def _sample_csv() -> str:
    rows = [f"{i},{_REGIONS[i % 4]},{10 + (i * 7) % 90}.50" for i in range(1, 21)]
    return "order_id,region,amount\n" + "\n".join(rows) + "\n"


class OdibiPipelineScaffolder(dg.Scaffolder):
    """Scaffolds an :class:`~odibi_dagster.OdibiPipelineComponent` with a pipeline that runs as is."""

    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        target = Path(request.target_path)
        name = dagster_name(target.name)
        if request.scaffold_format == "python":
            module, _, cls = request.type_name.rpartition(".")
            text = _COMPONENT_PY.format(module=module, name=cls, pipeline_file=PIPELINE_FILE)
            (target / "component.py").write_text(text)
        else:
            text = _DEFS_YAML.format(type_name=request.type_name, pipeline_file=PIPELINE_FILE)
            (target / "defs.yaml").write_text(text)
        (target / PIPELINE_FILE).write_text(_PIPELINE_YAML.format(name=name, sample_file=SAMPLE_FILE))
        sample = target / SAMPLE_FILE
        sample.parent.mkdir(parents=True, exist_ok=True)
        sample.write_text(_sample_csv())
