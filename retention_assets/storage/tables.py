"""pandas <-> PostgreSQL table IO: streamed COPY, atomic replace and an exact dtype round-trip.

No Dagster here, so the CLI, tests and other processes share the same code path.

Frames go in through COPY in PostgreSQL's binary format (encoded from Arrow by pgpq), which the
server loads about twice as fast as CSV because it parses no text; frames with a money column,
and rows added to a table created elsewhere (a source's slice, see slices.py), go as CSV
(see _binary_copy).
Tables come out as CSV parsed by pyarrow in a worker thread while the rows still arrive. Both
directions stream: neither ever holds the whole COPY text in memory.

Every public function runs in its own transaction on the given connection (which must not have
one open) and commits it, so a failure leaves the database exactly as it was.

dtype mapping (write -> PostgreSQL -> read):

===============================================  =========================  =====================
pandas dtype                                     PostgreSQL                 read back as
===============================================  =========================  =====================
str / string / object of str / category of str   text                       str
int16, int32, int64                              smallint/integer/bigint    int16/int32/int64
                                                 NOT NULL
Int16, Int32, Int64                              smallint/integer/bigint    Int16/Int32/Int64
bool                                             boolean NOT NULL           bool
boolean                                          boolean                    boolean
float64, float32                                 double precision, real     float64, float32
money column (float64 or integer)                numeric                    float64
datetime64[s|ms|us|ns] (naive)                   timestamp                  datetime64[us]
datetime64[*, tz] (any zone)                     timestamptz                datetime64[us, UTC]
ArrowDtype(date32)                               date                       ArrowDtype(date32)
===============================================  =========================  =====================

Missing values (NaN, None, NaT, pd.NA) are NULL; the empty string stays distinct from NULL.
"""

from __future__ import annotations

import json
import os
import pickle
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pgpq
import psycopg2
import psycopg2.errors
import psycopg2.extensions
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg2 import sql

from ..arrow_feed import ArrowFeed
from .database import DatabaseUnavailable

__all__ = [
    "TableLocked",
    "TableNotFoundError",
    "count_rows",
    "read_pickle",
    "read_table",
    "upsert_rows",
    "write_pickle",
    "write_table",
    "write_table_blocks",
]

Connection = psycopg2.extensions.connection
Cursor = psycopg2.extensions.cursor

# Rows per batch streamed into COPY: bounds memory to one encoded batch (a few MB).
_BATCH_ROWS = 100_000
# Buffer of each end of the pipe read_table parses from, and the CSV parser's block: small
# enough that little is left to parse when the COPY ends (1M rows: 4 MB read 15% faster than 16).
_PIPE_BUFFER = 1 << 20
_PARSE_BLOCK = 4 << 20
_MAX_IDENTIFIER_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1; longer names are silently truncated
# First key of the two-key advisory lock, so our table locks don't collide with other apps' locks.
_LOCK_NAMESPACE = 0x52544E01

_CSV_WRITE = pacsv.WriteOptions(include_header=False, quoting_style="needed")
# What read_table can parse back, in the Arrow unit written (microseconds or days since 1970):
# PostgreSQL stores BC and 5-digit years, but writes them as text pyarrow doesn't parse, so
# write_table refuses them rather than leave a table nobody can read.
_YEAR_1_US, _YEAR_10000_US = -62_135_596_800_000_000, 253_402_300_800_000_000
_READABLE_SPAN = {
    "timestamp": (_YEAR_1_US, _YEAR_10000_US - 1),
    "timestamptz": (_YEAR_1_US, _YEAR_10000_US - 1),
    "date": (-719_162, 2_932_896),
}
_INT_TYPES = {2: "smallint", 4: "integer", 8: "bigint"}
_NULLABLE_INTS = {
    pd.Int16Dtype(): "smallint",
    pd.Int32Dtype(): "integer",
    pd.Int64Dtype(): "bigint",
}
_DATE32 = pd.ArrowDtype(pa.date32())


