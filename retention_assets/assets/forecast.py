"""Probabilistic CLV: BG/NBD + Gamma-Gamma fitted on purchase occasions, the per-customer
forecast, and the holdout that says how far to trust it."""

import datetime as dt

import dagster as dg
import pandas as pd
from pydantic import Field

from ..core import quality
from ..core.btyd import NotEnoughData
from ..core.forecast import (
    ClvModel,
    fit_clv_model,
    holdout_comparison,
    purchase_summary,
)
from ..core.forecast import (
    clv_forecast as forecast_frame,
)
from ..core.lookup import is_in
from ..core.rfm import snapshot_date
from ..plots import clv_by_segment_figure, holdout_figure, p_alive_figure, to_png
from ..resources import PostgresResource
from ..storage.activity import occasions_between, purchase_occasions
from .analytics import GROUP, TABLE_ASSET
from .metadata import (
    CLV_FORECAST_COLUMNS,
    CLV_HOLDOUT_COLUMNS,
    FOR_ANALYSTS,
    FOR_PIPELINE,
    OWNERS,
    image,
    ui_table,
)
from .policies import DB_RETRY, check_result, check_spec, fail_fast, stored_if

TOP_FORECAST = 10
_NO_HOLDOUT = pd.DataFrame(
    {
        "customer_id": pd.Series(dtype="str"),
        "frequency_repeat": pd.Series(dtype="int64"),
        "predicted": pd.Series(dtype="float64"),
        "actual": pd.Series(dtype="int64"),
    }
)


class ClvModelConfig(dg.Config):
    time_unit_days: float = Field(
        default=7.0, gt=0, description="Days in the models' time unit (7: t_x and T in weeks)."
    )


class ForecastConfig(dg.Config):
    horizon_weeks: float = Field(
        default=52, gt=0, description="Weeks ahead that expected_purchases counts."
    )
    horizon_months: int = Field(
        default=12, ge=1, description="Months of expected purchases summed in discounted_clv."
    )
    annual_discount_rate: float = Field(
        default=0.10, ge=0, description="Yearly rate discounting later months in discounted_clv."
    )


class HoldoutConfig(dg.Config):
    holdout_weeks: float = Field(
        default=26, gt=0, description="Weeks before as_of held out: fit before, predict them."
    )
    max_total_error: float = Field(
        default=0.25,
        gt=0,
        description="Warn when the predicted holdout purchases in total miss the actual ones "
        "by more than this share.",
    )


def _summary(
    database: PostgresResource, customers: pd.Series, as_of: dt.date, time_unit_days: float
) -> pd.DataFrame:
    """x, t_x, T and avg_repeat_spend of the customers given that paid on or before as_of."""
    with database.connect() as conn:
        occasions = purchase_occasions(conn, database.db_schema, as_of)
    occasions = occasions.loc[is_in(occasions["customer_id"], customers)]
    return purchase_summary(occasions, as_of, time_unit_days)


def _fit(summary: pd.DataFrame, as_of: dt.date, time_unit_days: float) -> ClvModel:
    try:
        return fit_clv_model(summary, as_of, time_unit_days)
    except NotEnoughData as e:
        raise dg.Failure(description=f"no CLV model as of {as_of}: {e}", allow_retries=False) from e


@dg.asset(
    group_name=GROUP,
    kinds={"scipy"},
    io_manager_key="model_io_manager",
    owners=OWNERS,
    tags=FOR_PIPELINE,
    retry_policy=DB_RETRY,
    check_specs=[
        check_spec(
            "clv_model",
            "fit_quality",
            "Warns when a fit did not converge or ran to a boundary (e.g. spend that never "
            "varies within a customer): predictions then use the formulas' limits.",
            blocking=False,
        )
    ],
)
@fail_fast
def clv_model(
    context: dg.AssetExecutionContext,
    config: ClvModelConfig,
    rfm_features: pd.DataFrame,
    database: PostgresResource,
):
    """BG/NBD (is the customer still active, how many purchases ahead) and Gamma-Gamma (how
    much per purchase), maximum-likelihood fits on each paying customer's purchase days up to
    `as_of`. Stored so that other processes score customers with the same parameters."""
    as_of = snapshot_date(rfm_features)
    summary = _summary(database, rfm_features["customer_id"], as_of, config.time_unit_days)
    model = _fit(summary, as_of, config.time_unit_days)
    context.log.info(f"CLV model as of {as_of} on {model.n_training_rows:,} customers")
    verdict = quality.model_fit(model.warnings(), model.n_training_rows)
    return dg.MaterializeResult(
        value=model,
        metadata={
            "as_of": as_of.isoformat(),
            "n_training_rows": model.n_training_rows,
            "distinct_rows": model.n_distinct_rows,
            "parameters": ui_table(
                model.parameters().assign(value=lambda f: f["value"].map("{:.4g}".format))
            ),
            "bgnbd_log_likelihood": round(model.bgnbd.log_likelihood, 2),
            "gamma_gamma_log_likelihood": round(model.gamma_gamma.log_likelihood, 2),
        },
        check_results=[check_result("fit_quality", verdict, dg.AssetCheckSeverity.WARN)],
    )


