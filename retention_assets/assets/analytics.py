"""The analytics assets: RFM features, the segmentation model, rfm, clv and retention."""

import datetime as dt

import dagster as dg
import pandas as pd
from pydantic import Field

from ..core import quality
from ..core.clv import clv_frame
from ..core.retention import retention_summary
from ..core.rfm import default_as_of, rfm_scores, snapshot_date
from ..core.rfm import rfm_features as compute_features
from ..core.segmentation import SegmentModel, fit_segments
from ..plots import clv_figure, retention_figure, segment_figure, to_png
from ..report import clv_by_type, segment_summary, top_customers
from ..resources import PostgresResource
from ..storage.activity import customer_activity, feed_ends, order_summary
from ..storage.tables import TableNotFoundError, read_table
from .metadata import (
    CLV_COLUMNS,
    CLV_LINEAGE,
    FOR_ANALYSTS,
    FOR_PIPELINE,
    OWNERS,
    RETENTION_COLUMNS,
    RFM_COLUMNS,
    image,
    md_table,
    rfm_lineage,
    ui_table,
)
from .policies import DB_RETRY, TABLE_KINDS, check_result, check_spec, fail_fast, stored_if
from .sources import loaded_files

GROUP = "analytics"
TABLE_ASSET = {
    "group_name": GROUP,
    "kinds": TABLE_KINDS,
    "retry_policy": DB_RETRY,
    "owners": OWNERS,
}


class SnapshotConfig(dg.Config):
    as_of: str | None = Field(
        default=None,
        description="Snapshot date YYYY-MM-DD; default: the last date both event feeds cover "
        "(the earlier of the latest check-in's and the latest transaction's date).",
    )


class SegmentationConfig(dg.Config):
    n_clusters: int = Field(default=4, ge=4, description="KMeans clusters (named segments).")
    random_state: int = Field(default=42, description="KMeans seed, for reproducible segments.")
    n_init: int = Field(default=10, ge=1, description="KMeans restarts; the best one is kept.")


class RfmConfig(dg.Config):
    min_segment_share: float = Field(
        default=0.02, ge=0, le=1, description="A smaller segment raises a warning."
    )


class ClvConfig(dg.Config):
    churn_days: int = Field(default=90, ge=0, description="Recency above this means churned.")
    clv_window_days: int = Field(
        default=365, ge=1, description="Days ending with as_of in which orders are counted."
    )
    lifespan_years: float = Field(default=1.0, gt=0, description="Expected customer lifespan.")


class RetentionConfig(dg.Config):
    churn_days: int = Field(default=90, ge=0, description="Recency above this means churned.")


@dg.asset(
    **TABLE_ASSET,
    deps=[loaded_files],
    tags=FOR_PIPELINE,
    metadata={"money_columns": ["monetary"]},
    check_specs=[
        check_spec(
            "rfm_features",
            "feeds_in_step",
            "Warns when the latest check-in and the latest transaction are more than 7 days "
            "apart: one feed is behind, and the default as_of waits for it.",
            blocking=False,
        ),
        check_spec(
            "rfm_features",
            "events_before_signup",
            "Warns when customers have check-ins or payments dated before their signup_date "
            "(counted all the same): usually a wrong signup date or customer_id in the export.",
            blocking=False,
        ),
    ],
)
@fail_fast
def rfm_features(
    context: dg.AssetExecutionContext, config: SnapshotConfig, database: PostgresResource
):
    """Recency (days since last visit, or since signup), visit count and spend per customer
    signed up by the snapshot date `as_of`; later events are ignored. The input of rfm, clv
    and retention, which all describe the same snapshot. Aggregated in PostgreSQL: one row
    per customer reaches Python."""
    with database.connect() as conn:
        ends = feed_ends(conn, database.db_schema)
        as_of = dt.date.fromisoformat(config.as_of) if config.as_of else default_as_of(*ends)
        activity = customer_activity(conn, database.db_schema, as_of)
    features = compute_features(activity, as_of)
    if features.empty:
        raise dg.Failure(
            description=f"no customer signed up on or before as_of {as_of}: nothing to "
            "describe (check as_of, or that customers*.csv is loaded)",
            allow_retries=False,
        )
    context.log.info(f"RFM features for {len(features):,} customers as of {as_of}")
    in_step = quality.feeds_in_step(*ends)
    before_signup = quality.events_before_signup(activity)
    return dg.MaterializeResult(
        value=features,
        metadata={
            "as_of": as_of.isoformat(),
            "customers": len(features),
            "never_attended": int(features["last_attendance"].isna().sum()),
        },
        check_results=[
            check_result("feeds_in_step", in_step, dg.AssetCheckSeverity.WARN),
            check_result("events_before_signup", before_signup, dg.AssetCheckSeverity.WARN),
        ],
    )


