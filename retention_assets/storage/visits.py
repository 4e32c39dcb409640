"""Check-ins per customer and calendar month, kept in step with the attendance table.

`_attendance_months` holds one row per (customer_id, month) with the visits, the first and the
last check-in of that month. Triggers on `attendance` keep it exact in the transaction that
changes the accepted rows (a drop file's slice, a replaced or removed file, rows freed or held
by the cross-row rules), so it always describes exactly the stored check-ins. Per-customer
figures and cohorts then read about one row per customer and month instead of every visit:
what a snapshot costs grows with the customers, not with the visits of the history.

Rows added are summed into their months; a delete recomputes the months of the customers it
touched from the check-ins that remain (a first or last check-in cannot be decremented).
"""

from __future__ import annotations

import datetime as dt

from psycopg2 import sql

from .tables import Cursor, table_exists

SOURCE = "attendance"
MONTHS = "_attendance_months"

_DDL = """
CREATE TABLE {months} (
    customer_id text COLLATE "C" NOT NULL,
    month date NOT NULL,
    visits bigint NOT NULL,
    first_check_in timestamp NOT NULL,
    last_check_in timestamp NOT NULL,
    PRIMARY KEY (customer_id, month)
);
CREATE INDEX ON {months} (month);
"""

# {months}, {attendance}: qualified names; {rows}: the check-ins to aggregate.
_AGGREGATE = """
SELECT customer_id, date_trunc('month', check_in)::date, count(*), min(check_in), max(check_in)
FROM {rows} GROUP BY 1, 2
"""

_FUNCTIONS = """
CREATE OR REPLACE FUNCTION {add}() RETURNS trigger LANGUAGE plpgsql AS $retention$
BEGIN
    INSERT INTO {months} AS m {aggregate_added}
    ON CONFLICT (customer_id, month) DO UPDATE SET
        visits = m.visits + EXCLUDED.visits,
        first_check_in = least(m.first_check_in, EXCLUDED.first_check_in),
        last_check_in = greatest(m.last_check_in, EXCLUDED.last_check_in);
    RETURN NULL;
END $retention$;
CREATE OR REPLACE FUNCTION {remove}() RETURNS trigger LANGUAGE plpgsql AS $retention$
BEGIN
    DELETE FROM {months} WHERE customer_id IN (SELECT customer_id FROM removed);
    INSERT INTO {months} {aggregate_remaining};
    RETURN NULL;
END $retention$;
"""

_TRIGGERS = """
CREATE TRIGGER {add_trigger} AFTER INSERT ON {attendance}
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION {add}();
CREATE TRIGGER {remove_trigger} AFTER DELETE ON {attendance}
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION {remove}();
"""


def _names(schema: str) -> dict[str, sql.Composable]:
    return {
        "months": sql.Identifier(schema, MONTHS),
        "attendance": sql.Identifier(schema, SOURCE),
        "add": sql.Identifier(schema, f"{MONTHS}_add"),
        "remove": sql.Identifier(schema, f"{MONTHS}_remove"),
        "add_trigger": sql.Identifier(f"{MONTHS}_add"),
        "remove_trigger": sql.Identifier(f"{MONTHS}_remove"),
    }


def ensure_months(cur: Cursor, schema: str) -> None:
    """The monthly table and the triggers that keep it, for an existing attendance table; a
    table stored before they existed is aggregated once."""
    if table_exists(cur, schema, MONTHS) and _has_triggers(cur, schema):
        return
    drop_months(cur, schema)  # left by an attendance table dropped since
    names = _names(schema)
    cur.execute(sql.SQL(_DDL).format(**names))
    cur.execute(
        sql.SQL(_FUNCTIONS).format(
            aggregate_added=sql.SQL(_AGGREGATE).format(rows=sql.Identifier("added")),
            aggregate_remaining=sql.SQL(_AGGREGATE).format(
                rows=sql.SQL("{} WHERE customer_id IN (SELECT customer_id FROM removed)").format(
                    names["attendance"]
                )
            ),
            **names,
        )
    )
    cur.execute(sql.SQL(_TRIGGERS).format(**names))
    rebuild_months(cur, schema)


