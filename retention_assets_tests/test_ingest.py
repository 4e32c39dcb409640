"""Loading a source while its table is written: same rows as the loader, atomic on failure."""

import pandas as pd
import pytest

from retention_assets.core.loading import SourceError, load_source, source_files
from retention_assets.core.sources import CUSTOMERS, TRANSACTIONS
from retention_assets.ingest import load_and_store
from retention_assets.storage.tables import read_table

from .test_faults import staging_tables

SCHEMA = "ingest"


def write(folder, name, text):
    (folder / name).write_bytes(text if isinstance(text, bytes) else text.encode())


def as_text(frame):
    """The loaded frame as the table holds it: referencing columns as text, not codes."""
    coded = frame.select_dtypes("category").columns
    return frame.astype(dict.fromkeys(coded, "str"))


def test_table_equals_the_loaded_frame_with_later_duplicates_dropped(conn, tmp_path):
    write(tmp_path, "customers.csv", "customer_id,signup_date\nC1,2024-01-01\nC2,2024-01-02\n")
    write(
        tmp_path,
        "customers_2.csv",
        "customer_id,signup_date,club\nC2,2024-02-02,East\nC3,2024-02-03,West\nC1,2024-02-04,\n",
    )
    files = source_files(tmp_path, "customers")
    loaded, columns = load_and_store(conn, SCHEMA, CUSTOMERS, files, {}, [])
    stored = read_table(conn, SCHEMA, "customers")
    pd.testing.assert_frame_equal(stored, loaded.frame)
    assert stored["customer_id"].tolist() == ["C1", "C2", "C3"]
    assert stored["signup_date"].astype(str).tolist() == ["2024-01-01", "2024-01-02", "2024-02-03"]
    assert stored["club"].isna().tolist() == [True, True, False]
    assert columns == [("customer_id", "text"), ("signup_date", "date"), ("club", "text")]
    assert sorted(loaded.duplicate_ids) == ["C1", "C2"]


def test_money_columns_and_many_blocks(conn, tmp_path, monkeypatch):
    import retention_assets.core.loading as loading

    monkeypatch.setattr(loading, "_CHUNK", 64)  # a block every line or two
    rows = "".join(f"T{i},C1,2024-05-01,{i}.25\n" for i in range(40))
    write(
        tmp_path, "transactions.csv", "transaction_id,customer_id,transaction_date,amount\n" + rows
    )
    files = source_files(tmp_path, "transactions")
    known = {"customers": pd.Series(["C1"]), "packages": pd.Series([], dtype="str")}
    loaded, columns = load_and_store(conn, SCHEMA, TRANSACTIONS, files, known, ["amount"])
    stored = read_table(conn, SCHEMA, "transactions")
    pd.testing.assert_frame_equal(stored, as_text(loaded.frame))
    assert dict(columns)["amount"] == "numeric" and stored["amount"].sum() == sum(
        i + 0.25 for i in range(40)
    )
    assert loaded.frame.equals(load_source(TRANSACTIONS, files, known).frame)


def test_the_frame_keeps_some_columns_and_codes_references(conn, tmp_path):
    write(
        tmp_path,
        "transactions.csv",
        "transaction_id,customer_id,transaction_date,amount,package_id\n"
        "T1,C1,2024-05-01,10,P1\nT2,C2,2024-05-02,20,\nT3,C9,2024-05-03,30,P1\n",
    )
    files = source_files(tmp_path, "transactions")
    known = {"customers": pd.Series(["C2", "C1"]), "packages": pd.Series(["P1"])}
    keep = ["customer_id", "amount", "package_id"]
    loaded, _ = load_and_store(conn, SCHEMA, TRANSACTIONS, files, known, [], keep)
    assert list(loaded.frame.columns) == keep
    ids = loaded.frame["customer_id"]
    assert ids.cat.codes.tolist() == [1, 0] and ids.tolist() == ["C1", "C2"]
    assert loaded.frame["package_id"].cat.codes.tolist() == [0, -1]
    assert loaded.rejects["reason"].tolist() == ["unknown customer_id 'C9'"]
    stored = read_table(conn, SCHEMA, "transactions")  # the table holds every column, as text
    assert stored["customer_id"].tolist() == ["C1", "C2"] and "transaction_date" in stored
    with pytest.raises(ValueError, match=r"no column\(s\) \['club'\]"):
        load_source(TRANSACTIONS, files, known, keep=["club"])


