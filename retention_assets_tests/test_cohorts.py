"""Cohort retention in SQL: a hand-computed table, and agreement with pandas on the sample data."""

from __future__ import annotations

import datetime as dt
import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from retention_assets import plots
from retention_assets.storage.cohorts import COLUMNS, cohort_retention
from retention_assets.storage.summaries import CHECK_IN_MONTHS, ensure_summary

DATA = Path(__file__).resolve().parents[1] / "data"

# Production stores text as COLLATE "C" (storage/slices.py); attendance's default collation here
# also checks that the join doesn't depend on the two columns' collations matching.
_DDL = """
CREATE SCHEMA {s};
CREATE TABLE {s}.customers (customer_id text COLLATE "C", signup_date date, home_club text);
CREATE TABLE {s}.attendance (customer_id text, check_in timestamp, club text);
"""


@pytest.fixture
def schema(conn) -> Iterator[str]:
    name = f"cohorts_{uuid.uuid4().hex[:10]}"
    with conn.cursor() as cur:
        cur.execute(_DDL.format(s=f'"{name}"'))
        ensure_summary(cur, name, CHECK_IN_MONTHS)  # kept by triggers as the tests insert
    yield name
    with conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA "{name}" CASCADE')


def _insert(conn, schema: str, customers: list[tuple], attendance: list[tuple]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            f'INSERT INTO "{schema}".customers (customer_id, signup_date) VALUES (%s, %s)',
            customers,
        )
        cur.executemany(
            f'INSERT INTO "{schema}".attendance (customer_id, check_in) VALUES (%s, %s)',
            attendance,
        )


AS_OF = dt.date(2024, 3, 15)

HAND_CUSTOMERS = [
    ("C01", "2023-12-01"),
    ("C02", "2023-12-20"),  # mid-month: a check-in on Dec 2 (before signup) still counts for k=0
    ("C03", "2023-12-31"),  # never attended
    ("C04", "2023-12-15"),  # only a check-in before the signup month, and ones after as_of
    ("C05", "2024-01-01"),
    ("C06", "2024-01-31"),
    ("C07", "2024-01-10"),
    ("C08", "2024-02-14"),
    ("C09", "2024-02-29"),
    ("C10", "2024-02-01"),  # only a check-in after as_of
    ("C11", "2024-03-15"),  # signed up on the as_of day
    ("C12", "2024-03-16"),  # after as_of: not in any cohort
]
HAND_ATTENDANCE = [
    ("C01", "2023-12-05 07:00"),
    ("C01", "2024-01-10 08:00"),
    ("C01", "2024-01-20 08:00"),  # twice in January: still one active customer
    ("C01", "2024-03-15 23:30"),  # late on the as_of day: counts
    ("C02", "2023-12-02 09:00"),
    ("C04", "2023-11-30 10:00"),  # before the signup month: no k
    ("C04", "2024-03-16 00:00"),  # after as_of: ignored
    ("C04", "2024-04-01 10:00"),
    ("C05", "2024-01-01 00:00"),
    ("C05", "2024-03-01 06:00"),
    ("C06", "2024-02-01 06:00"),
    ("C07", "2024-01-11 18:00"),
    ("C07", "2024-02-12 18:00"),
    ("C08", "2024-03-10 12:00"),
    ("C09", "2024-02-29 18:00"),
    ("C10", "2024-03-20 12:00"),
    ("C11", "2024-03-15 10:00"),
    ("C12", "2024-03-16 10:00"),
    ("X99", "2024-01-05 10:00"),  # no such customer
]


