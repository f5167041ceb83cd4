"""Pipeline configs: models, loaders (JSON, YAML, SQLite, CSV), the step graph and validation.

Nothing is imported here: ``odibi-dagster`` imports ``config.errors`` before it handles
Ctrl-C, and validation pulls in sqlglot. The public names are in ``odibi_dagster``.
"""
