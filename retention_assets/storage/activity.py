"""Per-customer figures computed where the events are, from the per-customer summaries of the
event feeds (storage.summaries: check-ins per month, payments per day), so the analytics hold
one row per customer and PostgreSQL reads a row per customer and period, whatever the length
of the history."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from psycopg2 import sql

from .summaries import CHECK_IN_MONTHS, PAYMENT_DAYS
from .tables import Connection, Cursor, _transaction, read_query


def _t(schema: str, table: str) -> sql.Identifier:
    return sql.Identifier(schema, table)


def _months(schema: str) -> sql.Identifier:
    return _t(schema, CHECK_IN_MONTHS.table)


def _days(schema: str) -> sql.Identifier:
    return _t(schema, PAYMENT_DAYS.table)


def feed_ends(conn: Connection, schema: str) -> tuple[dt.date | None, dt.date | None]:
    """Dates of the latest check-in and the latest transaction stored (None if none)."""
    with _transaction(conn) as cur:
        cur.execute(
            sql.SQL(
                "SELECT (SELECT max(last_check_in)::date FROM {m} "
                "  WHERE month = (SELECT max(month) FROM {m})), "
                "(SELECT max(day) FROM {d})"
            ).format(m=_months(schema), d=_days(schema))
        )
        return cur.fetchone()


def customer_activity(conn: Connection, schema: str, as_of: dt.date) -> pd.DataFrame:
    """customer_id, signup_date, last_attendance, frequency, monetary of every customer
    signed up by as_of, counting the events dated on or before as_of; and first_event, the
    date of the customer's earliest check-in or payment (which may precede the signup)."""
    with _transaction(conn) as cur:
        exact = not month_needs_check_ins(cur, schema, as_of)
    query = sql.SQL(
        "SELECT c.customer_id, c.signup_date, a.last_check_in, a.visits, t.monetary, "
        "least(a.first_check_in::date, t.first_payment) AS first_event "
        "FROM {c} c "
        "LEFT JOIN ({a}) a USING (customer_id) "
        "LEFT JOIN (SELECT customer_id, sum(amount) AS monetary, min(day) AS first_payment "
        "  FROM {d} WHERE day <= %(as_of)s GROUP BY customer_id) t USING (customer_id) "
        "WHERE c.signup_date <= %(as_of)s"
    ).format(c=_t(schema, "customers"), a=_visits(schema, exact), d=_days(schema))
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


def month_needs_check_ins(cur: Cursor, schema: str, as_of: dt.date) -> bool:
    """Whether a customer checked in both up to and after the as_of day in as_of's month:
    then that month's summary row describes more than the snapshot sees, and the month's
    figures come from its check-ins (a row wholly after as_of is simply left out)."""
    cur.execute(
        sql.SQL(
            "SELECT EXISTS (SELECT 1 FROM {m} WHERE month = %(month)s "
            "AND first_check_in < %(end)s AND last_check_in >= %(end)s)"
        ).format(m=_months(schema)),
        _bounds(as_of),
    )
    return bool(cur.fetchone()[0])


def _visits(schema: str, exact_month: bool) -> sql.Composable:
    """SQL: customer_id, visits, first_check_in, last_check_in of the check-ins up to the end
    of the as_of day, per customer. Months before as_of's come from their summary rows; as_of's
    month too when `exact_month` (month_needs_check_ins said no), else from its check-ins."""
    if exact_month:
        return sql.SQL(
            "SELECT customer_id, sum(visits) AS visits, min(first_check_in) AS first_check_in, "
            "max(last_check_in) AS last_check_in FROM {m} WHERE {counted} GROUP BY customer_id"
        ).format(m=_months(schema), counted=sql.SQL(COUNTED_MONTHS))
    return sql.SQL(
        "SELECT customer_id, sum(visits) AS visits, min(first_check_in) AS first_check_in, "
        "max(last_check_in) AS last_check_in FROM ("
        "  SELECT customer_id, visits, first_check_in, last_check_in FROM {m} "
        "  WHERE month < %(month)s "
        "  UNION ALL SELECT customer_id, 1, check_in, check_in FROM {a} "
        "  WHERE check_in >= %(month)s AND check_in < %(end)s) v "
        "GROUP BY customer_id"
    ).format(m=_months(schema), a=_t(schema, CHECK_IN_MONTHS.source))


# The summary rows of months with a check-in up to the end of the as_of day: every month
# before as_of's, and as_of's when its first check-in is early enough.
COUNTED_MONTHS = "month < %(month)s OR (month = %(month)s AND first_check_in < %(end)s)"


def order_summary(conn: Connection, schema: str, as_of: dt.date, window_days: int) -> pd.DataFrame:
    """customer_id, n_orders, total_spend (orders on or before as_of) and orders_in_window (in
    the window_days calendar days ending with as_of) of every customer with an order."""
    query = sql.SQL(
        "SELECT customer_id, sum(payments)::bigint AS n_orders, sum(amount) AS total_spend, "
        "coalesce(sum(payments) FILTER (WHERE day >= %(window_start)s), 0)::bigint "
        "AS orders_in_window FROM {d} WHERE day <= %(as_of)s GROUP BY customer_id"
    ).format(d=_days(schema))
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
        "FROM {d} WHERE day <= %(as_of)s GROUP BY customer_id"
    ).format(d=_days(schema))
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
        "SELECT customer_id, count(*) FROM {d} "
        "WHERE day > %(after)s AND day <= %(as_of)s GROUP BY customer_id"
    ).format(d=_days(schema))
    params = _bounds(as_of) | {"after": after}
    types = {"customer_id": "text", "actual_purchases": "int8"}
    return read_query(conn, query, params, types).astype({"customer_id": "str"})


def _bounds(as_of: dt.date) -> dict[str, dt.date]:
    """Events count up to the end of the as_of day (`month`: the first day of as_of's)."""
    return {"as_of": as_of, "end": as_of + dt.timedelta(days=1), "month": as_of.replace(day=1)}