class TableNotFoundError(LookupError):
    """The requested table does not exist (yet): usually its asset was never materialized."""


@dataclass(frozen=True)
class _Column:
    name: str
    pg_type: str
    not_null: bool
    arrow_type: pa.DataType  # type of the values as written to the CSV stream


@dataclass(frozen=True)
class _ReadColumn:
    name: str
    arrow_type: pa.DataType  # type the CSV text is parsed into
    pandas_dtype: Any  # None: pyarrow's default conversion already gives the right dtype


def _check_identifier(name: object, what: str) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} name must be a non-empty string, got {name!r}")
    if "\x00" in name:
        raise ValueError(f"{what} name {name!r} contains a NUL character")
    if len(name.encode("utf-8")) > _MAX_IDENTIFIER_BYTES:
        raise ValueError(
            f"{what} name {name!r} is longer than {_MAX_IDENTIFIER_BYTES} bytes; PostgreSQL "
            "would truncate it"
        )
    return name


def _names(value: str | Sequence[str]) -> list[str]:
    """A lone string means one column, not a sequence of one-letter names."""
    return [value] if isinstance(value, str) else list(value)


def _qualified(schema: str, table: str) -> str:
    return f"{schema}.{table}"


def _column_for(name: str, series: pd.Series, money: bool) -> _Column:
    dtype = series.dtype
    if money:
        if dtype == np.float64:
            return _Column(name, "numeric", False, pa.float64())
        if dtype in _NULLABLE_INTS or (isinstance(dtype, np.dtype) and dtype.kind == "i"):
            return _Column(name, "numeric", False, pa.int64())
        raise TypeError(f"money column {name!r} must be float64 or integer, got dtype {dtype}")
    if isinstance(dtype, pd.StringDtype):
        return _Column(name, "text", False, pa.string())
    if isinstance(dtype, pd.CategoricalDtype):
        if len(dtype.categories) and pd.api.types.infer_dtype(dtype.categories) != "string":
            raise TypeError(f"column {name!r}: only categories of strings are supported")
        return _Column(name, "text", False, pa.string())
    if isinstance(dtype, np.dtype) and dtype.kind == "O":
        inferred = pd.api.types.infer_dtype(series, skipna=True)
        if inferred not in ("string", "empty"):
            raise TypeError(
                f"column {name!r}: object dtype holding {inferred} values is not supported "
                "(only strings)"
            )
        return _Column(name, "text", False, pa.string())
    if dtype == _DATE32:
        return _Column(name, "date", False, pa.date32())
    if isinstance(dtype, pd.DatetimeTZDtype):
        return _Column(name, "timestamptz", False, pa.timestamp("us", tz="UTC"))
    if dtype in _NULLABLE_INTS:
        return _Column(name, _NULLABLE_INTS[dtype], False, pa.from_numpy_dtype(dtype.numpy_dtype))
    if isinstance(dtype, pd.BooleanDtype):
        return _Column(name, "boolean", False, pa.bool_())
    if isinstance(dtype, np.dtype):
        if dtype.kind == "i" and dtype.itemsize in _INT_TYPES:
            return _Column(name, _INT_TYPES[dtype.itemsize], True, pa.from_numpy_dtype(dtype))
        if dtype.kind == "b":
            return _Column(name, "boolean", True, pa.bool_())
        if dtype == np.float64:
            return _Column(name, "double precision", False, pa.float64())
        if dtype == np.float32:
            return _Column(name, "real", False, pa.float32())
        if dtype.kind == "M":
            return _Column(name, "timestamp", False, pa.timestamp("us"))
    raise TypeError(f"column {name!r} has unsupported dtype {dtype}")


