"""Row rules for out-of-range values and header / folder rules for odd drops (SPEC section 2).

Every test states the exact reason or message a user sees, and that the good rows of the
same file are kept. The load time is pinned (`loading_at`), so "the future" is reproducible.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retention_assets.core.dates import loading_at
from retention_assets.core.sources import MAX_MONEY, SOURCES
from retention_assets.ingest.loading import SourceError, parse_file, source_files

NOW = pd.Timestamp("2026-06-01 12:00")


def load(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept rows, rejects) of one drop file loaded at NOW: the one call into the loader, so
    only this function follows a change of its API."""
    spec = SOURCES[path.name.lower().removesuffix(".csv").split("_")[0]]
    blocks: list[pa.Table] = []
    with loading_at(NOW):
        parsed = parse_file(spec, path, blocks.append)
    kept = pa.concat_tables(blocks).to_pandas() if blocks else pd.DataFrame({"_line": []})
    if parsed.lines is not None:  # records that do not sit one per line: their physical line
        kept["_line"] = parsed.lines[kept["_line"].to_numpy(dtype="int64") - 2]
    return kept, parsed.rejects


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def reasons(rejects: pd.DataFrame) -> list[list]:
    return rejects[["line", "reason"]].values.tolist()


# 1. dates outside [1900-01-01, load time + 1 day]


def test_event_dates_in_the_future_or_before_1900_are_rejected(tmp_path):
    path = write(
        tmp_path,
        "attendance.csv",
        "attendance_id,customer_id,check_in,check_out\n"
        "A1,C1,2100-01-01,\n"
        "A2,C1,1899-12-31 23:59,\n"
        "A3,C1,2026-06-02 12:00,\n"  # exactly the load time + 1 day: kept
        "A4,C1,2026-06-02 12:00:01,\n"
        "A5,C1,2026-05-01 10:00,2100-01-01 11:00\n"
        "A6,C1,1900-01-01,2026-05-01 11:00\n",
    )
    kept, rejects = load(path)
    assert kept["attendance_id"].tolist() == ["A3", "A6"]
    assert reasons(rejects) == [
        [2, "check_in in the future '2100-01-01'"],
        [3, "check_in before 1900-01-01 '1899-12-31 23:59'"],
        [5, "check_in in the future '2026-06-02 12:00:01'"],
        [6, "check_out in the future '2100-01-01 11:00'"],
    ]


def test_signup_dates_compare_by_calendar_date(tmp_path):
    path = write(
        tmp_path,
        "customers.csv",
        "customer_id,signup_date\nC1,2026-06-02T23:00\nC2,2026-06-03\nC3,0001-01-01\nC4,2024-01-01\n",
    )
    kept, rejects = load(path)
    assert kept["customer_id"].tolist() == ["C1", "C4"]
    assert reasons(rejects) == [
        [3, "signup_date in the future '2026-06-03'"],
        [4, "signup_date before 1900-01-01 '0001-01-01'"],
    ]


def test_transaction_in_the_future(tmp_path):
    path = write(
        tmp_path,
        "transactions.csv",
        "transaction_id,customer_id,transaction_date,amount\nT1,C1,2099-12-31,5\nT2,C1,2026-05-31,5\n",
    )
    kept, rejects = load(path)
    assert kept["transaction_id"].tolist() == ["T2"]
    assert reasons(rejects) == [[2, "transaction_date in the future '2099-12-31'"]]


# 2. numbers outside their column's range


def test_money_above_the_maximum_is_rejected_and_sums_stay_finite(tmp_path):
    path = write(
        tmp_path,
        "transactions.csv",
        "transaction_id,customer_id,transaction_date,amount\n"
        "T1,C1,2024-05-01,1e308\nT2,C1,2024-05-01,1e308\nT3,C1,2024-05-01,1000000000000\n"
        "T4,C1,2024-05-01,1000000000000.01\nT5,C1,2024-05-01,12.50\n",
    )
    kept, rejects = load(path)
    assert kept["transaction_id"].tolist() == ["T3", "T5"]
    assert kept["amount"].sum() == MAX_MONEY + 12.5
    assert reasons(rejects) == [
        [2, "amount out of range '1e308'"],
        [3, "amount out of range '1e308'"],
        [5, "amount out of range '1000000000000.01'"],
    ]


def test_counts_beyond_int64_reject_the_row_not_the_source(tmp_path):
    path = write(
        tmp_path,
        "packages.csv",
        "package_id,package_name,price,duration_days,sessions_included\n"
        "P1,Gold,1e13,30,1e20\nP2,Silver,10,9007199254740992,\nP3,Bronze,10,30,-1e20\n"
        "P4,Basic,10,30,9007199254740991\n",
    )
    kept, rejects = load(path)
    assert kept["package_id"].tolist() == ["P4"]
    assert kept["sessions_included"].tolist() == [2**53 - 1]
    assert reasons(rejects) == [
        [2, "price out of range '1e13'; sessions_included out of range '1e20'"],
        [3, "duration_days out of range '9007199254740992'"],
        [4, "sessions_included out of range '-1e20'"],
    ]


