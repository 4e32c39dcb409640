"""The catalogue of bad inputs: one test per case, each as the SPEC says it must behave.

Row problems are rejected with a reason and the physical line; structural problems raise one
SourceError naming the file (and column / line). Graph-level behaviour (stored tables left
intact, the blocking reject check) is in test_graph.py.
"""

import datetime as dt
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from retention_assets.core.loading import SourceError, load_source, source_files
from retention_assets.core.rfm import rfm_features
from retention_assets.core.sources import ATTENDANCE, CUSTOMERS, PACKAGES, TRANSACTIONS

KNOWN = {"customers": pd.Series(["C1", "C2", "C3"]), "packages": pd.Series(["P1"])}
TX_HEADER = "transaction_id,customer_id,transaction_date,amount\n"


def write(folder, name, content):
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def load(spec, folder, name, content, known=KNOWN):
    write(folder, name, content)
    return load_source(spec, source_files(folder, spec.name), known)


def rejects(loaded):
    return loaded.rejects[["line", "reason"]].values.tolist()


def test_missing_file(tmp_path):
    with pytest.raises(SourceError, match=r"customers\.csv: missing file"):
        load_source(CUSTOMERS, source_files(tmp_path, "customers"))


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


def test_duplicate_ids_within_a_file_and_across_drops(tmp_path):
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
    loaded = load_source(CUSTOMERS, source_files(tmp_path, "customers"))
    assert loaded.frame["customer_id"].tolist() == ["C1", "C2", "C3"]
    assert str(loaded.frame["signup_date"].iloc[0]) == "2024-01-01"  # the first occurrence wins
    assert loaded.rejects[["file", "line", "reason", "raw"]].values.tolist() == [
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


def test_unknown_customers_and_packages(tmp_path):
    tx = load(
        TRANSACTIONS,
        tmp_path,
        "transactions.csv",
        "transaction_id,customer_id,transaction_date,amount,package_id\n"
        "T1,C1,2024-05-01,5,P1\nT2,C9,2024-05-01,5,P1\nT3,C1,2024-05-01,5,P9\nT4,C1,2024-05-01,5,\n",
    )
    assert tx.frame["transaction_id"].tolist() == ["T1", "T4"]
    assert rejects(tx) == [[3, "unknown customer_id 'C9'"], [4, "unknown package_id 'P9'"]]
    att = load(
        ATTENDANCE,
        tmp_path,
        "attendance.csv",
        "attendance_id,customer_id,check_in\nA1,C7,2024-05-01\n",
    )
    assert rejects(att) == [[2, "unknown customer_id 'C7'"]]


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


def test_several_problems_in_one_row_are_all_named(tmp_path):
    loaded = load(TRANSACTIONS, tmp_path, "transactions.csv", TX_HEADER + "T1,C9,never,-1\n")
    assert rejects(loaded) == [
        [2, "unparseable transaction_date 'never'; negative amount '-1'; unknown customer_id 'C9'"]
    ]


def test_events_after_as_of_are_ignored_not_rejected(tmp_path):
    customers = load(
        CUSTOMERS, tmp_path, "customers.csv", "customer_id,signup_date\nC1,2024-01-01\n"
    )
    att = load(
        ATTENDANCE,
        tmp_path,
        "attendance.csv",
        "attendance_id,customer_id,check_in\n"
        "A1,C1,2024-05-31 23:59:59\nA2,C1,2024-06-01 00:00:00\n",
    )
    tx = load(TRANSACTIONS, tmp_path, "transactions.csv", TX_HEADER + "T1,C1,2024-06-01,9\n")
    assert att.rejects.empty and tx.rejects.empty
    features = rfm_features(customers.frame, tx.frame, att.frame, dt.date(2024, 5, 31))
    assert features[["frequency", "recency_days", "monetary"]].iloc[0].tolist() == [1, 0, 0.0]


def test_signup_after_as_of_is_outside_the_universe(tmp_path):
    customers = load(
        CUSTOMERS,
        tmp_path,
        "customers.csv",
        "customer_id,signup_date\nC1,2024-01-01\nC2,2024-06-01\n",
    )
    empty = load(ATTENDANCE, tmp_path, "attendance.csv", "attendance_id,customer_id,check_in\n")
    no_tx = load(TRANSACTIONS, tmp_path, "transactions.csv", TX_HEADER)
    features = rfm_features(customers.frame, no_tx.frame, empty.frame, dt.date(2024, 5, 31))
    assert features["customer_id"].tolist() == ["C1"]
    assert features["recency_days"].tolist() == [(dt.date(2024, 5, 31) - dt.date(2024, 1, 1)).days]


def test_large_attendance_file_memory_stays_bounded(tmp_path):
    """~250 MB of attendance: peak memory stays near the typed result, never the text twice."""
    path = tmp_path / "attendance.csv"
    script = textwrap.dedent(
        f"""
        import resource, sys
        from pathlib import Path
        import numpy as np, pandas as pd, pyarrow as pa, pyarrow.csv as pacsv
        n = 3_000_000
        rng = np.random.default_rng(0)
        start = np.datetime64("2025-01-01T06:00:00")
        check_in = start + rng.integers(0, 300 * 86400, n).astype("timedelta64[s]")
        stamp = "%Y-%m-%d %H:%M:%S"
        frame = pd.DataFrame({{
            "attendance_id": [f"A{{i:010d}}" for i in range(n)],
            "customer_id": [f"C{{i:07d}}" for i in rng.integers(0, 50_000, n)],
            "check_in": pd.Series(check_in).dt.strftime(stamp),
            "check_out": pd.Series(check_in + np.timedelta64(3600, "s")).dt.strftime(stamp),
            "club": rng.choice(["North", "South", "East"], n),
        }})
        pacsv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), "{path}")
        del frame, check_in
        import gc; gc.collect()
        from retention_assets.core.loading import load_source
        from retention_assets.core.sources import ATTENDANCE
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        loaded = load_source(ATTENDANCE, [Path("{path}")])
        assert len(loaded.frame) == n and loaded.rejects.empty
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(base, peak)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    base_kb, peak_kb = map(int, out.stdout.split())
    size_kb = path.stat().st_size / 1024
    # the typed frame alone is about the size of the text; holding the text twice would be 2x+
    assert (peak_kb - max(base_kb, 0)) < 1.6 * size_kb + 200_000, (base_kb, peak_kb, size_kb)
