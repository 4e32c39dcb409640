"""Pure analytics: pandas in, pandas out. Nothing here imports Dagster."""
