"""Materializing the whole graph into the test database, the way `retention-assets run` does:
the load jobs of the folder's new / changed / removed files, then the analytics job."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd

from retention_assets.assets import ALL_ASSETS
from retention_assets.definitions import build_resources
from retention_assets.ingest.plan import plan_drops
from retention_assets.jobs import JOBS, execute_plan
from retention_assets.settings import Settings
from retention_assets.storage import slices
from retention_assets.storage.database import connect
from retention_assets.storage.tables import read_table

# What one analytics run materializes: loaded_files and everything after it.
ANALYTICS = frozenset(
    {
        "loaded_files",
        "rfm_features",
        "rfm_model",
        "rfm",
        "clv",
        "retention",
        "clv_model",
        "clv_forecast",
        "clv_holdout",
        "cohort_retention",
        "rfm_history",
        "segment_migration",
        "snapshot",
    }
)


def graph_definitions(folder: Path | str, database_url: str, schema: str) -> dg.Definitions:
    """definitions.build_definitions' assets and jobs, with resources on the test database
    (no sensor: the tests run the jobs themselves)."""
    settings = Settings(data_dir=str(folder), db_schema=schema, pgdata="unused")
    return dg.Definitions(
        assets=ALL_ASSETS,
        jobs=JOBS,
        resources=build_resources(settings, database_url),
        executor=dg.in_process_executor,
    )


@dataclass
class GraphRun:
    """The runs one materialization of the graph took (loads, then analytics), read like one
    ExecuteInProcessResult."""

    results: list[dg.ExecuteInProcessResult]
    defs: dg.Definitions
    instance: dg.DagsterInstance

    @property
    def success(self) -> bool:
        """Every run succeeded, the analytics included."""
        analytics_ran = bool(self.results) and self.results[-1].job_def.name == "analytics"
        return analytics_ran and all(r.success for r in self.results)

    @property
    def jobs(self) -> list[str]:
        return [r.job_def.name for r in self.results]

    @property
    def all_events(self) -> list[dg.DagsterEvent]:
        return [e for r in self.results for e in r.all_events]

    def _each(self, method: str, *args) -> Iterator:
        for result in self.results:
            yield from getattr(result, method)(*args)

    def get_asset_check_evaluations(self) -> list:
        return list(self._each("get_asset_check_evaluations"))

    def get_asset_materialization_events(self) -> list[dg.DagsterEvent]:
        return list(self._each("get_asset_materialization_events"))

    def get_step_failure_events(self) -> list[dg.DagsterEvent]:
        return list(self._each("get_step_failure_events"))

    def asset_materializations_for_node(self, node: str) -> list[dg.AssetMaterialization]:
        return [
            m
            for r in self.results
            if node in {n.name for n in r.job_def.nodes}
            for m in r.asset_materializations_for_node(node)
        ]

    def materialized(self) -> set[str]:
        return {e.asset_key.path[-1] for e in self.get_asset_materialization_events()}

    def failure_messages(self) -> list[str]:
        return [e.event_specific_data.error.message for e in self.get_step_failure_events()]


def materialize(
    folder: Path | str,
    database_url: str,
    schema: str,
    run_config: dict | None = None,
    instance: dg.DagsterInstance | None = None,
) -> GraphRun:
    """Load what the folder holds that the database does not (plan_drops against the
    manifest), then run the analytics with `run_config`. An ephemeral instance by default:
    the partitions of the files to load are (re)registered from the plan."""
    defs = graph_definitions(folder, database_url, schema)
    instance = instance or dg.DagsterInstance.ephemeral()
    conn = connect(database_url)
    try:
        plan = plan_drops(Path(folder), slices.manifest(conn, schema))
    finally:
        conn.close()
    return GraphRun(execute_plan(defs, instance, plan, run_config), defs, instance)


def stored_rows(conn, schema: str, tables: Iterable[str]) -> dict[str, pd.DataFrame]:
    """Each table's rows, columns and rows sorted, without what differs between two runs on the
    same data (run_id, the retention row's computed_at): equal frames, equal stored content."""
    out = {}
    for name in tables:
        frame = read_table(conn, schema, name).drop(
            columns=["computed_at", "run_id"], errors="ignore"
        )
        frame = frame[sorted(frame.columns)]
        out[name] = frame.sort_values(list(frame.columns), ignore_index=True)
    return out
