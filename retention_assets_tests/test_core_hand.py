"""The analytics core against the hand-computed fixture, to the cent and the day.

The core takes one row per customer (the graph aggregates in PostgreSQL, see
storage/activity.py); here the same per-customer frames are built with pandas from the parsed
files, so these numbers check the core alone. test_graph checks them end to end.
"""

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from retention_assets.core.clv import ORDER_COLUMNS, clv_frame
from retention_assets.core.dates import DATE_DTYPE
from retention_assets.core.retention import retention_summary
from retention_assets.core.rfm import ACTIVITY_COLUMNS, default_as_of, rfm_features, rfm_scores
from retention_assets.core.sources import SOURCES
from retention_assets.ingest.loading import parse_file, source_files

from .hand_fixture import (
    AS_OF,
    DEFAULT_AS_OF,
    EXPECTED,
    HAND_DIR,
    LAST_ATTENDANCE,
    LAST_CHECK_IN,
    LAST_TRANSACTION,
    RETENTION_RATE,
)


def parsed(name: str) -> pd.DataFrame:
    """Every valid row of a source's files, typed as the loader stores them."""
    frames = []
    for path in source_files(HAND_DIR, name):
        blocks: list[pa.Table] = []
        result = parse_file(SOURCES[name], path, blocks.append)
        assert result.rejects.empty, result.rejects
        if blocks:
            table = pa.concat_tables(blocks)
            frames.append(table.to_pandas(types_mapper={pa.date32(): DATE_DTYPE}.get))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def frames():
    return {name: parsed(name) for name in ("customers", "transactions", "attendance")}


def until(events: pd.DataFrame, column: str, as_of: dt.date) -> pd.DataFrame:
    """Events dated on or before as_of (the whole as_of day counts)."""
    return events[events[column] < pd.Timestamp(as_of) + pd.Timedelta(days=1)]


def activity(frames, as_of: dt.date) -> pd.DataFrame:
    """What storage.activity.customer_activity returns, by pandas groupby."""
    visits = until(frames["attendance"], "check_in", as_of).groupby("customer_id")["check_in"]
    spend = until(frames["transactions"], "transaction_date", as_of).groupby("customer_id")
    out = frames["customers"][["customer_id", "signup_date"]].copy()
    out = out[out["signup_date"].astype("datetime64[us]") <= pd.Timestamp(as_of)]
    ids = out["customer_id"].to_numpy()
    out["last_attendance"] = visits.max().reindex(ids).to_numpy()  # NaT: no visit
    out["frequency"] = visits.size().reindex(ids).to_numpy()  # NaN: none
    out["monetary"] = spend["amount"].sum().reindex(ids).to_numpy()
    # The database returns customers in no particular order: the core must sort them itself.
    return out[list(ACTIVITY_COLUMNS)].sample(frac=1, random_state=3)


def orders(frames, as_of: dt.date, window_days: int = 365) -> pd.DataFrame:
    """What storage.activity.order_summary returns: customers with an order only."""
    tx = until(frames["transactions"], "transaction_date", as_of)
    window_start = pd.Timestamp(as_of) - pd.Timedelta(days=window_days - 1)
    out = (
        tx.assign(in_window=(tx["transaction_date"] >= window_start).astype("int64"))
        .groupby("customer_id")
        .agg(
            n_orders=("amount", "size"),
            total_spend=("amount", "sum"),
            orders_in_window=("in_window", "sum"),
        )
    )
    return out.reset_index()[list(ORDER_COLUMNS)]


@pytest.fixture(scope="module")
def features(frames):
    return rfm_features(activity(frames, AS_OF), AS_OF)


def test_default_as_of_is_the_last_date_both_feeds_cover(frames):
    """SPEC section 3: the EARLIER of the latest check-in date and the latest transaction date
    (it used to be the latest event, 2024-07-05: transactions running three days ahead of the
    check-ins would then count every recent visitor three days older)."""
    last_check_in = frames["attendance"]["check_in"].max().date()
    last_transaction = frames["transactions"]["transaction_date"].max().date()
    assert (last_check_in, last_transaction) == (LAST_CHECK_IN, LAST_TRANSACTION)
    assert default_as_of(last_check_in, last_transaction) == DEFAULT_AS_OF == LAST_CHECK_IN
    assert default_as_of(None, last_transaction) == last_transaction  # one feed empty
    with pytest.raises(ValueError, match="as_of explicitly"):
        default_as_of(None, None)


