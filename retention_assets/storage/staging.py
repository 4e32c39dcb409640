"""Tables a run computes, held back until the run has passed every check: each is written
under a name of its own run (`_staged_<run>_<table>`) and registered; `publish` swaps all of
them in with one transaction. A run that fails anywhere leaves the tables readers see exactly
as they were (its staged tables are dropped by a later publish).

No Dagster here: callers pass run ids.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from psycopg2 import sql

from .tables import (
    Connection,
    _ensure_schema,
    _lock_for_swap,
    _lock_table_name,
    _transaction,
    column_types,
    replace_slices,
    table_exists,
)

REGISTRY = "_staged_tables"
_REGISTRY_DDL = sql.SQL(
    "run_id text NOT NULL, table_name text NOT NULL, staged_name text NOT NULL, "
    "upsert_key text[], staged_at timestamptz NOT NULL DEFAULT now(), "
    "PRIMARY KEY (run_id, table_name)"
)


def staged_name(run_id: str, table: str) -> str:
    """The name `table` is written under until `run_id` publishes (at most 63 bytes for the
    tables of this project: 8 + 32 + 1 + the table name)."""
    return f"_staged_{run_id.replace('-', '')}_{table}"


def _registry(schema: str) -> sql.Identifier:
    return sql.Identifier(schema, REGISTRY)


def register(
    conn: Connection, schema: str, run_id: str, table: str, upsert_key: Sequence[str] = ()
) -> None:
    """Record that `table` of `run_id` waits under its staged name; an upsert key means its
    rows are upserted into the table at publish (a history) instead of replacing it."""
    with _transaction(conn) as cur:
        _ensure_schema(cur, schema)
        cur.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(_registry(schema), _REGISTRY_DDL)
        )
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (run_id, table_name, staged_name, upsert_key) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (run_id, table_name) DO UPDATE "
                "SET staged_name = EXCLUDED.staged_name, upsert_key = EXCLUDED.upsert_key"
            ).format(_registry(schema)),
            [run_id, table, staged_name(run_id, table), list(upsert_key) or None],
        )


def staged(conn: Connection, schema: str, run_id: str, table: str) -> str | None:
    """The staged name of `table` if `run_id` wrote it (what a later step of the run reads)."""
    with _transaction(conn) as cur:
        if not table_exists(cur, schema, REGISTRY):
            return None
        cur.execute(
            sql.SQL("SELECT staged_name FROM {} WHERE run_id = %s AND table_name = %s").format(
                _registry(schema)
            ),
            [run_id, table],
        )
        row = cur.fetchone()
    return row[0] if row else None


def publish(conn: Connection, schema: str, run_id: str) -> list[str]:
    """Swap in every table `run_id` staged, in one transaction; returns their names."""
    with _transaction(conn) as cur:
        if not table_exists(cur, schema, REGISTRY):
            return []
        cur.execute(
            sql.SQL(
                "SELECT table_name, staged_name, upsert_key FROM {} WHERE run_id = %s "
                "ORDER BY table_name"
            ).format(_registry(schema)),
            [run_id],
        )
        entries = cur.fetchall()
        for table, staged_table, key in entries:
            live, waiting = sql.Identifier(schema, table), sql.Identifier(schema, staged_table)
            _lock_table_name(cur, schema, table)
            exists = table_exists(cur, schema, table)
            if exists:
                _lock_for_swap(cur, schema, table)
            if not key:
                cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(live))
                cur.execute(
                    sql.SQL("ALTER TABLE {} RENAME TO {}").format(waiting, sql.Identifier(table))
                )
                continue
            names = [name for name, _ in column_types(cur, schema, staged_table)]
            replace_slices(cur, schema, table, waiting, key, names)
            cur.execute(sql.SQL("DROP TABLE {}").format(waiting))
        cur.execute(sql.SQL("DELETE FROM {} WHERE run_id = %s").format(_registry(schema)), [run_id])
    return [table for table, _, _ in entries]


def other_runs(conn: Connection, schema: str, run_id: str) -> list[tuple[str, dt.datetime]]:
    """(run id, when it staged its first table) of every other run with staged tables."""
    with _transaction(conn) as cur:
        if not table_exists(cur, schema, REGISTRY):
            return []
        cur.execute(
            sql.SQL(
                "SELECT run_id, min(staged_at) FROM {} WHERE run_id <> %s GROUP BY run_id"
            ).format(_registry(schema)),
            [run_id],
        )
        return cur.fetchall()


def discard(conn: Connection, schema: str, run_ids: Iterable[str]) -> None:
    """Drop what runs that will never publish (failed, gone) left staged."""
    run_ids = list(run_ids)
    if not run_ids:
        return
    with _transaction(conn) as cur:
        cur.execute(
            sql.SQL("SELECT staged_name FROM {} WHERE run_id = ANY(%s)").format(_registry(schema)),
            [run_ids],
        )
        for (name,) in cur.fetchall():
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(schema, name)))
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE run_id = ANY(%s)").format(_registry(schema)),
            [run_ids],
        )
