"""The "history" scenario's parsing and probes, for benchmarks/run.py.

`retention-assets run --history N` runs the analytics job N times in one process (one run per
monthly snapshot, oldest first); each run ends with the `snapshot` step, which publishes the
run's staged tables (and does rfm_history's upsert: the rfm_history step itself only writes the
run's slice to a staging table). `split_runs` cuts the command's output into those runs, with
their as_of and step times, and `window_peaks` the sampled RSS into the same windows, so one
command shows whether time or memory grows with the history kept.

`breakdown` then times, in this process and on the stored tables, the parts of the history
assets for the last snapshot: cohort_retention's GROUP BY and its two figures, the upsert of
rfm_history's slice (a replace of the same rows: the table keeps its content), and
segment_migration's read of the previous slice, its pandas counting and its figure.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import psycopg2
from sqlalchemy.engine import make_url

HISTORY_TABLES = ("cohort_retention", "rfm_history", "segment_migration")
# Step order of the report: the history assets first, then the others for context.
STEP_ORDER = (
    *HISTORY_TABLES,
    "snapshot",
    "rfm_features",
    "rfm",
    "rfm_model",
    "clv",
    "clv_model",
    "clv_forecast",
    "clv_holdout",
    "retention",
    "loaded_files",
)
RUN_END = "snapshot"  # the last step of an analytics run
_AS_OF = re.compile(r"RFM features for .* as of (\d{4}-\d{2}-\d{2})")


def split_runs(lines: list[tuple[float, str]]) -> list[dict[str, Any]]:
    """The analytics runs of a `retention-assets run` output (lines with the seconds since the
    command started): per run its as_of, step times and the second its last step ended. Steps
    before the first analytics run (the loads of a full build) count in the first run."""
    runs: list[dict[str, Any]] = []
    current: dict[str, Any] = {"as_of": None, "steps": {}}
    for at, line in lines:
        if match := _AS_OF.search(line):
            current["as_of"] = match.group(1)
        parts = line.split()
        if len(parts) == 5 and parts[1:3] == ["done", "in"]:
            step = parts[0]
            current["steps"][step] = current["steps"].get(step, 0.0) + float(parts[3])
            if step == RUN_END:
                current["ended_at"] = at
                runs.append(current)
                current = {"as_of": None, "steps": {}}
    return runs


def window_peaks(samples: list[tuple[float, float]], runs: list[dict[str, Any]]) -> list[float]:
    """Peak RSS (MB) of the process tree in each run's window: from the end of the previous run
    (the command's start for the first) to the end of its own last step."""
    peaks, start = [], float("-inf")
    for run in runs:
        end = run["ended_at"]
        inside = [mb for at, mb in samples if start < at <= end]
        peaks.append(max(inside, default=float("nan")))
        start = end
    return peaks


def connect(url: str) -> psycopg2.extensions.connection:
    """An autocommit connection: the package's storage functions each open their own
    transaction and refuse a connection left inside one."""
    u = make_url(url)
    conn = psycopg2.connect(
        host=u.host or "127.0.0.1",
        port=u.port or 5432,
        user=u.username or "postgres",
        password=u.password,
        dbname=u.database,
    )
    conn.autocommit = True
    return conn


def table_sizes(url: str, schema: str) -> dict[str, dict[str, Any]]:
    """Rows, snapshots (distinct as_of; None for a table without one) and on-disk size (MB,
    with indexes) of the history tables."""
    sizes = {}
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            for table in HISTORY_TABLES:
                name = f'"{schema}"."{table}"'
                cur.execute(
                    "SELECT count(*) FROM information_schema.columns "
                    "WHERE table_schema = %s AND table_name = %s AND column_name = 'as_of'",
                    [schema, table],
                )
                as_of = "count(DISTINCT as_of)" if cur.fetchone()[0] else "NULL"
                cur.execute(f"SELECT count(*), {as_of} FROM {name}")
                rows, snapshots = cur.fetchone()
                cur.execute("SELECT pg_total_relation_size(%s::regclass)", [name])
                sizes[table] = {
                    "rows": rows,
                    "snapshots": snapshots,
                    "mb": cur.fetchone()[0] / 2**20,
                }
    finally:
        conn.close()
    return sizes


def _best_of(fn: Callable[[], Any], repeat: int = 2) -> tuple[float, Any]:
    """The fastest of `repeat` calls (the first also warms caches and fonts) and its value."""
    best, value = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - started)
    return best, value


def breakdown(url: str, schema: str) -> dict[str, Any]:
    """Seconds of the parts of the history assets for the latest stored snapshot (best of 2)."""
    # Imported here: matplotlib and the package load only for this scenario.
    from retention_assets.core.migration import moved_into
    from retention_assets.core.migration import segment_migration as migration_counts
    from retention_assets.core.segmentation import AT_RISK
    from retention_assets.plots import (
        cohort_curve_figure,
        cohort_heatmap_figure,
        migration_figure,
        to_png,
    )
    from retention_assets.storage.cohorts import cohort_retention
    from retention_assets.storage.history import previous_snapshot
    from retention_assets.storage.tables import read_table, upsert_rows

    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(f'SELECT max(as_of) FROM "{schema}".rfm_history')
            as_of = cur.fetchone()[0]
        parts: dict[str, float] = {}
        parts["cohort_retention: GROUP BY (SQL)"], cohorts = _best_of(
            lambda: cohort_retention(conn, schema, as_of)
        )
        parts["cohort_retention: heatmap png"], _ = _best_of(
            lambda: to_png(cohort_heatmap_figure(cohorts))
        )
        parts["cohort_retention: curve png"], _ = _best_of(
            lambda: to_png(cohort_curve_figure(cohorts))
        )
        rfm = read_table(conn, schema, "rfm")  # the slice of the latest as_of
        parts["rfm_history: upsert of the slice"], _ = _best_of(
            lambda: upsert_rows(conn, schema, "rfm_history", rfm, ["as_of"], ["monetary"])
        )
        parts["segment_migration: read previous slice"], previous = _best_of(
            lambda: previous_snapshot(conn, schema, "rfm_history", as_of)
        )
        parts["segment_migration: count moves (pandas)"], migration = _best_of(
            lambda: (migration_counts(previous, rfm), moved_into(previous, rfm, AT_RISK, 20))[0]
        )
        parts["segment_migration: matrix png"], _ = _best_of(
            lambda: to_png(migration_figure(migration))
        )
    finally:
        conn.close()
    return {"as_of": as_of.isoformat(), "rfm_rows": len(rfm), "seconds": parts}