def test_hand_made_cohorts(conn, schema):
    _insert(conn, schema, HAND_CUSTOMERS, HAND_ATTENDANCE)

    result = cohort_retention(conn, schema, AS_OF)

    d = dt.date
    expected = [  # cohort, k, size, active, partial
        (d(2023, 12, 1), 0, 4, 2, False),  # C01, C02
        (d(2023, 12, 1), 1, 4, 1, False),  # C01
        (d(2023, 12, 1), 2, 4, 0, False),  # nobody in February
        (d(2023, 12, 1), 3, 4, 1, True),  # C01 on the evening of as_of
        (d(2024, 1, 1), 0, 3, 2, False),  # C05, C07
        (d(2024, 1, 1), 1, 3, 2, False),  # C06, C07
        (d(2024, 1, 1), 2, 3, 1, True),  # C05
        (d(2024, 2, 1), 0, 3, 1, False),  # C09
        (d(2024, 2, 1), 1, 3, 1, True),  # C08 (C10's visit is after as_of)
        (d(2024, 3, 1), 0, 1, 1, True),  # C11
    ]
    assert list(result.columns) == COLUMNS
    assert list(result["cohort_month"]) == [row[0] for row in expected]
    assert list(result["months_since_signup"]) == [row[1] for row in expected]
    assert list(result["cohort_size"]) == [row[2] for row in expected]
    assert list(result["active_customers"]) == [row[3] for row in expected]
    assert list(result["partial"]) == [row[4] for row in expected]
    assert result["active_share"].tolist() == pytest.approx(
        [2 / 4, 1 / 4, 0, 1 / 4, 2 / 3, 2 / 3, 1 / 3, 1 / 3, 1 / 3, 1.0], abs=1e-12
    )
    assert result.dtypes.astype(str).to_dict() == {
        "cohort_month": "date32[day][pyarrow]",
        "months_since_signup": "int64",
        "cohort_size": "int64",
        "active_customers": "Int64",
        "active_share": "float64",
        "partial": "bool",
    }


def test_months_before_the_first_check_in_on_record_are_not_observed(conn, schema):
    """An export of the last months of check-ins beside every signup since the gym opened:
    the months before its first check-in are missing from the table, not 0."""
    customers = [("E1", "2023-10-05"), ("E2", "2023-10-20"), ("E3", "2023-11-02")]
    attendance = [("E1", "2023-12-03 07:00"), ("E3", "2024-01-09 07:00")]
    _insert(conn, schema, customers, attendance)

    result = cohort_retention(conn, schema, dt.date(2024, 1, 31))

    d = dt.date
    assert result[["cohort_month", "months_since_signup"]].values.tolist() == [
        [d(2023, 10, 1), 0],
        [d(2023, 10, 1), 1],
        [d(2023, 10, 1), 2],
        [d(2023, 10, 1), 3],
        [d(2023, 11, 1), 0],
        [d(2023, 11, 1), 1],
        [d(2023, 11, 1), 2],
    ]
    # October and November 2023 precede December, the first month with a check-in.
    assert result["active_customers"].tolist() == [pd.NA, pd.NA, 1, 0, pd.NA, 0, 1]
    shares = result["active_share"].tolist()
    assert [share == share for share in shares] == [False, False, True, True, False, True, True]
    assert [shares[i] for i in (2, 3, 5, 6)] == [0.5, 0.0, 0.0, 1.0]


def test_as_of_on_a_month_boundary_and_no_customers(conn, schema):
    result = cohort_retention(conn, schema, AS_OF)
    assert list(result.columns) == COLUMNS and result.empty

    _insert(conn, schema, HAND_CUSTOMERS, HAND_ATTENDANCE)
    # as_of = Jan 31: December cohort only k 0..1, January's month (partial) ends that day.
    result = cohort_retention(conn, schema, dt.date(2024, 1, 31))
    assert result[["months_since_signup", "cohort_size", "active_customers"]].values.tolist() == [
        [0, 4, 2],
        [1, 4, 1],
        [0, 3, 2],  # C06 signed up on Jan 31 (counts), visited in February (not yet)
    ]
    assert result["partial"].tolist() == [False, True, True]