def _columns_for(df: pd.DataFrame, money_columns: Sequence[str]) -> list[_Column]:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}")
    if df.shape[1] == 0:
        raise ValueError("cannot store a frame without columns")
    if df.columns.has_duplicates:
        duplicated = sorted(map(str, df.columns[df.columns.duplicated()]))
        raise ValueError(f"duplicate column names: {duplicated}")
    money = set(_names(money_columns))
    unknown = money - set(df.columns)
    if unknown:
        raise ValueError(f"money_columns not in the frame: {sorted(unknown)}")
    return [
        _column_for(_check_identifier(name, "column"), df[name], name in money)
        for name in df.columns
    ]


def _columns_ddl(columns: Sequence[_Column]) -> sql.Composable:
    return sql.SQL(", ").join(
        sql.SQL("{} {}{}").format(
            sql.Identifier(col.name),
            sql.SQL(col.pg_type),
            sql.SQL(" NOT NULL" if col.not_null else ""),
        )
        for col in columns
    )


def _column_list(names: Iterable[str]) -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Identifier, names))


def _arrow_schema(columns: Sequence[_Column]) -> pa.Schema:
    return pa.schema([pa.field(col.name, col.arrow_type) for col in columns])


def _to_arrow(part: pd.DataFrame | pa.Table, columns: Sequence[_Column]) -> pa.Table:
    table = part if isinstance(part, pa.Table) else pa.Table.from_pandas(part, preserve_index=False)
    arrays = []
    for col, array in zip(columns, table.columns, strict=True):
        try:
            arrays.append(array.cast(col.arrow_type))  # safe cast: refuses to lose data
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ValueError(f"column {col.name!r}: cannot store as {col.pg_type}: {exc}") from exc
        _check_readable(col, arrays[-1])
    return pa.Table.from_arrays(arrays, names=[col.name for col in columns])


def _check_readable(col: _Column, array: pa.ChunkedArray) -> None:
    span = _READABLE_SPAN.get(col.pg_type)
    if span is None:
        return
    extremes = pc.min_max(array)
    low, high = extremes["min"].value, extremes["max"].value
    if low is not None and not span[0] <= low <= high <= span[1]:
        raise ValueError(
            f"column {col.name!r}: cannot store as {col.pg_type}: values outside the years 1 to "
            "9999 would not read back"
        )


def _copy_chunks(
    df: pd.DataFrame | pa.Table, columns: Sequence[_Column], binary: bool
) -> Iterator[bytes]:
    """The COPY data of ``df`` in binary or CSV, encoded _BATCH_ROWS rows at a time."""
    parts = (
        _to_arrow(
            df.slice(start, _BATCH_ROWS)
            if isinstance(df, pa.Table)
            else df.iloc[start : start + _BATCH_ROWS],
            columns,
        )
        for start in range(0, len(df), _BATCH_ROWS)
    )
    if not binary:
        for part in parts:
            sink = pa.BufferOutputStream()
            pacsv.write_csv(part, sink, _CSV_WRITE)
            yield sink.getvalue().to_pybytes()
        return
    encoder = pgpq.ArrowToPostgresBinaryEncoder(_arrow_schema(columns))
    yield encoder.write_header()
    for part in parts:
        for batch in part.to_batches():
            yield encoder.write_batch(batch)
    yield encoder.finish()


def _binary_copy(columns: Sequence[_Column], created_from_columns: bool) -> bool:
    """Whether COPY can use the binary format, which needs every value in exactly its column's
    type: so only into a table created here from ``columns`` (the server converts CSV's text
    to whatever type a column has), and without money columns (pgpq encodes numeric only from
    Arrow decimals, which can't hold every double; CSV has the digits that read back exactly)."""
    return created_from_columns and all(col.pg_type != "numeric" for col in columns)