@dg.asset(
    group_name=GROUP,
    kinds={"sklearn"},
    io_manager_key="model_io_manager",
    owners=OWNERS,
    tags=FOR_PIPELINE,
)
@fail_fast
def rfm_model(
    context: dg.AssetExecutionContext, config: SegmentationConfig, rfm_features: pd.DataFrame
) -> dg.Output[SegmentModel]:
    """StandardScaler + KMeans fitted on [recency_days, frequency, monetary]; clusters are
    named from their centroids (High-Value, At Risk, New/Potential, Loyalist). Stored so that
    other processes score customers exactly as this run did."""
    model = fit_segments(rfm_features, config.n_clusters, config.random_state, config.n_init)
    centroids = model.centroids().assign(segment=pd.Series(model.segment_names)).reset_index()
    context.log.info(f"Segments: {model.segment_names}")
    return dg.Output(
        model,
        metadata={
            "as_of": model.as_of.isoformat(),
            "n_training_rows": model.n_training_rows,
            "inertia": round(float(model.kmeans.inertia_), 2),
            "centroids": md_table(centroids),
        },
    )


@dg.asset(
    **TABLE_ASSET,
    tags=FOR_ANALYSTS,
    metadata={"money_columns": ["monetary"], "dagster/column_schema": RFM_COLUMNS},
    check_specs=[
        check_spec(
            "rfm",
            "segment_counts",
            "Exactly n_clusters segments; every customer of the universe in exactly one.",
        ),
        check_spec(
            "rfm",
            "segment_min_share",
            "Warns when a segment holds less than min_segment_share of the customers.",
            blocking=False,
        ),
    ],
)
@fail_fast
def rfm(
    context: dg.AssetExecutionContext,
    config: RfmConfig,
    rfm_features: pd.DataFrame,
    rfm_model: SegmentModel,
):
    """Who your customers are, by how they behave: one row per customer with how recently
    they came (recency_days), how often (frequency) and how much they spent (monetary), as of
    the snapshot date `as_of`.

    - `r_score`, `f_score`, `m_score`: quintiles 1-5, 5 = the best fifth; `rfm_score` joins
      them ("545" = very recent, very frequent, high spend).
    - `segment`: High-Value (spends most), At Risk (absent longest), New/Potential
      (fewest visits) or Loyalist (the rest): KMeans clusters of R, F and M, named from
      their averages.

    Each materialization shows `segment_profile` (size and averages per segment) and
    `segment_plot` (recency vs spend, coloured by segment) under Metadata."""
    scored = rfm_scores(rfm_features)
    segmented = pd.concat([scored, rfm_model.assign(scored)], axis=1)
    profile = segment_summary(segmented)
    context.log.info(
        "Segment sizes: "
        + ", ".join(f"{row.segment} {row.customers:,}" for row in profile.itertuples())
    )
    counts = quality.segment_counts(
        segmented, rfm_features["customer_id"], len(rfm_model.segment_names)
    )
    shares = quality.segment_shares(segmented, config.min_segment_share)
    return dg.MaterializeResult(
        value=stored_if(counts, segmented),
        metadata={
            "as_of": snapshot_date(segmented).isoformat(),
            "segment_profile": ui_table(profile, percent=("share",)),
            "segment_plot": image(to_png(segment_figure(segmented)), "segments"),
            **{f"segment/{row.segment}": int(row.customers) for row in profile.itertuples()},
            "dagster/column_lineage": rfm_lineage(rfm_features.columns),
        },
        check_results=[
            check_result("segment_counts", counts),
            check_result("segment_min_share", shares, dg.AssetCheckSeverity.WARN),
        ],
    )


