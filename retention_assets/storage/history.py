"""Reading the snapshots kept over time (tables with one slice of rows per as_of)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from psycopg2 import sql

from .activity import _t
from .tables import Connection, _transaction, read_query, table_exists

SNAPSHOT_TYPES = {
    "customer_id": "text",
    "segment": "text",
    "recency_days": "int8",
    "frequency": "int8",
    "monetary": "numeric",
    "as_of": "date",
}


def previous_snapshot(
    conn: Connection, schema: str, table: str, as_of: dt.date
) -> pd.DataFrame | None:
    """The rows of `table` at the latest as_of stored before `as_of` (customer_id, segment,
    recency_days, frequency, monetary, as_of), or None when there is none: the snapshot a
    new one is compared with."""
    with _transaction(conn) as cur:
        if not table_exists(cur, schema, table):
            return None
    query = sql.SQL(
        "SELECT customer_id, segment, recency_days, frequency, monetary, as_of FROM {h} "
        "WHERE as_of = (SELECT max(as_of) FROM {h} WHERE as_of < %(as_of)s)"
    ).format(h=_t(schema, table))
    rows = read_query(conn, query, {"as_of": as_of}, SNAPSHOT_TYPES)
    return rows.astype({"customer_id": "str"}) if len(rows) else None
