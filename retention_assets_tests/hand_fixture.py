"""The hand-computed fixture: a dozen customers whose every number was worked out on paper.

as_of = 2024-06-30. C13 signed up after as_of (outside the universe); C07 and C12
never attended (recency counts from signup); C08 and C12 bought nothing; events on
2024-07-01 and later are ignored; C03's orders straddle the CLV window start
(2023-07-02 counts, 2023-07-01 23:00 does not).
"""

import datetime as dt
from pathlib import Path

import pandas as pd

HAND_DIR = Path(__file__).parent / "fixtures" / "hand"
AS_OF = dt.date(2024, 6, 30)
# The feeds end on different days: the latest check-in is C05's / C13's of 2024-07-02, the
# latest transaction C06's of 2024-07-05. The default as_of is the earlier of the two (SPEC
# section 3: the last date both feeds cover).
LAST_CHECK_IN = dt.date(2024, 7, 2)
LAST_TRANSACTION = dt.date(2024, 7, 5)
DEFAULT_AS_OF = LAST_CHECK_IN

# customer, recency_days, frequency, monetary, r, f, m, n_orders, total_spend, aov,
# purchase_frequency, clv_value, predicted_customer_type
_ROWS = [
    ("C01", 0, 5, 100.00, 5, 5, 4, 2, 100.00, 50.00, 2, 100.00, "Medium Value"),
    ("C02", 10, 3, 120.00, 3, 4, 4, 1, 120.00, 120.00, 0, 0.00, "Low Value"),
    ("C03", 121, 2, 60.00, 1, 2, 3, 2, 60.00, 30.00, 1, 30.00, "Churned"),
    ("C04", 10, 4, 75.50, 4, 5, 3, 1, 75.50, 75.50, 1, 75.50, "Medium Value"),
    ("C05", 157, 1, 59.97, 1, 1, 2, 3, 59.97, 19.99, 3, 59.97, "Churned"),
    ("C06", 29, 3, 200.00, 3, 4, 5, 1, 200.00, 200.00, 1, 200.00, "High Value"),
    ("C07", 112, 0, 0.00, 2, 1, 1, 1, 0.00, 0.00, 1, 0.00, "Churned"),
    ("C08", 1, 2, 0.00, 4, 3, 1, 0, 0.00, 0.00, 0, 0.00, "Low Value"),
    ("C09", 212, 6, 900.00, 1, 5, 5, 2, 900.00, 450.00, 1, 450.00, "Churned"),
    ("C10", 0, 1, 15.00, 5, 2, 2, 1, 15.00, 15.00, 1, 15.00, "Medium Value"),
    ("C11", 61, 2, 240.00, 2, 3, 5, 4, 240.00, 60.00, 4, 240.00, "High Value"),
    ("C12", 0, 0, 0.00, 5, 1, 1, 0, 0.00, 0.00, 0, 0.00, "Low Value"),
]
EXPECTED = pd.DataFrame(
    _ROWS,
    columns=[
        "customer_id",
        "recency_days",
        "frequency",
        "monetary",
        "r_score",
        "f_score",
        "m_score",
        "n_orders",
        "total_spend",
        "average_order_value",
        "purchase_frequency",
        "clv_value",
        "predicted_customer_type",
    ],
)
EXPECTED["rfm_score"] = (
    EXPECTED["r_score"].astype(str)
    + EXPECTED["f_score"].astype(str)
    + EXPECTED["m_score"].astype(str)
)
LAST_ATTENDANCE = {
    "C01": "2024-06-30 23:30:00",
    "C02": "2024-06-20 18:00:00",
    "C03": "2024-03-01 12:00:00",
    "C04": "2024-06-20 06:00:00",
    "C05": "2024-01-25 10:00:00",
    "C06": "2024-06-01 19:00:00",
    "C08": "2024-06-29 09:00:00",
    "C09": "2023-12-01 08:00:00",
    "C10": "2024-06-30 08:00:00",
    "C11": "2024-04-30 17:00:00",
}
CHURNED = 4  # C03, C05, C07, C09: recency above 90 days
RETENTION_RATE = (1 - 4 / 12) * 100
