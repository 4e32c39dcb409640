"""RFM features and quintile scores per customer (SPEC section 3)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from .dates import as_datetime, date_column, day_end
from .lookup import per_customer

SCORE_LABELS = [1, 2, 3, 4, 5]
# The source columns rfm_features and default_as_of read: a caller need not load the rest.
READS = {
    "customers": ("customer_id", "signup_date"),
    "transactions": ("customer_id", "transaction_date", "amount"),
    "attendance": ("customer_id", "check_in"),
}


def default_as_of(transactions: pd.DataFrame, attendance: pd.DataFrame) -> dt.date:
    """The date of the latest event in the data: the natural snapshot for a fresh export."""
    ends = [transactions["transaction_date"].max(), attendance["check_in"].max()]
    latest = pd.Series(ends, dtype="datetime64[us]").max()
    if pd.isna(latest):
        raise ValueError("no transactions or attendance: pass as_of explicitly")
    return latest.date()


def snapshot_date(features: pd.DataFrame) -> dt.date:
    """The as_of a feature frame was computed for (date.min for an empty universe)."""
    return features["as_of"].iloc[0] if len(features) else dt.date.min


def customer_universe(customers: pd.DataFrame, as_of: dt.date) -> pd.DataFrame:
    """Customers signed up on or before as_of, in code-point order of customer_id."""
    signed_up = as_datetime(customers["signup_date"]) < day_end(as_of)
    universe = customers.loc[signed_up, ["customer_id", "signup_date"]]
    return universe.sort_values("customer_id", kind="stable").reset_index(drop=True)


def rfm_features(
    customers: pd.DataFrame,
    transactions: pd.DataFrame,
    attendance: pd.DataFrame,
    as_of: dt.date,
) -> pd.DataFrame:
    """Recency, frequency and monetary per customer of the universe at as_of."""
    end = day_end(as_of)
    universe = customer_universe(customers, as_of)
    visits = attendance.loc[attendance["check_in"] < end]
    by_customer = visits.groupby("customer_id", sort=False)["check_in"]
    last_visit, visit_count = by_customer.max(), by_customer.size()
    spend = transactions.loc[transactions["transaction_date"] < end]
    spent = spend.groupby("customer_id", sort=False)["amount"].sum()

    ids = universe["customer_id"]
    last = per_customer(last_visit, ids).astype("datetime64[us]")
    since = last.dt.normalize().fillna(as_datetime(universe["signup_date"]))
    return pd.DataFrame(
        {
            "customer_id": ids,
            "signup_date": universe["signup_date"],
            "last_attendance": last,
            "recency_days": (pd.Timestamp(as_of) - since).dt.days.astype("int64"),
            "frequency": per_customer(visit_count, ids).fillna(0).astype("int64"),
            "monetary": per_customer(spent, ids).fillna(0.0).astype("float64"),
            "as_of": date_column(as_of, ids.index),
        }
    )


def quintile(values: pd.Series, ascending: bool = True) -> pd.Series:
    """Scores 1..5 over equal-sized bins of rank(method="first"): ties split by row order."""
    ranked = (values if ascending else -values).rank(method="first")
    if len(ranked) < 2:
        return pd.Series(np.ones(len(ranked), dtype="int64"), index=values.index)
    return pd.qcut(ranked, 5, labels=SCORE_LABELS).astype("int64")


def rfm_scores(features: pd.DataFrame) -> pd.DataFrame:
    """Features plus r/f/m scores (5 = best) and the three-digit rfm_score."""
    scored = features.assign(
        r_score=quintile(features["recency_days"], ascending=False),
        f_score=quintile(features["frequency"]),
        m_score=quintile(features["monetary"]),
    )
    digits = scored[["r_score", "f_score", "m_score"]].astype(str)
    return scored.assign(rfm_score=digits["r_score"] + digits["f_score"] + digits["m_score"])
