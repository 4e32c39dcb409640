"""Monthly cohort retention computed where the check-ins are: one GROUP BY over (cohort, month)
in PostgreSQL, so only the small cohort x month table reaches Python whatever the history
length."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from psycopg2 import sql

from .activity import COUNTED_MONTHS, _bounds, _t
from .summaries import CHECK_IN_MONTHS
from .tables import Connection, read_query

COLUMNS = [
    "cohort_month",
    "months_since_signup",
    "cohort_size",
    "active_customers",
    "active_share",
    "partial",
]

# cohorts: each customer signed up by as_of with the first day of the signup month.
# visits: the months each customer checked in, up to the end of the as_of day, from the
#   check-ins' monthly summary (storage.summaries): one row per customer and month, not one per
#   visit.
# active: customers of each cohort with a check-in in each calendar month from the signup month
#   on (one in the signup month before the signup day counts for k = 0, earlier ones for no k).
# first: the first month with a counted check-in. Exports often hold a window of the
#   check-ins (the last two years, say) and every signup since the gym opened: the months
#   before it are not observed, so they get NULL, not 0 (a 0 there would drag the average
#   curve down with months nobody could have been seen in).
# The grid (generate_series) gives every k from 0 to the as_of month, so observed months
# nobody came show as 0 instead of missing.
_QUERY = """
WITH cohorts AS (
    SELECT customer_id, date_trunc('month', signup_date)::date AS cohort_month
    FROM {customers}
    WHERE signup_date <= %(as_of)s
),
sizes AS (
    SELECT cohort_month, count(*) AS cohort_size FROM cohorts GROUP BY cohort_month
),
visits AS (
    SELECT customer_id, month AS activity_month FROM {months} WHERE {counted}
),
active AS (
    SELECT c.cohort_month, v.activity_month, count(*) AS active_customers
    FROM visits v
    JOIN cohorts c ON c.customer_id = v.customer_id
    WHERE v.activity_month >= c.cohort_month
    GROUP BY 1, 2
),
first AS (
    SELECT min(activity_month) AS month FROM active
)
SELECT s.cohort_month, g.k AS months_since_signup, s.cohort_size,
    CASE WHEN g.month >= f.month THEN coalesce(x.active_customers, 0) END AS active_customers,
    CASE WHEN g.month >= f.month THEN coalesce(x.active_customers, 0)::float8 / s.cohort_size
    END AS active_share,
    g.month = %(month)s AS partial
FROM sizes s
CROSS JOIN first f
CROSS JOIN LATERAL (
    SELECT k, (s.cohort_month + make_interval(months => k))::date AS month
    FROM generate_series(
        0,
        (extract(year FROM %(month)s::date) * 12 + extract(month FROM %(month)s::date)
         - extract(year FROM s.cohort_month) * 12 - extract(month FROM s.cohort_month))::int
    ) AS k
) g
LEFT JOIN active x ON x.cohort_month = s.cohort_month AND x.activity_month = g.month
ORDER BY s.cohort_month, g.k
"""

_TYPES = {
    "cohort_month": "date",
    "months_since_signup": "int4",
    "cohort_size": "int8",
    "active_customers": "int8",
    "active_share": "float8",
    "partial": "bool",
}


def cohort_retention(conn: Connection, schema: str, as_of: dt.date) -> pd.DataFrame:
    """Share of each signup-month cohort active in each calendar month since signing up.

    Parameters
    ----------
    conn : psycopg2 connection
        With no transaction open (the read runs in its own).
    schema : str
        Schema holding ``customers`` and the check-ins' monthly summary (storage.summaries).
    as_of : datetime.date
        Snapshot date: customers signed up by then, check-ins dated on or before it (the whole
        day counts).

    Returns
    -------
    pandas.DataFrame
        One row per cohort and k = 0 .. months from the cohort's month to as_of's month, sorted
        by cohort_month, months_since_signup. Columns: cohort_month (date32, first of month),
        months_since_signup (int64), cohort_size (int64, customers who signed up in that month,
        attended or not), active_customers (Int64, of them with at least one check-in in
        calendar month cohort_month + k), active_share (float64, active / size) and partial
        (bool, True in as_of's month, which the snapshot sees only up to as_of: its share is
        a lower bound, not comparable with complete months). active_customers and
        active_share are missing in months before the first month with a counted check-in:
        not observed, rather than nobody came (without any check-in, in every month).
    """
    query = sql.SQL(_QUERY).format(
        customers=_t(schema, "customers"),
        months=_t(schema, CHECK_IN_MONTHS.table),
        counted=sql.SQL(COUNTED_MONTHS),
    )
    frame = read_query(conn, query, _bounds(as_of), _TYPES)
    return frame.astype(
        {
            "months_since_signup": "int64",
            "cohort_size": "int64",
            "active_customers": "Int64",
            "partial": "bool",
        }
    )