class _ChunkReader:
    """File-like view over byte chunks for ``copy_expert``; remembers the exception a chunk
    raised, because psycopg2 replaces it with a generic QueryCanceled.

    Each read returns one whole chunk whatever size psycopg2 asks for (it sends whatever it
    gets), so chunks go to the server as they are, without a copy per slice."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self.error: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        try:
            for chunk in self._chunks:
                if chunk:  # an empty read would end the COPY
                    return chunk
        except BaseException as exc:  # incl. KeyboardInterrupt, which psycopg2 would also hide
            self.error = exc
            raise
        return b""


def _copy_in(
    cur: Cursor,
    target: sql.Composable,
    columns: Sequence[_Column],
    df: pd.DataFrame | pa.Table,
    created_from_columns: bool,
) -> None:
    binary = _binary_copy(columns, created_from_columns)
    reader = _ChunkReader(_copy_chunks(df, columns, binary))
    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT {})").format(
        target,
        _column_list(col.name for col in columns),
        sql.SQL("binary" if binary else "csv"),
    )
    try:
        cur.copy_expert(statement, reader)
    except psycopg2.Error:
        if reader.error is not None:
            raise reader.error from None
        raise


@contextmanager
def _transaction(conn: Connection) -> Iterator[Cursor]:
    """One transaction per call: commit on success, roll back on any failure (even a dead
    connection, where the server has already rolled back)."""
    if conn.info.transaction_status != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
        raise ValueError("the connection has an open transaction: commit or roll back first")
    if conn.encoding != "UTF8":
        conn.set_client_encoding("UTF8")
    autocommit = conn.autocommit
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            yield cur
        conn.commit()
    except BaseException:
        if not conn.closed:
            with suppress(psycopg2.Error):
                conn.rollback()
        raise
    finally:
        if not conn.closed:
            conn.autocommit = autocommit


def _lock_table_name(cur: Cursor, schema: str, table: str) -> None:
    """Serialise writers of one table until commit (readers are not blocked by it). Waits
    without a timeout: the other writer is one of ours, busy with a COPY that may take long."""
    quoted = sql.Identifier(schema, table).as_string(cur.connection)
    cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [_LOCK_NAMESPACE, quoted])


# How long a swap waits for the old table, and how many times: a session that holds the table
# and idles (a BEGIN left open in psql) must not block a run forever, nor the readers queued
# behind the waiting swap; between two waits they get their turn.
LOCK_WAIT_SECONDS = 10.0
LOCK_ATTEMPTS = 3


class TableLocked(DatabaseUnavailable):
    """Another session kept a table locked through every wait of a swap; the message names it. Not
    transient (see is_transient): the waits were the retries, a human has to end that session."""


def _lock_for_swap(cur: Cursor, schema: str, table: str) -> None:
    """Take the old table to itself (ACCESS EXCLUSIVE) waiting at most LOCK_WAIT_SECONDS,
    LOCK_ATTEMPTS times, under a savepoint so that a timeout keeps the filled staging table."""
    statement = sql.SQL(
        "SAVEPOINT retention_lock; SET LOCAL lock_timeout = {wait}; LOCK TABLE {table} IN ACCESS "
        "EXCLUSIVE MODE; SET LOCAL lock_timeout TO DEFAULT; RELEASE SAVEPOINT retention_lock"
    ).format(
        wait=sql.Literal(f"{round(LOCK_WAIT_SECONDS * 1000)}ms"),
        table=sql.Identifier(schema, table),
    )
    for _ in range(LOCK_ATTEMPTS):
        try:
            cur.execute(statement)
            return
        except psycopg2.errors.LockNotAvailable:
            cur.execute("ROLLBACK TO SAVEPOINT retention_lock; RELEASE SAVEPOINT retention_lock")
    raise TableLocked(
        f"table {_qualified(schema, table)!r} stayed locked by another session through "
        f"{LOCK_ATTEMPTS} waits of {LOCK_WAIT_SECONDS:g} s: {_lock_holders(cur, schema, table)}"
    )


def _lock_holders(cur: Cursor, schema: str, table: str) -> str:
    """Who holds locks on the table, for the person who has to end that session."""
    cur.execute(
        """
        SELECT a.pid, a.application_name, a.state, a.query_start, l.mode
        FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
          AND l.relation = to_regclass(%s)
        ORDER BY a.pid, l.mode
        """,
        [sql.Identifier(schema, table).as_string(cur)],
    )
    rows = cur.fetchall()
    if not rows:
        return "the holder has let go since; try again."
    holders = "; ".join(
        f"pid {pid} (application_name {app!r}, state {state!r}, query started "
        f"{started.isoformat(sep=' ', timespec='seconds') if started else 'never'}, holds {mode})"
        for pid, app, state, started, mode in rows
    )
    return (
        f"{holders}. Commit or end that session (e.g. SELECT pg_terminate_backend({rows[0][0]})), "
        "then try again."
    )


def table_exists(cur: Cursor, schema: str, table: str) -> bool:
    cur.execute(
        "SELECT to_regclass(%s) IS NOT NULL", [sql.Identifier(schema, table).as_string(cur)]
    )
    return bool(cur.fetchone()[0])


def column_types(cur: Cursor, schema: str, table: str) -> list[tuple[str, str]]:
    """[(column, PostgreSQL type as DDL writes it)] of a stored table, in column order."""
    cur.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum",
        [schema, table],
    )
    return cur.fetchall()


def _ensure_schema(cur: Cursor, schema: str) -> None:
    cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema])
    if cur.fetchone() is not None:
        return
    # Two sessions creating the same schema: the loser gets a unique violation even with
    # IF NOT EXISTS. By then the winner has committed it, so the error can be ignored.
    cur.execute("SAVEPOINT retention_create_schema")
    try:
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    except (psycopg2.errors.UniqueViolation, psycopg2.errors.DuplicateSchema):
        cur.execute("ROLLBACK TO SAVEPOINT retention_create_schema")
    cur.execute("RELEASE SAVEPOINT retention_create_schema")


def _replace_table(
    conn: Connection,
    schema: str,
    table: str,
    columns_ddl: sql.Composable,
    fill: Callable[[Cursor, sql.Identifier], None],
) -> None:
    """Build the new table under a staging name, then swap it in, all in one transaction:
    readers see the old table or the new one, and a failure leaves no trace."""
    _check_identifier(schema, "schema")
    _check_identifier(table, "table")
    staging_name = f"_staging_{uuid.uuid4().hex}"
    staging = sql.Identifier(schema, staging_name)
    with _transaction(conn) as cur:
        _lock_table_name(cur, schema, table)
        _ensure_schema(cur, schema)
        cur.execute(sql.SQL("CREATE TABLE {} ({})").format(staging, columns_ddl))
        fill(cur, staging)
        target = sql.Identifier(schema, table)
        if table_exists(cur, schema, table):
            _lock_for_swap(cur, schema, table)
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target))
        cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(staging, sql.Identifier(table)))


def write_table(
    conn: Connection,
    schema: str,
    table: str,
    df: pd.DataFrame,
    money_columns: Sequence[str] = (),
) -> list[tuple[str, str]]:
    """Replace ``schema.table`` with ``df`` atomically; returns [(column, PostgreSQL type)]."""
    return write_table_blocks(conn, schema, table, df, [df], money_columns)


def write_table_blocks(
    conn: Connection,
    schema: str,
    table: str,
    template: pd.DataFrame,
    blocks: Iterable[pd.DataFrame | pa.Table],
    money_columns: Sequence[str] = (),
) -> list[tuple[str, str]]:
    """Replace ``schema.table`` atomically with the rows of ``blocks``, each COPYed as it
    arrives, so that whoever produces them (e.g. a CSV loader in another thread) works on
    the next block meanwhile.

    Every block has ``template``'s columns and dtypes, or is an Arrow table of the types
    they are written as (pandas "str" as string, datetime64[us] as timestamp[us], ...), which
    goes to COPY without a pandas round trip. An exception from ``blocks`` rolls everything
    back, leaving the old table as it was."""
    columns = _columns_for(template, money_columns)
    expected = template.dtypes
    expected_arrow = _arrow_schema(columns)

    def fill(cur: Cursor, staging: sql.Identifier) -> None:
        for block in blocks:
            if isinstance(block, pa.Table):
                if not block.schema.equals(expected_arrow):
                    raise ValueError(f"block schema {block.schema} differs from {expected_arrow}")
            elif not block.dtypes.equals(expected):
                raise ValueError(f"block columns {dict(block.dtypes)} differ from the template's")
            _copy_in(cur, staging, columns, block, created_from_columns=True)

    _replace_table(conn, schema, table, _columns_ddl(columns), fill)
    return [(col.name, col.pg_type) for col in columns]


def upsert_rows(
    conn: Connection,
    schema: str,
    table: str,
    df: pd.DataFrame,
    key: Sequence[str],
    money_columns: Sequence[str] = (),
) -> list[tuple[str, str]]:
    """Replace the stored rows of ``df``'s key values with ``df``'s rows, keeping the rows of
    other keys: a history with one slice per key (one retention row per snapshot date, the
    rfm rows of each snapshot)."""
    _check_identifier(schema, "schema")
    _check_identifier(table, "table")
    columns = _columns_for(df, money_columns)
    key = _names(key)
    if not key:
        raise ValueError("upsert_rows needs at least one key column")
    missing = [name for name in key if name not in df.columns]
    if missing:
        raise ValueError(f"key columns not in the frame: {missing}")
    if df[key].isna().any().any():
        raise ValueError(f"key columns {key} contain missing values")
    staging = f"_upsert_{uuid.uuid4().hex}"
    with _transaction(conn) as cur:
        _lock_table_name(cur, schema, table)
        _ensure_schema(cur, schema)
        cur.execute(
            sql.SQL("CREATE TEMPORARY TABLE {} ({}) ON COMMIT DROP").format(
                sql.Identifier(staging), _columns_ddl(columns)
            )
        )
        _copy_in(cur, sql.Identifier(staging), columns, df, created_from_columns=True)
        replace_slices(cur, schema, table, sql.Identifier(staging), key, [c.name for c in columns])
    return [(col.name, col.pg_type) for col in columns]


def replace_slices(
    cur: Cursor,
    schema: str,
    table: str,
    rows: sql.Identifier,
    key: Sequence[str],
    names: Sequence[str],
) -> None:
    """Put the rows of table `rows` (columns `names`) into schema.table in place of the stored
    rows with the same key values (creating the table, indexed on the key, if need be)."""
    live = sql.Identifier(schema, table)
    keys = sql.SQL(", ").join(map(sql.Identifier, key))
    if not table_exists(cur, schema, table):
        cur.execute(sql.SQL("CREATE TABLE {} (LIKE {})").format(live, rows))
        cur.execute(sql.SQL("CREATE INDEX ON {} ({})").format(live, keys))
    cur.execute(
        sql.SQL("DELETE FROM {} WHERE ({}) IN (SELECT {} FROM {})").format(live, keys, keys, rows)
    )
    columns = sql.SQL(", ").join(map(sql.Identifier, names))
    cur.execute(
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(live, columns, columns, rows)
    )


def _sql_param(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


def _lock_for_read(cur: Cursor, schema: str, table: str) -> None:
    """Hold the current table until commit, so a concurrent replace can't swap it mid-read.
    No timeout here: a swap holds the table only for its final instant (see _lock_for_swap),
    while another writer's long transaction is worth waiting for."""
    _check_identifier(schema, "schema")
    _check_identifier(table, "table")
    try:
        cur.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(sql.Identifier(schema, table))
        )
    except (psycopg2.errors.UndefinedTable, psycopg2.errors.InvalidSchemaName):
        raise TableNotFoundError(
            f"table {_qualified(schema, table)!r} does not exist in the database"
        ) from None


