"""The full-rebuild invariant: after any sequence of drops, replacements and removals, the
source tables, held rows and rejected_rows equal what loading the folder's files from scratch
gives. Ids are small integers (string order breaks at "10" < "9") drawn from a small pool, so
duplicates across files and references to customers that arrive later are frequent."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg2 import sql

from retention_assets.core.sources import SOURCES
from retention_assets.ingest.plan import plan_drops
from retention_assets.ingest.store import store_file
from retention_assets.storage import slices
from retention_assets.storage.summaries import SUMMARIES, Summary
from retention_assets.storage.tables import read_query, read_table

FILES = {
    "customers": ["customers.csv", "customers_2.csv", "customers_b.csv"],
    "transactions": ["transactions.csv", "transactions_1.csv", "transactions_10.csv"],
    "attendance": ["attendance.csv", "attendance_9.csv", "attendance_a.csv"],
}
IDS = [str(i) for i in range(1, 13)]  # "1".."12": more ids than a file holds, repeats likely


def _customers(rows) -> str:
    return "customer_id,signup_date,home_club\n" + "".join(
        f"{cid},2024-0{1 + day % 9}-1{day % 10},club{day % 3}\n" for cid, day in rows
    )


def _transactions(rows) -> str:
    return "transaction_id,customer_id,transaction_date,amount\n" + "".join(
        f"T{tid},{cid},2024-05-{10 + day:02d} 10:00:00,{amount}.50\n"
        for tid, cid, day, amount in rows
    )


def _attendance(rows) -> str:
    return "attendance_id,customer_id,check_in,club\n" + "".join(
        f"A{aid},{cid},2024-0{5 + day % 3}-{10 + day:02d} 07:{30 + day}:00,north\n"
        for aid, cid, day in rows
    )


ids = st.sampled_from(IDS)
days = st.integers(0, 9)
CONTENT = {
    "customers": st.lists(st.tuples(ids, days), max_size=5).map(_customers),
    "transactions": st.lists(st.tuples(ids, ids, days, st.integers(0, 99)), max_size=5).map(
        _transactions
    ),
    "attendance": st.lists(st.tuples(ids, ids, days), max_size=5).map(_attendance),
}


@st.composite
def operation(draw):
    source = draw(st.sampled_from(sorted(FILES)))
    name = draw(st.sampled_from(FILES[source]))
    if draw(st.integers(0, 3)) == 0:
        return ("remove", name, None)
    return ("write", name, draw(CONTENT[source]))


def _apply(conn, schema: str, folder: Path) -> None:
    """What one sensor cycle or `retention-assets run` does: load new / changed files, then
    take out removed ones."""
    plan = plan_drops(folder, slices.manifest(conn, schema))
    for name, files in plan.load.items():
        for path in files:
            store_file(conn, schema, SOURCES[name], path, "test-run")
    if plan.remove:
        slices.remove_files(conn, schema, plan.remove)


def _snapshot(conn, schema: str) -> dict[str, pd.DataFrame]:
    out = {}
    for table in (
        *SOURCES,
        *(slices.held_table(name) for name in SOURCES),
        slices.REJECTS,
        *(summary.table for summary in SUMMARIES.values()),
    ):
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s)", [f'"{schema}"."{table}"'])
            if cur.fetchone()[0] is None:
                continue
        frame = read_table(conn, schema, table).drop(columns=["run_id"], errors="ignore")
        frame = frame[sorted(frame.columns)]
        out[table] = frame.sort_values(list(frame.columns), ignore_index=True)
    return {name: frame for name, frame in out.items() if len(frame)}  # empty = absent


def _assert_same_tables(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame]) -> None:
    """Two _snapshot results hold the same tables, row for row."""
    assert sorted(got) == sorted(want)
    for table in want:
        pd.testing.assert_frame_equal(got[table], want[table], obj=table)


def _drop_schemas(conn, *schemas: str) -> None:
    with conn.cursor() as cur:
        for schema in schemas:
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _summed_afresh(conn, schema: str, summary: Summary) -> pd.DataFrame:
    """A summary table computed afresh from its source table, in _snapshot's layout."""
    measures = ", ".join(f"{m.aggregate} AS {m.name}" for m in summary.measures)
    query = sql.SQL(
        "SELECT customer_id, {period_of} AS {period}, {measures} FROM {source} GROUP BY 1, 2"
    ).format(
        period_of=sql.SQL(summary.period_of),
        period=sql.Identifier(summary.period),
        measures=sql.SQL(measures),
        source=sql.Identifier(schema, summary.source),
    )
    types = {"customer_id": "text", summary.period: "date"} | {
        m.name: {"bigint": "int8"}.get(m.pg_type, m.pg_type) for m in summary.measures
    }
    frame = read_query(conn, query, {}, types)
    frame = frame.astype({m.name: "int64" for m in summary.measures if m.pg_type == "bigint"})
    frame = frame[sorted(frame.columns)]
    return frame.sort_values(list(frame.columns), ignore_index=True)


