"""The code location: `dagster dev` and workspace.yaml both load `defs` from here."""

from __future__ import annotations

import dagster as dg

from .assets import ALL_ASSETS
from .data_folder import DataFolder
from .executors import build_executor
from .io_managers import PostgresPandasIOManager, PostgresPickleIOManager
from .jobs import JOBS
from .resources import PostgresResource
from .sensor import csv_drops_sensor
from .settings import Settings


def build_resources(settings: Settings, database_url: str | None = None) -> dict[str, object]:
    """`database_url` None: DATABASE_URL (env or .env), else the embedded server, at run time."""
    database = PostgresResource(
        database_url=database_url, db_schema=settings.db_schema, pgdata=settings.pgdata
    )
    return {
        "data_folder": DataFolder(path=settings.data_dir, settle_seconds=settings.settle_seconds),
        "database": database,
        "io_manager": PostgresPandasIOManager(database=database),
        "model_io_manager": PostgresPickleIOManager(database=database),
    }


def build_definitions(
    settings: Settings, loggers: dict[str, dg.LoggerDefinition] | None = None
) -> dg.Definitions:
    return dg.Definitions(
        assets=ALL_ASSETS,
        jobs=JOBS,
        resources=build_resources(settings),
        sensors=[csv_drops_sensor(settings.sensor_interval_seconds)],
        executor=build_executor(settings),
        loggers=loggers,
    )


defs = build_definitions(Settings.from_env())
