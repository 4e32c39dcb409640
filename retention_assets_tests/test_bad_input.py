"""The catalogue of bad inputs: one test per case, each as the SPEC says it must behave.

Row problems are rejected with a reason and the physical line; structural problems raise one
SourceError naming the file (and column / line). Rules that need other rows (duplicate ids,
unknown customer_id / package_id) are decided in PostgreSQL when a file is stored, so those
cases store their files (store_file) and read the `rejected_rows` view. Graph-level behaviour
(stored tables left intact, the blocking reject check) is in test_graph.py.
"""

import datetime as dt
import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pytest

from retention_assets.core.dates import DATE_DTYPE
from retention_assets.core.rfm import rfm_features
from retention_assets.core.sources import ATTENDANCE, CUSTOMERS, PACKAGES, SOURCES, TRANSACTIONS
from retention_assets.ingest.loading import SourceError, parse_file, source_files, source_template
from retention_assets.ingest.store import store_file
from retention_assets.storage.activity import customer_activity
from retention_assets.storage.tables import read_table

TX_HEADER = "transaction_id,customer_id,transaction_date,amount\n"


@dataclass
class Parsed:
    frame: pd.DataFrame  # the valid rows, typed (without the loader's `_line`)
    rejects: pd.DataFrame  # source, file, line, reason, raw


def write(folder, name, content):
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def load(spec, folder, name, content):
    """Write one drop file and parse it: its valid rows and its per-row rejects."""
    path = write(folder, name, content)
    blocks: list[pa.Table] = []
    parsed = parse_file(spec, path, blocks.append)
    if blocks:
        frame = pa.concat_tables(blocks).to_pandas(types_mapper={pa.date32(): DATE_DTYPE}.get)
        frame = frame.drop(columns="_line")
    else:
        frame = source_template(spec, [path])
    return Parsed(frame, parsed.rejects)


def rejects(loaded):
    return loaded.rejects[["line", "reason"]].values.tolist()


@pytest.fixture
def schema(conn):
    name = f"bad_{uuid.uuid4().hex[:8]}"
    yield name
    with conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def store(conn, schema, folder, *sources):
    """Store every drop file of `sources` (in that order, files in name order)."""
    for name in sources:
        for path in source_files(folder, name):
            store_file(conn, schema, SOURCES[name], path, "test-run")


def stored_rejects(conn, schema):
    frame = read_table(conn, schema, "rejected_rows")
    return frame.sort_values(["source", "file", "line"], ignore_index=True)


def test_missing_file(tmp_path):
    with pytest.raises(SourceError, match=r"customers\.csv: missing file"):
        source_template(CUSTOMERS, source_files(tmp_path, "customers"))


def test_empty_file(tmp_path):
    with pytest.raises(SourceError, match=r"customers\.csv: empty file: no header row"):
        load(CUSTOMERS, tmp_path, "customers.csv", "")


def test_header_only(tmp_path):
    loaded = load(CUSTOMERS, tmp_path, "customers.csv", "customer_id,signup_date\n")
    assert loaded.frame.empty and loaded.rejects.empty
    assert list(loaded.frame.columns) == ["customer_id", "signup_date"]


def test_missing_required_column(tmp_path):
    with pytest.raises(SourceError) as error:
        load(CUSTOMERS, tmp_path, "customers.csv", "customer_id,email\nC1,a@b\n")
    assert str(error.value).endswith(
        "customers.csv, line 1, column 'signup_date': missing required column"
    )


def test_renamed_reordered_upper_case_headers(tmp_path):
    loaded = load(
        CUSTOMERS, tmp_path, "customers.csv", " SIGNUP_DATE ,Customer_ID\n2024-01-02,C1\n"
    )
    assert loaded.frame["customer_id"].tolist() == ["C1"]
    assert str(loaded.frame["signup_date"].iloc[0]) == "2024-01-02"


def test_extra_columns_are_kept_as_text(tmp_path):
    loaded = load(
        CUSTOMERS,
        tmp_path,
        "customers.csv",
        "customer_id,signup_date,Home_Club,vip\nC1,2024-01-02,North,\n",
    )
    assert loaded.frame[["home_club", "vip"]].iloc[0].tolist()[0] == "North"
    assert pd.isna(loaded.frame["vip"].iloc[0])


