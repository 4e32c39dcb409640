"""Storing a drop file while it is parsed (ingest.store.store_file): the file's slice of its
source table is exactly the parsed valid rows, duplicates found across blocks and files are
held with their reason, and a failure half way leaves every table as it was."""

import uuid

import pandas as pd
import pyarrow as pa
import pytest

import retention_assets.ingest.loading as loading
from retention_assets.core.dates import DATE_DTYPE
from retention_assets.core.sources import CUSTOMERS, SOURCES, TRANSACTIONS
from retention_assets.ingest.loading import SourceError, parse_file, source_files
from retention_assets.ingest.store import store_file
from retention_assets.storage import slices
from retention_assets.storage.tables import read_table


@pytest.fixture
def schema(conn):
    name = f"ingest_{uuid.uuid4().hex[:8]}"
    yield name
    with conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def write(folder, name, text):
    path = folder / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def parsed_rows(spec, path):
    """The valid rows parse_file hands on, as the table holds them (plus `_file`)."""
    blocks: list[pa.Table] = []
    parse_file(spec, path, blocks.append)
    types = {pa.date32(): DATE_DTYPE, pa.int64(): pd.Int64Dtype()}  # as the table reads back
    frame = pa.concat_tables(blocks).to_pandas(types_mapper=types.get)
    return frame.assign(_line=frame["_line"].astype("int64"), _file=path.name)  # NOT NULL


def slice_of(conn, schema, source, file):
    stored = read_table(conn, schema, source)
    rows = stored[stored["_file"] == file].sort_values("_line", ignore_index=True)
    return rows


def test_each_file_is_its_slice_and_later_duplicates_are_held(conn, schema, tmp_path):
    first = write(
        tmp_path, "customers.csv", "customer_id,signup_date\nC1,2024-01-01\nC2,2024-01-02\n"
    )
    second = write(
        tmp_path,
        "customers_2.csv",
        "customer_id,signup_date,club\nC2,2024-02-02,East\nC3,2024-02-03,West\nC1,2024-02-04,\n",
    )
    entries = [store_file(conn, schema, CUSTOMERS, p, "run-1") for p in (first, second)]
    assert [(e.file, e.rows_read, e.rows_rejected) for e in entries] == [
        ("customers.csv", 2, 0),
        ("customers_2.csv", 3, 0),  # per-row rejects only; the held duplicates come below
    ]
    assert entries[1].columns == ("customer_id", "signup_date", "club")
    stored = read_table(conn, schema, "customers").sort_values("customer_id", ignore_index=True)
    assert stored["customer_id"].tolist() == ["C1", "C2", "C3"]
    assert stored["signup_date"].astype(str).tolist() == ["2024-01-01", "2024-01-02", "2024-02-03"]
    assert stored["club"].isna().tolist() == [True, True, False]
    assert stored[["_file", "_line"]].values.tolist() == [
        ["customers.csv", 2],
        ["customers.csv", 3],
        ["customers_2.csv", 3],
    ]
    columns, rows = slices.source_shape(conn, schema, "customers")
    assert (columns, rows) == (
        [
            ("customer_id", "text"),
            ("signup_date", "date"),
            ("_file", "text"),
            ("_line", "bigint"),
            ("club", "text"),
        ],
        3,
    )
    held = read_table(conn, schema, slices.held_table("customers")).sort_values("_line")
    assert held[["customer_id", "_file", "_line", "_reason"]].values.tolist() == [
        ["C2", "customers_2.csv", 2, "duplicate customer_id (first at customers.csv line 3)"],
        ["C1", "customers_2.csv", 4, "duplicate customer_id (first at customers.csv line 2)"],
    ]
    assert set(slices.manifest(conn, schema)) == {
        ("customers", "customers.csv"),
        ("customers", "customers_2.csv"),
    }


def test_money_columns_and_many_blocks(conn, schema, tmp_path, monkeypatch):
    monkeypatch.setattr(loading, "_CHUNK", 64)  # a block every line or two
    write(tmp_path, "customers.csv", "customer_id,signup_date\nC1,2024-01-01\n")
    store_file(conn, schema, CUSTOMERS, tmp_path / "customers.csv", "run-1")
    rows = "".join(f"T{i},C1,2024-05-01,{i}.25\n" for i in range(40))
    path = write(
        tmp_path, "transactions.csv", "transaction_id,customer_id,transaction_date,amount\n" + rows
    )
    entry = store_file(conn, schema, TRANSACTIONS, path, "run-1")
    assert (entry.rows_read, entry.rows_rejected) == (40, 0)
    stored = slice_of(conn, schema, "transactions", "transactions.csv")
    expected = parsed_rows(TRANSACTIONS, path)
    pd.testing.assert_frame_equal(stored[expected.columns], expected)
    columns, _ = slices.source_shape(conn, schema, "transactions")
    assert dict(columns)["amount"] == "numeric"
    with conn.cursor() as cur:  # numeric: the sum is exact
        cur.execute(f'SELECT sum(amount)::text FROM "{schema}".transactions')
        assert cur.fetchone()[0] == "790.00"