def _read_column(name: str, typname: str, not_null: bool) -> _ReadColumn:
    if typname in ("text", "varchar", "bpchar"):  # large_string backs pandas' str: no conversion
        return _ReadColumn(name, pa.large_string(), None)
    if typname in ("int2", "int4", "int8"):
        arrow_type = {"int2": pa.int16(), "int4": pa.int32(), "int8": pa.int64()}[typname]
        nullable = {"int2": pd.Int16Dtype(), "int4": pd.Int32Dtype(), "int8": pd.Int64Dtype()}
        return _ReadColumn(name, arrow_type, None if not_null else nullable[typname])
    if typname == "bool":
        return _ReadColumn(name, pa.bool_(), None if not_null else pd.BooleanDtype())
    if typname in ("float8", "numeric"):
        return _ReadColumn(name, pa.float64(), None)
    if typname == "float4":
        return _ReadColumn(name, pa.float32(), None)
    if typname == "timestamp":
        return _ReadColumn(name, pa.timestamp("us"), None)
    if typname == "timestamptz":
        return _ReadColumn(name, pa.timestamp("us", tz="UTC"), None)
    if typname == "date":
        return _ReadColumn(name, pa.date32(), _DATE32)
    raise TypeError(f"column {name!r} has PostgreSQL type {typname}, which is not supported")


