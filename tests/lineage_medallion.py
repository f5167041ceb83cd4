"""The pipeline of the column lineage tests: bronze CSVs joined into silver, aggregated into
gold (``SUM(amount) AS total``, a weighted sum, a ratio of two silver columns computed from
the same bronze column, ``COUNT(*)``, a literal), ranked by a
``function`` step and stored as CSV. Shared by the translate and browser tests."""

from __future__ import annotations

import uuid
from pathlib import Path

import dagster as dg

from odibi_dagster import build_definitions

SALES = """sale_id,store_id,amount,quantity,sale_date
1,1,10.5,2,2024-01-01
2,2,20.0,1,2024-01-01
3,1,5.25,3,2024-01-02
4,3,-1,1,2024-01-02
"""
STORES = """store_id,store_name,region
1,North Mall,north
2,South Plaza,south
3,East End,east
"""
FUNCTIONS = """
def rank_regions(gold):
    out = gold.copy()
    out["rank"] = out["total"].rank(ascending=False)
    return out
"""
CONFIG = """pipeline: lineage_medallion
steps:
  - {{layer: ingest, name: ingest_sales, value: data/sales.csv, outputs: {{data: bronze_sales}}}}
  - {{layer: ingest, name: ingest_stores, value: data/stores.csv, outputs: {{data: bronze_stores}}}}
  - layer: transform
    name: clean_sales
    type: sql
    value: |
      SELECT s.sale_id, st.region, CAST(s.amount AS DOUBLE) AS amount, s.quantity,
             s.amount * s.quantity AS value
      FROM sales s JOIN stores st ON s.store_id = st.store_id
      WHERE s.amount > 0
    inputs: {{sales: bronze_sales, stores: bronze_stores}}
    outputs: {{data: silver_sales}}
  - layer: transform
    name: build_gold
    type: sql
    value: >-
      SELECT region, SUM(amount) AS total, SUM(amount * quantity) AS weighted,
      SUM(value) / SUM(amount) AS avg_quantity, COUNT(*) AS sales, 'EUR' AS currency
      FROM silver GROUP BY region
    inputs: {{silver: silver_sales}}
    outputs: {{data: gold}}
  - {{layer: transform, name: rank_regions, type: function, value: {module}.rank_regions,
     inputs: {{gold: gold}}, outputs: {{data: gold_ranked}}}}
  - {{layer: store, name: save_gold, value: out/gold.csv, inputs: {{data: gold_ranked}}}}
"""


def write_medallion(root: Path) -> Path:
    """Write the pipeline, its data and its function module under ``root``; returns the config."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "data" / "sales.csv").write_text(SALES)
    (root / "data" / "stores.csv").write_text(STORES)
    module = f"lineage_fns_{uuid.uuid4().hex[:10]}"  # unique: modules are cached per process
    (root / f"{module}.py").write_text(FUNCTIONS)
    config = root / "medallion.yaml"
    config.write_text(CONFIG.format(module=module))
    return config


def run_medallion(config: Path) -> tuple[dg.ExecuteInProcessResult, Path]:
    """Run the pipeline in process; returns the result and the run's story."""
    defs = build_definitions(config)
    result = defs.resolve_job_def("lineage_medallion").execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    story = config.parent / ".odibi" / "stories" / "lineage_medallion" / result.run_id / "story.html"
    assert story.is_file()
    return result, story
