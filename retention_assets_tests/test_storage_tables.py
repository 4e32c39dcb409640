"""Table IO against a real PostgreSQL: dtype round-trip, atomic replace, quoting, upserts."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import date

import numpy as np
import pandas as pd
import psycopg2
import psycopg2.extensions
import pyarrow as pa
import pytest
from sklearn.preprocessing import StandardScaler

from retention_assets.storage import tables
from retention_assets.storage.database import connect, connect_kwargs
from retention_assets.storage.tables import (
    TableNotFoundError,
    count_rows,
    read_pickle,
    read_table,
    upsert_rows,
    write_pickle,
    write_table,
)

DATE = pd.ArrowDtype(pa.date32())
TEXTS = [
    "plain",
    "",
    None,
    'quote " comma , newline \n tab \t backslash \\ end',
    "ünïcødé ✓ 😀 中文",
    "NULL",
    "\\N",
    "\\.",
    "  padded  ",
    "crlf\r\nline",
]


@pytest.fixture
def schema() -> str:
    """A schema per test (created by the first write), so tests never see each other's tables."""
    return f"t_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def conn2(database_url: str) -> Iterator[psycopg2.extensions.connection]:
    connection = connect(database_url)
    connection.autocommit = True
    yield connection
    connection.close()


def query(conn: psycopg2.extensions.connection, statement: str, params: object = None) -> list:
    with conn.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchall()


def staging_tables(conn: psycopg2.extensions.connection) -> list[str]:
    return [
        name
        for (name,) in query(conn, "SELECT relname FROM pg_class WHERE relname LIKE '%staging%'")
    ]


