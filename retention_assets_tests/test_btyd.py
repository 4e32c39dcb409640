"""BG/NBD and Gamma-Gamma: the published CDNOW estimates, parameters recovered from simulated
data, closed forms checked by hand, and the degenerate fits regular gym payments produce."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import special

from retention_assets.core import btyd
from retention_assets.core.btyd import (
    BgNbdParams,
    GammaGammaFit,
    GammaGammaParams,
    NotEnoughData,
    bgnbd_log_likelihood,
    expected_avg_spend,
    expected_purchases,
    fit_bgnbd,
    fit_gamma_gamma,
    gamma_gamma_log_likelihood,
    p_alive,
)

CDNOW = Path(__file__).parent / "fixtures" / "cdnow"
# Fader, Hardie & Lee (2005): the maximum-likelihood estimates on the CDNOW sample.
PAPER_BGNBD = BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
PAPER_LL = -9582.4
PAPER_GG = GammaGammaParams(p=6.25, q=3.74, gamma=15.44)


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    summary = pd.read_csv(CDNOW / "cdnow_customers_summary.csv")
    spend = pd.read_csv(CDNOW / "cdnow_customers_summary_with_transactions.csv")
    assert (summary["ID"] == spend["ID"]).all() and (summary["frequency"] == spend["x"]).all()
    return summary.assign(zbar=spend["zbar"])


@pytest.fixture(scope="module")
def cdnow_bgnbd(cdnow: pd.DataFrame) -> btyd.BgNbdFit:
    return fit_bgnbd(cdnow["frequency"], cdnow["recency"], cdnow["T"])


def relative(value: float, target: float) -> float:
    return abs(value / target - 1)


# --- the published estimates -----------------------------------------------------------------


def test_bgnbd_reproduces_the_cdnow_estimates(cdnow, cdnow_bgnbd):
    fit = cdnow_bgnbd
    for name in ("r", "alpha", "a", "b"):
        assert relative(getattr(fit.params, name), getattr(PAPER_BGNBD, name)) < 0.005, name
    assert fit.log_likelihood == pytest.approx(PAPER_LL, abs=0.1)
    assert fit.converged and not fit.degenerate and fit.note is None
    assert fit.starts >= 3
    assert fit.n_customers == 2357 and fit.n_distinct < 2357  # fitted on the distinct rows
    # The total the fit reports is the per-customer sum at its estimate.
    per_customer = bgnbd_log_likelihood(fit, cdnow["frequency"], cdnow["recency"], cdnow["T"])
    assert per_customer.shape == (2357,)
    assert per_customer.sum() == pytest.approx(fit.log_likelihood, rel=1e-12)


def test_gamma_gamma_reproduces_the_cdnow_estimates(cdnow):
    fit = fit_gamma_gamma(cdnow["frequency"], cdnow["zbar"])  # x = 0 rows are left out
    for name in ("p", "q", "gamma"):
        assert relative(getattr(fit.params, name), getattr(PAPER_GG, name)) < 0.005, name
    assert fit.n_customers == 946
    assert fit.converged and not fit.degenerate and fit.note is None
    assert fit.population_mean == pytest.approx(
        fit.params.p * fit.params.gamma / (fit.params.q - 1)
    )


def test_weights_stand_for_repeated_rows():
    x, t_x, T = np.array([0, 2, 5.0]), np.array([0, 10.0, 30]), np.array([40, 40, 40.0])
    weights = np.array([3, 1, 2.0])
    weighted = bgnbd_log_likelihood(PAPER_BGNBD, x, t_x, T, weights)
    expanded = bgnbd_log_likelihood(PAPER_BGNBD, *(np.repeat(v, [3, 1, 2]) for v in (x, t_x, T)))
    assert weighted.sum() == pytest.approx(expanded.sum(), rel=1e-13)
    gg = gamma_gamma_log_likelihood(PAPER_GG, [1, 4], [20.0, 35.0], [2, 1])
    assert gg.sum() == pytest.approx(
        gamma_gamma_log_likelihood(PAPER_GG, [1, 1, 4], [20, 20, 35.0]).sum()
    )


# --- simulated data with known parameters -----------------------------------------------------


def simulate_bgnbd(params: BgNbdParams, n: int, seed: int, horizon: float = 0.0):
    """x, t_x, T of n BG/NBD customers observed for T ~ U(30, 80) weeks, and the purchases
    they make in the `horizon` weeks after T.

    lambda ~ Gamma(r, rate alpha), p ~ Beta(a, b); purchases at Poisson(lambda) times, and after
    each (not the first, at time 0) the customer drops out for good with probability p."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(params.r, 1 / params.alpha, n)
    p = rng.beta(params.a, params.b, n)
    T = rng.uniform(30, 80, n)
    x, t_x, later = np.zeros(n), np.zeros(n), np.zeros(n)
    for i in range(n):
        now = 0.0
        while True:
            now += rng.exponential(1 / lam[i])
            if now > T[i] + horizon:
                break
            if now <= T[i]:
                x[i] += 1
                t_x[i] = now
            else:
                later[i] += 1
            if rng.random() < p[i]:
                break
    return x, t_x, T, later


