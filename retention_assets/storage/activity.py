"""Per-customer figures computed where the events are: one GROUP BY per source in
PostgreSQL, so the analytics hold one row per customer whatever the length of the history."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from psycopg2 import sql

from . import visits
from .tables import Connection, _transaction, read_query


def _t(schema: str, table: str) -> sql.Identifier:
    return sql.Identifier(schema, table)


def feed_ends(conn: Connection, schema: str) -> tuple[dt.date | None, dt.date | None]:
    """Dates of the latest check-in and the latest transaction stored (None if none)."""
    with _transaction(conn) as cur:
        cur.execute(
            sql.SQL(
                "SELECT (SELECT max(last_check_in)::date FROM {m} "
                "  WHERE month = (SELECT max(month) FROM {m})), "
                "(SELECT max(transaction_date)::date FROM {t})"
            ).format(m=_t(schema, visits.MONTHS), t=_t(schema, "transactions"))
        )
        return cur.fetchone()


def customer_activity(conn: Connection, schema: str, as_of: dt.date) -> pd.DataFrame:
    """customer_id, signup_date, last_attendance, frequency, monetary of every customer
    signed up by as_of, counting the events dated on or before as_of; and first_event, the
    date of the customer's earliest check-in or payment (which may precede the signup).
    Check-ins are counted from their monthly totals (storage.visits)."""
    with _transaction(conn) as cur:
        exact = not visits.month_needs_check_ins(cur, schema, as_of)
    query = sql.SQL(
        "SELECT c.customer_id, c.signup_date, a.last_check_in, a.visits, t.monetary, "
        "least(a.first_check_in, t.first_payment)::date AS first_event "
        "FROM {c} c "
        "LEFT JOIN ({a}) a USING (customer_id) "
        "LEFT JOIN (SELECT customer_id, sum(amount) AS monetary, "
        "  min(transaction_date) AS first_payment "
        "  FROM {t} WHERE transaction_date < %(end)s GROUP BY customer_id) t USING (customer_id) "
        "WHERE c.signup_date <= %(as_of)s"
    ).format(
        c=_t(schema, "customers"),
        a=visits.visits_query(schema, exact),
        t=_t(schema, "transactions"),
    )
    types = {
        "customer_id": "text",
        "signup_date": "date",
        "last_attendance": "timestamp",
        "frequency": "int8",
        "monetary": "numeric",
        "first_event": "date",
    }
    frame = read_query(conn, query, _bounds(as_of), types)
    return frame.astype({"customer_id": "str"})


def order_summary(conn: Connection, schema: str, as_of: dt.date, window_days: int) -> pd.DataFrame:
    """customer_id, n_orders, total_spend (orders on or before as_of) and orders_in_window (in
    the window_days calendar days ending with as_of) of every customer with an order."""
    query = sql.SQL(
        "SELECT customer_id, count(*) AS n_orders, sum(amount) AS total_spend, "
        "count(*) FILTER (WHERE transaction_date >= %(window_start)s) AS orders_in_window "
        "FROM {t} WHERE transaction_date < %(end)s GROUP BY customer_id"
    ).format(t=_t(schema, "transactions"))
    types = {
        "customer_id": "text",
        "n_orders": "int8",
        "total_spend": "numeric",
        "orders_in_window": "int8",
    }
    params = _bounds(as_of) | {"window_start": as_of - dt.timedelta(days=window_days - 1)}
    return read_query(conn, query, params, types).astype({"customer_id": "str"})


def purchase_occasions(conn: Connection, schema: str, as_of: dt.date) -> pd.DataFrame:
    """customer_id, first_date, last_date, occasions, total_amount, first_amount of every
    customer with a payment on or before as_of: an occasion is a calendar day with payments,
    worth the sum of that day's amounts (the unit the probabilistic CLV models count)."""
    query = sql.SQL(
        "SELECT customer_id, min(day), max(day), count(*), sum(amount), "
        "(array_agg(amount ORDER BY day))[1] "
        "FROM (SELECT customer_id, transaction_date::date AS day, sum(amount) AS amount "
        "  FROM {t} WHERE transaction_date < %(end)s GROUP BY 1, 2) AS days "
        "GROUP BY customer_id"
    ).format(t=_t(schema, "transactions"))
    types = {
        "customer_id": "text",
        "first_date": "date",
        "last_date": "date",
        "occasions": "int8",
        "total_amount": "float8",
        "first_amount": "float8",
    }
    return read_query(conn, query, _bounds(as_of), types).astype({"customer_id": "str"})


def occasions_between(
    conn: Connection, schema: str, after: dt.date, as_of: dt.date
) -> pd.DataFrame:
    """customer_id, actual_purchases: each customer's purchase occasions (days with payments)
    dated after `after` and on or before as_of; customers without one have no row."""
    query = sql.SQL(
        "SELECT customer_id, count(DISTINCT transaction_date::date) FROM {t} "
        "WHERE transaction_date >= %(start)s AND transaction_date < %(end)s GROUP BY customer_id"
    ).format(t=_t(schema, "transactions"))
    params = _bounds(as_of) | {"start": after + dt.timedelta(days=1)}
    types = {"customer_id": "text", "actual_purchases": "int8"}
    return read_query(conn, query, params, types).astype({"customer_id": "str"})


def _bounds(as_of: dt.date) -> dict[str, dt.date]:
    """Events count up to the end of the as_of day (`month`: the first day of as_of's)."""
    return {"as_of": as_of, "end": as_of + dt.timedelta(days=1), "month": as_of.replace(day=1)}