def every_dtype_frame() -> pd.DataFrame:
    n = len(TEXTS)
    ts = pd.Series(
        pd.to_datetime(
            [
                "2024-05-01 07:32:00",
                "2024-05-01 07:32:00.123456",
                None,
                "1900-01-01",
                "2099-12-31 23:59:59.999999",
                "1970-01-01",
                "2000-02-29 12:00:00",
                None,
                "2024-01-01 00:00:00.000001",
                "1969-12-31 23:59:59",
            ],
            format="ISO8601",
        )
    )
    return pd.DataFrame(
        {
            "text_str": pd.Series(TEXTS, dtype="str"),
            "text_string_na": pd.Series(TEXTS, dtype=pd.StringDtype("python")),
            "text_object": pd.Series(TEXTS, dtype=object),
            "text_category": pd.Series(TEXTS, dtype="category"),
            "i16": np.array([0, 1, -1, 32767, -32768, 5, 6, 7, 8, 9], dtype=np.int16),
            "i32": np.array([0, 1, -1, 2**31 - 1, -(2**31), 5, 6, 7, 8, 9], dtype=np.int32),
            "i64": np.array([0, 1, -1, 2**63 - 1, -(2**63), 5, 6, 7, 8, 9], dtype=np.int64),
            "n16": pd.array([1, None, -32768, 32767, None, 0, 1, 2, 3, None], dtype="Int16"),
            "n32": pd.array([None] * (n - 1) + [2**31 - 1], dtype="Int32"),
            "n64": pd.array([2**63 - 1, None, 0, -1, None, 5, 6, 7, 8, -(2**63)], dtype="Int64"),
            "flag": [True, False] * (n // 2),
            "maybe": pd.array([True, None, False] * 3 + [None], dtype="boolean"),
            "f64": [
                0.1,
                1 / 3,
                np.inf,
                -np.inf,
                np.nan,
                5e-324,
                1.7976931348623157e308,
                -2.5,
                123456789.123456789,
                0.0,
            ],
            "f32": np.array(
                [0.1, 1 / 3, np.inf, -np.inf, np.nan, 1e-45, 3.4e38, -2.5, 7, 0], dtype=np.float32
            ),
            "amount": [19.99, 0.1, 1 / 3, np.nan, 1e300, 1e-300, -0.01, 1234567.89, 0.0, np.inf],
            "ts_s": ts.dt.floor("s").astype("datetime64[s]"),
            "ts_ms": ts.dt.floor("ms").astype("datetime64[ms]"),
            "ts_us": ts.astype("datetime64[us]"),
            "ts_ns": ts.astype("datetime64[ns]"),
            "ts_tz": ts.dt.tz_localize("Europe/Berlin", ambiguous="NaT", nonexistent="NaT"),
            "day": pd.array(
                [
                    date(2024, 5, 1),
                    None,
                    date(1, 1, 1),
                    date(9999, 12, 31),
                    date(2000, 2, 29),
                    None,
                    date(1970, 1, 1),
                    date(2024, 12, 31),
                    date(1899, 12, 31),
                    date(2024, 1, 1),
                ],
                dtype=DATE,
            ),
        }
    )


def expected_after_round_trip(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for name in ["text_str", "text_string_na", "text_object", "text_category"]:
        out[name] = pd.Series(TEXTS, dtype="str")
    for name in ["ts_s", "ts_ms", "ts_us", "ts_ns"]:
        out[name] = out[name].astype("datetime64[us]")
    out["ts_tz"] = out["ts_tz"].dt.tz_convert("UTC").astype("datetime64[us, UTC]")
    return out


@pytest.mark.parametrize("money", [["amount"], []], ids=["csv-copy", "binary-copy"])
def test_every_dtype_round_trips_with_nulls(conn, schema, money):
    df = every_dtype_frame()
    types = write_table(conn, schema, "every", df, money_columns=money)
    out = read_table(conn, schema, "every")

    pd.testing.assert_frame_equal(out, expected_after_round_trip(df), check_exact=True)
    assert out["text_str"][1] == ""
    assert out["text_str"].isna().tolist() == [value is None for value in TEXTS]
    assert isinstance(out.index, pd.RangeIndex)
    assert dict(types) == {
        "text_str": "text",
        "text_string_na": "text",
        "text_object": "text",
        "text_category": "text",
        "i16": "smallint",
        "i32": "integer",
        "i64": "bigint",
        "n16": "smallint",
        "n32": "integer",
        "n64": "bigint",
        "flag": "boolean",
        "maybe": "boolean",
        "f64": "double precision",
        "f32": "real",
        "amount": "numeric" if money else "double precision",
        "ts_s": "timestamp",
        "ts_ms": "timestamp",
        "ts_us": "timestamp",
        "ts_ns": "timestamp",
        "ts_tz": "timestamptz",
        "day": "date",
    }


@pytest.mark.parametrize("money", [["amount"], []], ids=["csv-copy", "binary-copy"])
def test_server_side_column_types_and_nulls(conn, schema, money):
    write_table(conn, schema, "every", every_dtype_frame(), money_columns=money)
    catalog = dict(
        (name, (data_type, nullable))
        for name, data_type, nullable in query(
            conn,
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'every'",
            [schema],
        )
    )
    assert catalog["i64"] == ("bigint", "NO")
    assert catalog["n64"] == ("bigint", "YES")
    assert catalog["flag"] == ("boolean", "NO")
    assert catalog["maybe"] == ("boolean", "YES")
    assert catalog["amount"] == ("numeric" if money else "double precision", "YES")
    assert catalog["ts_ns"] == ("timestamp without time zone", "YES")
    assert catalog["ts_tz"] == ("timestamp with time zone", "YES")
    assert catalog["day"] == ("date", "YES")
    [(nulls, empties, infinite, amount_text)] = query(
        conn,
        f"SELECT count(*) FILTER (WHERE text_object IS NULL), "
        f"count(*) FILTER (WHERE text_object = ''), "
        f"count(*) FILTER (WHERE f64 = 'Infinity'::float8), "
        f"max(amount::text) FILTER (WHERE amount < 20 AND amount > 19) "
        f'FROM "{schema}".every',
    )
    assert (nulls, empties, infinite, amount_text) == (1, 1, 1, "19.99")
    # NaN is stored as NULL, not as the float NaN.
    assert query(conn, f'SELECT count(*) FROM "{schema}".every WHERE f64 IS NULL') == [(1,)]


@pytest.mark.parametrize("money", [["money"], []], ids=["csv-copy", "binary-copy"])
def test_floats_round_trip_bit_exact(conn, schema, money):
    rng = np.random.default_rng(7)
    bits = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, 20_000, dtype=np.int64)
    doubles = bits.view(np.float64)
    doubles = doubles[np.isfinite(doubles)]
    singles = bits.astype(np.int32).view(np.float32)[: len(doubles)]
    singles = np.where(np.isfinite(singles), singles, np.float32(1.5))
    df = pd.DataFrame({"d": doubles, "money": doubles, "s": singles})
    write_table(conn, schema, "floats", df, money_columns=money)
    out = read_table(conn, schema, "floats")
    for name in ["d", "money", "s"]:
        assert out[name].dtype == df[name].dtype
        stored, given = out[name].to_numpy(), df[name].to_numpy()
        assert np.array_equal(stored.view(f"u{stored.itemsize}"), given.view(f"u{given.itemsize}"))


@pytest.mark.parametrize("money", [["amount"], []], ids=["csv-copy", "binary-copy"])
def test_empty_frame_keeps_dtypes(conn, schema, money):
    df = every_dtype_frame().iloc[0:0]
    write_table(conn, schema, "empty", df, money_columns=money)
    out = read_table(conn, schema, "empty")
    assert len(out) == 0
    assert out.dtypes.to_dict() == expected_after_round_trip(every_dtype_frame()).dtypes.to_dict()


def test_index_is_not_stored_and_column_order_kept(conn, schema):
    df = pd.DataFrame(
        {"z": [1, 2], "a": ["x", "y"], "m": [0.5, 1.5]}, index=pd.Index([10, 20], name="k")
    )
    write_table(conn, schema, "ordered", df)
    out = read_table(conn, schema, "ordered")
    assert list(out.columns) == ["z", "a", "m"]
    assert isinstance(out.index, pd.RangeIndex)
    assert out["z"].tolist() == [1, 2]
    subset = read_table(conn, schema, "ordered", columns=["m", "z"])
    assert list(subset.columns) == ["m", "z"] and subset["m"].tolist() == [0.5, 1.5]
    with pytest.raises(ValueError, match="nope"):
        read_table(conn, schema, "ordered", columns=["z", "nope"])


def test_rows_come_back_in_written_order_across_batches(conn, schema, monkeypatch):
    monkeypatch.setattr(tables, "_BATCH_ROWS", 1_000)
    ids = [f"id-{i:05d}" for i in np.random.default_rng(1).permutation(10_000)]
    df = pd.DataFrame({"id": pd.Series(ids, dtype="str"), "n": np.arange(10_000)})
    write_table(conn, schema, "ordered", df)
    pd.testing.assert_frame_equal(read_table(conn, schema, "ordered"), df)


@pytest.mark.parametrize(
    "series",
    [
        pd.Series([1, "a"], dtype=object),
        pd.Series([1, 2], dtype=np.uint8),
        pd.Series([1, 2], dtype=np.int8),
        pd.Series(pd.to_timedelta([1, 2], unit="s")),
        pd.Series([1.5, None], dtype="Float64"),
        pd.Series([1, 2], dtype="category"),
        pd.Series([1j, 2j]),
        pd.Series([1, 2], dtype=pd.ArrowDtype(pa.int64())),
        pd.Series([date(2024, 1, 1)], dtype=object),
    ],
    ids=[
        "object-mixed",
        "uint8",
        "int8",
        "timedelta",
        "Float64",
        "category-int",
        "complex",
        "arrow-int",
        "object-date",
    ],
)
def test_unsupported_dtype_is_a_type_error_naming_the_column(conn, schema, series):
    with pytest.raises(TypeError, match="bad_col"):
        write_table(
            conn, schema, "bad", pd.DataFrame({"good": range(len(series)), "bad_col": series})
        )
    with pytest.raises(TableNotFoundError):
        read_table(conn, schema, "bad")


@pytest.mark.parametrize(
    "series",
    [
        pd.Series(np.array(["-0001-06-01"], dtype="datetime64[us]")),
        pd.Series(np.array(["10000-01-01", None], dtype="datetime64[us]")),
        pd.Series(np.array(["0000-12-31T23:00"], dtype="datetime64[us]")).dt.tz_localize("UTC"),
        pd.Series(pd.array(pa.array([-719_163], pa.int32()).cast(pa.date32()), dtype=DATE)),
    ],
    ids=["bc-timestamp", "year-10000", "bc-timestamptz", "bc-date"],
)
def test_dates_read_table_could_not_parse_are_refused(conn, schema, series):
    with pytest.raises(ValueError, match="bad_col.*years 1 to 9999"):
        write_table(conn, schema, "bad", pd.DataFrame({"bad_col": series}))
    with pytest.raises(TableNotFoundError):
        read_table(conn, schema, "bad")


def test_money_column_must_be_numeric(conn, schema):
    with pytest.raises(TypeError, match="money column 'amount'"):
        write_table(conn, schema, "m", pd.DataFrame({"amount": ["1.5"]}), money_columns=["amount"])
    with pytest.raises(ValueError, match="missing_col"):
        write_table(conn, schema, "m", pd.DataFrame({"a": [1.0]}), money_columns=["missing_col"])


def test_integer_money_column_reads_back_as_float(conn, schema):
    write_table(conn, schema, "m", pd.DataFrame({"cents": [100, 250]}), money_columns="cents")
    out = read_table(conn, schema, "m")
    assert out["cents"].dtype == np.float64 and out["cents"].tolist() == [100.0, 250.0]


@pytest.mark.parametrize(
    ("table", "column"),
    [("", "a"), ("x" * 64, "a"), ("é" * 32, "a"), ("ok", ""), ("ok", "c" * 64), ("nul\x00", "a")],
)
def test_bad_identifiers_are_rejected(conn, schema, table, column):
    with pytest.raises(ValueError, match="name"):
        write_table(conn, schema, table, pd.DataFrame({column: [1]}))


def test_63_byte_names_are_kept_whole(conn, schema):
    table, column = "t" * 63, "é" * 31 + "c"
    write_table(conn, schema, table, pd.DataFrame({column: [1]}))
    assert list(read_table(conn, schema, table).columns) == [column]
    assert query(conn, "SELECT count(*) FROM pg_class WHERE relname = %s", [table]) == [(1,)]


@pytest.mark.parametrize(
    "table",
    [
        'we"ird',
        "x; DROP TABLE victim; --",
        "Robert'); DROP TABLE victim;--",
        'a"; DROP TABLE "victim',
    ],
)
def test_hostile_names_are_quoted_not_executed(conn, schema, table):
    write_table(conn, schema, "victim", pd.DataFrame({"v": [1]}))
    df = pd.DataFrame({'col"; DROP TABLE victim; --': ["x"], "n": [1]})
    write_table(conn, schema, table, df)
    write_table(conn, schema, table, df)  # the replace path (DROP + RENAME) quotes too
    upsert_rows(conn, schema, table + "_u", df, key=["n"])
    pd.testing.assert_frame_equal(read_table(conn, schema, table), df)
    names = {
        name
        for (name,) in query(
            conn,
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r'",
            [schema],
        )
    }
    assert names == {"victim", table, table + "_u"}
    assert read_table(conn, schema, "victim")["v"].tolist() == [1]


def test_hostile_schema_name(conn):
    schema = 'sch"ema; DROP SCHEMA public; --'
    write_table(conn, schema, "t", pd.DataFrame({"a": [1]}))
    assert read_table(conn, schema, "t")["a"].tolist() == [1]
    assert query(
        conn, "SELECT count(*) FROM pg_namespace WHERE nspname IN (%s, 'public')", [schema]
    ) == [(2,)]


def test_missing_table_error_names_it(conn, schema):
    write_table(conn, schema, "present", pd.DataFrame({"a": [1]}))
    with pytest.raises(TableNotFoundError, match=f"{schema}.absent"):
        read_table(conn, schema, "absent")
    with pytest.raises(TableNotFoundError, match="no_such_schema.present"):
        read_table(conn, "no_such_schema", "present")
    with pytest.raises(TableNotFoundError, match="model"):
        read_pickle(conn, schema, "model")


def old_and_new(rows: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    old = pd.DataFrame({"id": ["old-1", "old-2"], "n": [1, 2]})
    new = pd.DataFrame({"id": [f"new-{i}" for i in range(rows)], "n": np.arange(rows)})
    return old, new


def assert_old_table_intact(conn, schema, old):
    pd.testing.assert_frame_equal(read_table(conn, schema, "t"), old)
    assert staging_tables(conn) == []
    # No lock or transaction left behind: another write goes straight through.
    write_table(conn, schema, "t", old)


def test_server_error_in_a_later_batch_keeps_old_table(conn, conn2, schema, monkeypatch):
    monkeypatch.setattr(tables, "_BATCH_ROWS", 100)
    old, new = old_and_new(1_000)
    new.loc[999, "id"] = "NUL \x00 is not valid text"
    write_table(conn, schema, "t", old)
    with pytest.raises(psycopg2.DataError):
        write_table(conn, schema, "t", new)
    assert_old_table_intact(conn2, schema, old)
    assert conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE


def test_unstorable_value_in_a_later_batch_keeps_old_table(conn, conn2, schema, monkeypatch):
    monkeypatch.setattr(tables, "_BATCH_ROWS", 100)
    old, new = old_and_new(1_000)
    new["at"] = pd.Timestamp("2024-01-01").as_unit("ns")
    old["at"] = new["at"].iloc[:2].to_numpy().astype("datetime64[us]")
    new.loc[950, "at"] = pd.Timestamp("2024-01-01 00:00:00.000000001")  # below microseconds
    write_table(conn, schema, "t", old)
    sent = []
    batches = tables._copy_chunks
    monkeypatch.setattr(
        tables, "_copy_chunks", lambda *a: (sent.append(b) or b for b in batches(*a))
    )
    with pytest.raises(ValueError, match="column 'at'"):
        write_table(conn, schema, "t", new)
    assert len(sent) == 10  # the binary header, then 9 batches: it failed half way through
    assert_old_table_intact(conn2, schema, old)


def test_connection_killed_mid_copy_keeps_old_table(conn, conn2, schema, monkeypatch):
    monkeypatch.setattr(tables, "_BATCH_ROWS", 100)
    old, new = old_and_new(1_000)
    write_table(conn, schema, "t", old)
    pid = conn.info.backend_pid
    batches = tables._copy_chunks

    def killing_batches(*args):
        for number, batch in enumerate(batches(*args)):
            if number == 3:
                query(conn2, "SELECT pg_terminate_backend(%s, 5000)", [pid])
            yield batch

    monkeypatch.setattr(tables, "_copy_chunks", killing_batches)
    with pytest.raises((psycopg2.OperationalError, psycopg2.InterfaceError)):
        write_table(conn, schema, "t", new)
    assert conn.closed
    assert_old_table_intact(conn2, schema, old)


def test_reader_mid_copy_sees_the_complete_old_table(conn, conn2, schema, monkeypatch):
    monkeypatch.setattr(tables, "_BATCH_ROWS", 100)
    old, new = old_and_new(1_000)
    write_table(conn, schema, "t", old)
    seen = []
    batches = tables._copy_chunks

    def reading_batches(*args):
        for number, batch in enumerate(batches(*args)):
            if number == 5:
                seen.append(read_table(conn2, schema, "t"))
            yield batch

    monkeypatch.setattr(tables, "_copy_chunks", reading_batches)
    write_table(conn, schema, "t", new)
    pd.testing.assert_frame_equal(seen[0], old)
    pd.testing.assert_frame_equal(read_table(conn2, schema, "t"), new)


def test_server_error_mid_read_leaves_the_connection_usable(conn, schema):
    write_table(conn, schema, "t", pd.DataFrame({"n": np.arange(50_000)}))
    with conn.cursor() as cur:  # a view whose row 40,000 fails while the rows before stream out
        cur.execute(f'CREATE VIEW "{schema}".v AS SELECT n, 1 / (n - 40000) AS x FROM "{schema}".t')
    with pytest.raises(psycopg2.errors.DivisionByZero):
        read_table(conn, schema, "v")
    assert conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    assert read_table(conn, schema, "t")["n"].tolist() == list(range(50_000))


def test_parse_error_mid_read_is_reported_and_leaves_the_connection_usable(
    conn, schema, monkeypatch
):
    ids = pd.Series([f"id-{i}" for i in range(200_000)], dtype="str")
    write_table(conn, schema, "t", pd.DataFrame({"id": ids}))
    monkeypatch.setattr(tables, "_PIPE_BUFFER", 4096)  # the parser gives up while rows still come
    monkeypatch.setattr(tables, "_PARSE_BLOCK", 1 << 16)
    read_column = tables._read_column
    monkeypatch.setattr(
        tables, "_read_column", lambda *a: tables._ReadColumn(a[0], pa.int64(), None)
    )
    with pytest.raises(pa.ArrowInvalid, match="id-0"):
        read_table(conn, schema, "t")
    assert conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    monkeypatch.setattr(tables, "_read_column", read_column)
    pd.testing.assert_frame_equal(read_table(conn, schema, "t"), pd.DataFrame({"id": ids}))


def test_concurrent_readers_see_old_or_new_never_half(database_url, conn, schema):
    frames = [
        pd.DataFrame({"id": [f"a-{i}" for i in range(20_000)], "n": np.arange(20_000)}),
        pd.DataFrame({"id": [f"b-{i}" for i in range(30_000)], "n": np.arange(30_000) * 2}),
    ]
    write_table(conn, schema, "t", frames[0])
    done = threading.Event()
    reads: list[int] = []
    failures: list[BaseException] = []

    def reader() -> None:
        connection = connect(database_url)
        try:
            while not done.is_set():
                out = read_table(connection, schema, "t")
                match = frames[0] if len(out) == len(frames[0]) else frames[1]
                pd.testing.assert_frame_equal(out, match)
                reads.append(len(out))
        except BaseException as exc:  # reported in the main thread
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    for number in range(12):
        write_table(conn, schema, "t", frames[(number + 1) % 2])
    done.set()
    for thread in threads:
        thread.join(30)
    assert failures == []
    assert set(reads) == {20_000, 30_000}
    assert staging_tables(conn) == []


def test_concurrent_writers_both_finish_and_one_wins(database_url, conn, schema):
    frames = [
        pd.DataFrame({"id": [f"a-{i}" for i in range(50_000)], "n": np.arange(50_000)}),
        pd.DataFrame({"id": [f"b-{i}" for i in range(60_000)], "x": np.ones(60_000)}),
    ]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def writer(frame: pd.DataFrame) -> None:
        connection = connect(database_url)
        try:
            barrier.wait()
            write_table(connection, schema, "t", frame)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(frame,)) for frame in frames]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    out = read_table(conn, schema, "t")
    winner = frames[0] if "n" in out.columns else frames[1]
    pd.testing.assert_frame_equal(out, winner)
    assert staging_tables(conn) == []