def test_bgnbd_recovers_simulated_parameters():
    true = BgNbdParams(r=0.5, alpha=5.0, a=0.7, b=2.5)
    x, t_x, T, _ = simulate_bgnbd(true, 5000, seed=0)
    fit = fit_bgnbd(x, t_x, T)
    assert fit.converged and not fit.degenerate
    for name in ("r", "alpha", "a", "b"):
        assert relative(getattr(fit.params, name), getattr(true, name)) < 0.15, name
    # The maximum of the likelihood is at least as high as at the true parameters.
    assert fit.log_likelihood >= bgnbd_log_likelihood(true, x, t_x, T).sum()


def test_gamma_gamma_recovers_simulated_parameters():
    true = GammaGammaParams(p=6.0, q=4.0, gamma=15.0)
    rng = np.random.default_rng(1)
    x = rng.integers(1, 15, 4000).astype(float)
    nu = rng.gamma(true.q, 1 / true.gamma, len(x))
    mean_spend = rng.gamma(true.p * x, 1 / (nu * x))  # mean of x Gamma(p, nu) spends
    fit = fit_gamma_gamma(x, mean_spend)
    assert fit.converged and not fit.degenerate
    assert relative(fit.params.q, true.q) < 0.1
    assert relative(fit.population_mean, true.p * true.gamma / (true.q - 1)) < 0.05
    assert relative(fit.params.p, true.p) < 0.4  # p and gamma trade off: less precise
    assert fit.log_likelihood >= gamma_gamma_log_likelihood(true, x, mean_spend).sum()


# --- closed forms by hand ---------------------------------------------------------------------


def hyp2f1_series(a: float, b: float, c: float, z: float) -> float:
    """Gauss's series sum_n (a)_n (b)_n / ((c)_n n!) z^n, for |z| < 1."""
    term, total, n = 1.0, 1.0, 0
    while abs(term) > 1e-17 * abs(total):
        term *= (a + n) * (b + n) / ((c + n) * (n + 1)) * z
        total += term
        n += 1
    return total


