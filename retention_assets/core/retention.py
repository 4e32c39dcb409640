"""The retention rate of a snapshot: customers whose recency is at most churn_days."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from .dates import date_column


@dataclass(frozen=True)
class RetentionSummary:
    as_of: dt.date
    total_customers: int
    churned_customers: int
    churn_days: int

    @property
    def retention_rate(self) -> float:
        return (1 - self.churned_customers / self.total_customers) * 100

    def message(self) -> str:
        return (
            f"Retention rate: {self.retention_rate:.2f}% ({self.churned_customers:,} of "
            f"{self.total_customers:,} customers churned, as of {self.as_of.isoformat()})"
        )

    def frame(self, computed_at: pd.Timestamp) -> pd.DataFrame:
        """The row upserted into the `retention` history table."""
        return pd.DataFrame(
            {
                "as_of": date_column(self.as_of, pd.RangeIndex(1)),
                "total_customers": [self.total_customers],
                "churned_customers": [self.churned_customers],
                "retention_rate": [self.retention_rate],
                "churn_days": [self.churn_days],
                "computed_at": pd.Series([computed_at], dtype="datetime64[us, UTC]"),
            }
        )


def retention_summary(
    features: pd.DataFrame, as_of: dt.date, churn_days: int = 90
) -> RetentionSummary:
    """Churned = recency_days > churn_days, over the whole universe of `features`."""
    if features.empty:
        raise ValueError(f"no customers signed up on or before {as_of}: retention is undefined")
    churned = int((features["recency_days"] > churn_days).sum())
    return RetentionSummary(as_of, len(features), churned, churn_days)