def test_duplicates_of_rows_in_earlier_blocks_are_found(conn, tmp_path, monkeypatch):
    import retention_assets.core.loading as loading

    monkeypatch.setattr(loading, "_CHUNK", 64)  # 4 rows a block: each block ascending or not
    again = [f"D{i:02d},2024-03-03\n" for i in range(10)]
    rows = [f"D{i:02d},2024-01-01\n" for i in range(10)] + again
    write(tmp_path, "customers.csv", "customer_id,signup_date\n" + "".join(rows))
    loaded, _ = load_and_store(conn, SCHEMA, CUSTOMERS, source_files(tmp_path, "customers"), {}, [])
    assert loaded.rejects[["line", "reason", "raw"]].values.tolist() == [
        [12 + i, f"duplicate customer_id (first at customers.csv line {2 + i})", again[i].strip()]
        for i in range(10)
    ]
    assert loaded.duplicate_ids == [f"D{i:02d}" for i in range(10)]
    stored = read_table(conn, SCHEMA, "customers")
    assert len(stored) == 10 and stored["signup_date"].astype(str).eq("2024-01-01").all()


def test_a_bad_file_half_way_leaves_the_old_table(conn, tmp_path, monkeypatch):
    import retention_assets.core.loading as loading

    write(tmp_path, "customers.csv", "customer_id,signup_date\nC1,2024-01-01\n")
    load_and_store(conn, SCHEMA, CUSTOMERS, source_files(tmp_path, "customers"), {}, [])
    before = read_table(conn, SCHEMA, "customers")
    monkeypatch.setattr(loading, "_CHUNK", 64)
    many = "".join(f"D{i},2024-01-01\n" for i in range(50))
    write(tmp_path, "customers_1.csv", "customer_id,signup_date\n" + many)  # streams fine
    write(
        tmp_path, "customers_2.csv", b"customer_id,signup_date\nC9,2024-01-01\nC\xe9,2024-01-01\n"
    )
    with pytest.raises(SourceError, match="customers_2.csv, line 3: not UTF-8 text"):
        load_and_store(conn, SCHEMA, CUSTOMERS, source_files(tmp_path, "customers"), {}, [])
    pd.testing.assert_frame_equal(read_table(conn, SCHEMA, "customers"), before)
    assert staging_tables(conn, SCHEMA) == []


def test_blocks_of_another_layout_are_refused_and_nothing_is_replaced(conn):
    import pyarrow as pa

    from retention_assets.storage.tables import write_table, write_table_blocks

    template = pd.DataFrame({"id": pd.Series(dtype="str"), "at": pd.Series(dtype="datetime64[us]")})
    write_table(conn, SCHEMA, "layout", template.assign(id=["kept"], at=[pd.Timestamp(0)]))
    good = pa.table({"id": ["a"], "at": pa.array([0], pa.timestamp("us"))})
    wrong = pa.table({"id": ["b"], "at": pa.array([0], pa.timestamp("ms"))})
    with pytest.raises(ValueError, match="block schema"):
        write_table_blocks(conn, SCHEMA, "layout", template, [good, wrong])
    with pytest.raises(ValueError, match="block columns"):
        write_table_blocks(conn, SCHEMA, "layout", template, [template.assign(at=[])[["at", "id"]]])
    assert read_table(conn, SCHEMA, "layout")["id"].tolist() == ["kept"]
    last = pd.DataFrame({"id": ["c"], "at": pd.Series([0], dtype="datetime64[us]")})
    write_table_blocks(conn, SCHEMA, "layout", template, [good, last])
    assert read_table(conn, SCHEMA, "layout")["id"].tolist() == ["a", "c"]
