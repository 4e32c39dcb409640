"""Probabilistic CLV frames: purchase summaries by hand, forecasts and their discounting by
hand, the holdout check, regular gym payments end to end, and the figures."""

import datetime as dt
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from matplotlib.figure import Figure

from retention_assets import plots
from retention_assets.core import btyd
from retention_assets.core.btyd import (
    BgNbdFit,
    BgNbdParams,
    GammaGammaFit,
    GammaGammaParams,
    NotEnoughData,
)
from retention_assets.core.forecast import (
    FORECAST_COLUMNS,
    HOLDOUT_COLUMNS,
    ClvModel,
    clv_forecast,
    fit_clv_model,
    holdout_buckets,
    holdout_comparison,
    purchase_summary,
)

CDNOW = Path(__file__).parent / "fixtures" / "cdnow"
AS_OF = dt.date(2024, 7, 1)
BGNBD = BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
GG = GammaGammaParams(p=6.25, q=3.74, gamma=15.44)


def model_with(bgnbd: BgNbdParams = BGNBD, gg: GammaGammaParams = GG, unit: float = 7.0):
    """A ClvModel holding the given parameters, as if fitted."""
    return ClvModel(
        bgnbd=BgNbdFit(bgnbd, -1.0, True, 4, False, None, 100, 90),
        gamma_gamma=GammaGammaFit(gg, -1.0, True, 3, False, None, 50, 50, 35.0),
        as_of=AS_OF,
        time_unit_days=unit,
        n_training_rows=100,
        n_distinct_rows=90,
    )


@pytest.fixture
def occasions() -> pd.DataFrame:
    d = dt.date
    return pd.DataFrame(
        {
            "customer_id": ["b", "a10", "B", "a9", "é"],
            "first_date": [
                d(2024, 1, 1),
                d(2024, 6, 3),
                d(2023, 7, 1),
                d(2024, 7, 1),
                d(2024, 3, 4),
            ],
            "last_date": [
                d(2024, 6, 3),
                d(2024, 6, 3),
                d(2024, 5, 20),
                d(2024, 7, 1),
                d(2024, 6, 24),
            ],
            "occasions": [4, 1, 12, 1, 2],
            "total_amount": [160.0, 25.0, 588.0, 10.0, 80.0],
            "first_amount": [40.0, 25.0, 49.0, 10.0, 30.0],
        }
    )


# --- purchase_summary -------------------------------------------------------------------------


def test_purchase_summary_by_hand(occasions):
    summary = purchase_summary(occasions, AS_OF)
    assert list(summary.columns) == [
        "customer_id",
        "frequency_repeat",
        "t_x",
        "T",
        "avg_repeat_spend",
    ]
    # Code-point order: upper case before lower case, "a10" before "a9", "é" last.
    assert summary["customer_id"].tolist() == ["B", "a10", "a9", "b", "é"]
    assert summary["frequency_repeat"].tolist() == [11, 0, 0, 3, 1]
    assert summary["frequency_repeat"].dtype == "int64"
    # B: 2023-07-01 .. 2024-05-20 = 324 days; .. 2024-07-01 = 366 days (2024 is a leap year).
    # b: 2024-01-01 .. 2024-06-03 = 154 days; .. 2024-07-01 = 182 days.
    # é: 2024-03-04 .. 2024-06-24 = 112 days; .. 2024-07-01 = 119 days.
    assert summary["t_x"].tolist() == pytest.approx([324 / 7, 0, 0, 154 / 7, 16.0])
    assert summary["T"].tolist() == pytest.approx([366 / 7, 4.0, 0.0, 26.0, 17.0])
    # (total - first) / x: B (588 - 49) / 11 = 49, b (160 - 40) / 3 = 40, é 50 / 1.
    spend = summary["avg_repeat_spend"]
    assert spend.isna().tolist() == [False, True, True, False, False]
    assert spend.dropna().tolist() == pytest.approx([49.0, 40.0, 50.0])

    daily = purchase_summary(occasions, AS_OF, time_unit_days=1.0)
    assert daily["T"].tolist() == pytest.approx([366, 28, 0, 182, 119])


def test_purchase_summary_takes_any_date_type(occasions):
    expected = purchase_summary(occasions, AS_OF)
    as_arrow = occasions.assign(
        first_date=occasions["first_date"].astype(pd.ArrowDtype(pa.date32())),
        last_date=occasions["last_date"].astype(pd.ArrowDtype(pa.date32())),
    )
    as_datetime = occasions.assign(
        first_date=pd.to_datetime(occasions["first_date"]),
        last_date=pd.to_datetime(occasions["last_date"]) + pd.Timedelta(hours=18),
    )
    for frame in (as_arrow, as_datetime, occasions.sample(frac=1, random_state=1)):
        pd.testing.assert_frame_equal(purchase_summary(frame, AS_OF), expected)