def test_duplicates_of_rows_in_earlier_blocks_are_found(conn, schema, tmp_path, monkeypatch):
    monkeypatch.setattr(loading, "_CHUNK", 64)  # 4 rows a block: each block ascending or not
    again = [f"D{i:02d},2024-03-03\n" for i in range(10)]
    rows = [f"D{i:02d},2024-01-01\n" for i in range(10)] + again
    path = write(tmp_path, "customers.csv", "customer_id,signup_date\n" + "".join(rows))
    store_file(conn, schema, CUSTOMERS, path, "run-1")
    rejects = read_table(conn, schema, slices.REJECTS).sort_values("line", ignore_index=True)
    assert rejects[["line", "reason", "raw"]].values.tolist() == [
        [12 + i, f"duplicate customer_id (first at customers.csv line {2 + i})", again[i].strip()]
        for i in range(10)
    ]
    assert rejects["run_id"].eq("run-1").all()
    stored = read_table(conn, schema, "customers")
    assert len(stored) == 10 and stored["signup_date"].astype(str).eq("2024-01-01").all()


def test_a_bad_file_half_way_leaves_every_table_as_it_was(conn, schema, tmp_path, monkeypatch):
    write(tmp_path, "customers.csv", "customer_id,signup_date\nC1,2024-01-01\n")
    store_file(conn, schema, CUSTOMERS, tmp_path / "customers.csv", "run-1")
    before = {
        table: read_table(conn, schema, table)
        for table in ("customers", slices.held_table("customers"), slices.REJECTS)
    }
    manifest = slices.manifest(conn, schema)
    monkeypatch.setattr(loading, "_CHUNK", 64)
    many = "".join(f"D{i},2024-01-01\nC1,2024-02-02\n" for i in range(50))  # streams fine...
    bad = write(
        tmp_path,
        "customers_2.csv",
        b"customer_id,signup_date\n" + many.encode() + b"C\xe9,2024-01-01\n",  # ...until here
    )
    with pytest.raises(SourceError, match="customers_2.csv, line 102: not UTF-8 text"):
        store_file(conn, schema, CUSTOMERS, bad, "run-2")
    for table, frame in before.items():
        pd.testing.assert_frame_equal(read_table(conn, schema, table), frame, obj=table)
    assert slices.manifest(conn, schema) == manifest
    assert source_files(tmp_path, "customers") == [tmp_path / "customers.csv", bad]


def test_stored_rows_equal_a_parse_of_every_source(conn, schema, tmp_path):
    """The hand fixture stored file by file: each table is its files' parsed rows."""
    from .hand_fixture import HAND_DIR

    for name, spec in SOURCES.items():
        for path in source_files(HAND_DIR, name):
            store_file(conn, schema, spec, path, "run-1")
            expected = parsed_rows(spec, path)
            stored = slice_of(conn, schema, name, path.name)
            pd.testing.assert_frame_equal(stored[expected.columns], expected, obj=name)
    assert read_table(conn, schema, slices.REJECTS).empty


def test_blocks_of_another_layout_are_refused_and_nothing_is_replaced(conn, schema):
    from retention_assets.storage.tables import write_table, write_table_blocks

    template = pd.DataFrame({"id": pd.Series(dtype="str"), "at": pd.Series(dtype="datetime64[us]")})
    write_table(conn, schema, "layout", template.assign(id=["kept"], at=[pd.Timestamp(0)]))
    good = pa.table({"id": ["a"], "at": pa.array([0], pa.timestamp("us"))})
    wrong = pa.table({"id": ["b"], "at": pa.array([0], pa.timestamp("ms"))})
    with pytest.raises(ValueError, match="block schema"):
        write_table_blocks(conn, schema, "layout", template, [good, wrong])
    with pytest.raises(ValueError, match="block columns"):
        write_table_blocks(conn, schema, "layout", template, [template.assign(at=[])[["at", "id"]]])
    assert read_table(conn, schema, "layout")["id"].tolist() == ["kept"]
    last = pd.DataFrame({"id": ["c"], "at": pd.Series([0], dtype="datetime64[us]")})
    write_table_blocks(conn, schema, "layout", template, [good, last])
    assert read_table(conn, schema, "layout")["id"].tolist() == ["a", "c"]