@pytest.mark.parametrize(
    ("x", "t_x", "T", "lifetimes_p_alive", "lifetimes_expected"),
    [
        # lifetimes 0.11.3 (BetaGeoFitter with these parameters, t = 39 weeks) gives the same.
        (2, 30.43, 38.86, 0.72657857, 1.22602817),
        (10, 20.0, 38.86, 0.03934596, 0.28634123),
        (0, 0.0, 38.86, 1.0, 0.19509805),
    ],
)
def test_p_alive_and_expected_purchases_by_hand(x, t_x, T, lifetimes_p_alive, lifetimes_expected):
    r, alpha, a, b = 0.243, 4.414, 0.793, 2.426
    t = 39.0
    # P(alive) = 1 / (1 + [x > 0] a / (b + x - 1) ((alpha + T) / (alpha + t_x))^(r + x))
    odds_dead = a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x) if x > 0 else 0.0
    alive = 1 / (1 + odds_dead)
    # E[Y(t) | x, t_x, T] = (a + b + x - 1) / (a - 1)
    #   x [1 - ((alpha + T) / (alpha + T + t))^(r + x) 2F1(r + x, b + x; a + b + x - 1; z)]
    #   x P(alive),  z = t / (alpha + T + t)
    z = t / (alpha + T + t)
    bracket = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1_series(
        r + x, b + x, a + b + x - 1, z
    )
    expected = (a + b + x - 1) / (a - 1) * bracket * alive

    params = BgNbdParams(r, alpha, a, b)
    assert p_alive(params, [x], [t_x], [T])[0] == pytest.approx(alive, rel=1e-12)
    assert expected_purchases(params, t, [x], [t_x], [T])[0] == pytest.approx(expected, rel=1e-10)
    assert alive == pytest.approx(lifetimes_p_alive, abs=1e-8)
    assert expected == pytest.approx(lifetimes_expected, abs=1e-8)


def test_expected_avg_spend_by_hand():
    p, q, gamma = 6.25, 3.74, 15.44
    x, spend = np.array([2, 10, 0]), np.array([22.35, 40.0, np.nan])
    # (p gamma + p x zbar) / (p x + q - 1); p gamma / (q - 1) without repeat purchases.
    by_hand = [
        (p * gamma + p * 2 * 22.35) / (p * 2 + q - 1),
        (p * gamma + p * 10 * 40.0) / (p * 10 + q - 1),
        p * gamma / (q - 1),
    ]
    got = expected_avg_spend(GammaGammaParams(p, q, gamma), x, spend)
    assert got == pytest.approx(by_hand, rel=1e-12)
    assert got == pytest.approx([24.66371391, 39.79920294, 35.2189781], abs=1e-7)  # lifetimes


def test_expected_purchases_where_the_closed_form_fails():
    """a = 1 makes (a + b + x - 1) / (a - 1) x [...] a 0/0; huge parameters after a degenerate
    fit overflow hyp2f1. The numerical integral takes over: finite, and the limits hold."""
    x, t_x, T = np.array([0, 3, 12.0]), np.array([0, 20, 35.0]), np.array([40, 40, 40.0])
    near = [
        expected_purchases(BgNbdParams(0.5, 5.0, 1 + d, 2.0), 26, x, t_x, T) for d in (-1e-6, 1e-6)
    ]
    at_one = expected_purchases(BgNbdParams(0.5, 5.0, 1.0, 2.0), 26, x, t_x, T)
    assert at_one == pytest.approx((near[0] + near[1]) / 2, rel=1e-6)

    # Homogeneous rate 0.25 a week and no dropout (b -> infinity): 0.25 t purchases.
    no_dropout = BgNbdParams(r=1e9, alpha=4e9, a=1.0, b=1e12)
    assert expected_purchases(no_dropout, 52, x, t_x, T) == pytest.approx(13.0, rel=1e-6)
    # Same dropout probability p0 = 0.1 for everyone (a, b -> infinity, a / (a + b) fixed):
    # E = P(alive) (1 / p0) [1 - ((alpha + T) / (alpha + T + p0 t))^(r + x)].
    params = BgNbdParams(r=0.5, alpha=5.0, a=1e8, b=9e8)
    limit = p_alive(params, x, t_x, T) / 0.1 * (1 - ((5 + T) / (5 + T + 0.1 * 52)) ** (0.5 + x))
    assert expected_purchases(params, 52, x, t_x, T) == pytest.approx(limit, rel=1e-6)


