"""Per-customer totals of the event feeds, kept in step with their source tables.

`_attendance_months` holds one row per (customer_id, month) with the visits, the first and the
last check-in of that month; `_transactions_days` one row per (customer_id, day) with the
payments and their amount. Triggers on the source table keep each exact in the transaction
that changes the accepted rows (a drop file's slice, a replaced or removed file, rows freed or
held by the cross-row rules), so a summary always describes exactly the stored events. The
analytics read them instead of every event: what a snapshot costs grows with the customers
(and their months or days), not with the rows of the history.

Rows added are merged into their periods (counts and sums added, first / last by least /
greatest); a delete recomputes the periods of the customers it touched from the rows that
remain (a first or last event cannot be decremented). A first load sums the whole file once,
with the triggers off while it is written.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg2 import sql

from .tables import Cursor, table_exists

_MERGE = {
    "add": "m.{c} + EXCLUDED.{c}",
    "least": "least(m.{c}, EXCLUDED.{c})",
    "greatest": "greatest(m.{c}, EXCLUDED.{c})",
}


@dataclass(frozen=True)
class Measure:
    """A column of a summary: `aggregate` over the source rows of one customer and period,
    and how a new row's value `merge`s into a stored one (a key of _MERGE)."""

    name: str
    pg_type: str
    aggregate: str
    merge: str


@dataclass(frozen=True)
class Summary:
    """A source table summed per customer and `period` (`period_of`: a row's period, SQL).

    `period_first` orders the key (and the rows) by period, then customer: a drop's rows
    (one day: one period) then meet one stretch of the table and its key, not a page per
    customer spread over all of it, which a large table no longer holds in memory. Such a
    table has no index by customer: a delete's recount scans it, beside the scan of the
    source table the recount makes anyway. Without it, per-customer readers get the rows in
    customer order (the key order), which an ordered aggregate needs."""

    source: str
    table: str
    period: str
    period_of: str
    measures: tuple[Measure, ...]
    period_first: bool = False

    def triggers(self) -> tuple[str, str]:
        return f"{self.table}_add", f"{self.table}_remove"

    @property
    def key(self) -> tuple[str, str]:
        return (self.period, "customer_id") if self.period_first else ("customer_id", self.period)


CHECK_IN_MONTHS = Summary(
    source="attendance",
    table="_attendance_months",
    period="month",
    period_of="date_trunc('month', check_in)::date",
    measures=(
        Measure("visits", "bigint", "count(*)", "add"),
        Measure("first_check_in", "timestamp", "min(check_in)", "least"),
        Measure("last_check_in", "timestamp", "max(check_in)", "greatest"),
    ),
    period_first=True,  # readers sum months per customer: a hash aggregate needs no order
)
PAYMENT_DAYS = Summary(  # customer first: readers take each customer's first payment day
    source="transactions",
    table="_transactions_days",
    period="day",
    period_of="transaction_date::date",
    measures=(
        Measure("payments", "bigint", "count(*)", "add"),
        Measure("amount", "numeric", "sum(amount)", "add"),
    ),
)
SUMMARIES = {summary.source: summary for summary in (CHECK_IN_MONTHS, PAYMENT_DAYS)}

_FUNCTIONS = """
CREATE OR REPLACE FUNCTION {add}() RETURNS trigger LANGUAGE plpgsql AS $retention$
BEGIN
    INSERT INTO {summary} AS m {aggregate_added}
    ON CONFLICT (customer_id, {period}) DO UPDATE SET {merges};
    RETURN NULL;
END $retention$;
CREATE OR REPLACE FUNCTION {remove}() RETURNS trigger LANGUAGE plpgsql AS $retention$
BEGIN
    IF EXISTS (SELECT 1 FROM removed) THEN  -- the recount reads the source table
        DELETE FROM {summary} WHERE customer_id IN (SELECT customer_id FROM removed);
        INSERT INTO {summary} {aggregate_remaining};
    END IF;
    RETURN NULL;
END $retention$;
CREATE TRIGGER {add_trigger} AFTER INSERT ON {source}
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION {add}();
CREATE TRIGGER {remove_trigger} AFTER DELETE ON {source}
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION {remove}();
"""


def _names(schema: str, summary: Summary) -> dict[str, sql.Composable]:
    add, remove = summary.triggers()
    return {
        "summary": sql.Identifier(schema, summary.table),
        "source": sql.Identifier(schema, summary.source),
        "period": sql.Identifier(summary.period),
        "add": sql.Identifier(schema, add),
        "remove": sql.Identifier(schema, remove),
        "key": sql.Identifier(f"{summary.table}_key"),
        "period_index": sql.Identifier(schema, f"{summary.table}_{summary.period}"),
        "period_index_name": sql.Identifier(f"{summary.table}_{summary.period}"),
        "add_trigger": sql.Identifier(add),
        "remove_trigger": sql.Identifier(remove),
    }