def _read_columns(cur: Cursor, schema: str, table: str) -> list[_ReadColumn]:
    cur.execute(
        """
        SELECT a.attname, t.typname, a.attnotnull
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_type t ON t.oid = a.atttypid
        WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum
        """,
        [schema, table],
    )
    return [_read_column(name, typname, not_null) for name, typname, not_null in cur.fetchall()]


def _parse_csv(read_fd: int, columns: Sequence[_ReadColumn]) -> pa.Table:
    """Parse PostgreSQL's CSV from a pipe until it closes; run in a worker thread."""
    with open(read_fd, "rb", buffering=_PIPE_BUFFER) as source:
        if not source.peek(1):  # no rows: the CSV reader refuses empty input
            return pa.table(
                [pa.array([], col.arrow_type) for col in columns], [col.name for col in columns]
            )
        feed, reader = ArrowFeed(source), None
        try:
            reader = pacsv.open_csv(
                feed.file(),
                read_options=pacsv.ReadOptions(
                    column_names=[col.name for col in columns], block_size=_PARSE_BLOCK
                ),
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    column_types={col.name: col.arrow_type for col in columns},
                    null_values=[""],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,  # PostgreSQL writes "" for the empty string
                    true_values=["t"],
                    false_values=["f"],
                ),
            )
            return reader.read_all()
        finally:
            reader = None  # let go before the wait, also when a traceback keeps this frame
            feed.wait_returned()