# 3. NUL bytes


def test_a_nul_byte_past_the_first_megabyte_rejects_its_row(tmp_path):
    filler = "".join(f"A{i},C1,2024-05-01 10:00,Riverside\n" for i in range(40_000))
    assert len(filler) > 1 << 20
    path = write(
        tmp_path,
        "attendance.csv",
        "attendance_id,customer_id,check_in,club\n"
        + filler
        + "B1,C1,2024-05-01 10:00,River\0side\nB2,C1,2024-05-01\0,x\nB3,C1,2024-05-01 10:00,x\n",
    )
    kept, rejects = load(path)
    assert len(kept) == 40_001 and kept["attendance_id"].iloc[-1] == "B3"
    assert reasons(rejects) == [
        [40_002, "club contains a NUL byte"],
        [40_003, "check_in contains a NUL byte; unparseable check_in '2024-05-01\\0'"],
    ]


def test_a_nul_byte_in_the_first_megabyte_still_fails_the_file(tmp_path):
    path = write(tmp_path, "customers.csv", b"customer_id,signup_date\nC1,2024-01-01\0\n")
    with pytest.raises(SourceError) as e:
        load(path)
    assert str(e.value) == f"{path}: not a text file (NUL bytes): expected UTF-8 CSV"


# 4. headers


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            "customer_id,signup_date," + "x" * 64,
            f"line 1, column '{'x' * 64}': column name is 64 bytes long; PostgreSQL allows at "
            "most 63",
        ),
        (
            "customer_id,signup_date," + "é" * 32,  # 32 characters, 64 bytes
            f"line 1, column '{'é' * 32}': column name is 64 bytes long; PostgreSQL allows at "
            "most 63",
        ),
        ("customer_id,,signup_date", "line 1: header field 2 has no column name"),
        (
            "customer_id,signup_date, XMin ",
            "line 1, column 'xmin': reserved name: a PostgreSQL system column",
        ),
        (
            "ctid,customer_id,signup_date",
            "line 1, column 'ctid': reserved name: a PostgreSQL system column",
        ),
        (
            "customer_id,_line,signup_date",
            "line 1, column '_line': reserved name: the loader's own bookkeeping column",
        ),
        (
            "customer_id,signup_date,_FILE",
            "line 1, column '_file': reserved name: the loader's own bookkeeping column",
        ),
        (
            "customer_id,signup_date,_reason",
            "line 1, column '_reason': reserved name: the loader's own bookkeeping column",
        ),
    ],
)
def test_header_names_the_table_cannot_have(tmp_path, header, message):
    path = write(tmp_path, "customers.csv", f"{header}\nC1,2024-01-01,x\n")
    with pytest.raises(SourceError) as e:
        load(path)
    assert str(e.value) == f"{path}, {message}"


def test_a_63_byte_column_name_is_kept(tmp_path):
    name = "x" * 63
    path = write(tmp_path, "customers.csv", f"customer_id,signup_date,{name}\nC1,2024-01-01,v\n")
    kept, rejects = load(path)
    assert kept[name].tolist() == ["v"]
    assert rejects.empty


def test_empty_trailing_header_fields_are_ignored(tmp_path):
    path = write(
        tmp_path, "customers.csv", "customer_id,signup_date,,\nC1,2024-01-01,,\nC2,2024-01-02,,\n"
    )
    kept, rejects = load(path)
    assert list(kept.columns[:2]) == ["customer_id", "signup_date"]
    assert kept["customer_id"].tolist() == ["C1", "C2"]
    assert rejects.empty


def test_a_value_under_an_empty_trailing_header_field_rejects_its_row(tmp_path):
    path = write(
        tmp_path, "customers.csv", "customer_id,signup_date,\nC1,2024-01-01,\nC2,2024-01-02,x\n"
    )
    kept, rejects = load(path)
    assert kept["customer_id"].tolist() == ["C1"]
    assert rejects["reason"].tolist() == ["value under an unnamed column (field 3) 'x'"]
    assert rejects["line"].tolist() == [3]


# 5. drops that are not readable regular files


