"""The feeds' per-customer summaries: kept exact by the triggers through inserts and deletes,
built once for a source table stored before them, and per-customer figures read from them equal
those counted from every event, whatever as_of (a month's end, or a day with later check-ins in
its month)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pandas as pd
import pytest

from retention_assets.storage.activity import (
    customer_activity,
    feed_ends,
    month_needs_check_ins,
    occasions_between,
    order_summary,
    purchase_occasions,
)
from retention_assets.storage.summaries import CHECK_IN_MONTHS, PAYMENT_DAYS, ensure_summary

_DDL = """
CREATE SCHEMA {s};
CREATE TABLE {s}.customers (customer_id text COLLATE "C", signup_date date);
CREATE TABLE {s}.transactions (customer_id text COLLATE "C", transaction_date timestamp,
    amount numeric);
CREATE TABLE {s}.attendance (customer_id text COLLATE "C", check_in timestamp);
"""

CUSTOMERS = [("1", "2024-01-05"), ("2", "2024-02-01"), ("10", "2024-01-20"), ("9", "2024-03-01")]
CHECK_INS = [
    ("1", "2024-01-06 07:00"),
    ("1", "2024-01-30 19:00"),
    ("1", "2024-02-10 08:00"),
    ("1", "2024-02-20 08:00"),  # after the mid-month as_of 2024-02-15
    ("2", "2024-02-01 06:00"),
    ("2", "2024-02-15 23:59"),  # the whole as_of day counts
    ("10", "2024-01-25 12:00"),
    ("10", "2024-02-16 00:00"),  # the day after as_of
    ("10", "2024-03-02 10:00"),
]


@pytest.fixture
def schema(conn) -> Iterator[str]:
    name = f"visits_{uuid.uuid4().hex[:10]}"
    with conn.cursor() as cur:
        cur.execute(_DDL.format(s=f'"{name}"'))
        cur.executemany(f'INSERT INTO "{name}".customers VALUES (%s, %s)', CUSTOMERS)
    yield name
    with conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA "{name}" CASCADE')


def _months(conn, schema: str) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT customer_id, month::text, visits, first_check_in::text, last_check_in::text "
            f'FROM "{schema}".{CHECK_IN_MONTHS.table} ORDER BY 1, 2'
        )
        return cur.fetchall()


def _summarise(conn, schema: str) -> None:
    with conn.cursor() as cur:
        ensure_summary(cur, schema, CHECK_IN_MONTHS)
        ensure_summary(cur, schema, PAYMENT_DAYS)


def _insert(conn, schema: str, rows: list[tuple[str, str]]) -> None:
    with conn.cursor() as cur:
        cur.executemany(f'INSERT INTO "{schema}".attendance VALUES (%s, %s)', rows)


def test_totals_follow_inserts_and_deletes(conn, schema):
    _summarise(conn, schema)
    _insert(conn, schema, CHECK_INS)
    assert _months(conn, schema) == [
        ("1", "2024-01-01", 2, "2024-01-06 07:00:00", "2024-01-30 19:00:00"),
        ("1", "2024-02-01", 2, "2024-02-10 08:00:00", "2024-02-20 08:00:00"),
        ("10", "2024-01-01", 1, "2024-01-25 12:00:00", "2024-01-25 12:00:00"),
        ("10", "2024-02-01", 1, "2024-02-16 00:00:00", "2024-02-16 00:00:00"),
        ("10", "2024-03-01", 1, "2024-03-02 10:00:00", "2024-03-02 10:00:00"),
        ("2", "2024-02-01", 2, "2024-02-01 06:00:00", "2024-02-15 23:59:00"),
    ]
    with conn.cursor() as cur:  # the last check-in of a month, and a month's only one, go
        cur.execute(
            f'DELETE FROM "{schema}".attendance WHERE check_in IN '
            "('2024-02-20 08:00', '2024-03-02 10:00')"
        )
    assert _months(conn, schema) == [
        ("1", "2024-01-01", 2, "2024-01-06 07:00:00", "2024-01-30 19:00:00"),
        ("1", "2024-02-01", 1, "2024-02-10 08:00:00", "2024-02-10 08:00:00"),
        ("10", "2024-01-01", 1, "2024-01-25 12:00:00", "2024-01-25 12:00:00"),
        ("10", "2024-02-01", 1, "2024-02-16 00:00:00", "2024-02-16 00:00:00"),
        ("2", "2024-02-01", 2, "2024-02-01 06:00:00", "2024-02-15 23:59:00"),
    ]


def test_a_table_stored_before_the_totals_is_summed_once(conn, schema):
    _insert(conn, schema, CHECK_INS)
    with conn.cursor() as cur:
        ensure_summary(cur, schema, CHECK_IN_MONTHS)
        ensure_summary(cur, schema, CHECK_IN_MONTHS)  # a second call changes nothing
    assert len(_months(conn, schema)) == 6
    with conn.cursor() as cur:  # the triggers were created with it
        cur.execute(f"DELETE FROM \"{schema}\".attendance WHERE customer_id = '10'")
    assert [row[0] for row in _months(conn, schema)] == ["1", "1", "2"]


def _key(conn, schema: str, table: str) -> list[str]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT a.attname::text FROM pg_index i "
            "CROSS JOIN unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
            "WHERE i.indrelid = to_regclass(%s) AND i.indisprimary ORDER BY k.n",
            [f'"{schema}".{table}'],
        )
        return [name for (name,) in cur.fetchall()]


def test_check_in_months_are_keyed_month_first_and_an_earlier_key_is_rebuilt(conn, schema):
    """Month first: a day's drop meets one stretch of the table and its key. A table an
    earlier version keyed customer first is summed again, once, with the same rows."""
    _summarise(conn, schema)
    _insert(conn, schema, CHECK_INS)
    table = f'"{schema}".{CHECK_IN_MONTHS.table}'
    assert _key(conn, schema, CHECK_IN_MONTHS.table) == ["month", "customer_id"]
    assert _key(conn, schema, PAYMENT_DAYS.table) == ["customer_id", "day"]
    before = _months(conn, schema)
    with conn.cursor() as cur:
        cur.execute(f"ALTER TABLE {table} DROP CONSTRAINT {CHECK_IN_MONTHS.table}_key")
        cur.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (customer_id, month)")
        cur.execute(f"UPDATE {table} SET visits = visits + 1")  # stale: must be summed again
        ensure_summary(cur, schema, CHECK_IN_MONTHS)
    assert _key(conn, schema, CHECK_IN_MONTHS.table) == ["month", "customer_id"]
    assert _months(conn, schema) == before
    _insert(conn, schema, [("9", "2024-03-05 09:00")])  # the triggers came back with it
    assert ("9", "2024-03-01", 1, "2024-03-05 09:00:00", "2024-03-05 09:00:00") in _months(
        conn, schema
    )


def _brute_force(as_of: dt.date) -> pd.DataFrame:
    """frequency and last_attendance counted from every check-in, by customer_id."""
    rows = pd.DataFrame(CHECK_INS, columns=["customer_id", "check_in"])
    rows["check_in"] = pd.to_datetime(rows["check_in"])
    seen = rows.loc[rows["check_in"] < pd.Timestamp(as_of + dt.timedelta(days=1))]
    return seen.groupby("customer_id")["check_in"].agg(frequency="size", last_attendance="max")


@pytest.mark.parametrize(
    "as_of, exact",
    [
        (dt.date(2024, 2, 29), True),  # a month's end: the monthly rows alone
        (dt.date(2024, 2, 15), False),  # check-ins later in February: counted one by one
        (dt.date(2024, 1, 31), True),
        (dt.date(2024, 3, 1), True),  # March's only check-in, on the 2nd, is left out whole
        (dt.date(2024, 2, 16), False),  # customer 1: February 10 counts, February 20 not
    ],
)
def test_per_customer_figures_equal_counting_every_check_in(conn, schema, as_of, exact):
    _summarise(conn, schema)
    _insert(conn, schema, CHECK_INS)
    with conn.cursor() as cur:
        assert month_needs_check_ins(cur, schema, as_of) is not exact
    activity = customer_activity(conn, schema, as_of).set_index("customer_id")
    want = _brute_force(as_of)
    signed_up = [cid for cid, signup in CUSTOMERS if dt.date.fromisoformat(signup) <= as_of]
    assert sorted(activity.index) == sorted(signed_up)
    for cid in signed_up:
        expected = want.loc[cid] if cid in want.index else None
        got = activity.loc[cid]
        if expected is None:
            assert pd.isna(got["last_attendance"]) and pd.isna(got["frequency"]), cid
        else:
            assert got["frequency"] == expected["frequency"], cid
            assert got["last_attendance"] == expected["last_attendance"], cid


def test_feed_ends_reads_the_latest_check_in_from_the_totals(conn, schema):
    _summarise(conn, schema)
    _insert(conn, schema, CHECK_INS)
    _pay(conn, schema, PAYMENTS)
    assert feed_ends(conn, schema) == (dt.date(2024, 3, 2), dt.date(2024, 2, 20))


PAYMENTS = [
    ("1", "2024-01-06 07:00", "10.50"),
    ("1", "2024-01-06 19:00", "4.25"),  # the same day: one purchase occasion of 14.75
    ("1", "2024-02-20 08:00", "30.00"),
    ("2", "2024-02-01 06:00", "0.00"),  # a free payment still makes an occasion
    ("10", "2024-01-25 12:00", "7.10"),
]


def _pay(conn, schema: str, rows: list[tuple[str, str, str]]) -> None:
    with conn.cursor() as cur:
        cur.executemany(f'INSERT INTO "{schema}".transactions VALUES (%s, %s, %s)', rows)


def test_payment_figures_from_the_daily_summary(conn, schema):
    _summarise(conn, schema)
    _pay(conn, schema, PAYMENTS)
    with conn.cursor() as cur:  # a day's last payment goes: its day keeps the other one
        cur.execute(
            f"DELETE FROM \"{schema}\".transactions WHERE transaction_date = '2024-01-06 19:00'"
        )
    _pay(conn, schema, [("1", "2024-01-06 20:00", "4.25")])
    as_of = dt.date(2024, 2, 19)
    orders = order_summary(conn, schema, as_of, window_days=30).set_index("customer_id")
    assert orders.to_dict("index") == {
        "1": {"n_orders": 2, "total_spend": 14.75, "orders_in_window": 0},
        "10": {"n_orders": 1, "total_spend": 7.10, "orders_in_window": 1},
        "2": {"n_orders": 1, "total_spend": 0.0, "orders_in_window": 1},
    }
    occasions = purchase_occasions(conn, schema, dt.date(2024, 2, 29)).set_index("customer_id")
    assert occasions.loc["1", "occasions"] == 2
    assert occasions.loc["1", "first_amount"] == 14.75
    assert occasions.loc["1", "total_amount"] == 44.75
    assert str(occasions.loc["1", "last_date"]) == "2024-02-20"
    between = occasions_between(conn, schema, dt.date(2024, 1, 25), dt.date(2024, 2, 29))
    assert dict(zip(between["customer_id"], between["actual_purchases"], strict=True)) == {
        "1": 1,
        "2": 1,
    }
    monetary = customer_activity(conn, schema, as_of).set_index("customer_id")["monetary"]
    assert monetary.to_dict() == {"1": 14.75, "2": 0.0, "10": 7.10}