@settings(
    max_examples=int(os.environ.get("RETENTION_INVARIANT_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=st.lists(operation(), min_size=1, max_size=7))
def test_any_sequence_of_drops_equals_a_rebuild(operations, conn, tmp_path_factory):
    folder = tmp_path_factory.mktemp("drops")
    incremental, rebuilt = f"inc_{uuid.uuid4().hex[:8]}", f"reb_{uuid.uuid4().hex[:8]}"
    try:
        for step, (kind, name, text) in enumerate(operations):
            path = folder / name
            if kind == "remove":
                path.unlink(missing_ok=True)
            else:
                path.write_text(text)
                os.utime(path, ns=(step * 10**9 + 1, step * 10**9 + 1))  # a change is seen
            _apply(conn, incremental, folder)
        _apply(conn, rebuilt, folder)
        got = _snapshot(conn, incremental)
        _assert_same_tables(got, _snapshot(conn, rebuilt))
        for summary in SUMMARIES.values():
            if summary.table in got:
                fresh = _summed_afresh(conn, incremental, summary)
                pd.testing.assert_frame_equal(got[summary.table], fresh, obj=summary.table)
    finally:
        _drop_schemas(conn, incremental, rebuilt)


def test_a_later_customers_drop_frees_held_attendance_and_a_replaced_first_file_moves_the_winner(
    conn, tmp_path
):
    """The cases by hand: attendance before its customers; a duplicate id whose first
    occurrence is replaced away."""
    schema = f"hand_{uuid.uuid4().hex[:8]}"
    try:
        (tmp_path / "attendance.csv").write_text(_attendance([("1", "10", 0), ("2", "9", 1)]))
        _apply(conn, schema, tmp_path)
        rejects = read_table(conn, schema, slices.REJECTS).sort_values("line")
        assert rejects["reason"].tolist() == ["unknown customer_id '10'", "unknown customer_id '9'"]
        assert rejects["line"].tolist() == [2, 3]

        (tmp_path / "customers.csv").write_text(_customers([("9", 1), ("10", 2)]))
        _apply(conn, schema, tmp_path)
        assert read_table(conn, schema, slices.REJECTS).empty
        stored = read_table(conn, schema, "attendance")
        assert sorted(stored["attendance_id"]) == ["A1", "A2"]

        (tmp_path / "attendance_9.csv").write_text(_attendance([("1", "9", 5)]))
        _apply(conn, schema, tmp_path)
        rejects = read_table(conn, schema, slices.REJECTS)
        assert rejects["reason"].tolist() == [
            "duplicate attendance_id (first at attendance.csv line 2)"
        ]
        assert rejects["file"].tolist() == ["attendance_9.csv"]

        (tmp_path / "attendance.csv").write_text(_attendance([("2", "9", 1)]))
        os.utime(tmp_path / "attendance.csv", ns=(10**9, 10**9))
        _apply(conn, schema, tmp_path)
        assert read_table(conn, schema, slices.REJECTS).empty
        stored = read_table(conn, schema, "attendance").set_index("attendance_id")
        assert stored.loc["A1", "_file"] == "attendance_9.csv"
        assert stored.loc["A1", "customer_id"] == "9"

        (tmp_path / "customers.csv").unlink()
        _apply(conn, schema, tmp_path)
        assert read_table(conn, schema, "attendance").empty
        assert len(read_table(conn, schema, slices.REJECTS)) == 2
    finally:
        _drop_schemas(conn, schema)


def test_a_source_s_only_file_written_anew_is_loaded_as_a_first_load(conn, tmp_path):
    """The nightly whole export: customers.csv (the only customers file) again with a customer
    gone, one new and one repeated. The source is emptied and loaded like a first file (its
    storage is new); the references follow, and every table equals a rebuild."""
    schema, rebuilt = f"only_{uuid.uuid4().hex[:8]}", f"onlyr_{uuid.uuid4().hex[:8]}"
    try:
        (tmp_path / "customers.csv").write_text(_customers([("1", 1), ("2", 2), ("3", 3)]))
        (tmp_path / "attendance.csv").write_text(
            _attendance([("1", "1", 0), ("2", "2", 1), ("3", "4", 2)])
        )
        _apply(conn, schema, tmp_path)
        assert read_table(conn, schema, slices.REJECTS)["reason"].tolist() == [
            "unknown customer_id '4'"
        ]
        filenode = f"SELECT pg_relation_filenode('\"{schema}\".customers')"
        with conn.cursor() as cur:
            cur.execute(filenode)
            before = cur.fetchone()[0]
        (tmp_path / "customers.csv").write_text(
            _customers([("1", 1), ("4", 4), ("3", 3), ("1", 5)])
        )
        os.utime(tmp_path / "customers.csv", ns=(10**9, 10**9))
        _apply(conn, schema, tmp_path)
        with conn.cursor() as cur:
            cur.execute(filenode)
            assert cur.fetchone()[0] != before  # emptied (TRUNCATE), then written afresh
        rejects = read_table(conn, schema, slices.REJECTS).sort_values("source")
        assert rejects["reason"].tolist() == [
            "unknown customer_id '2'",
            "duplicate customer_id (first at customers.csv line 2)",
        ]
        stored = read_table(conn, schema, "attendance").set_index("attendance_id")
        assert sorted(stored.index) == ["A1", "A3"]  # customer 4 came, customer 2 went
        _apply(conn, rebuilt, tmp_path)
        _assert_same_tables(_snapshot(conn, schema), _snapshot(conn, rebuilt))
    finally:
        _drop_schemas(conn, schema, rebuilt)


def test_a_drop_touches_only_its_ids(conn, tmp_path):
    """Loading one new file rewrites no stored row of other files (their physical rows stay)."""
    schema = f"touch_{uuid.uuid4().hex[:8]}"
    try:
        (tmp_path / "customers.csv").write_text(_customers([(c, 1) for c in IDS]))
        (tmp_path / "attendance.csv").write_text(
            _attendance([(str(i), IDS[i % 12], i % 10) for i in range(200)])
        )
        _apply(conn, schema, tmp_path)
        with conn.cursor() as cur:
            cur.execute(f'SELECT ctid::text, attendance_id FROM "{schema}".attendance')
            before = dict(cur.fetchall())
        (tmp_path / "attendance_9.csv").write_text(_attendance([("x1", "1", 2), ("x2", "2", 3)]))
        _apply(conn, schema, tmp_path)
        with conn.cursor() as cur:
            cur.execute(
                f'SELECT ctid::text, attendance_id FROM "{schema}".attendance '
                "WHERE _file = 'attendance.csv'"
            )
            after = dict(cur.fetchall())
        assert after == before
    finally:
        _drop_schemas(conn, schema)


def test_rows_of_a_failed_check_are_not_stored(conn, tmp_path):
    """`accept` raising rolls the whole file back: tables, rejects and manifest as before."""
    schema = f"acc_{uuid.uuid4().hex[:8]}"
    try:
        (tmp_path / "customers.csv").write_text(_customers([("1", 1)]))
        _apply(conn, schema, tmp_path)
        before = _snapshot(conn, schema)
        (tmp_path / "customers_2.csv").write_text(_customers([("2", 1)]))

        def refuse(cur):
            raise RuntimeError("check failed")

        with pytest.raises(RuntimeError, match="check failed"):
            store_file(
                conn, schema, SOURCES["customers"], tmp_path / "customers_2.csv", "r", refuse
            )
        assert list(slices.manifest(conn, schema)) == [("customers", "customers.csv")]
        _assert_same_tables(_snapshot(conn, schema), before)
    finally:
        _drop_schemas(conn, schema)