def _has_triggers(cur: Cursor, schema: str) -> bool:
    cur.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass(%s) AND tgname = ANY(%s)",
        [sql.Identifier(schema, SOURCE).as_string(cur), [f"{MONTHS}_add", f"{MONTHS}_remove"]],
    )
    return cur.fetchone()[0] == 2


def rebuild_months(cur: Cursor, schema: str) -> None:
    """The monthly table from every stored check-in: one pass, for a first load whose rows
    were written with the triggers off."""
    names = _names(schema)
    cur.execute(sql.SQL("TRUNCATE {months}").format(**names))
    cur.execute(
        sql.SQL("INSERT INTO {months} {aggregate}").format(
            aggregate=sql.SQL(_AGGREGATE).format(rows=names["attendance"]), **names
        )
    )
    cur.execute(sql.SQL("ANALYZE {months}").format(**names))


def set_triggers(cur: Cursor, schema: str, enabled: bool) -> None:
    """Switch the triggers off for a bulk first load (then rebuild_months), or back on."""
    names = _names(schema)
    action = sql.SQL("ENABLE" if enabled else "DISABLE")
    for trigger in ("add_trigger", "remove_trigger"):
        cur.execute(
            sql.SQL("ALTER TABLE {attendance} {action} TRIGGER {trigger}").format(
                action=action, trigger=names[trigger], **names
            )
        )


def drop_months(cur: Cursor, schema: str) -> None:
    """With the attendance table: the triggers go with it, the functions and table here."""
    names = _names(schema)
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {months}").format(**names))
    for function in ("add", "remove"):
        cur.execute(sql.SQL("DROP FUNCTION IF EXISTS {f}() CASCADE").format(f=names[function]))


def month_needs_check_ins(cur: Cursor, schema: str, as_of: dt.date) -> bool:
    """Whether a customer checked in both up to and after the as_of day in as_of's month:
    then that month's row describes more than the snapshot sees, and the month's figures
    come from its check-ins (a row wholly after as_of is simply left out)."""
    cur.execute(
        sql.SQL(
            "SELECT EXISTS (SELECT 1 FROM {months} WHERE month = %(month)s "
            "AND first_check_in < %(end)s AND last_check_in >= %(end)s)"
        ).format(**_names(schema)),
        {"month": as_of.replace(day=1), "end": as_of + dt.timedelta(days=1)},
    )
    return bool(cur.fetchone()[0])


def visits_query(schema: str, exact_month: bool) -> sql.Composable:
    """SQL: customer_id, visits, first_check_in, last_check_in of the check-ins up to the end
    of the as_of day, per customer (parameters %(month)s, as_of's first day, and %(end)s).

    Months before as_of's come from the monthly table; as_of's month too when `exact_month`
    (month_needs_check_ins said no), else from its check-ins."""
    names = _names(schema)
    if exact_month:
        return sql.SQL(
            "SELECT customer_id, sum(visits) AS visits, min(first_check_in) AS first_check_in, "
            "max(last_check_in) AS last_check_in FROM {months} WHERE month < %(month)s "
            "OR (month = %(month)s AND first_check_in < %(end)s) GROUP BY customer_id"
        ).format(**names)
    return sql.SQL(
        "SELECT customer_id, sum(visits) AS visits, min(first_check_in) AS first_check_in, "
        "max(last_check_in) AS last_check_in FROM ("
        "  SELECT customer_id, visits, first_check_in, last_check_in FROM {months} "
        "  WHERE month < %(month)s "
        "  UNION ALL SELECT customer_id, 1, check_in, check_in FROM {attendance} "
        "  WHERE check_in >= %(month)s AND check_in < %(end)s) v "
        "GROUP BY customer_id"
    ).format(**names)


def active_months_query(schema: str) -> sql.Composable:
    """SQL: customer_id, activity_month of each month a customer checked in, up to the end of
    the as_of day (%(month)s, %(end)s as in visits_query): the monthly table alone answers it,
    as a month counts when its first check-in is early enough."""
    return sql.SQL(
        "SELECT customer_id, month AS activity_month FROM {months} "
        "WHERE month < %(month)s OR (month = %(month)s AND first_check_in < %(end)s)"
    ).format(**_names(schema))