def test_bom(tmp_path):
    loaded = load(
        CUSTOMERS,
        tmp_path,
        "customers.csv",
        b"\xef\xbb\xbfcustomer_id,signup_date\nC1,2024-01-02\n",
    )
    assert loaded.frame["customer_id"].tolist() == ["C1"]


def test_crlf(tmp_path):
    loaded = load(
        CUSTOMERS,
        tmp_path,
        "customers.csv",
        "customer_id,signup_date,name\r\nC1,2024-01-02,Ann\r\nC2,bad,Bo\r\n",
    )
    assert loaded.frame["name"].tolist() == ["Ann"]
    assert rejects(loaded) == [[3, "unparseable signup_date 'bad'"]]


def test_quoted_commas_quotes_and_newlines(tmp_path):
    content = 'customer_id,signup_date,note\nC1,2024-01-02,"a, ""b""\nc"\nC2,oops,x\n'
    loaded = load(CUSTOMERS, tmp_path, "customers.csv", content)
    assert loaded.frame["note"].tolist() == ['a, "b"\nc']
    assert rejects(loaded) == [[4, "unparseable signup_date 'oops'"]]  # physical line
    assert loaded.rejects["raw"].tolist() == ["C2,oops,x"]


def test_latin1_bytes_in_utf8_file(tmp_path):
    with pytest.raises(SourceError, match=r"customers\.csv, line 3: not UTF-8 text"):
        load(
            CUSTOMERS,
            tmp_path,
            "customers.csv",
            b"customer_id,signup_date,name\nC1,2024-01-02,a\nC2,2024-01-02,Jos\xe9\n",
        )


def test_binary_file_named_csv(tmp_path):
    with pytest.raises(SourceError, match=r"customers\.csv: not a text file"):
        load(CUSTOMERS, tmp_path, "customers.csv", bytes(range(256)) * 8)


def test_truncated_last_line_with_missing_fields(tmp_path):
    loaded = load(
        CUSTOMERS,
        tmp_path,
        "customers.csv",
        "customer_id,signup_date,name\nC1,2024-01-02,a\nC2,2024-0",
    )
    assert loaded.frame["customer_id"].tolist() == ["C1"]
    assert rejects(loaded) == [[3, "expected 3 fields, found 2"]]


def test_truncated_last_line_inside_a_quoted_field(tmp_path):
    with pytest.raises(SourceError, match=r"customers\.csv, line 3: not parseable as CSV"):
        load(
            CUSTOMERS,
            tmp_path,
            "customers.csv",
            'customer_id,signup_date,name\nC1,2024-01-02,a\nC2,2024-01-02,"unterminated\n',
        )


def test_blank_lines_are_skipped_and_lines_still_counted(tmp_path):
    loaded = load(
        CUSTOMERS,
        tmp_path,
        "customers.csv",
        "customer_id,signup_date\n\nC1,2024-01-02\n\n\nC2,x\n\n",
    )
    assert loaded.frame["customer_id"].tolist() == ["C1"]
    assert rejects(loaded) == [[6, "unparseable signup_date 'x'"]]


def test_three_iso_forms_and_an_unparseable_date(tmp_path):
    content = TX_HEADER + (
        "T1,C1,2024-05-01,1\nT2,C1,2024-05-01 07:32:00,1\nT3,C1,2024-05-01T07:32:00,1\n"
        "T4,C1,01/05/2024,1\nT5,C1,2024-02-30,1\n"
    )
    loaded = load(TRANSACTIONS, tmp_path, "transactions.csv", content)
    assert loaded.frame["transaction_date"].astype(str).tolist() == [
        "2024-05-01 00:00:00",
        "2024-05-01 07:32:00",
        "2024-05-01 07:32:00",
    ]
    assert rejects(loaded) == [
        [5, "unparseable transaction_date '01/05/2024'"],
        [6, "unparseable transaction_date '2024-02-30'"],
    ]


def test_a_date_column_accepts_a_timestamp(tmp_path):
    loaded = load(
        CUSTOMERS, tmp_path, "customers.csv", "customer_id,signup_date\nC1,2024-01-02T23:59:00\n"
    )
    assert str(loaded.frame["signup_date"].iloc[0]) == "2024-01-02"