def _copy_out(cur: Cursor, statement: sql.Composable, columns: Sequence[_ReadColumn]) -> pa.Table:
    """Run a ``COPY ... TO STDOUT (FORMAT csv)`` and parse its rows as they arrive.

    psycopg2 hands over one row per write(): a buffered pipe keeps those calls in C, and the
    worker thread parsing the other end (pyarrow releases the GIL) overlaps the server's work
    instead of following it, with no copy of the whole CSV text in memory."""
    read_fd, write_fd = os.pipe()
    with ThreadPoolExecutor(1) as pool:
        parsed = pool.submit(_parse_csv, read_fd, columns)
        try:
            with open(write_fd, "wb", buffering=_PIPE_BUFFER) as sink:
                cur.copy_expert(statement, sink)
        except BrokenPipeError as exc:  # the parser failed and closed its end: report why
            raise (parsed.exception() or exc) from None
        return parsed.result()


def _to_frame(table: pa.Table, columns: Sequence[_ReadColumn]) -> pd.DataFrame:
    frame = {}
    for col, array in zip(columns, table.columns, strict=True):
        mapper = None if col.pandas_dtype is None else {col.arrow_type: col.pandas_dtype}.get
        frame[col.name] = array.to_pandas(types_mapper=mapper)
    # copy=False: the Series are new and ours alone; a copy would cost 0.5 s per 14M rows.
    return pd.DataFrame(frame, columns=[col.name for col in columns], copy=False)


