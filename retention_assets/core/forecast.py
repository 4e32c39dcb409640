"""Probabilistic CLV per customer: purchase summaries in, fitted models and forecasts out.

Pure pandas around the models of `btyd`; nothing here reads files or databases.

Definitions
-----------
purchase occasion
    A calendar date with at least one of the customer's transactions on or before as_of; its
    amount is the sum of that day's amounts.
frequency_repeat (x)
    Occasions - 1.
t_x, T
    (last occasion - first occasion) and (as_of - first occasion), in days / time_unit_days.
avg_repeat_spend
    Mean amount of the occasions after the first; NaN when x = 0.
expected_purchases
    BG/NBD expected occasions in the next horizon_weeks weeks.
predicted_clv
    expected_purchases x expected_avg_spend (Gamma-Gamma conditional mean spend).
discounted_clv
    Sum over months m = 1..horizon_months (of 365.25/12 days) of the month's expected
    occasions E[X(t_m)] - E[X(t_(m-1))] x expected_avg_spend / (1 + annual_discount_rate)^(m/12).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .btyd import (
    BgNbdFit,
    GammaGammaFit,
    distinct_rows,
    expected_avg_spend,
    expected_purchases,
    fit_bgnbd,
    fit_gamma_gamma,
    p_alive,
)

OCCASION_COLUMNS = (
    "customer_id",
    "first_date",
    "last_date",
    "occasions",
    "total_amount",
    "first_amount",
)
SUMMARY_COLUMNS = ("customer_id", "frequency_repeat", "t_x", "T", "avg_repeat_spend")
FORECAST_COLUMNS = (
    *SUMMARY_COLUMNS,
    "p_alive",
    "expected_purchases",
    "expected_avg_spend",
    "predicted_clv",
    "discounted_clv",
)
HOLDOUT_COLUMNS = ("customer_id", "frequency_repeat", "predicted", "actual")
DAYS_PER_MONTH = 365.25 / 12
DAYS_PER_WEEK = 7.0
TOP_BUCKET = 7  # holdout buckets "0", "1", ..., "6", "7+"


@dataclass
class ClvModel:
    """The fitted BG/NBD and Gamma-Gamma models and the data they were fitted on: everything
    another process needs to score customers the way the run did (plain data, picklable)."""

    bgnbd: BgNbdFit
    gamma_gamma: GammaGammaFit
    as_of: dt.date
    time_unit_days: float
    n_training_rows: int  # customers with an occasion on or before as_of
    n_distinct_rows: int  # distinct (x, t_x, T) rows the BG/NBD was fitted on

    def parameters(self) -> pd.DataFrame:
        """model, parameter, value: one row per fitted parameter."""
        b, g = self.bgnbd.params, self.gamma_gamma.params
        rows = [
            ("bgnbd", "r", b.r),
            ("bgnbd", "alpha", b.alpha),
            ("bgnbd", "a", b.a),
            ("bgnbd", "b", b.b),
            ("gamma_gamma", "p", g.p),
            ("gamma_gamma", "q", g.q),
            ("gamma_gamma", "gamma", g.gamma),
        ]
        return pd.DataFrame(rows, columns=["model", "parameter", "value"]).astype(
            {"model": "str", "parameter": "str", "value": "float64"}
        )

    def describe(self) -> dict[str, object]:
        """What the stored model says about itself (shown beside it in the UI)."""
        return {
            "as_of": self.as_of.isoformat(),
            "n_training_rows": self.n_training_rows,
            "time_unit_days": self.time_unit_days,
            "parameters": {f"{m}.{p}": v for m, p, v in self.parameters().itertuples(False)},
            **{
                f"{name}.{field}": getattr(fit, field)
                for name, fit in (("bgnbd", self.bgnbd), ("gamma_gamma", self.gamma_gamma))
                for field in ("log_likelihood", "converged", "degenerate")
            },
            "warnings": self.warnings(),
        }

    def warnings(self) -> list[str]:
        """The notes of the fits that did not converge or ran to a boundary (empty: none)."""
        return [
            fit.note
            for fit in (self.bgnbd, self.gamma_gamma)
            if fit.note and (fit.degenerate or not fit.converged)
        ]


@dataclass
class HoldoutResult:
    """Purchases predicted for the holdout period against those made in it.

    per_customer: customer_id, frequency_repeat (before the holdout), predicted, actual.
    by_bucket: bucket ("0" .. "6", "7+" by frequency_repeat), customers, predicted_mean,
    actual_mean. mae: mean absolute error per customer."""

    per_customer: pd.DataFrame
    by_bucket: pd.DataFrame
    mae: float
    total_predicted: float
    total_actual: int
    holdout_weeks: float


def purchase_summary(
    occasions: pd.DataFrame, as_of: dt.date, time_unit_days: float = 7.0
) -> pd.DataFrame:
    """x, t_x, T and avg_repeat_spend per customer, the input of the models.

    Parameters
    ----------
    occasions
        One row per customer with an occasion on or before as_of: customer_id, first_date,
        last_date (dates, datetimes or Arrow date32), occasions (distinct dates), total_amount
        (sum over those dates) and first_amount (the first date's amount).
    as_of
        The snapshot date.
    time_unit_days
        Days per time unit of t_x and T (7: weeks).

    Returns
    -------
    customer_id, frequency_repeat, t_x, T, avg_repeat_spend; sorted by customer_id in
    code-point order.

    Raises
    ------
    ValueError
        Missing columns, duplicate customers, missing values, dates after as_of or
        inconsistent with the number of occasions.
    """
    _require(occasions, OCCASION_COLUMNS, "purchase_summary")
    if not time_unit_days > 0:
        raise ValueError(f"time_unit_days must be positive, got {time_unit_days}")
    if occasions["customer_id"].duplicated().any():
        raise ValueError("purchase_summary: one row per customer expected, got duplicates")
    if occasions[list(OCCASION_COLUMNS)].isna().any().any():
        raise ValueError("purchase_summary: missing values in the occasions")
    ids = occasions["customer_id"].astype("str").tolist()
    order = sorted(range(len(ids)), key=ids.__getitem__)  # code-point order
    frame = occasions.iloc[order]
    day = np.datetime64(as_of, "D")
    first = _days(frame["first_date"])
    last = _days(frame["last_date"])
    count = frame["occasions"].to_numpy(dtype="int64")
    if (count < 1).any() or (first > last).any() or (last > day).any():
        raise ValueError(
            f"purchase_summary: need occasions >= 1 and first_date <= last_date <= as_of ({as_of})"
        )
    span = (last - first).astype("int64")
    if ((count == 1) != (span == 0)).any() or (count - 1 > span).any():
        raise ValueError(
            "purchase_summary: occasions are distinct dates: 1 occasion means first_date == "
            "last_date, n occasions span at least n - 1 days"
        )
    x = count - 1
    repeat_total = frame["total_amount"].to_numpy("float64") - frame["first_amount"].to_numpy(
        "float64"
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        avg = np.where(x > 0, repeat_total / np.maximum(x, 1), np.nan)
    return pd.DataFrame(
        {
            "customer_id": pd.Series([ids[i] for i in order], dtype="str"),
            "frequency_repeat": x,
            "t_x": span / time_unit_days,
            "T": (day - first).astype("int64") / time_unit_days,
            "avg_repeat_spend": avg,
        }
    )


def fit_clv_model(summary: pd.DataFrame, as_of: dt.date, time_unit_days: float = 7.0) -> ClvModel:
    """Fit BG/NBD on (x, t_x, T) and Gamma-Gamma on (x, avg_repeat_spend) of the customers
    with x > 0 and avg_repeat_spend > 0.

    Parameters
    ----------
    summary
        A `purchase_summary` frame.
    as_of, time_unit_days
        Those of the summary, kept with the model for the forecasts.

    Returns
    -------
    The fitted ClvModel; `warnings()` lists fits that did not converge or ran to a boundary.

    Raises
    ------
    NotEnoughData
        Too few repeat buyers for either model (the message gives the counts).
    """
    x, t_x, T, spend = _summary_arrays(summary)
    bgnbd = fit_bgnbd(x, t_x, T)
    gamma_gamma = fit_gamma_gamma(x, spend)
    return ClvModel(
        bgnbd=bgnbd,
        gamma_gamma=gamma_gamma,
        as_of=as_of,
        time_unit_days=float(time_unit_days),
        n_training_rows=len(summary),
        n_distinct_rows=bgnbd.n_distinct,
    )


def clv_forecast(
    model: ClvModel,
    summary: pd.DataFrame,
    horizon_weeks: float = 52,
    horizon_months: int = 12,
    annual_discount_rate: float = 0.10,
) -> pd.DataFrame:
    """P(alive), expected purchases, spend and CLV per customer of `summary`.

    Parameters
    ----------
    model
        From `fit_clv_model` (its time unit must be the summary's).
    summary
        A `purchase_summary` frame.
    horizon_weeks
        Weeks ahead counted in expected_purchases and predicted_clv.
    horizon_months, annual_discount_rate
        Months summed, and the yearly rate discounting them, in discounted_clv.

    Returns
    -------
    FORECAST_COLUMNS, one row per row of `summary` in its order; no NaN but avg_repeat_spend
    where x = 0.
    """
    if not horizon_weeks >= 0 or not horizon_months >= 0 or not annual_discount_rate > -1:
        raise ValueError(
            "clv_forecast: need horizon_weeks >= 0, horizon_months >= 0 and "
            "annual_discount_rate > -1"
        )
    x, t_x, T, spend = _summary_arrays(summary)
    # The BG/NBD figures depend on (x, t_x, T) only: compute them once per distinct row.
    rows, _, inverse = distinct_rows(np.column_stack([x, t_x, T]))
    ux, utx, uT = rows.T
    unit = model.time_unit_days
    alive = p_alive(model.bgnbd, ux, utx, uT)[inverse]
    ahead = expected_purchases(model.bgnbd, horizon_weeks * DAYS_PER_WEEK / unit, ux, utx, uT)
    months = np.arange(int(horizon_months) + 1)
    cumulative = expected_purchases(
        model.bgnbd,
        (months * DAYS_PER_MONTH / unit)[None, :],
        ux[:, None],
        utx[:, None],
        uT[:, None],
    )
    monthly = np.maximum(np.diff(cumulative, axis=1), 0.0)
    discount = (1.0 + annual_discount_rate) ** -(months[1:] / 12.0)
    spend_each = expected_avg_spend(model.gamma_gamma, x, spend)
    expected = ahead[inverse]
    return pd.DataFrame(
        {
            "customer_id": summary["customer_id"].to_numpy(),
            "frequency_repeat": x.astype("int64"),
            "t_x": t_x,
            "T": T,
            "avg_repeat_spend": spend,
            "p_alive": alive,
            "expected_purchases": expected,
            "expected_avg_spend": spend_each,
            "predicted_clv": expected * spend_each,
            "discounted_clv": (monthly @ discount)[inverse] * spend_each,
        }
    ).astype({"customer_id": summary["customer_id"].dtype})


def holdout_comparison(
    model: ClvModel,
    calibration: pd.DataFrame,
    actual: pd.DataFrame,
    holdout_weeks: float,
) -> HoldoutResult:
    """Purchases the model predicts for the holdout weeks against those made in them.

    Parameters
    ----------
    model
        Fitted on `calibration`.
    calibration
        A `purchase_summary` at as_of - holdout_weeks.
    actual
        customer_id, actual_purchases: occasions inside the holdout period; customers
        without a row made none. Customers not in `calibration` (first purchase in the
        holdout) are ignored: the model predicts nothing for them.
    holdout_weeks
        Length of the holdout period.

    Returns
    -------
    HoldoutResult: per customer of `calibration` (in its order), by frequency bucket, and the
    mean absolute error.
    """
    _require(actual, ("customer_id", "actual_purchases"), "holdout_comparison")
    if actual["customer_id"].duplicated().any():
        raise ValueError("holdout_comparison: one actual row per customer expected")
    if not holdout_weeks > 0:
        raise ValueError(f"holdout_weeks must be positive, got {holdout_weeks}")
    x, t_x, T, _ = _summary_arrays(calibration)
    t = holdout_weeks * DAYS_PER_WEEK / model.time_unit_days
    predicted = expected_purchases(model.bgnbd, t, x, t_x, T)
    made = actual.set_index(actual["customer_id"].astype("str"))["actual_purchases"]
    ids = calibration["customer_id"].astype("str")
    observed = made.reindex(ids.to_numpy()).fillna(0).to_numpy(dtype="int64")
    if (observed < 0).any():
        raise ValueError("holdout_comparison: negative actual_purchases")
    per_customer = pd.DataFrame(
        {
            "customer_id": calibration["customer_id"].to_numpy(),
            "frequency_repeat": x.astype("int64"),
            "predicted": predicted,
            "actual": observed,
        }
    ).astype({"customer_id": calibration["customer_id"].dtype})
    return HoldoutResult(
        per_customer=per_customer,
        by_bucket=holdout_buckets(per_customer),
        mae=float(np.abs(predicted - observed).mean()) if len(observed) else float("nan"),
        total_predicted=float(predicted.sum()),
        total_actual=int(observed.sum()),
        holdout_weeks=float(holdout_weeks),
    )


def bucket_labels() -> list[str]:
    """The holdout buckets in order: "0", "1", ..., "6", "7+"."""
    return [str(i) for i in range(TOP_BUCKET)] + [f"{TOP_BUCKET}+"]


def holdout_buckets(per_customer: pd.DataFrame) -> pd.DataFrame:
    """The holdout by frequency bucket: the classic check of a BG/NBD.

    Parameters
    ----------
    per_customer
        HoldoutResult.per_customer, or the stored clv_holdout table: frequency_repeat,
        predicted, actual per customer.

    Returns
    -------
    bucket ("0" .. "6", "7+" by frequency_repeat), customers, predicted_mean, actual_mean; the
    buckets with customers, in bucket order.
    """
    _require(per_customer, ("frequency_repeat", "predicted", "actual"), "holdout_buckets")
    labels = bucket_labels()
    bucket = np.minimum(per_customer["frequency_repeat"].to_numpy(dtype="int64"), TOP_BUCKET)
    grouped = (
        pd.DataFrame(
            {
                "bucket": pd.Categorical.from_codes(bucket, labels),
                "predicted": per_customer["predicted"].to_numpy(dtype="float64"),
                "actual": per_customer["actual"].to_numpy(dtype="float64"),
            }
        )
        .groupby("bucket", observed=True)
        .agg(
            customers=("predicted", "size"),
            predicted_mean=("predicted", "mean"),
            actual_mean=("actual", "mean"),
        )
        .reset_index()
    )
    return grouped.astype({"bucket": "str", "customers": "int64"})


def _require(frame: pd.DataFrame, columns: tuple[str, ...], where: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{where}: missing columns {missing}")


def _days(values: pd.Series) -> np.ndarray:
    """Dates (date objects, datetime64, Arrow date32 / timestamp) as datetime64[D], through
    Arrow: pd.to_datetime takes some 200 times as long on Arrow dates."""
    array = pa.array(values, from_pandas=True)
    if pa.types.is_timestamp(array.type):
        array = pc.floor_temporal(array, unit="day")
    days = array.cast(pa.date32(), safe=False).to_numpy(zero_copy_only=False)
    return days.astype("datetime64[D]")


def _summary_arrays(
    summary: pd.DataFrame,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x, t_x, T, avg_repeat_spend of a purchase_summary frame, as float arrays."""
    _require(summary, SUMMARY_COLUMNS, "CLV summary")
    x, t_x, T = (summary[c].to_numpy(dtype="float64") for c in ("frequency_repeat", "t_x", "T"))
    spend = summary["avg_repeat_spend"].to_numpy(dtype="float64", na_value=np.nan)
    if not (np.isfinite(x).all() and np.isfinite(t_x).all() and np.isfinite(T).all()):
        raise ValueError("CLV summary: frequency_repeat, t_x and T must be finite")
    if (x < 0).any() or (t_x < 0).any() or (t_x > T).any():
        raise ValueError("CLV summary: need frequency_repeat >= 0 and 0 <= t_x <= T")
    return x, t_x, T, spend
