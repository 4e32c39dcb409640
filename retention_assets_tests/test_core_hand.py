"""The analytics core against the hand-computed fixture, to the cent and the day."""

import numpy as np
import pandas as pd
import pytest

from retention_assets.core.clv import clv_frame
from retention_assets.core.loading import load_source, source_files
from retention_assets.core.retention import retention_summary
from retention_assets.core.rfm import default_as_of, rfm_features, rfm_scores
from retention_assets.core.sources import ATTENDANCE, CUSTOMERS, PACKAGES, TRANSACTIONS

from .hand_fixture import AS_OF, EXPECTED, HAND_DIR, LAST_ATTENDANCE, LATEST_EVENT, RETENTION_RATE


@pytest.fixture(scope="module")
def frames():
    customers = load_source(CUSTOMERS, source_files(HAND_DIR, "customers"))
    packages = load_source(PACKAGES, source_files(HAND_DIR, "packages"))
    ids = {"customers": customers.frame["customer_id"], "packages": packages.frame["package_id"]}
    transactions = load_source(TRANSACTIONS, source_files(HAND_DIR, "transactions"), ids)
    attendance = load_source(ATTENDANCE, source_files(HAND_DIR, "attendance"), ids)
    for loaded in (customers, packages, transactions, attendance):
        assert loaded.rejects.empty, loaded.rejects
    return customers.frame, transactions.frame, attendance.frame


@pytest.fixture(scope="module")
def features(frames):
    customers, transactions, attendance = frames
    return rfm_features(customers, transactions, attendance, AS_OF)


def test_default_as_of_is_latest_event_date(frames):
    _, transactions, attendance = frames
    assert default_as_of(transactions, attendance) == LATEST_EVENT


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
    _, transactions, _ = frames
    clv = clv_frame(features, transactions, AS_OF)
    assert clv["customer_id"].tolist() == EXPECTED["customer_id"].tolist()
    for column in ("n_orders", "purchase_frequency", "predicted_customer_type"):
        assert clv[column].tolist() == EXPECTED[column].tolist(), column
    for column in ("total_spend", "average_order_value", "clv_value"):
        np.testing.assert_allclose(clv[column], EXPECTED[column], atol=0.005, err_msg=column)


def test_clv_parameters(frames, features):
    _, transactions, _ = frames
    clv = clv_frame(features, transactions, AS_OF, window_days=30, lifespan_years=2.5)
    by_id = clv.set_index("customer_id")
    # In the 30 days 2024-06-01 .. 2024-06-30 only C01 (one order) and C10 bought.
    assert by_id["purchase_frequency"][by_id["purchase_frequency"] > 0].to_dict() == {
        "C01": 1,
        "C10": 1,
    }
    assert by_id.loc["C01", "clv_value"] == pytest.approx(50.0 * 1 * 2.5)
    churn_30 = clv_frame(features, transactions, AS_OF, churn_days=30)
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
    customers, transactions, attendance = frames
    features = rfm_features(customers, transactions.head(0), attendance.head(0), AS_OF)
    assert (features["frequency"] == 0).all() and (features["monetary"] == 0).all()
    assert features["last_attendance"].isna().all()
    clv = clv_frame(features, transactions.head(0), AS_OF)
    assert (clv[["n_orders", "clv_value"]] == 0).all().all()
