"""The odibi code location whose runs spread their steps over Celery workers (deployment test).

Installed as the package ``odibi_distributed`` on the code server and on every worker, each in
a folder of its own (the same code, no shared disk): the code server is started with
``dagster api grpc -m odibi_distributed --empty-working-directory``, so runs tell the workers
to import the package from their own Python path, not from the server's folder. The pipelines'
``base_dir`` (``$ODIBI_BASE_DIR``) is an ``abfs://`` prefix: datasets, tracker records and
stories pass between the workers only through the blob store.
"""

from pathlib import Path

from dagster_celery import celery_executor

from odibi_dagster import build_definitions

defs = build_definitions(
    Path(__file__).parent / "pipelines",
    key_prefix="distributed",  # the example location defines sales_medallion's keys already
    executor=celery_executor.configured(
        {"broker": {"env": "ODIBI_CELERY_BROKER"}, "backend": {"env": "ODIBI_CELERY_BACKEND"}}
    ),
)
