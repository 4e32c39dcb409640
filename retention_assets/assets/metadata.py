"""What the analytics assets show in the UI: column meanings, lineage, tables and plots."""

import dagster as dg
import pandas as pd

from ..core.segmentation import FEATURES
from ..plots import markdown_image

# Who answers questions about these tables, and tags to find them by in the UI's asset catalog.
OWNERS = ["team:analytics"]
FOR_ANALYSTS = {"domain": "customer-retention", "audience": "analysts"}
FOR_PIPELINE = {"domain": "customer-retention", "audience": "data-engineering"}


def _schema(*columns: tuple[str, str, str]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name, pg_type, description) for name, pg_type, description in columns
        ]
    )


# Definition-time column descriptions: the UI merges them into the column types each
# materialization reports, so analysts see what a column means next to what it holds.
RFM_COLUMNS = _schema(
    ("customer_id", "text", "Customer identifier from customers.csv."),
    ("signup_date", "date", "Date the customer joined."),
    ("last_attendance", "timestamp", "Latest club check-in up to as_of; empty if never attended."),
    (
        "recency_days",
        "bigint",
        "Days since the last check-in (since signup if the customer never came). Lower is better.",
    ),
    ("frequency", "bigint", "Number of check-ins up to as_of."),
    ("monetary", "numeric", "Total spend (sum of transaction amounts) up to as_of."),
    ("as_of", "date", "Snapshot date; events after it are ignored."),
    ("r_score", "bigint", "Recency quintile 1-5; 5 = the fifth of customers seen most recently."),
    ("f_score", "bigint", "Frequency quintile 1-5; 5 = the fifth with the most check-ins."),
    ("m_score", "bigint", "Monetary quintile 1-5; 5 = the fifth who spent the most."),
    ("rfm_score", "text", 'The three scores as digits, R then F then M, e.g. "545".'),
    ("cluster", "bigint", "KMeans cluster number; arbitrary between runs, read segment instead."),
    (
        "segment",
        "text",
        "High-Value (highest spend), At Risk (longest absence), New/Potential (fewest "
        "visits) or Loyalist (the rest), named from the clusters' average R, F and M.",
    ),
)
CLV_COLUMNS = _schema(
    ("customer_id", "text", "Customer identifier from customers.csv."),
    ("n_orders", "bigint", "Transactions up to as_of."),
    ("total_spend", "numeric", "Sum of those transactions."),
    ("average_order_value", "numeric", "total_spend / n_orders (0 without orders)."),
    (
        "purchase_frequency",
        "bigint",
        "Orders in the clv_window_days (default 365) days ending with as_of.",
    ),
    (
        "clv_value",
        "numeric",
        "Expected value: average_order_value x purchase_frequency x lifespan_years.",
    ),
    (
        "predicted_customer_type",
        "text",
        "Churned (no visit for more than churn_days), else High Value (top 20% clv_value "
        "among active customers), Low Value (bottom 40%) or Medium Value.",
    ),
)
RETENTION_COLUMNS = _schema(
    ("as_of", "date", "Snapshot date: one row per snapshot, the history is kept."),
    ("total_customers", "bigint", "Customers signed up by as_of."),
    ("churned_customers", "bigint", "Of those, customers with no visit for more than churn_days."),
    ("retention_rate", "double precision", "(1 - churned / total) x 100, in percent."),
    ("churn_days", "bigint", "Days of absence after which a customer counts as churned."),
    ("computed_at", "timestamptz", "When this row was computed (UTC)."),
)

CLV_FORECAST_COLUMNS = _schema(
    ("customer_id", "text", "Customer identifier; only customers with a payment have a row."),
    ("frequency_repeat", "bigint", "x: purchase days after the first (a day counts once)."),
    ("t_x", "double precision", "Weeks from the first to the last purchase day."),
    ("T", "double precision", "Weeks from the first purchase day to as_of."),
    ("avg_repeat_spend", "numeric", "Mean spend of the repeat purchase days."),
    ("p_alive", "double precision", "BG/NBD probability the customer is still active."),
    ("expected_purchases", "double precision", "Purchase days expected in horizon_weeks."),
    ("expected_avg_spend", "numeric", "Gamma-Gamma expected spend per purchase day."),
    ("predicted_clv", "numeric", "expected_purchases x expected_avg_spend."),
    (
        "discounted_clv",
        "double precision",
        "The same month by month over horizon_months, discounted at annual_discount_rate.",
    ),
)
CLV_HOLDOUT_COLUMNS = _schema(
    ("customer_id", "text", "Customer with a payment before the holdout weeks."),
    ("frequency_repeat", "bigint", "Repeat purchase days before the holdout weeks."),
    ("predicted", "double precision", "Purchase days predicted in the holdout weeks."),
    ("actual", "bigint", "Purchase days actually made in them."),
)