@dg.asset(
    **TABLE_ASSET,
    tags=FOR_ANALYSTS,
    metadata={
        "money_columns": ["total_spend", "average_order_value", "clv_value"],
        "dagster/column_schema": CLV_COLUMNS,
    },
    check_specs=[
        check_spec("clv", "one_row_per_customer", "One row per customer, no negative values.")
    ],
)
@fail_fast
def clv(config: ClvConfig, rfm_features: pd.DataFrame, database: PostgresResource):
    """What a customer is worth over the next year: `clv_value` = average order value x
    orders in the last `clv_window_days` (365) x `lifespan_years` (1), one row per customer.

    `predicted_customer_type`: Churned when the customer has not come for more than
    `churn_days` (90); otherwise High Value (top 20% of clv_value among active customers),
    Low Value (bottom 40%) or Medium Value.

    Each materialization shows `clv_by_type` and `clv_plot` (how clv_value spreads within each
    type) and `top_customers` (the 10 highest clv_value) under Metadata."""
    as_of = snapshot_date(rfm_features)
    with database.connect() as conn:
        orders = order_summary(conn, database.db_schema, as_of, config.clv_window_days)
    frame = clv_frame(
        rfm_features,
        orders,
        lifespan_years=config.lifespan_years,
        churn_days=config.churn_days,
    )
    types = frame["predicted_customer_type"].value_counts().sort_index()
    verdict = quality.clv_rows(frame, rfm_features["customer_id"])
    return dg.MaterializeResult(
        value=stored_if(verdict, frame),
        metadata={
            "as_of": as_of.isoformat(),
            "total_clv": round(float(frame["clv_value"].sum()), 2),
            **{f"type/{name}": int(n) for name, n in types.items()},
            "clv_by_type": ui_table(clv_by_type(frame), percent=("share",)),
            "clv_plot": image(to_png(clv_figure(frame)), "clv_value by predicted_customer_type"),
            "top_customers": ui_table(top_customers(frame)),
            "dagster/column_lineage": CLV_LINEAGE,
        },
        check_results=[check_result("one_row_per_customer", verdict)],
    )


@dg.asset(
    **TABLE_ASSET,
    tags=FOR_ANALYSTS,
    metadata={"upsert_key": ["as_of"], "dagster/column_schema": RETENTION_COLUMNS},
    check_specs=[check_spec("retention", "rate_in_range", "retention_rate lies in [0, 100].")],
)
@fail_fast
def retention(
    context: dg.AssetExecutionContext,
    config: RetentionConfig,
    rfm_features: pd.DataFrame,
    database: PostgresResource,
):
    """Share of customers still coming: customers whose last visit is at most `churn_days`
    (90) days before `as_of`, in percent of all customers signed up by then.

    The table keeps one row per `as_of` snapshot. `retention_plot` under Metadata draws that
    history; the Plots view of Metadata shows `retention_rate` across materializations."""
    summary = retention_summary(rfm_features, snapshot_date(rfm_features), config.churn_days)
    context.log.info(summary.message())
    in_range = quality.retention_bounds(summary.retention_rate)
    row = summary.frame(pd.Timestamp.now(tz="UTC"))
    history = _history_with(row, database, context.asset_key.path[-1])
    return dg.MaterializeResult(
        value=stored_if(in_range, row),
        check_results=[check_result("rate_in_range", in_range)],
        metadata={
            "retention_rate": dg.MetadataValue.float(round(summary.retention_rate, 2)),
            "total_customers": summary.total_customers,
            "churned_customers": summary.churned_customers,
            "as_of": summary.as_of.isoformat(),
            "summary": summary.message(),
            "snapshots": len(history),
            "retention_plot": image(to_png(retention_figure(history)), "retention history"),
        },
    )


def _history_with(row: pd.DataFrame, database: PostgresResource, table: str) -> pd.DataFrame:
    """The stored history as it will be once the IO manager has upserted `row` (which happens
    after the asset returns): the stored rows of other snapshots plus this one."""
    try:
        with database.connect() as conn:
            stored = read_table(conn, database.db_schema, table)
    except TableNotFoundError:
        return row
    others = stored.loc[~stored["as_of"].isin(row["as_of"])]
    return pd.concat([others, row], ignore_index=True).sort_values("as_of", ignore_index=True)
