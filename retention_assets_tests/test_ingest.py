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
    pd.testing.assert_frame_equal(stored, loaded.frame)
    assert dict(columns)["amount"] == "numeric" and stored["amount"].sum() == sum(
        i + 0.25 for i in range(40)
    )
    assert loaded.frame.equals(load_source(TRANSACTIONS, files, known).frame)


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