class SlowCommit(psycopg2.extensions.connection):
    """A connection whose commit waits, to hold a writer between its swap and its commit (a
    real connection subclass: the storage layer takes psycopg2 connections, not proxies)."""

    delay = 0.6

    def commit(self) -> None:
        time.sleep(self.delay)
        super().commit()


def test_second_writer_waits_for_the_first_to_commit(conn, database_url, schema):
    first = pd.DataFrame({"id": ["first"]})
    second = pd.DataFrame({"id": ["second"], "n": [2]})
    write_table(conn, schema, "other", first)  # the schema exists; "new_table" does not
    errors: list[BaseException] = []
    slow = psycopg2.connect(**connect_kwargs(database_url), connection_factory=SlowCommit)

    def write_first() -> None:
        try:
            write_table(slow, schema, "new_table", first)
        except BaseException as exc:
            errors.append(exc)

    try:
        thread = threading.Thread(target=write_first)
        thread.start()
        time.sleep(0.3)  # the first writer has swapped its table in and is waiting to commit
        write_table(conn, schema, "new_table", second)
        thread.join(30)
    finally:
        slow.close()
    assert errors == []
    pd.testing.assert_frame_equal(read_table(conn, schema, "new_table"), second)


def test_schema_created_concurrently_by_another_session(database_url, conn, conn2, schema):
    other = connect(database_url)
    result: list[object] = []

    def write() -> None:
        try:
            result.append(write_table(conn2, schema, "t", pd.DataFrame({"a": [1]})))
        except BaseException as exc:
            result.append(exc)

    try:
        with other.cursor() as cur:
            cur.execute(f'CREATE SCHEMA "{schema}"')  # uncommitted: our CREATE must wait for it
        thread = threading.Thread(target=write)
        thread.start()
        time.sleep(0.5)
        other.commit()
        thread.join(30)
    finally:
        other.close()
    assert result == [[("a", "bigint")]]
    assert read_table(conn, schema, "t")["a"].tolist() == [1]