def _pandas_cohorts(
    customers: pd.DataFrame, attendance: pd.DataFrame, as_of: dt.date
) -> pd.DataFrame:
    """The definition, written naively: every customer x every month of their cohort."""
    signup = pd.to_datetime(customers["signup_date"])
    universe = customers.assign(signup=signup).loc[signup <= pd.Timestamp(as_of)]
    universe = universe.assign(cohort=universe["signup"].dt.to_period("M"))
    visits = attendance.assign(check_in=pd.to_datetime(attendance["check_in"]))
    visits = visits.loc[visits["check_in"].dt.date <= as_of]
    visits = visits.assign(month=visits["check_in"].dt.to_period("M"))
    visits = visits.merge(universe[["customer_id", "cohort"]], on="customer_id")
    visits = visits.loc[visits["month"] >= visits["cohort"]]
    visits = visits.assign(k=(visits["month"] - visits["cohort"]).apply(lambda off: off.n))
    active = visits.groupby(["cohort", "k"])["customer_id"].nunique()
    first = visits["month"].min()  # months before it: not observed
    last = pd.Period(as_of, "M")
    rows = []
    for cohort, size in universe.groupby("cohort").size().sort_index().items():
        for k in range((last - cohort).n + 1):
            n = int(active.get((cohort, k), 0)) if cohort + k >= first else pd.NA
            share = n / size if cohort + k >= first else float("nan")
            rows.append((cohort.start_time.date(), k, int(size), n, share, cohort + k == last))
    return pd.DataFrame(rows, columns=COLUMNS).astype({"active_customers": "Int64"})


def _copy(conn, table: str, frame: pd.DataFrame) -> None:
    text = io.StringIO()
    frame.to_csv(text, index=False, header=False)
    text.seek(0)
    with conn.cursor() as cur:
        cur.copy_expert(
            f"COPY {table} ({', '.join(frame.columns)}) FROM STDIN WITH (FORMAT csv)", text
        )


@pytest.fixture(scope="module")
def sample() -> tuple[pd.DataFrame, pd.DataFrame]:
    customers = pd.read_csv(DATA / "customers.csv", usecols=["customer_id", "signup_date"])
    attendance = pd.read_csv(DATA / "attendance.csv", usecols=["customer_id", "check_in"])
    return customers, attendance


@pytest.mark.parametrize("as_of", ["latest", dt.date(2025, 8, 14)])
def test_sql_equals_pandas_on_the_sample_data(conn, schema, sample, as_of):
    customers, attendance = sample
    _copy(conn, f'"{schema}".customers', customers)
    _copy(conn, f'"{schema}".attendance', attendance)
    if as_of == "latest":
        as_of = pd.Timestamp(attendance["check_in"].max()).date()

    result = cohort_retention(conn, schema, as_of)
    expected = _pandas_cohorts(customers, attendance, as_of)

    assert len(expected) > 100 and expected["active_customers"].sum() > 0
    # The sample's check-ins start in 2024-11, its signups in 2022-09.
    assert expected["active_customers"].isna().sum() > 100
    assert result["cohort_month"].nunique() >= 30
    compared = result.assign(cohort_month=[d for d in result["cohort_month"]])
    pd.testing.assert_frame_equal(compared, expected, check_exact=False, rtol=1e-12)