def test_a_dangling_link_named_like_a_drop_fails_the_source(tmp_path):
    write(tmp_path, "customers.csv", "customer_id,signup_date\nC1,2024-01-01\n")
    link = tmp_path / "customers_2026-06-01.csv"
    link.symlink_to(tmp_path / "gone.csv")
    with pytest.raises(SourceError) as e:
        source_files(tmp_path, "customers")
    assert str(e.value) == f"{link}: broken link: the file it points to does not exist"
    link.unlink()
    link.symlink_to(tmp_path / "customers.csv")  # a link to a real file is a drop like any other
    assert [p.name for p in source_files(tmp_path, "customers")] == [
        "customers.csv",
        "customers_2026-06-01.csv",
    ]


@pytest.mark.parametrize("make", [os.mkdir, os.mkfifo], ids=["folder", "fifo"])
def test_a_folder_or_pipe_named_like_a_drop_fails_the_source(tmp_path, make):
    write(tmp_path, "customers.csv", "customer_id,signup_date\nC1,2024-01-01\n")
    odd = tmp_path / "Customers_2.CSV"
    make(odd)
    with pytest.raises(SourceError) as e:
        source_files(tmp_path, "customers")
    assert str(e.value) == f"{odd}: not a regular file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_drop_fails_the_source(tmp_path):
    path = write(tmp_path, "customers.csv", "customer_id,signup_date\nC1,2024-01-01\n")
    path.chmod(0)
    with pytest.raises(SourceError) as e:
        source_files(tmp_path, "customers")
    assert str(e.value) == f"{path}: not readable (permission denied)"


# 6. UTC offsets


def test_an_offset_keeps_the_date_and_time_as_written(tmp_path):
    customers = write(
        tmp_path,
        "customers.csv",
        "customer_id,signup_date\n"
        "C1,2024-05-01T23:30:00-05:00\nC2,2024-05-01T01:00:00+09:00\nC3,2024-05-01\n",
    )
    kept, rejects = load(customers)
    assert kept["signup_date"].astype(str).tolist() == ["2024-05-01"] * 3
    assert rejects.empty
    transactions = write(
        tmp_path,
        "transactions.csv",
        "transaction_id,customer_id,transaction_date,amount\n"
        "T1,C1,2024-05-01T23:30:00-05:00,1\nT2,C1,2024-05-01 07:32:00Z,1\n"
        "T3,C1,2024-05-01T07:32:00.5+0530,1\nT4,C1,2024-05-01 07:32,1\nT5,C1,2024-05-01-05:00,1\n",
    )
    kept, rejects = load(transactions)
    assert kept["transaction_date"].tolist() == [
        pd.Timestamp("2024-05-01 23:30:00"),
        pd.Timestamp("2024-05-01 07:32:00"),
        pd.Timestamp("2024-05-01 07:32:00.5"),
        pd.Timestamp("2024-05-01 07:32:00"),
    ]
    assert reasons(rejects) == [[6, "unparseable transaction_date '2024-05-01-05:00'"]]


# Any corruption of a valid export: loaded with every record accounted for, or one SourceError.

EXPORT = (
    "transaction_id,customer_id,transaction_date,amount,package_id,payment_method\n"
    + "".join(
        f"T{i},C{i % 3},2024-0{1 + i % 9}-1{i % 10} 0{i % 10}:15:00,{i * 7.25},P{i % 2},card\n"
        for i in range(12)
    )
).encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.integers(0, len(EXPORT)),
    length=st.integers(0, 40),
    replacement=st.binary(max_size=40)
    | st.sampled_from([b"\0", b'"', b"\r", b"\n", b",", b"\xef\xbb\xbf", b"9e999", b"2100"]),
)
def test_a_corrupted_export_loads_or_fails_with_its_file_named(start, length, replacement):
    data = EXPORT[:start] + replacement + EXPORT[start + length :]
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder), "transactions.csv", data)
        try:
            kept, rejects = load(path)
        except SourceError as e:
            assert path.name in str(e)
            return
    assert len(kept) + len(rejects) == _records(data)
    assert rejects["line"].is_unique and rejects["reason"].str.len().gt(0).all()
    assert not rejects["reason"].str.contains("\0").any()
    assert not set(kept["_line"]) & set(rejects["line"])
    if kept.empty:
        return
    amounts = kept["amount"].to_numpy()
    assert np.isfinite(amounts).all() and (amounts >= 0).all() and (amounts <= MAX_MONEY).all()
    when = kept["transaction_date"]
    assert when.notna().all()
    assert when.ge(pd.Timestamp("1900-01-01")).all() and when.le(NOW + pd.Timedelta(days=1)).all()
    assert not kept.astype(str).apply(lambda column: column.str.contains("\0")).any().any()


def _records(data: bytes) -> int:
    """Non-blank CSV records after the header, as Python's csv module reads the text."""
    text = data.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text, newline=None)))[1:]
    return sum(1 for row in rows if row)
