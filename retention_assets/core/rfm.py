"""RFM features and quintile scores per customer.

Definitions
-----------
as_of
    The snapshot date; events dated after it (by calendar date) are ignored. By default the
    last date both event feeds cover: the earlier of the latest check-in's date and the latest
    transaction's date, so a feed that runs ahead does not age every customer.
universe
    Every customer with signup_date <= as_of, ordered by customer_id in code-point order.
recency_days
    Whole days from the date of the last check-in on or before as_of to as_of; a customer who
    never checked in counts from signup_date.
frequency, monetary
    Check-ins on or before as_of; sum of transaction amounts on or before as_of (0 if none).
r_score, f_score, m_score
    Quintiles 1..5 of rank(method="first") (r over -recency_days), so the bins differ in size
    by at most one; rfm_score is the three digits as text.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from .dates import as_datetime, date_column

SCORE_LABELS = [1, 2, 3, 4, 5]
# Columns of the per-customer activity frame rfm_features takes.
ACTIVITY_COLUMNS = ("customer_id", "signup_date", "last_attendance", "frequency", "monetary")


def default_as_of(last_check_in: dt.date | None, last_transaction: dt.date | None) -> dt.date:
    """The last date both event feeds cover.

    Parameters
    ----------
    last_check_in, last_transaction
        Date of the latest check-in / transaction stored (None: the feed is empty).

    Returns
    -------
    The earlier of the two; the one there is when a feed is empty.
    """
    ends = [d for d in (last_check_in, last_transaction) if d is not None]
    if not ends:
        raise ValueError("no transactions or attendance stored: pass as_of explicitly")
    return min(ends)


def snapshot_date(features: pd.DataFrame) -> dt.date:
    """The as_of a feature frame was computed for (date.min for an empty universe)."""
    return features["as_of"].iloc[0] if len(features) else dt.date.min


def rfm_features(activity: pd.DataFrame, as_of: dt.date) -> pd.DataFrame:
    """Recency, frequency and monetary per customer of the universe at as_of.

    Parameters
    ----------
    activity
        One row per customer: customer_id, signup_date (date32), last_attendance (latest
        check-in on or before as_of, NaT if none), frequency and monetary (aggregated up to
        as_of; missing means none).
    as_of
        The snapshot date.

    Returns
    -------
    customer_id, signup_date, last_attendance, recency_days, frequency, monetary, as_of; the
    universe in code-point order of customer_id.
    """
    signed_up = as_datetime(activity["signup_date"]) <= pd.Timestamp(as_of)
    universe = activity.loc[signed_up].sort_values("customer_id", kind="stable")
    universe = universe.reset_index(drop=True)
    last = universe["last_attendance"].astype("datetime64[us]")
    since = last.dt.normalize().fillna(as_datetime(universe["signup_date"]))
    return pd.DataFrame(
        {
            "customer_id": universe["customer_id"].astype("str"),
            "signup_date": universe["signup_date"],
            "last_attendance": last,
            "recency_days": (pd.Timestamp(as_of) - since).dt.days.astype("int64"),
            "frequency": universe["frequency"].fillna(0).astype("int64"),
            "monetary": universe["monetary"].fillna(0.0).astype("float64"),
            "as_of": date_column(as_of, universe.index),
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
