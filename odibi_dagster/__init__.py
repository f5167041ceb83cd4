"""odibi_dagster: run ODIBI CORE's config-driven pipelines on Dagster."""