def test_awkward_numbers(tmp_path):
    content = TX_HEADER + (
        "T1,C1,2024-05-01, 12.50 \nT2,C1,2024-05-01,\nT3,C1,2024-05-01,NaN\n"
        "T4,C1,2024-05-01,inf\nT5,C1,2024-05-01,-3\nT6,C1,2024-05-01,1 000\n"
    )
    loaded = load(TRANSACTIONS, tmp_path, "transactions.csv", content)
    assert loaded.frame["amount"].tolist() == [12.5]
    assert rejects(loaded) == [
        [3, "missing amount"],
        [4, "unparseable amount 'NaN'"],
        [5, "amount is not a finite number 'inf'"],
        [6, "negative amount '-3'"],
        [7, "unparseable amount '1 000'"],
    ]


def test_package_counts(tmp_path):
    content = (
        "package_id,package_name,price,duration_days\n"
        "P1,A,10,30\nP2,B,10,0\nP3,C,10,1.5\nP4,D,10,\n"
    )
    loaded = load(PACKAGES, tmp_path, "packages.csv", content)
    assert loaded.frame["package_id"].tolist() == ["P1", "P4"]
    assert rejects(loaded) == [
        [3, "duration_days must be > 0 '0'"],
        [4, "duration_days is not a whole number '1.5'"],
    ]


def test_duplicate_ids_within_a_file_and_across_drops(conn, schema, tmp_path):
    write(
        tmp_path,
        "customers.csv",
        "customer_id,signup_date\nC1,2024-01-01\nC2,2024-01-01\nC1,2024-02-02\n",
    )
    write(
        tmp_path,
        "customers_2024-03-01.csv",
        "customer_id,signup_date\nC2,2024-03-01\nC3,2024-03-01\n",
    )
    store(conn, schema, tmp_path, "customers")
    stored = read_table(conn, schema, "customers").sort_values("customer_id")
    assert stored["customer_id"].tolist() == ["C1", "C2", "C3"]
    # the first occurrence wins, in (file name, line) order
    assert stored["signup_date"].astype(str).tolist() == ["2024-01-01", "2024-01-01", "2024-03-01"]
    assert stored_rejects(conn, schema)[["file", "line", "reason", "raw"]].values.tolist() == [
        [
            "customers.csv",
            4,
            "duplicate customer_id (first at customers.csv line 2)",
            "C1,2024-02-02",
        ],
        [
            "customers_2024-03-01.csv",
            2,
            "duplicate customer_id (first at customers.csv line 3)",
            "C2,2024-03-01",
        ],
    ]


def test_unknown_customers_and_packages(conn, schema, tmp_path):
    write(tmp_path, "customers.csv", "customer_id,signup_date\nC1,2024-01-01\nC2,2024-01-01\n")
    write(tmp_path, "packages.csv", "package_id,package_name,price\nP1,Monthly,50\n")
    write(
        tmp_path,
        "transactions.csv",
        "transaction_id,customer_id,transaction_date,amount,package_id\n"
        "T1,C1,2024-05-01,5,P1\nT2,C9,2024-05-01,5,P1\nT3,C1,2024-05-01,5,P9\nT4,C1,2024-05-01,5,\n",
    )
    write(tmp_path, "attendance.csv", "attendance_id,customer_id,check_in\nA1,C7,2024-05-01\n")
    store(conn, schema, tmp_path, "customers", "packages", "transactions", "attendance")
    stored = read_table(conn, schema, "transactions").sort_values("transaction_id")
    assert stored["transaction_id"].tolist() == ["T1", "T4"]
    assert read_table(conn, schema, "attendance").empty
    assert stored_rejects(conn, schema)[["source", "line", "reason"]].values.tolist() == [
        ["attendance", 2, "unknown customer_id 'C7'"],
        ["transactions", 3, "unknown customer_id 'C9'"],
        ["transactions", 4, "unknown package_id 'P9'"],
    ]


def test_a_reference_is_decided_whatever_order_the_files_come_in(conn, schema, tmp_path):
    """Attendance stored before its customers is held, then accepted once they arrive."""
    write(tmp_path, "attendance.csv", "attendance_id,customer_id,check_in\nA1,C1,2024-05-01\n")
    store(conn, schema, tmp_path, "attendance")
    assert stored_rejects(conn, schema)["reason"].tolist() == ["unknown customer_id 'C1'"]
    write(tmp_path, "customers.csv", "customer_id,signup_date\nC1,2024-01-01\n")
    store(conn, schema, tmp_path, "customers")
    assert stored_rejects(conn, schema).empty
    assert read_table(conn, schema, "attendance")["attendance_id"].tolist() == ["A1"]


