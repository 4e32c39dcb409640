"""IO managers that persist assets in PostgreSQL: one table per asset, named after the asset.

In a run that ends with the `snapshot` asset (the `analytics` job), every table is written
under a staging name of the run and `snapshot` swaps them all in at once, after every check
has passed; a run without it (one asset materialized alone) replaces its table directly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import pandas as pd

from retention_assets.resources import PostgresResource
from retention_assets.storage import staging
from retention_assets.storage.tables import (
    count_rows,
    read_pickle,
    read_table,
    upsert_rows,
    write_pickle,
    write_table,
)

# Definition metadata keys an asset can set: @asset(metadata={"upsert_key": ["as_of"], ...}).
UPSERT_KEY = "upsert_key"
MONEY_COLUMNS = "money_columns"
# The asset that publishes a run's tables together (see the module docstring).
PUBLISH_KEY = dg.AssetKey("snapshot")


def _held_for_publish(context: dg.OutputContext | dg.InputContext) -> bool:
    """Whether this run ends with PUBLISH_KEY: then tables wait under staging names."""
    try:
        step = context.step_context
    except dg.DagsterInvariantViolationError:  # a context built outside a run
        return False
    return PUBLISH_KEY in step.job_def.asset_layer.selected_asset_keys


def _table_name(context: dg.OutputContext | dg.InputContext) -> str:
    return context.asset_key.path[-1]


def _column_names(context: dg.OutputContext, key: str) -> list[str]:
    value = context.definition_metadata.get(key) or ()
    if isinstance(value, dg.MetadataValue):
        value = value.value
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Sequence):
        raise TypeError(f"asset metadata {key!r} must be a list of column names, got {value!r}")
    return [str(name) for name in value]


class _RunCache:
    """The frames this process wrote during the current run, so a downstream step in the same
    process (the in-process executor) gets them back without reading the table it just wrote.
    Replaced tables only (not upserts). One run at a time."""

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.frames: dict[tuple[str, str], pd.DataFrame] = {}

    def put(self, run_id: str, schema: str, table: str, frame: pd.DataFrame) -> None:
        if run_id != self.run_id:
            self.run_id, self.frames = run_id, {}
        self.frames[(schema, table)] = frame

    def get(self, run_id: str, schema: str, table: str) -> pd.DataFrame | None:
        return self.frames.get((schema, table)) if run_id == self.run_id else None

    def release(self) -> None:
        self.run_id, self.frames = None, {}


_RUN_CACHE = _RunCache()


def release_run_frames() -> None:
    """Drop the frames kept for the run that just ended: a process that runs one job after
    another (`retention-assets run --history N`) would otherwise carry one run's per-customer
    frames into the next run's peak."""
    _RUN_CACHE.release()


def table_metadata(
    schema: str, table: str, columns: list[tuple[str, str]], row_count: int
) -> dict[str, Any]:
    """What the UI shows of a stored table: its name, rows and [(column, PostgreSQL type)]."""
    return {
        "dagster/row_count": row_count,
        "dagster/table_name": f"{schema}.{table}",
        "dagster/storage_kind": "postgres",
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name, pg_type) for name, pg_type in columns]
        ),
        "written_at": dg.MetadataValue.timestamp(time.time()),
    }


class PostgresPandasIOManager(dg.ConfigurableIOManager):
    """DataFrames as PostgreSQL tables: atomic replace via COPY, or an upsert when the asset's
    metadata names an ``upsert_key`` (tables that keep history, e.g. one row per snapshot)."""

    database: PostgresResource

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | None) -> None:
        if obj is None:
            return
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(
                f"{type(self).__name__} stores pandas DataFrames; asset "
                f"{context.asset_key.to_user_string()} returned {type(obj).__name__}"
            )
        schema, table = self.database.db_schema, _table_name(context)
        money = _column_names(context, MONEY_COLUMNS)
        upsert_key = _column_names(context, UPSERT_KEY)
        started = time.perf_counter()
        with self.database.connect() as conn:
            if _held_for_publish(context):
                name = staging.staged_name(context.run_id, table)
                columns = write_table(conn, schema, name, obj, money)
                staging.register(conn, schema, context.run_id, table, upsert_key)
                row_count = len(obj)
            elif upsert_key:
                columns = upsert_rows(conn, schema, table, obj, upsert_key, money)
                row_count = count_rows(conn, schema, table)
            else:
                columns = write_table(conn, schema, table, obj, money)
                row_count = len(obj)
            if not upsert_key:
                _RUN_CACHE.put(context.run_id, schema, table, obj)
        metadata = table_metadata(schema, table, columns, row_count)
        metadata["write_seconds"] = round(time.perf_counter() - started, 3)
        if upsert_key:
            metadata["rows_upserted"] = len(obj)
        context.add_output_metadata(metadata)

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        schema, table = self.database.db_schema, _table_name(context)
        cached = _RUN_CACHE.get(context.step_context.run_id, schema, table)
        if cached is not None:
            return cached
        with self.database.connect() as conn:
            return read_table(conn, schema, _readable(conn, context, schema, table))


class PostgresPickleIOManager(dg.ConfigurableIOManager):
    """Python objects (a fitted model) as a one-row table, so any process can load the exact
    object a run produced, from the same database as the frames."""

    database: PostgresResource

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        if obj is None:
            return
        description: dict[str, Any] = {"type": f"{type(obj).__module__}.{type(obj).__qualname__}"}
        describe = getattr(obj, "describe", None)
        if callable(describe):
            described = describe()
            if isinstance(described, Mapping):
                description.update(described)
        # Stored as jsonb and shown in the UI: dates, numpy scalars etc. become text.
        description = json.loads(json.dumps(description, default=str))
        schema, table = self.database.db_schema, _table_name(context)
        with self.database.connect() as conn:
            if _held_for_publish(context):
                name = staging.staged_name(context.run_id, table)
                payload_bytes = write_pickle(conn, schema, name, obj, description)
                staging.register(conn, schema, context.run_id, table)
            else:
                payload_bytes = write_pickle(conn, schema, table, obj, description)
        context.add_output_metadata(
            {
                "dagster/table_name": f"{schema}.{table}",
                "dagster/storage_kind": "postgres",
                "payload_bytes": payload_bytes,
                "description": dg.MetadataValue.json(description),
                "written_at": dg.MetadataValue.timestamp(time.time()),
            }
        )

    def load_input(self, context: dg.InputContext) -> Any:
        schema, table = self.database.db_schema, _table_name(context)
        with self.database.connect() as conn:
            return read_pickle(conn, schema, _readable(conn, context, schema, table))


def _readable(conn, context: dg.InputContext, schema: str, table: str) -> str:
    """The table an input reads: what this run staged, else the published one."""
    return staging.staged(conn, schema, context.step_context.run_id, table) or table