def read_table(
    conn: Connection, schema: str, table: str, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """Read a table into a frame with the dtypes write_table was given (see the module table);
    rows come back in the order write_table stored them."""
    with _transaction(conn) as cur:
        # Output formats fixed whatever the server or role defaults are, and rows in physical
        # (= written) order: no scan starting mid-table, no parallel workers interleaving rows.
        cur.execute(
            "SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD';"
            " SET LOCAL extra_float_digits = 3; SET LOCAL synchronize_seqscans = off;"
            " SET LOCAL max_parallel_workers_per_gather = 0"
        )
        _lock_for_read(cur, schema, table)
        available = _read_columns(cur, schema, table)
        if columns is not None:
            wanted = _names(columns)
            by_name = {col.name: col for col in available}
            missing = [name for name in wanted if name not in by_name]
            if missing or not wanted:
                raise ValueError(
                    f"columns {missing or wanted} are not readable from "
                    f"{_qualified(schema, table)!r}; it has {list(by_name)}"
                )
            available = [by_name[name] for name in wanted]
        parsed = _copy_out(
            cur,
            sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT WITH (FORMAT csv)").format(
                _column_list(col.name for col in available), sql.Identifier(schema, table)
            ),
            available,
        )
    return _to_frame(parsed, available)


def count_rows(conn: Connection, schema: str, table: str) -> int:
    """Rows in a table, e.g. for metadata of a table an upsert only partly rewrote."""
    with _transaction(conn) as cur:
        _lock_for_read(cur, schema, table)
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table)))
        return cur.fetchone()[0]


_PICKLE_DDL = sql.SQL(
    "stored_at timestamptz NOT NULL, description jsonb NOT NULL, payload bytea NOT NULL"
)


def write_pickle(
    conn: Connection, schema: str, table: str, obj: object, description: Mapping[str, object]
) -> int:
    """Store one Python object (e.g. a fitted model) as the single row of a table, replaced
    atomically, so another process can load exactly what the run produced; returns its size in
    bytes. ``description`` is stored as jsonb (values JSON cannot hold are stored as text)."""
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    document = json.dumps(dict(description), default=str)

    def fill(cur: Cursor, staging: sql.Identifier) -> None:
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (stored_at, description, payload) VALUES (now(), %s::jsonb, %s)"
            ).format(staging),
            [document, psycopg2.Binary(payload)],
        )

    _replace_table(conn, schema, table, _PICKLE_DDL, fill)
    return len(payload)


def read_pickle(conn: Connection, schema: str, table: str) -> Any:
    """Load the object stored by write_pickle. Unpickling runs code: only read tables this
    project wrote to a database you trust."""
    with _transaction(conn) as cur:
        _lock_for_read(cur, schema, table)
        cur.execute(sql.SQL("SELECT payload FROM {}").format(sql.Identifier(schema, table)))
        rows = cur.fetchall()
    if len(rows) != 1:
        raise ValueError(
            f"{_qualified(schema, table)!r} holds {len(rows)} rows; expected one pickled object"
        )
    return pickle.loads(rows[0][0])


def read_query(
    conn: Connection,
    query: sql.Composable,
    params: Mapping[str, object] | Sequence[object],
    types: Mapping[str, str],
) -> pd.DataFrame:
    """The rows of a SELECT as a frame, streamed like read_table; `types` names each output
    column's PostgreSQL type (pg_type.typname: text, int8, numeric, date, timestamp, ...), in
    the query's column order."""
    columns = [_read_column(name, typname, False) for name, typname in types.items()]
    with _transaction(conn) as cur:
        cur.execute(
            "SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD';"
            " SET LOCAL extra_float_digits = 3"
        )
        bound = cur.mogrify(query, params).decode()
        parsed = _copy_out(
            cur,
            sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv)").format(sql.SQL(bound)),
            columns,
        )
    return _to_frame(parsed, columns)
