"""Customer lifetime value and the predicted customer type.

Definitions
-----------
n_orders, total_spend
    Transactions dated on or before as_of, and the sum of their amounts.
average_order_value
    total_spend / n_orders (0 when n_orders is 0).
purchase_frequency
    Orders dated in the window_days calendar days ending with as_of (as_of - window_days + 1
    .. as_of).
clv_value
    average_order_value x purchase_frequency x lifespan_years.
predicted_customer_type
    "Churned" when recency_days > churn_days; otherwise by clv_value's percentile rank among
    the active customers (rank(pct=True, method="average")): above 0.8 "High Value", at most
    0.4 "Low Value", the rest "Medium Value".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .lookup import per_customer

CHURNED, HIGH, MEDIUM, LOW = "Churned", "High Value", "Medium Value", "Low Value"
# Columns of the per-customer order summary clv_frame takes.
ORDER_COLUMNS = ("customer_id", "n_orders", "total_spend", "orders_in_window")


def clv_frame(
    features: pd.DataFrame,
    orders: pd.DataFrame,
    lifespan_years: float = 1.0,
    churn_days: int = 90,
) -> pd.DataFrame:
    """CLV per customer of the RFM universe.

    Parameters
    ----------
    features
        The rfm_features frame (customer_id, recency_days, ...): the universe and its order.
    orders
        One row per customer with orders: n_orders and total_spend up to as_of, and
        orders_in_window (those in the window_days ending with as_of); customers without a
        row have none.
    lifespan_years, churn_days
        See the module definitions.

    Returns
    -------
    customer_id, n_orders, total_spend, average_order_value, purchase_frequency, clv_value,
    predicted_customer_type; one row per customer of `features`, in its order.
    """
    by_customer = orders.set_index("customer_id")
    ids = features["customer_id"]
    n_orders = per_customer(by_customer["n_orders"], ids).fillna(0).astype("int64")
    total_spend = per_customer(by_customer["total_spend"], ids).fillna(0.0).astype("float64")
    aov = (total_spend / n_orders.where(n_orders > 0)).fillna(0.0)
    purchase_frequency = per_customer(by_customer["orders_in_window"], ids).fillna(0)
    purchase_frequency = purchase_frequency.astype("int64")
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