COHORT_COLUMNS = _schema(
    ("cohort_month", "date", "First day of the month the cohort's customers signed up in."),
    ("months_since_signup", "bigint", "k: the calendar month signup month + k."),
    ("cohort_size", "bigint", "Customers who signed up in cohort_month (by as_of)."),
    (
        "active_customers",
        "bigint",
        "Of those, customers with a check-in in month k; NULL before the first check-in on "
        "record (not observed).",
    ),
    ("active_share", "double precision", "active_customers / cohort_size (NULL likewise)."),
    ("partial", "boolean", "Month k is as_of's month, seen only up to as_of."),
)
MIGRATION_COLUMNS = _schema(
    ("from_segment", "text", 'Segment at previous_as_of; "(new)": not a customer then.'),
    ("to_segment", "text", 'Segment at as_of; "(gone)": no longer in the universe.'),
    ("customers", "bigint", "Customers who made this move."),
    ("share", "double precision", "customers / all customers of from_segment."),
    ("as_of", "date", "The snapshot compared."),
    ("previous_as_of", "date", "The snapshot compared with (empty: none stored before)."),
)


def md_table(frame: pd.DataFrame) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.to_markdown(index=False, floatfmt=".2f"))


# Shorter headers for the UI's metadata tables, which must fit the asset page beside its
# sidebar (the HTML report keeps the full names).
_UI_HEADERS = {
    "predicted_customer_type": "type",
    "mean_recency_days": "avg recency (days)",
    "mean_frequency": "avg visits",
    "mean_monetary": "avg spend",
    "mean_clv": "mean",
    "median_clv": "median",
    "max_clv": "max",
    "total_clv": "total",
}


def ui_table(frame: pd.DataFrame, percent: tuple[str, ...] = ()) -> dg.MetadataValue:
    """A small frame as a UI table, numbers rounded as the HTML report shows them; the
    `percent` columns (fractions) as percentages."""
    frame = frame.rename(columns=_UI_HEADERS)
    percent = tuple(_UI_HEADERS.get(name, name) for name in percent)
    columns = []
    for name, dtype in frame.dtypes.items():
        if name in percent or not pd.api.types.is_numeric_dtype(dtype):
            kind = "string"
        elif pd.api.types.is_integer_dtype(dtype):
            kind = "int"
        else:
            kind = "float"
        columns.append(dg.TableColumn(str(name), kind))

    def cell(name: str, value: object) -> object:
        if pd.isna(value):
            return None  # NaN is not JSON: the UI could not parse the record
        if name in percent:
            return f"{value:.2%}"
        if isinstance(value, float):
            return round(value, 2)
        return value if isinstance(value, int | str | bool) else str(value)

    records = [
        dg.TableRecord({name: cell(name, value) for name, value in row.items()})
        for row in frame.to_dict(orient="records")
    ]
    return dg.MetadataValue.table(records, schema=dg.TableSchema(columns=columns))


def image(png: bytes, alt: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(markdown_image(png, alt))


def _deps(asset: str, *columns: str) -> list[dg.TableColumnDep]:
    return [dg.TableColumnDep(asset_key=dg.AssetKey(asset), column_name=c) for c in columns]


def rfm_lineage(feature_columns: pd.Index) -> dg.TableColumnLineage:
    """rfm passes every rfm_features column through and derives scores and segments from
    recency_days, frequency and monetary."""
    passed = {str(c): _deps("rfm_features", str(c)) for c in feature_columns}
    scores = dict(zip(["r_score", "f_score", "m_score"], FEATURES, strict=True))
    derived = {score: _deps("rfm_features", column) for score, column in scores.items()}
    from_all = dict.fromkeys(["rfm_score", "cluster", "segment"], _deps("rfm_features", *FEATURES))
    return dg.TableColumnLineage({**passed, **derived, **from_all})


_ORDERS = ("transaction_date", "amount")  # which orders count (by date) and their value
CLV_LINEAGE = dg.TableColumnLineage(
    {
        "customer_id": _deps("rfm_features", "customer_id"),
        "n_orders": _deps("transactions", "transaction_id", "transaction_date"),
        "total_spend": _deps("transactions", *_ORDERS),
        "average_order_value": _deps("transactions", "transaction_id", *_ORDERS),
        "purchase_frequency": _deps("transactions", "transaction_id", "transaction_date"),
        "clv_value": _deps("transactions", "transaction_id", *_ORDERS),
        "predicted_customer_type": _deps("transactions", "transaction_id", *_ORDERS)
        + _deps("rfm_features", "recency_days"),
    }
)