@pytest.mark.parametrize(("a", "b"), [(2e6, 3e6), (1e10, 4.4e11), (5e7, 1e6)])
def test_narrow_beta_rule_matches_the_general_quadrature(a, b):
    """Both Beta shapes huge (a degenerate fit): three Gauss-Hermite nodes stand in for the
    tanh-sinh rule over the Beta quantiles, to the digits the forecast keeps."""
    k = np.array([0.5, 4.4, 40.0, 400.0])
    big_b = b + np.array([0.0, 3.0, 12.0, 36.0])
    c = np.array([0.1, 1.3, 0.6, 5.0])
    general = btyd._expected_by_quadrature(a, k, big_b, c)
    assert btyd._expected_narrow_beta(a, k, big_b, c) == pytest.approx(general, rel=1e-9)


# --- regular payments: degenerate fits --------------------------------------------------------


def monthly_payers(n: int, seed: int, churn: float = 0.03):
    """x, t_x, T in weeks of gym members debited every 30.44 days from a start up to 3 years
    before as_of until they cancel (probability `churn` each month)."""
    rng = np.random.default_rng(seed)
    start_days = rng.integers(0, 1100, n)
    months = np.floor(start_days / 30.44).astype(int)
    kept = rng.geometric(churn, n) - 1 if churn > 0 else np.full(n, 10**6)
    x = np.minimum(months, kept)
    return x.astype(float), np.round(x * 30.44) / 7, start_days / 7


def test_constant_spend_for_everyone_is_degenerate():
    x, _, _ = monthly_payers(2000, seed=2)
    spend = np.where(x > 0, 49.0, np.nan)
    fit = fit_gamma_gamma(x, spend)
    assert fit.degenerate and fit.note and "49.00" in fit.note
    got = expected_avg_spend(fit, x, spend)
    assert np.isfinite(got).all()
    assert got == pytest.approx(np.full(len(x), 49.0), rel=1e-12)


def test_constant_spend_per_customer_is_degenerate():
    """Each member pays their own fixed fee every month, and the fees spread alike whatever
    the number of months: no spread within a customer, so p runs to infinity and the
    conditional mean is the member's own fee."""
    # 100 fees (inverse-Gamma quantiles, mean ~50), the same for members of 1 to 24 months.
    fees = np.round(300 / special.gammaincinv(7.0, (np.arange(100) + 0.5) / 100), 2)
    x = np.r_[np.zeros(50), np.repeat(np.arange(1.0, 25.0), 100)]
    fee = np.r_[np.full(50, 49.0), np.tile(fees, 24)]
    spend = np.where(x > 0, fee, np.nan)
    fit = fit_gamma_gamma(x, spend)
    assert fit.degenerate and fit.converged
    assert fit.params.p > btyd.BOUNDARY_SHAPE
    assert "p=" in fit.note and "own mean" in fit.note
    assert math.isfinite(fit.log_likelihood)
    got = expected_avg_spend(fit, x, spend)
    assert np.isfinite(got).all()
    assert got[x > 0] == pytest.approx(fee[x > 0], rel=1e-12)
    observed = fees.mean()
    assert fit.population_mean == pytest.approx(observed)
    assert got[x == 0] == pytest.approx(np.full(50, observed))


def test_infinite_population_mean_falls_back_to_the_observed_mean():
    rng = np.random.default_rng(4)
    x = rng.integers(1, 10, 3000).astype(float)
    nu = rng.gamma(0.6, 1 / 15.0, len(x))  # q = 0.6: E[1 / nu] is infinite
    spend = rng.gamma(6.0 * x, 1 / (nu * x))
    fit = fit_gamma_gamma(x, spend)
    assert fit.params.q <= 1
    assert fit.degenerate and "infinite" in fit.note
    assert fit.population_mean == pytest.approx(spend.mean())
    got = expected_avg_spend(fit, np.append(x, 0), np.append(spend, np.nan))
    assert np.isfinite(got).all() and (got >= 0).all()
    assert got[-1] == pytest.approx(spend.mean())
    with pytest.raises(ValueError, match="infinite"):
        expected_avg_spend(fit.params, [0], [np.nan])


