"""The analytics assets: RFM features, the segmentation model, rfm, clv and retention."""

import datetime as dt

import dagster as dg
import pandas as pd
from pydantic import Field

from ..core import quality
from ..core.clv import clv_frame
from ..core.retention import retention_summary
from ..core.rfm import default_as_of, rfm_scores
from ..core.rfm import rfm_features as compute_features
from ..core.segmentation import SegmentModel, fit_segments, segment_profile
from .policies import DB_RETRY, TABLE_KINDS, check_result, check_spec, fail_fast_on_bad_data

GROUP = "analytics"


class SnapshotConfig(dg.Config):
    as_of: str | None = Field(
        default=None,
        description="Snapshot date YYYY-MM-DD; default: the date of the latest event in the data.",
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


def _as_of(features: pd.DataFrame) -> dt.date:
    return features["as_of"].iloc[0] if len(features) else dt.date.min


def _md_table(frame: pd.DataFrame) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.to_markdown(index=False, floatfmt=".2f"))


@dg.asset(
    group_name=GROUP,
    kinds=TABLE_KINDS,
    retry_policy=DB_RETRY,
    metadata={"money_columns": ["monetary"]},
)
def rfm_features(
    context: dg.AssetExecutionContext,
    config: SnapshotConfig,
    customers: pd.DataFrame,
    transactions: pd.DataFrame,
    attendance: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    """Recency (days since last visit, or since signup), visit count and spend per customer
    signed up by the snapshot date `as_of`; later events are ignored."""
    with fail_fast_on_bad_data():
        as_of = (
            dt.date.fromisoformat(config.as_of)
            if config.as_of
            else default_as_of(transactions, attendance)
        )
        features = compute_features(customers, transactions, attendance, as_of)
    context.log.info(f"RFM features for {len(features):,} customers as of {as_of}")
    return dg.Output(
        features,
        metadata={
            "as_of": as_of.isoformat(),
            "customers": len(features),
            "never_attended": int(features["last_attendance"].isna().sum()),
        },
    )


@dg.asset(group_name=GROUP, kinds={"sklearn"}, io_manager_key="model_io_manager")
def rfm_model(
    context: dg.AssetExecutionContext, config: SegmentationConfig, rfm_features: pd.DataFrame
) -> dg.Output[SegmentModel]:
    """StandardScaler + KMeans fitted on [recency_days, frequency, monetary]; clusters are
    named from their centroids (High-Value, At Risk, New/Potential, Loyalist)."""
    with fail_fast_on_bad_data():
        model = fit_segments(rfm_features, config.n_clusters, config.random_state, config.n_init)
    centroids = model.centroids().assign(segment=pd.Series(model.segment_names)).reset_index()
    context.log.info(f"Segments: {model.segment_names}")
    return dg.Output(
        model,
        metadata={
            "as_of": model.as_of.isoformat(),
            "n_training_rows": model.n_training_rows,
            "inertia": float(model.kmeans.inertia_),
            "centroids": _md_table(centroids),
        },
    )


@dg.asset(
    group_name=GROUP,
    kinds=TABLE_KINDS,
    retry_policy=DB_RETRY,
    metadata={"money_columns": ["monetary"]},
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
def rfm(
    context: dg.AssetExecutionContext,
    config: RfmConfig,
    rfm_features: pd.DataFrame,
    rfm_model: SegmentModel,
):
    """Per customer: R/F/M, quintile scores (5 = best), rfm_score like "545", the KMeans
    cluster and its segment name."""
    scored = rfm_scores(rfm_features)
    segmented = pd.concat([scored, rfm_model.assign(scored)], axis=1)
    profile = segment_profile(segmented)
    context.log.info(
        "Segment sizes: "
        + ", ".join(f"{row.segment} {row.customers:,}" for row in profile.itertuples())
    )
    counts = quality.segment_counts(
        segmented, rfm_features["customer_id"], len(rfm_model.segment_names)
    )
    shares = quality.segment_shares(segmented, config.min_segment_share)
    return dg.MaterializeResult(
        value=segmented,
        metadata={
            "as_of": _as_of(segmented).isoformat(),
            "segment_profile": _md_table(profile),
            **{f"segment/{row.segment}": int(row.customers) for row in profile.itertuples()},
        },
        check_results=[
            check_result("segment_counts", counts),
            check_result("segment_min_share", shares, dg.AssetCheckSeverity.WARN),
        ],
    )


@dg.asset(
    group_name=GROUP,
    kinds=TABLE_KINDS,
    retry_policy=DB_RETRY,
    metadata={"money_columns": ["total_spend", "average_order_value", "clv_value"]},
    check_specs=[
        check_spec("clv", "one_row_per_customer", "One row per customer, no negative values.")
    ],
)
def clv(config: ClvConfig, rfm_features: pd.DataFrame, transactions: pd.DataFrame):
    """Customer lifetime value = average order value x orders in the last clv_window_days x
    lifespan_years, and the predicted type (Churned / High / Medium / Low Value)."""
    as_of = _as_of(rfm_features)
    frame = clv_frame(
        rfm_features,
        transactions,
        as_of,
        window_days=config.clv_window_days,
        lifespan_years=config.lifespan_years,
        churn_days=config.churn_days,
    )
    types = frame["predicted_customer_type"].value_counts().sort_index()
    verdict = quality.clv_rows(frame, rfm_features["customer_id"])
    return dg.MaterializeResult(
        value=frame,
        metadata={
            "as_of": as_of.isoformat(),
            "total_clv": float(frame["clv_value"].sum()),
            **{f"type/{name}": int(n) for name, n in types.items()},
        },
        check_results=[check_result("one_row_per_customer", verdict)],
    )


@dg.asset(
    group_name=GROUP,
    kinds=TABLE_KINDS,
    retry_policy=DB_RETRY,
    metadata={"upsert_key": ["as_of"]},
    check_specs=[check_spec("retention", "rate_in_range", "retention_rate lies in [0, 100].")],
)
def retention(
    context: dg.AssetExecutionContext, config: RetentionConfig, rfm_features: pd.DataFrame
):
    """Retention rate = share of customers whose last visit is at most churn_days old;
    one row per as_of is kept in table `retention` (history)."""
    with fail_fast_on_bad_data():
        summary = retention_summary(rfm_features, _as_of(rfm_features), config.churn_days)
    context.log.info(summary.message())
    in_range = quality.retention_bounds(summary.retention_rate)
    return dg.MaterializeResult(
        value=summary.frame(pd.Timestamp.now(tz="UTC")),
        check_results=[check_result("rate_in_range", in_range)],
        metadata={
            "retention_rate": summary.retention_rate,
            "total_customers": summary.total_customers,
            "churned_customers": summary.churned_customers,
            "as_of": summary.as_of.isoformat(),
            "summary": summary.message(),
        },
    )