def test_universe_excludes_signup_after_as_of_and_is_code_point_ordered(features):
    assert features["customer_id"].tolist() == EXPECTED["customer_id"].tolist()


def test_rfm_features_to_the_day_and_cent(features):
    for column in ("recency_days", "frequency"):
        assert features[column].tolist() == EXPECTED[column].tolist(), column
    np.testing.assert_allclose(features["monetary"], EXPECTED["monetary"], atol=1e-9)
    last = features.set_index("customer_id")["last_attendance"]
    assert last[["C07", "C12"]].isna().all()
    expected_last = pd.Series(LAST_ATTENDANCE).astype("datetime64[us]")
    pd.testing.assert_series_equal(
        last.dropna(), expected_last.rename("last_attendance"), check_names=False, check_index=False
    )
    assert (features["as_of"].astype(str) == "2024-06-30").all()


def test_quintile_scores_break_ties_by_customer_order(features):
    scored = rfm_scores(features)
    for column in ("r_score", "f_score", "m_score", "rfm_score"):
        assert scored[column].tolist() == EXPECTED[column].tolist(), column


def test_clv_to_the_cent(frames, features):
    clv = clv_frame(features, orders(frames, AS_OF))
    assert clv["customer_id"].tolist() == EXPECTED["customer_id"].tolist()
    for column in ("n_orders", "purchase_frequency", "predicted_customer_type"):
        assert clv[column].tolist() == EXPECTED[column].tolist(), column
    for column in ("total_spend", "average_order_value", "clv_value"):
        np.testing.assert_allclose(clv[column], EXPECTED[column], atol=0.005, err_msg=column)


def test_clv_parameters(frames, features):
    clv = clv_frame(features, orders(frames, AS_OF, window_days=30), lifespan_years=2.5)
    by_id = clv.set_index("customer_id")
    # In the 30 days 2024-06-01 .. 2024-06-30 only C01 (one order) and C10 bought.
    assert by_id["purchase_frequency"][by_id["purchase_frequency"] > 0].to_dict() == {
        "C01": 1,
        "C10": 1,
    }
    assert by_id.loc["C01", "clv_value"] == pytest.approx(50.0 * 1 * 2.5)
    churn_30 = clv_frame(features, orders(frames, AS_OF), churn_days=30)
    churned = churn_30.loc[churn_30["predicted_customer_type"] == "Churned", "customer_id"]
    assert churned.tolist() == ["C03", "C05", "C07", "C09", "C11"]


def test_retention_rate(features):
    summary = retention_summary(features, AS_OF, churn_days=90)
    assert (summary.total_customers, summary.churned_customers) == (12, 4)
    assert summary.retention_rate == pytest.approx(RETENTION_RATE)
    assert summary.message() == (
        "Retention rate: 66.67% (4 of 12 customers churned, as of 2024-06-30)"
    )
    row = summary.frame(pd.Timestamp("2024-07-01T00:00:00Z")).iloc[0]
    assert row["churn_days"] == 90 and str(row["as_of"]) == "2024-06-30"


def test_no_events_at_all_gives_zeros_not_errors(frames):
    no_events = {
        **frames,
        "transactions": frames["transactions"].head(0),
        "attendance": frames["attendance"].head(0),
    }
    features = rfm_features(activity(no_events, AS_OF), AS_OF)
    assert (features["frequency"] == 0).all() and (features["monetary"] == 0).all()
    assert features["last_attendance"].isna().all()
    assert features["recency_days"].tolist() == [
        (AS_OF - dt.date.fromisoformat(d)).days
        for d in frames["customers"]
        .set_index("customer_id")["signup_date"]
        .astype(str)
        .loc[features["customer_id"]]
    ]
    clv = clv_frame(features, orders(no_events, AS_OF))
    assert (clv[["n_orders", "clv_value"]] == 0).all().all()
