"""Customer lifetime value and the predicted customer type (SPEC section 3)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from .dates import day_end
from .lookup import per_customer

CHURNED, HIGH, MEDIUM, LOW = "Churned", "High Value", "Medium Value", "Low Value"
# The source columns clv_frame reads besides the RFM features.
READS = {"transactions": ("customer_id", "transaction_date", "amount")}


def clv_frame(
    features: pd.DataFrame,
    transactions: pd.DataFrame,
    as_of: dt.date,
    window_days: int = 365,
    lifespan_years: float = 1.0,
    churn_days: int = 90,
) -> pd.DataFrame:
    """One row per customer of `features` (the RFM universe), in its order."""
    end = day_end(as_of)
    window_start = end - pd.Timedelta(days=window_days)
    orders = transactions.loc[transactions["transaction_date"] < end]
    orders_by_customer = orders.groupby("customer_id", sort=False).agg(
        n_orders=("amount", "size"), total_spend=("amount", "sum")
    )
    recent = orders.loc[orders["transaction_date"] >= window_start]
    in_window = recent.groupby("customer_id", sort=False).size()

    ids = features["customer_id"]
    n_orders = per_customer(orders_by_customer["n_orders"], ids).fillna(0).astype("int64")
    total_spend = per_customer(orders_by_customer["total_spend"], ids).fillna(0.0).astype("float64")
    aov = (total_spend / n_orders.where(n_orders > 0)).fillna(0.0)
    purchase_frequency = per_customer(in_window, ids).fillna(0).astype("int64")
    clv_value = aov * purchase_frequency * float(lifespan_years)
    return pd.DataFrame(
        {
            "customer_id": ids,
            "n_orders": n_orders,
            "total_spend": total_spend,
            "average_order_value": aov,
            "purchase_frequency": purchase_frequency,
            "clv_value": clv_value,
            "predicted_customer_type": customer_type(
                clv_value, features["recency_days"], churn_days
            ),
        }
    ).reset_index(drop=True)


def customer_type(clv_value: pd.Series, recency_days: pd.Series, churn_days: int) -> pd.Series:
    """Churned past churn_days; otherwise by clv percentile among the active customers."""
    churned = recency_days > churn_days
    pct = clv_value[~churned].rank(pct=True, method="average")
    kind = np.where(pct > 0.8, HIGH, np.where(pct <= 0.4, LOW, MEDIUM))
    out = pd.Series(CHURNED, index=clv_value.index, dtype=object)
    out[~churned] = kind
    return out.astype("str")