def test_open_transaction_is_refused_and_left_alone(conn, schema):
    conn.autocommit = False
    query(conn, "SELECT 1")
    with pytest.raises(ValueError, match="open transaction"):
        write_table(conn, schema, "t", pd.DataFrame({"a": [1]}))
    assert conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_INTRANS
    conn.rollback()
    write_table(conn, schema, "t", pd.DataFrame({"a": [1]}))
    assert conn.autocommit is False


def retention_row(as_of: str, churned: int, rate: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "as_of": pd.array([date.fromisoformat(as_of)], dtype=DATE),
            "total_customers": [100],
            "churned_customers": [churned],
            "retention_rate": [rate],
        }
    )


def test_upsert_keeps_history_and_replaces_a_key_s_rows(conn, schema):
    first = pd.concat(
        [retention_row("2024-01-31", 10, 90.0), retention_row("2024-02-29", 12, 88.0)]
    )
    types = upsert_rows(conn, schema, "retention", first, key=["as_of"])
    assert dict(types)["as_of"] == "date"
    upsert_rows(
        conn,
        schema,
        "retention",
        pd.concat([retention_row("2024-02-29", 15, 85.0), retention_row("2024-03-31", 20, 80.0)]),
        key="as_of",
    )
    out = read_table(conn, schema, "retention").sort_values("as_of", ignore_index=True)
    expected = pd.concat(
        [
            retention_row("2024-01-31", 10, 90.0),
            retention_row("2024-02-29", 15, 85.0),
            retention_row("2024-03-31", 20, 80.0),
        ],
        ignore_index=True,
    )
    pd.testing.assert_frame_equal(out, expected)
    assert count_rows(conn, schema, "retention") == 3
    [(index,)] = query(
        conn,
        "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
        [schema, "retention"],
    )
    assert index.endswith("USING btree (as_of)")  # the slices are found by key