@dg.asset(
    **TABLE_ASSET,
    tags=FOR_ANALYSTS,
    metadata={
        "money_columns": ["avg_repeat_spend", "expected_avg_spend", "predicted_clv"],
        "dagster/column_schema": CLV_FORECAST_COLUMNS,
    },
    check_specs=[
        check_spec(
            "clv_forecast",
            "forecast_values",
            "One row per paying customer of the universe; every figure finite, not negative, "
            "p_alive within [0, 1].",
        )
    ],
)
@fail_fast
def clv_forecast(
    config: ForecastConfig, clv_model: ClvModel, rfm: pd.DataFrame, database: PostgresResource
):
    """Who will keep paying, and how much: for every customer who has paid, the
    probability they are still active (`p_alive`), the purchases expected in the next
    `horizon_weeks` (52), the expected spend per purchase and their product `predicted_clv`;
    `discounted_clv` discounts each month at `annual_discount_rate` (10%).

    Metadata: the P(alive) histogram, predicted_clv by RFM segment and the top customers."""
    as_of = clv_model.as_of
    summary = _summary(database, rfm["customer_id"], as_of, clv_model.time_unit_days)
    frame = forecast_frame(
        clv_model,
        summary,
        horizon_weeks=config.horizon_weeks,
        horizon_months=config.horizon_months,
        annual_discount_rate=config.annual_discount_rate,
    )
    verdict = quality.forecast_rows(frame, summary["customer_id"])
    segmented = frame.merge(rfm[["customer_id", "segment"]], on="customer_id", how="left")
    top = frame.sort_values(["predicted_clv", "customer_id"], ascending=[False, True])
    return dg.MaterializeResult(
        value=stored_if(verdict, frame),
        metadata={
            "as_of": as_of.isoformat(),
            "customers": len(frame),
            "total_predicted_clv": round(float(frame["predicted_clv"].sum()), 2),
            "expected_active": round(float(frame["p_alive"].sum()), 1),
            "p_alive_plot": image(to_png(p_alive_figure(frame)), "P(alive) histogram"),
            "clv_by_segment_plot": image(
                to_png(clv_by_segment_figure(segmented)), "predicted_clv by segment"
            ),
            "top_customers": ui_table(
                top.head(TOP_FORECAST)[
                    ["customer_id", "frequency_repeat", "p_alive", "predicted_clv"]
                ]
            ),
        },
        check_results=[check_result("forecast_values", verdict)],
    )


@dg.asset(
    **TABLE_ASSET,
    tags=FOR_ANALYSTS,
    metadata={"dagster/column_schema": CLV_HOLDOUT_COLUMNS},
    check_specs=[
        check_spec(
            "clv_holdout",
            "holdout_error",
            "Warns when the model fitted before the holdout weeks misses the purchases made "
            "in them, in total, by more than max_total_error; or when no such fit is possible.",
            blocking=False,
        )
    ],
)
@fail_fast
def clv_holdout(
    context: dg.AssetExecutionContext,
    config: HoldoutConfig,
    clv_model: ClvModel,
    rfm_features: pd.DataFrame,
    database: PostgresResource,
):
    """How far to trust clv_forecast: the same models fitted on the data up to
    `holdout_weeks` (26) before `as_of` predict each customer's purchases in those weeks;
    predicted against actual per customer, by number of earlier repeat purchases, and the
    mean absolute error. An empty table when the history before the holdout is too short."""
    as_of, unit = clv_model.as_of, clv_model.time_unit_days
    cutoff = as_of - dt.timedelta(days=round(config.holdout_weeks * 7))
    signed_up = rfm_features.loc[rfm_features["signup_date"] <= cutoff, "customer_id"]
    calibration = _summary(database, signed_up, cutoff, unit)
    try:
        model = fit_clv_model(calibration, cutoff, unit)
    except NotEnoughData as e:
        context.log.warning(f"no holdout before {cutoff}: {e}")
        verdict = quality.Verdict(False, f"no model fitted up to {cutoff}: {e}")
        return dg.MaterializeResult(
            value=_NO_HOLDOUT,
            metadata={"cutoff": cutoff.isoformat()},
            check_results=[check_result("holdout_error", verdict, dg.AssetCheckSeverity.WARN)],
        )
    with database.connect() as conn:
        actual = occasions_between(conn, database.db_schema, cutoff, as_of)
    result = holdout_comparison(model, calibration, actual, config.holdout_weeks)
    verdict = quality.holdout_error(result.per_customer, result.mae, config.max_total_error)
    context.log.info(verdict.description)
    return dg.MaterializeResult(
        value=result.per_customer,
        metadata={
            "cutoff": cutoff.isoformat(),
            "as_of": as_of.isoformat(),
            "mae": round(result.mae, 3),
            "by_bucket": ui_table(result.by_bucket),
            "holdout_plot": image(to_png(holdout_figure(result.by_bucket)), "holdout"),
        },
        check_results=[check_result("holdout_error", verdict, dg.AssetCheckSeverity.WARN)],
    )


FORECAST_ASSETS = [clv_model, clv_forecast, clv_holdout]