def test_purchase_summary_refuses_inconsistent_rows(occasions):
    late = occasions.assign(
        last_date=occasions["last_date"].replace(dt.date(2024, 7, 1), dt.date(2024, 7, 2))
    )
    with pytest.raises(ValueError, match="as_of"):
        purchase_summary(late, AS_OF)
    one_day = occasions.assign(occasions=[4, 1, 12, 1, 1])  # é: 1 occasion over 112 days
    with pytest.raises(ValueError, match="distinct dates"):
        purchase_summary(one_day, AS_OF)
    with pytest.raises(ValueError, match="duplicates"):
        purchase_summary(pd.concat([occasions, occasions.head(1)]), AS_OF)
    with pytest.raises(ValueError, match="missing columns"):
        purchase_summary(occasions.drop(columns="first_amount"), AS_OF)


# --- clv_forecast -----------------------------------------------------------------------------


def test_clv_forecast_by_hand(occasions):
    summary = purchase_summary(occasions, AS_OF).iloc[[3, 0, 4, 1, 2]]  # any order is kept
    model = model_with()
    forecast = clv_forecast(model, summary, annual_discount_rate=0.10)
    assert list(forecast.columns) == list(FORECAST_COLUMNS)
    assert forecast["customer_id"].tolist() == summary["customer_id"].tolist()
    assert forecast.drop(columns="avg_repeat_spend").notna().all().all()
    assert (
        forecast["avg_repeat_spend"].isna().tolist() == summary["avg_repeat_spend"].isna().tolist()
    )

    x, t_x, T = (summary[c].to_numpy(dtype=float) for c in ("frequency_repeat", "t_x", "T"))
    spend = btyd.expected_avg_spend(GG, x, summary["avg_repeat_spend"].to_numpy())
    ahead = btyd.expected_purchases(BGNBD, 52, x, t_x, T)
    assert forecast["p_alive"].to_numpy() == pytest.approx(btyd.p_alive(BGNBD, x, t_x, T))
    assert forecast["expected_purchases"].to_numpy() == pytest.approx(ahead)
    assert forecast["expected_avg_spend"].to_numpy() == pytest.approx(spend)
    assert forecast["predicted_clv"].to_numpy() == pytest.approx(ahead * spend)

    # Customer "b" (x = 3): month m adds E[X(t_m)] - E[X(t_(m-1))], t_m = m x 365.25/12 days,
    # worth expected_avg_spend and discounted by 1.1^(m/12).
    row = forecast.iloc[0]
    assert row["customer_id"] == "b"
    months = [
        btyd.expected_purchases(BGNBD, m * 365.25 / 12 / 7, [3], [22.0], [26.0])[0]
        for m in range(13)
    ]
    by_hand = sum((months[m] - months[m - 1]) * spend[0] / 1.1 ** (m / 12) for m in range(1, 13))
    assert row["discounted_clv"] == pytest.approx(by_hand, rel=1e-10)
    assert row["discounted_clv"] < months[12] * spend[0]

    # Without discounting: the expected purchases of the 12 months (365.25 days) x spend.
    flat = clv_forecast(model, summary, annual_discount_rate=0.0)
    year = btyd.expected_purchases(BGNBD, 365.25 / 7, x, t_x, T)
    assert flat["discounted_clv"].to_numpy() == pytest.approx(year * spend, rel=1e-10)
    # horizon_weeks and horizon_months move their own columns only.
    longer = clv_forecast(model, summary, horizon_weeks=104, horizon_months=24)
    assert (longer["expected_purchases"] > forecast["expected_purchases"]).all()
    assert (longer["discounted_clv"] > forecast["discounted_clv"]).all()


def test_the_time_unit_does_not_change_the_forecast(occasions):
    """The same model in days (alpha x 7: the rate per day is 1/7 of the rate per week)."""
    weekly = clv_forecast(model_with(), purchase_summary(occasions, AS_OF))
    in_days = BgNbdParams(BGNBD.r, BGNBD.alpha * 7, BGNBD.a, BGNBD.b)
    daily = clv_forecast(model_with(in_days, unit=1.0), purchase_summary(occasions, AS_OF, 1.0))
    for column in ("p_alive", "expected_purchases", "predicted_clv", "discounted_clv"):
        assert daily[column].to_numpy() == pytest.approx(weekly[column].to_numpy(), rel=1e-9)


@pytest.fixture(scope="module")
def cdnow_summary() -> pd.DataFrame:
    summary = pd.read_csv(CDNOW / "cdnow_customers_summary.csv")
    spend = pd.read_csv(CDNOW / "cdnow_customers_summary_with_transactions.csv")
    return pd.DataFrame(
        {
            "customer_id": summary["ID"].astype("str"),
            "frequency_repeat": summary["frequency"],
            "t_x": summary["recency"],
            "T": summary["T"],
            "avg_repeat_spend": spend["zbar"].where(spend["x"] > 0),
        }
    )