def test_upsert_replaces_a_whole_slice_of_rows_per_key(conn, schema):
    """Several rows per key (the rfm rows of a snapshot): a key's rows are replaced together,
    so a row the new slice lacks goes too."""
    jan, feb = "2024-01-31", "2024-02-29"
    upsert_rows(
        conn,
        schema,
        "history",
        pd.concat([retention_row(jan, 1, 99.0), retention_row(jan, 2, 98.0)]),
        key=["as_of"],
    )
    upsert_rows(conn, schema, "history", retention_row(feb, 3, 97.0), key=["as_of"])
    upsert_rows(conn, schema, "history", retention_row(jan, 4, 96.0), key=["as_of"])
    out = read_table(conn, schema, "history").sort_values("as_of", ignore_index=True)
    assert out["churned_customers"].tolist() == [4, 3]


def test_upsert_rejects_missing_keys(conn, schema):
    twice = pd.concat([retention_row("2024-01-31", 1, 99.0)] * 2)
    with pytest.raises(ValueError, match="not in the frame"):
        upsert_rows(conn, schema, "retention", twice, key=["missing"])
    no_key = twice.assign(as_of=pd.array([None, None], dtype=DATE))
    with pytest.raises(ValueError, match="missing values"):
        upsert_rows(conn, schema, "retention", no_key, key=["as_of"])
    with pytest.raises(TableNotFoundError):
        read_table(conn, schema, "retention")