def _synthetic_cohorts(n_cohorts: int) -> pd.DataFrame:
    """n_cohorts monthly cohorts ending in the as_of month (2026-10); cohort i has 10 * (i + 1)
    customers, k=0 share 0.9, then 0.5."""
    last = pd.Period("2026-10", "M")
    rows = []
    for i in range(n_cohorts):
        cohort = last - (n_cohorts - 1) + i
        size = 10 * (i + 1)
        for k in range((last - cohort).n + 1):
            active = size * 9 // 10 if k == 0 else size // 2
            rows.append(
                (cohort.start_time.date(), k, size, active, active / size, cohort + k == last)
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def test_heatmap_has_a_row_per_cohort_and_a_number_per_cell():
    fig = plots.cohort_heatmap_figure(_synthetic_cohorts(40))
    ax = fig.axes[0]

    labels = [label.get_text() for label in ax.get_yticklabels()]
    assert len(labels) == 40
    assert labels[0] == "2023-07 (10)" and labels[-1] == "2026-10 (400)"  # oldest on top
    assert [label.get_text() for label in ax.get_xticklabels()] == [str(k) for k in range(40)]
    image = ax.images[0].get_array()
    assert image.shape == (40, 40)
    assert image.count() == 40 * 41 // 2  # the triangle; NaN (masked) below it
    (labels,) = [c for c in ax.collections if isinstance(c, plots.CellLabels)]
    assert len(labels.texts) == len(labels.get_paths()) == 40 * 41 // 2
    assert labels.texts[:3] == ["90%", "50%", "50%"] and labels.texts[-1] == "90%"
    assert labels.get_offsets()[:3].tolist() == [[0, 0], [1, 0], [2, 0]]  # (k, cohort row)
    hatched = [patch for patch in ax.patches if patch.get_hatch()]
    assert len(hatched) == 40  # one as_of-month cell per cohort, on the anti-diagonal
    assert sorted((p.get_x() + 0.5, p.get_y() + 0.5) for p in hatched) == [
        (39 - row, row) for row in range(39, -1, -1)
    ]
    assert fig.get_size_inches()[1] > 10  # grows with the cohorts instead of squeezing them
    assert plots.to_png(fig).startswith(b"\x89PNG")


def test_curve_is_the_size_weighted_mean_of_complete_cells():
    cohorts = _synthetic_cohorts(3)  # sizes 10, 20, 30; k = 0..2, 0..1, 0
    cohorts.loc[
        (cohorts["cohort_size"] == 10) & (cohorts["months_since_signup"] == 1),
        [
            "active_customers",
            "active_share",
        ],
    ] = [2, 0.2]
    fig = plots.cohort_curve_figure(cohorts)
    average = fig.axes[0].lines[0]

    # complete cells: k=0 for sizes 10 and 20 (9 + 18 of 30), k=1 for size 10 (2 of 10).
    assert list(average.get_xdata()) == [0, 1]
    assert list(average.get_ydata()) == pytest.approx([27 / 30, 0.2])
    assert plots.to_png(plots.cohort_curve_figure(cohorts.iloc[0:0])).startswith(b"\x89PNG")
    assert plots.to_png(plots.cohort_heatmap_figure(cohorts.iloc[0:0])).startswith(b"\x89PNG")


def test_months_not_observed_are_grey_and_left_out_of_the_curve():
    cohorts = _synthetic_cohorts(4)  # sizes 10..40; cohort i covers k = 0 .. 3 - i
    first = pd.Timestamp("2026-09-01").date()  # check-ins on record from September on
    before = [
        pd.Timestamp(str(c)).to_period("M") + k < pd.Period(first, "M")
        for c, k in zip(cohorts["cohort_month"], cohorts["months_since_signup"], strict=True)
    ]
    cohorts = cohorts.astype({"active_customers": "Int64"})
    cohorts.loc[before, ["active_customers", "active_share"]] = [pd.NA, float("nan")]
    assert sum(before) == 3  # July k=0,1 and August k=0

    ax = plots.cohort_heatmap_figure(cohorts).axes[0]
    grey = ax.images[1].get_array()[..., 3].nonzero()  # opaque cells of the overlay: (row, k)
    assert sorted(zip(*grey, strict=True)) == [(0, 0), (0, 1), (1, 0)]
    (labels,) = [c for c in ax.collections if isinstance(c, plots.CellLabels)]
    assert len(labels.texts) == len(cohorts) - 3

    average = plots.cohort_curve_figure(cohorts).axes[0].lines[0]
    # complete, observed cells: k=2 of July (size 10), k=1 of August (size 20), k=0 of
    # September (size 30): each its own month since signup.
    assert list(average.get_xdata()) == [0, 1, 2]
    assert list(average.get_ydata()) == pytest.approx([0.9, 0.5, 0.5])