def test_fit_clv_model_on_cdnow(cdnow_summary):
    model = fit_clv_model(cdnow_summary, dt.date(1997, 9, 30))
    assert model.warnings() == []
    assert (model.n_training_rows, model.n_distinct_rows) == (2357, model.bgnbd.n_distinct)
    parameters = model.parameters()
    assert list(parameters.columns) == ["model", "parameter", "value"]
    assert parameters["parameter"].tolist() == ["r", "alpha", "a", "b", "p", "q", "gamma"]
    paper = [0.243, 4.414, 0.793, 2.426, 6.25, 3.74, 15.44]
    assert parameters["value"].to_numpy() == pytest.approx(paper, rel=0.005)

    loaded = pickle.loads(pickle.dumps(model))  # persisted, scored in another process
    assert loaded == model
    forecast = clv_forecast(loaded, cdnow_summary)
    assert forecast.drop(columns="avg_repeat_spend").notna().all().all()
    assert forecast["avg_repeat_spend"].isna().sum() == 2357 - 946


# --- regular gym payments end to end ----------------------------------------------------------


def gym_occasions(n: int, seed: int, fee: float | None = 49.0) -> pd.DataFrame:
    """Members debited the same fee every 30 or 31 days from a start within 3 years of AS_OF
    until they cancel (3% a month); `fee` None: each member's own fixed fee."""
    rng = np.random.default_rng(seed)
    start = rng.integers(0, 1100, n)
    months = np.minimum(np.floor(start / 30.44), rng.geometric(0.03, n) - 1).astype(int)
    fees = np.full(n, fee) if fee is not None else rng.choice([29.0, 49.0, 79.0], n)
    first = [AS_OF - dt.timedelta(days=int(s)) for s in start]
    return pd.DataFrame(
        {
            "customer_id": [f"M{i:05d}" for i in range(n)],
            "first_date": first,
            "last_date": [
                f + dt.timedelta(days=round(m * 30.44)) for f, m in zip(first, months, strict=True)
            ],
            "occasions": months + 1,
            "total_amount": fees * (months + 1),
            "first_amount": fees,
        }
    )


def test_regular_monthly_payers_end_to_end():
    summary = purchase_summary(gym_occasions(2000, seed=7), AS_OF)
    model = fit_clv_model(summary, AS_OF)
    warnings = model.warnings()
    assert any(w.startswith("Gamma-Gamma") and "49.00" in w for w in warnings)
    assert model.bgnbd.params.r > 100  # hardly any spread in the members' rates
    forecast = clv_forecast(model, summary)
    figures = forecast.drop(columns="avg_repeat_spend")
    assert figures.notna().all().all()
    assert np.isfinite(figures.drop(columns="customer_id").to_numpy(dtype=float)).all()
    assert (figures.drop(columns="customer_id") >= 0).all().all()
    assert forecast["expected_avg_spend"].to_numpy() == pytest.approx(np.full(2000, 49.0))
    assert forecast["predicted_clv"].max() <= 49.0 * 52 / (30.44 / 7) * 1.05


def test_own_fees_end_to_end():
    summary = purchase_summary(gym_occasions(1500, seed=8, fee=None), AS_OF)
    forecast = clv_forecast(fit_clv_model(summary, AS_OF), summary)
    assert forecast.drop(columns="avg_repeat_spend").notna().all().all()
    repeat = forecast["frequency_repeat"] >= 6
    # Whether or not the fit reaches the boundary, a member's expected spend stays near
    # their own fee.
    own = forecast.loc[repeat, "avg_repeat_spend"]
    assert forecast.loc[repeat, "expected_avg_spend"].to_numpy() == pytest.approx(own, rel=0.05)


def test_no_repeat_buyers_means_no_model(occasions):
    only_first = purchase_summary(
        occasions.assign(
            occasions=1, last_date=occasions["first_date"], total_amount=occasions["first_amount"]
        ),
        AS_OF,
    )
    with pytest.raises(NotEnoughData, match="got 0 repeat buyers among 5 customers"):
        fit_clv_model(only_first, AS_OF)


# --- holdout ----------------------------------------------------------------------------------