def rejected(source: str, lines: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": pd.Series([source] * len(lines), dtype="str"),
            "line": pd.Series(lines, dtype="int64"),
            "reason": pd.Series([f"bad {line}" for line in lines], dtype="str"),
        }
    )


READ_MODEL = """
import json, sys
from retention_assets.storage.database import connect
from retention_assets.storage.tables import read_pickle
conn = connect(sys.argv[1])
scaler = read_pickle(conn, sys.argv[2], "rfm_model")
print(json.dumps({"type": type(scaler).__name__, "mean": scaler.mean_.tolist(),
                  "scaled": scaler.transform([[1.0, 2.0, 3.0]]).tolist()}))
"""


def test_pickled_model_loads_in_another_process(conn, schema, database_url):
    features = np.array([[1.0, 10.0, 100.0], [2.0, 20.0, 50.0], [4.0, 0.0, 25.0]])
    scaler = StandardScaler().fit(features)
    write_pickle(conn, schema, "rfm_model", StandardScaler(), {"version": 0})
    size = write_pickle(
        conn,
        schema,
        "rfm_model",
        scaler,
        {"as_of": date(2024, 5, 1), "rows": 3, "features": ["r", "f", "m"]},
    )
    assert size > 100
    result = subprocess.run(
        [sys.executable, "-c", READ_MODEL, database_url, schema],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = json.loads(result.stdout)
    assert loaded["type"] == "StandardScaler"
    assert loaded["mean"] == scaler.mean_.tolist()
    assert loaded["scaled"] == scaler.transform([[1.0, 2.0, 3.0]]).tolist()
    [(count, description)] = query(
        conn, f'SELECT count(*), max(description::text)::jsonb FROM "{schema}".rfm_model'
    )
    assert count == 1
    assert description == {"as_of": "2024-05-01", "rows": 3, "features": ["r", "f", "m"]}