def test_check_out_before_check_in(tmp_path):
    att = load(
        ATTENDANCE,
        tmp_path,
        "attendance.csv",
        "attendance_id,customer_id,check_in,check_out\n"
        "A1,C1,2024-05-01 10:00,2024-05-01 09:00\nA2,C1,2024-05-01 10:00,2024-05-01 11:00\n",
    )
    assert att.frame["attendance_id"].tolist() == ["A2"]
    assert rejects(att) == [[2, "check_out before check_in"]]


def test_several_problems_in_one_row_are_all_named(conn, schema, tmp_path):
    """Every problem the row has on its own is named. Whether its customer exists is decided
    only for rows that pass those checks (in PostgreSQL, across files), so the unknown C9 is
    no longer part of this reason: the row is rejected either way."""
    write(tmp_path, "customers.csv", "customer_id,signup_date\nC1,2024-01-01\n")
    write(tmp_path, "transactions.csv", TX_HEADER + "T1,C9,never,-1\n")
    store(conn, schema, tmp_path, "customers", "transactions")
    assert stored_rejects(conn, schema)[["line", "reason", "raw"]].values.tolist() == [
        [2, "unparseable transaction_date 'never'; negative amount '-1'", "T1,C9,never,-1"]
    ]
    assert read_table(conn, schema, "transactions").empty


def test_events_after_as_of_are_ignored_not_rejected(conn, schema, tmp_path):
    write(tmp_path, "customers.csv", "customer_id,signup_date\nC1,2024-01-01\n")
    write(
        tmp_path,
        "attendance.csv",
        "attendance_id,customer_id,check_in\n"
        "A1,C1,2024-05-31 23:59:59\nA2,C1,2024-06-01 00:00:00\n",
    )
    write(tmp_path, "transactions.csv", TX_HEADER + "T1,C1,2024-06-01,9\n")
    store(conn, schema, tmp_path, "customers", "attendance", "transactions")
    assert stored_rejects(conn, schema).empty
    as_of = dt.date(2024, 5, 31)
    features = rfm_features(customer_activity(conn, schema, as_of), as_of)
    assert features[["frequency", "recency_days", "monetary"]].iloc[0].tolist() == [1, 0, 0.0]


def test_signup_after_as_of_is_outside_the_universe(conn, schema, tmp_path):
    write(
        tmp_path,
        "customers.csv",
        "customer_id,signup_date\nC1,2024-01-01\nC2,2024-06-01\n",
    )
    write(tmp_path, "attendance.csv", "attendance_id,customer_id,check_in\n")
    write(tmp_path, "transactions.csv", TX_HEADER)
    store(conn, schema, tmp_path, "customers", "attendance", "transactions")
    as_of = dt.date(2024, 5, 31)
    features = rfm_features(customer_activity(conn, schema, as_of), as_of)
    assert features["customer_id"].tolist() == ["C1"]
    assert features["recency_days"].tolist() == [(as_of - dt.date(2024, 1, 1)).days]


def test_large_attendance_file_memory_stays_bounded(tmp_path):
    """~200 MB of attendance parsed in 1 MB blocks: each block's valid rows are handed on as
    they are typed, so peak memory stays a few blocks' worth, far below the text, whatever the
    file's size (the rows are COPYed on, never gathered into one frame)."""
    path = tmp_path / "attendance.csv"
    block = "".join(
        f"A{i:07d},C{i % 5000:05d},2025-0{1 + i % 9}-1{i % 10} 07:{i % 60:02d}:00,"
        f"2025-0{1 + i % 9}-1{i % 10} 08:00:00,North\n"
        for i in range(20_000)
    )
    with path.open("w") as f:
        f.write("attendance_id,customer_id,check_in,check_out,club\n")
        for _ in range(160):  # duplicate ids are fine: they are decided when stored
            f.write(block)
    script = textwrap.dedent(
        f"""
        import resource
        from pathlib import Path
        import retention_assets.ingest.loading as loading
        from retention_assets.core.sources import ATTENDANCE
        loading._CHUNK = 1 << 20
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rows = []
        parsed = loading.parse_file(ATTENDANCE, Path("{path}"), lambda t: rows.append(len(t)))
        assert sum(rows) == parsed.rows_read == 3_200_000 and parsed.rejects.empty
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(base, peak)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    base_kb, peak_kb = map(int, out.stdout.split())
    size_kb = path.stat().st_size / 1024
    assert peak_kb - base_kb < 0.4 * size_kb, (base_kb, peak_kb, size_kb)