def test_q_below_one_with_explicit_figures():
    fit = GammaGammaFit(
        params=GammaGammaParams(p=2.0, q=0.8, gamma=10.0),
        log_likelihood=-1.0,
        converged=True,
        starts=3,
        degenerate=True,
        note="q <= 1",
        n_customers=10,
        n_distinct=10,
        observed_mean_spend=30.0,
    )
    got = expected_avg_spend(fit, [0, 3, 1], [np.nan, 20.0, 50.0])
    # x = 3: (2 * 10 + 2 * 3 * 20) / (2 * 3 + 0.8 - 1); x = 1: 2 + 0.8 - 1 > 0 as well.
    assert got == pytest.approx([30.0, 140 / 5.8, (20 + 100) / 1.8])


def test_regular_monthly_payers_give_finite_predictions():
    x, t_x, T = monthly_payers(3000, seed=5)
    fit = fit_bgnbd(x, t_x, T)
    # No spread in the rate: r (and alpha) run off to infinity; reported, not hidden.
    assert fit.degenerate and fit.note and "BG/NBD" in fit.note and "r=" in fit.note
    alive = p_alive(fit, x, t_x, T)
    ahead = expected_purchases(fit, 52, x, t_x, T)
    assert np.isfinite(alive).all() and np.isfinite(ahead).all()
    assert ((alive >= 0) & (alive <= 1)).all()
    assert ((ahead >= 0) & (ahead <= 52 / (30.44 / 7) * 1.05)).all()
    # A member debited this month is more likely active than one last debited a year ago.
    recent = (T - t_x < 4) & (x >= 6)
    lapsed = (T - t_x > 52) & (x >= 6)
    assert alive[recent].min() > alive[lapsed].max()


def test_members_who_never_leave():
    x, t_x, T = monthly_payers(1500, seed=6, churn=0.0)
    fit = fit_bgnbd(x, t_x, T)
    assert fit.degenerate and fit.note
    ahead = expected_purchases(fit, 52, x, t_x, T)
    assert np.isfinite(ahead).all()
    # Nobody drops out, everyone at the same rate: the debits per week of all members
    # together (about one per 30.44 days), for everyone.
    assert ahead == pytest.approx(np.full(len(x), 52 * x.sum() / T.sum()), rel=1e-4)
    assert ahead == pytest.approx(np.full(len(x), 52 * 7 / 30.44), rel=0.05)
    assert p_alive(fit, x, t_x, T) == pytest.approx(np.ones(len(x)), abs=1e-6)


# --- not enough data, bad input ---------------------------------------------------------------


def test_no_repeat_buyers_is_not_enough_data():
    T = np.linspace(5, 50, 100)
    with pytest.raises(NotEnoughData, match="got 0 repeat buyers among 100 customers"):
        fit_bgnbd(np.zeros(100), np.zeros(100), T)
    x = np.zeros(100)
    x[:1] = 1
    with pytest.raises(NotEnoughData, match="got 1 repeat buyers"):
        fit_bgnbd(x, np.where(x > 0, 1.0, 0.0), T)
    with pytest.raises(NotEnoughData, match="got 0 such repeat buyers"):
        fit_gamma_gamma(np.ones(50), np.zeros(50))  # repeat purchases, but all free
    assert issubclass(NotEnoughData, ValueError)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="t_x <= T"):
        fit_bgnbd(np.ones(20), np.full(20, 5.0), np.full(20, 4.0))
    with pytest.raises(ValueError, match="finite"):
        fit_bgnbd(np.r_[np.ones(20), np.nan], np.ones(21), np.full(21, 5.0))
    with pytest.raises(ValueError, match="positive"):
        p_alive(BgNbdParams(0.0, 1.0, 1.0, 1.0), [1], [1], [2])