def test_holdout_comparison_by_hand():
    calibration = pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "c3", "c4", "c5"],
            "frequency_repeat": [0, 1, 1, 7, 12],
            "t_x": [0.0, 10.0, 3.0, 30.0, 38.0],
            "T": [20.0, 30.0, 30.0, 39.0, 39.0],
            "avg_repeat_spend": [np.nan, 20.0, 30.0, 25.0, 40.0],
        }
    )
    actual = pd.DataFrame(
        {"customer_id": ["c2", "c4", "c5", "new"], "actual_purchases": [1, 3, 6, 2]}
    )
    result = holdout_comparison(model_with(), calibration, actual, holdout_weeks=26)
    predicted = btyd.expected_purchases(
        BGNBD, 26, calibration["frequency_repeat"], calibration["t_x"], calibration["T"]
    )
    per_customer = result.per_customer
    assert list(per_customer.columns) == list(HOLDOUT_COLUMNS)
    assert per_customer["customer_id"].tolist() == ["c1", "c2", "c3", "c4", "c5"]  # no "new"
    assert per_customer["actual"].tolist() == [0, 1, 0, 3, 6]
    assert per_customer["actual"].dtype == "int64"
    assert per_customer["predicted"].to_numpy() == pytest.approx(predicted)
    assert result.mae == pytest.approx(np.abs(predicted - [0, 1, 0, 3, 6]).mean())
    assert result.total_actual == 10
    assert result.total_predicted == pytest.approx(predicted.sum())

    by_bucket = result.by_bucket
    assert list(by_bucket.columns) == ["bucket", "customers", "predicted_mean", "actual_mean"]
    assert by_bucket["bucket"].tolist() == ["0", "1", "7+"]
    assert by_bucket["customers"].tolist() == [1, 2, 2]
    assert by_bucket["actual_mean"].tolist() == pytest.approx([0.0, 0.5, 4.5])
    assert by_bucket["predicted_mean"].tolist() == pytest.approx(
        [predicted[0], predicted[1:3].mean(), predicted[3:].mean()]
    )
    # The same buckets from the stored table (Arrow integers, as read back from PostgreSQL).
    stored = per_customer.astype(
        {"frequency_repeat": pd.ArrowDtype(pa.int64()), "actual": pd.ArrowDtype(pa.int64())}
    )
    pd.testing.assert_frame_equal(holdout_buckets(stored), by_bucket)


def test_holdout_predicts_simulated_purchases():
    """Customers simulated from a BG/NBD: the fit on the calibration weeks predicts the
    purchases of the 26 weeks after them, in total and per bucket."""
    from .test_btyd import simulate_bgnbd

    x, t_x, T, later = simulate_bgnbd(BgNbdParams(0.5, 5.0, 0.7, 2.5), 4000, seed=11, horizon=26)
    ids = [f"S{i:04d}" for i in range(len(x))]
    calibration = pd.DataFrame(
        {
            "customer_id": ids,
            "frequency_repeat": x.astype("int64"),
            "t_x": t_x,
            "T": T,
            "avg_repeat_spend": np.where(x > 0, 20.0 + x, np.nan),
        }
    )
    actual = pd.DataFrame({"customer_id": ids, "actual_purchases": later.astype("int64")})
    actual = actual.loc[actual["actual_purchases"] > 0]  # customers without any: no row
    model = fit_clv_model(calibration, AS_OF)
    result = holdout_comparison(model, calibration, actual, holdout_weeks=26)
    assert result.total_actual == int(later.sum())
    assert result.total_predicted == pytest.approx(result.total_actual, rel=0.1)
    busy = result.by_bucket.set_index("bucket").loc["7+"]
    assert busy["predicted_mean"] == pytest.approx(busy["actual_mean"], rel=0.2)


# --- figures ----------------------------------------------------------------------------------


def test_figures(occasions):
    summary = purchase_summary(occasions, AS_OF)
    forecast = clv_forecast(model_with(), summary)

    fig = plots.p_alive_figure(forecast)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert sum(patch.get_height() for patch in ax.patches) == len(forecast)
    assert "5 customers" in ax.get_title()
    assert plots.to_png(fig).startswith(b"\x89PNG")

    segmented = forecast.assign(segment=["Loyalist", "At Risk", "At Risk", "High-Value", None])
    fig = plots.clv_by_segment_figure(segmented)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["High-Value (1)", "Loyalist (1)", "At Risk (2)", "(no segment) (1)"]
    plots.to_png(fig)

    by_bucket = pd.DataFrame(
        {
            "bucket": ["0", "1", "7+"],
            "customers": [1200, 300, 45],
            "predicted_mean": [0.2, 0.9, 4.1],
            "actual_mean": [0.25, 0.8, 4.4],
        }
    )
    fig = plots.holdout_figure(by_bucket)
    ax = fig.axes[0]
    lines = {line.get_label(): line.get_ydata().tolist() for line in ax.get_lines()}
    assert lines == {"actual": [0.25, 0.8, 4.4], "predicted (BG/NBD)": [0.2, 0.9, 4.1]}
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0\n(1,200)", "1\n(300)", "7+\n(45)"]
    plots.to_png(fig)