def _aggregate(summary: Summary, rows: sql.Composable) -> sql.Composable:
    """SQL: one summary row per customer and period of `rows`, in the table's column order."""
    return sql.SQL(
        "SELECT customer_id, {period_of} AS {period}, {measures} FROM {rows} GROUP BY 1, 2"
    ).format(
        period_of=sql.SQL(summary.period_of),
        period=sql.Identifier(summary.period),
        measures=sql.SQL(", ").join(sql.SQL(m.aggregate) for m in summary.measures),
        rows=rows,
    )


def ensure_summary(cur: Cursor, schema: str, summary: Summary) -> None:
    """The summary table and the triggers that keep it, for an existing source table; a table
    stored before them (or one whose triggers went with a dropped source) is summed once."""
    if summary_kept(cur, schema, summary):
        return
    drop_summary(cur, schema, summary)
    names = _names(schema, summary)
    columns = sql.SQL(", ").join(
        sql.SQL("{} {} NOT NULL").format(sql.Identifier(m.name), sql.SQL(m.pg_type))
        for m in summary.measures
    )
    cur.execute(
        sql.SQL(
            'CREATE TABLE {summary} (customer_id text COLLATE "C" NOT NULL, '
            "{period} date NOT NULL, {columns})"
        ).format(columns=columns, **names)
    )
    remaining = sql.SQL("{} WHERE customer_id IN (SELECT customer_id FROM removed)").format(
        names["source"]
    )
    merges = sql.SQL(", ").join(
        sql.SQL("{c} = " + _MERGE[m.merge]).format(c=sql.Identifier(m.name))
        for m in summary.measures
    )
    cur.execute(
        sql.SQL(_FUNCTIONS).format(
            aggregate_added=_aggregate(summary, sql.Identifier("added")),
            aggregate_remaining=_aggregate(summary, remaining),
            merges=merges,
            **names,
        )
    )
    rebuild_summary(cur, schema, summary)


def summary_kept(cur: Cursor, schema: str, summary: Summary) -> bool:
    """Whether the summary table exists with its key in this version's order (an earlier
    version's is summed again, once) and both triggers on its source."""
    if not table_exists(cur, schema, summary.table):
        return False
    cur.execute(
        "SELECT array_agg(a.attname::text ORDER BY k.n) FROM pg_index i "
        "CROSS JOIN unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
        "WHERE i.indrelid = to_regclass(%s) AND i.indisprimary",
        [sql.Identifier(schema, summary.table).as_string(cur)],
    )
    if tuple(cur.fetchone()[0] or ()) != summary.key:
        return False
    cur.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass(%s) AND tgname = ANY(%s)",
        [sql.Identifier(schema, summary.source).as_string(cur), list(summary.triggers())],
    )
    return cur.fetchone()[0] == 2


def rebuild_summary(cur: Cursor, schema: str, summary: Summary) -> None:
    """The summary from every stored row: one pass, for a first load whose rows were written
    with the triggers off."""
    names = _names(schema, summary)
    # Indexes built after the rows: three times faster than kept up row by row.
    cur.execute(
        sql.SQL(
            "TRUNCATE {summary}; ALTER TABLE {summary} DROP CONSTRAINT IF EXISTS {key}; "
            "DROP INDEX IF EXISTS {period_index}"
        ).format(**names)
    )
    columns = sql.SQL(", ").join(map(sql.Identifier, summary.key))
    cur.execute(
        sql.SQL("INSERT INTO {summary} {aggregate} ORDER BY {columns}").format(
            aggregate=_aggregate(summary, names["source"]), columns=columns, **names
        )
    )
    cur.execute(
        sql.SQL("ALTER TABLE {summary} ADD CONSTRAINT {key} PRIMARY KEY ({columns})").format(
            columns=columns, **names
        )
    )
    if not summary.period_first:  # for the readers of a span of periods
        cur.execute(
            sql.SQL("CREATE INDEX {period_index_name} ON {summary} ({period})").format(**names)
        )
    cur.execute(sql.SQL("ANALYZE {summary}").format(**names))


def set_triggers(cur: Cursor, schema: str, summary: Summary, enabled: bool) -> None:
    """Switch the triggers off for a bulk first load (then rebuild_summary), or back on."""
    names = _names(schema, summary)
    action = sql.SQL("ENABLE" if enabled else "DISABLE")
    for trigger in ("add_trigger", "remove_trigger"):
        cur.execute(
            sql.SQL("ALTER TABLE {source} {action} TRIGGER {trigger}").format(
                action=action, trigger=names[trigger], **names
            )
        )


def drop_summary(cur: Cursor, schema: str, summary: Summary) -> None:
    """The table and the trigger functions (CASCADE: their triggers on the source too)."""
    names = _names(schema, summary)
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {summary}").format(**names))
    for function in ("add", "remove"):
        cur.execute(sql.SQL("DROP FUNCTION IF EXISTS {f}() CASCADE").format(f=names[function]))
