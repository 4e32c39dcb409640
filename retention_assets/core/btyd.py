"""BG/NBD and Gamma-Gamma: maximum-likelihood fits and their closed-form predictions.

Pure numpy / scipy functions of per-customer arrays; nothing here reads files or databases.

Models
------
BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way")
    While active, a customer purchases as a Poisson process with rate lambda ~ Gamma(r, alpha)
    (alpha a rate, in the time unit of t_x and T); after each purchase they drop out for good
    with probability p ~ Beta(a, b). Data per customer: x repeat purchases, the time t_x of the
    last one and the age T, both counted from the first purchase.
Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV: Using iso-value curves")
    The spends of a customer's x repeat purchases are Gamma(p, nu); nu ~ Gamma(q, gamma) across
    customers. Data per customer: x and the mean spend of those x purchases.

Fits work in log-parameters on the distinct data rows weighted by their counts, from several
starts, and say when they did not converge or ran to a boundary of the parameter space, which
regular payment data (fixed monthly fees) does. Predictions then use the formulas' limits, so
they stay finite.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special
from threadpoolctl import threadpool_limits

FloatArray = NDArray[np.float64]

# Fewer customers with x > 0 than this: no fit at all. Small, because a failed fit stops the
# whole snapshot from publishing; few repeat buyers give a fit flagged as degenerate instead.
MIN_REPEAT_BUYERS = 2
MIN_DISTINCT_ROWS = 2
# A Gamma or Beta shape past this means no heterogeneity left to estimate (coefficient of
# variation below 1%): the fit ran to a boundary of the parameter space.
BOUNDARY_SHAPE = 1e4
BOUNDARY_SMALL = 1e-4  # a shape below this: the other boundary
_LOG_BOUND = math.log(1e10)  # bounds of every search coordinate (log-parameters, see _maximize)
_AT_BOUND = 1e-3  # a coordinate this close to its bound: the search stopped there
_GRADIENT_TOL = 1e-5  # largest |gradient| of the mean log-likelihood (search coordinates)
# The tanh-sinh rule that backs up hyp2f1 in expected_purchases: 2 n + 1 nodes on [-span, span]
# (u = expit(pi sinh s) reaches 1e-17 at the ends).
_TANH_SINH_NODES = 60
_TANH_SINH_SPAN = 3.2
_HYP2F1_REL_TOL = 1e-8  # estimated relative error of the hyp2f1 route above this: quadrature
# hyp2f1 loses digits (1e-6 relative) once its parameters reach ~1e6: quadrature beyond 1e5.
_HYP2F1_MAX_PARAMETER = 1e5
# Both Beta shapes past this (sd / mean of p below 1e-3, skewness below 2e-3): a 3-point
# Gauss-Hermite rule on the Beta's normal approximation is exact to ~1e-11 relative.
_NARROW_BETA = 1e6


class NotEnoughData(ValueError):
    """Too few repeat buyers (or distinct rows) to fit a model at all."""


@dataclass(frozen=True)
class BgNbdParams:
    """lambda ~ Gamma(shape r, rate alpha); dropout probability p ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True)
class GammaGammaParams:
    """Spend per purchase ~ Gamma(p, nu); nu ~ Gamma(shape q, rate gamma)."""

    p: float
    q: float
    gamma: float


@dataclass(frozen=True)
class BgNbdFit:
    """A BG/NBD maximum-likelihood fit and how far to trust it.

    `converged`: the gradient of the mean log-likelihood (components held by a bound aside)
    is ~0 at the estimate (L-BFGS-B's own flag is often False at a flat optimum, where its line
    search gives up on rounding; the note reports it); `degenerate`: the estimate lies on a
    boundary of the parameter space; `note` says which, with the figures (None when converged
    and not degenerate).
    """

    params: BgNbdParams
    log_likelihood: float
    converged: bool
    starts: int
    degenerate: bool
    note: str | None
    n_customers: int
    n_distinct: int


@dataclass(frozen=True)
class GammaGammaFit:
    """A Gamma-Gamma maximum-likelihood fit; see BgNbdFit. `observed_mean_spend` is the mean
    avg_spend of the customers it was fitted on."""

    params: GammaGammaParams
    log_likelihood: float
    converged: bool
    starts: int
    degenerate: bool
    note: str | None
    n_customers: int
    n_distinct: int
    observed_mean_spend: float

    @property
    def population_mean(self) -> float:
        """Expected spend per purchase of a customer without repeat purchases: p*gamma/(q-1),
        or the observed mean when the fit is degenerate (q <= 1 makes the model's infinite)."""
        p, q, gamma = self.params.p, self.params.q, self.params.gamma
        if self.degenerate or q <= 1:
            return self.observed_mean_spend
        return p * gamma / (q - 1)


# --- log-likelihoods -------------------------------------------------------------------------


def bgnbd_log_likelihood(
    params: BgNbdParams | BgNbdFit,
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    weights: ArrayLike | None = None,
) -> FloatArray:
    """BG/NBD log-likelihood of each customer (row), times its weight.

    Parameters
    ----------
    params
        r, alpha, a, b (or a fit holding them).
    x, t_x, T
        Repeat purchases, time of the last purchase and age, both from the first purchase.
    weights
        Customers each row stands for (default 1): fits use the distinct rows.

    Returns
    -------
    weights * log L(r, alpha, a, b | x, t_x, T) per row; `.sum()` is the total.
    """
    r, alpha, a, b = _bgnbd_tuple(params)
    x, t_x, T = _as_float(x, t_x, T)
    w = _weights(weights, x)
    return w * _bgnbd_ll_terms(r, alpha, a, b, x, t_x, T)[0]


def gamma_gamma_log_likelihood(
    params: GammaGammaParams | GammaGammaFit,
    x: ArrayLike,
    avg_spend: ArrayLike,
    weights: ArrayLike | None = None,
) -> FloatArray:
    """Gamma-Gamma log-likelihood of each customer's mean spend, times its weight.

    Parameters
    ----------
    params
        p, q, gamma (or a fit holding them).
    x, avg_spend
        Repeat purchases (> 0) and their mean spend (> 0).
    weights
        Customers each row stands for (default 1).

    Returns
    -------
    weights * log f(avg_spend | p, q, gamma, x) per row (a density in avg_spend).
    """
    p, q, gamma = _gg_tuple(params)
    x, m = _as_float(x, avg_spend)
    w = _weights(weights, x)
    return w * _gg_ll_terms(p, q, gamma, x, m)[0]


# --- predictions -----------------------------------------------------------------------------


def p_alive(
    params: BgNbdParams | BgNbdFit, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> FloatArray:
    """Probability that each customer is still active at T.

    Parameters
    ----------
    params
        BG/NBD parameters (or fit).
    x, t_x, T
        As in `bgnbd_log_likelihood`.

    Returns
    -------
    1 / (1 + [x > 0] a / (b + x - 1) ((alpha + T) / (alpha + t_x))^(r + x)), computed in logs
    so that extreme parameters give 0 or 1, never NaN. Customers with x = 0 are active (1):
    in the BG/NBD a customer can only drop out right after a purchase.
    """
    r, alpha, a, b = _bgnbd_tuple(params)
    x, t_x, T = _as_float(x, t_x, T)
    return _p_alive(r, alpha, a, b, x, t_x, T)


def expected_purchases(
    params: BgNbdParams | BgNbdFit,
    t: ArrayLike,
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
) -> FloatArray:
    """Expected purchases of each customer in (T, T + t], given their history.

    Parameters
    ----------
    params
        BG/NBD parameters (or fit).
    t
        Length of the period ahead, in the time unit of T (scalar or per customer).
    x, t_x, T
        As in `bgnbd_log_likelihood`.

    Returns
    -------
    p_alive x (a + b + x - 1) / (a - 1) x [1 - ((alpha + T) / (alpha + T + t))^(r + x)
    2F1(r + x, b + x; a + b + x - 1; t / (alpha + T + t))] (FHL 2005, eq. 10). Where that
    difference loses its digits (a near 1, huge parameters after a degenerate fit) or hyp2f1
    fails, the same expectation E[(1 - (1 + p t / (alpha + T))^-(r + x)) / p] over
    p ~ Beta(a, b + x) is integrated numerically instead: always finite, never negative.
    """
    r, alpha, a, b = _bgnbd_tuple(params)
    t_arr, x, t_x, T = np.broadcast_arrays(*_as_float(t, x, t_x, T))
    if (t_arr < 0).any():
        raise ValueError("expected_purchases: t must not be negative")
    alive = _p_alive(r, alpha, a, b, x, t_x, T)
    return alive * _expected_if_alive(r, alpha, a, b, t_arr, x, T)


def expected_avg_spend(
    params: GammaGammaParams | GammaGammaFit,
    x: ArrayLike,
    avg_spend: ArrayLike,
    population_mean: float | None = None,
) -> FloatArray:
    """Expected spend per future purchase of each customer (Gamma-Gamma conditional mean).

    Parameters
    ----------
    params
        Gamma-Gamma parameters, or a fit (then `population_mean` defaults to its own).
    x, avg_spend
        Repeat purchases and their mean spend (ignored, may be NaN, when x = 0; a negative
        mean, refunds, counts as 0).
    population_mean
        Used for x = 0 (and NaN avg_spend); default p * gamma / (q - 1).

    Returns
    -------
    (p * gamma + p * x * avg_spend) / (p * x + q - 1): the population mean shrunk towards the
    customer's own mean as x grows. When p is at its boundary (spend does not vary within a
    customer) that is the customer's own mean; where p * x + q - 1 <= 0 (q < 1) too.
    """
    if isinstance(params, GammaGammaFit):
        if population_mean is None:
            population_mean = params.population_mean
        params = params.params
    p, q, gamma = params.p, params.q, params.gamma
    if population_mean is None:
        if q <= 1:
            raise ValueError(
                f"Gamma-Gamma q = {q:.4g} <= 1: the population mean spend is infinite; "
                "pass population_mean (e.g. the observed mean)"
            )
        population_mean = p * gamma / (q - 1)
    if not math.isfinite(population_mean):
        raise ValueError(f"population_mean must be finite, got {population_mean}")
    x, m = np.broadcast_arrays(*_as_float(x, avg_spend))
    own = np.isfinite(m) & (x > 0)
    m = np.where(own, np.maximum(m, 0.0), 0.0)
    denominator = p * x + q - 1
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        shrunk = (p * gamma + p * x * m) / denominator
    use_own = (p > BOUNDARY_SHAPE) | (denominator <= 0) | ~np.isfinite(shrunk)
    value = np.where(use_own, m, shrunk)
    return np.where(own, value, float(population_mean))


# --- fits ------------------------------------------------------------------------------------


def fit_bgnbd(x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> BgNbdFit:
    """Maximum-likelihood BG/NBD parameters.

    Parameters
    ----------
    x, t_x, T
        One entry per customer: repeat purchases, time of the last purchase and age (both
        from the first purchase, in the time unit wanted for alpha).

    Returns
    -------
    The best of several L-BFGS-B runs (analytic gradient, log-parameters, the distinct rows
    weighted by their counts; Nelder-Mead then L-BFGS-B again when the best run stops with a
    gradient), its log-likelihood over all customers and whether it converged or ran to a
    boundary of the parameter space.

    Raises
    ------
    NotEnoughData
        Fewer than MIN_REPEAT_BUYERS customers with x > 0, or fewer than MIN_DISTINCT_ROWS
        distinct rows.
    ValueError
        Negative or non-finite values, or t_x > T.
    """
    x, t_x, T = _as_float(x, t_x, T)
    _check_same_length(x, t_x, T)
    if not (np.isfinite(x).all() and np.isfinite(t_x).all() and np.isfinite(T).all()):
        raise ValueError("fit_bgnbd: x, t_x and T must be finite")
    if (x < 0).any() or (t_x < 0).any() or (t_x > T * (1 + 1e-12)).any():
        raise ValueError("fit_bgnbd: need x >= 0 and 0 <= t_x <= T")
    repeat = int((x > 0).sum())
    rows, w = _distinct(np.column_stack([x, np.where(x > 0, t_x, 0.0), T]))
    if repeat < MIN_REPEAT_BUYERS or len(rows) < MIN_DISTINCT_ROWS:
        raise NotEnoughData(
            f"BG/NBD needs at least {MIN_REPEAT_BUYERS} customers with a repeat purchase "
            f"and {MIN_DISTINCT_ROWS} distinct (x, t_x, T) rows; got {repeat:,} repeat buyers "
            f"among {len(x):,} customers, {len(rows):,} distinct rows"
        )
    dx, dtx, dT = rows.T
    by_x, by_tx, by_T = (np.unique(v, return_inverse=True) for v in (dx, dtx, dT))
    share = w / w.sum()

    def mean_ll(theta: FloatArray) -> tuple[float, FloatArray]:
        ll, grad = _bgnbd_ll_terms(
            *theta, dx, dtx, dT, gradient=True, by_x=by_x, by_tx=by_tx, by_T=by_T
        )
        return float(share @ ll), grad @ share

    rate = float(w @ dx) / max(float(w @ dT), 1e-12) or 1.0
    starts = [
        (r0, r0 / rate, a0, b0)
        for r0, a0, b0 in ((1.0, 1.0, 1.0), (0.3, 0.8, 3.0), (5.0, 2.0, 20.0), (0.1, 0.3, 0.5))
    ]
    # Search coordinates: log r, log(r / alpha), log a, log(a / b). Regular purchases send
    # r, alpha -> infinity at a fixed mean rate r / alpha, and a, b -> infinity at a fixed mean
    # dropout a / (a + b): each such ridge runs along one coordinate.
    to_search = np.array([[1, 0, 0, 0], [1, -1, 0, 0], [0, 0, 1, 0], [0, 0, 1, -1]], float)
    best = _maximize(mean_ll, starts, to_search)
    r, alpha, a, b = best.params
    figures = f"r={r:.4g}, alpha={alpha:.4g}, a={a:.4g}, b={b:.4g}"
    problems = _boundary(best, dict(r=r, a=a, b=b))
    note = None
    if problems:
        limits = []
        if r > BOUNDARY_SHAPE:
            limits.append(f"every customer buys at the same rate r/alpha={r / alpha:.4g}")
        if a + b > BOUNDARY_SHAPE or a < BOUNDARY_SMALL:
            limits.append(f"every customer drops out with probability a/(a+b)={a / (a + b):.3g}")
        note = (
            f"BG/NBD ran to a boundary of its parameter space ({figures}: "
            f"{'; '.join(problems)}), as very regular purchases do; predictions follow the "
            f"formulas' limits" + (f" ({'; '.join(limits)})" if limits else "")
        )
    note = _unconverged_note("BG/NBD", best, figures, note)
    return BgNbdFit(
        params=BgNbdParams(r, alpha, a, b),
        log_likelihood=best.mean_ll * float(w.sum()),
        converged=best.converged,
        starts=best.starts,
        degenerate=bool(problems),
        note=note,
        n_customers=len(x),
        n_distinct=len(rows),
    )


def fit_gamma_gamma(x: ArrayLike, avg_spend: ArrayLike) -> GammaGammaFit:
    """Maximum-likelihood Gamma-Gamma parameters.

    Parameters
    ----------
    x, avg_spend
        One entry per customer; only those with x > 0 and avg_spend > 0 are used (the others
        carry no information on spend per repeat purchase).

    Returns
    -------
    The best of several fits (as in `fit_bgnbd`). Spend that never varies within a customer
    sends p to infinity and gamma to 0 (p * gamma finite): reported as degenerate, with the
    figures; so is q <= 1 (infinite population mean).

    Raises
    ------
    NotEnoughData
        Fewer than MIN_REPEAT_BUYERS usable customers or MIN_DISTINCT_ROWS distinct rows.
    """
    x, m = _as_float(x, avg_spend)
    _check_same_length(x, m)
    used = (x > 0) & np.isfinite(m) & (m > 0)
    x, m = x[used], m[used]
    rows, w = _distinct(np.column_stack([x, m]))
    if len(x) < MIN_REPEAT_BUYERS or len(rows) < MIN_DISTINCT_ROWS:
        raise NotEnoughData(
            f"Gamma-Gamma needs at least {MIN_REPEAT_BUYERS} customers with a repeat purchase "
            f"and a positive mean repeat spend, in {MIN_DISTINCT_ROWS} distinct (x, spend) "
            f"rows; got {len(x):,} such repeat buyers, {len(rows):,} distinct rows"
        )
    dx, dm = rows.T
    share = w / w.sum()
    observed = float(m.mean())
    if np.ptp(dm) <= 1e-9 * observed:  # the same amount, up to rounding in the averages
        return _single_spend(observed, dx, w)

    def mean_ll(theta: FloatArray) -> tuple[float, FloatArray]:
        ll, grad = _gg_ll_terms(*theta, dx, dm, gradient=True)
        return float(share @ ll), grad @ share

    # Each start puts the population mean p * gamma / (q - 1) at the observed mean.
    starts = [
        (p0, q0, observed * (q0 - 1) / p0) for p0, q0 in ((1.0, 2.0), (5.0, 4.0), (20.0, 10.0))
    ]
    # Search coordinates: log p, log q, log(p * gamma / q). Constant spend per customer sends
    # p -> infinity at a fixed p * gamma; the same spend for everyone sends q there too.
    to_search = np.array([[1, 0, 0], [0, 1, 0], [1, -1, 1]], float)
    best = _maximize(mean_ll, starts, to_search)
    p, q, gamma = best.params
    figures = f"p={p:.4g}, q={q:.4g}, gamma={gamma:.4g}, p*gamma={p * gamma:.4g}"
    problems = _boundary(best, dict(p=p, q=q))
    if q <= 1:
        problems.append(f"q={q:.4g} <= 1 makes the population mean spend infinite")
    note = None
    if problems:
        constant = p > BOUNDARY_SHAPE
        note = (
            f"Gamma-Gamma ran to a boundary of its parameter space ({figures}: "
            f"{'; '.join(problems)})"
            + (": spend hardly varies within a customer" if constant else "")
            + "; expected_avg_spend uses "
            + ("each customer's own mean spend" if constant else "the conditional mean")
            + f" (x > 0) and the observed mean {observed:.2f} (x = 0)"
        )
    note = _unconverged_note("Gamma-Gamma", best, figures, note)
    return GammaGammaFit(
        params=GammaGammaParams(p, q, gamma),
        log_likelihood=best.mean_ll * float(w.sum()),
        converged=best.converged,
        starts=best.starts,
        degenerate=bool(problems),
        note=note,
        n_customers=len(x),
        n_distinct=len(rows),
        observed_mean_spend=observed,
    )


# --- internals -------------------------------------------------------------------------------


def _single_spend(spend: float, x: FloatArray, w: FloatArray) -> GammaGammaFit:
    """Every repeat buyer has the same mean spend: the likelihood grows without bound as
    p, q -> infinity (at p * gamma / q = spend), so report that limit, at the search bound,
    without searching."""
    p = q = math.exp(_LOG_BOUND)
    gamma = spend * (q - 1) / p
    params = GammaGammaParams(p, q, gamma)
    ll = float(w @ _gg_ll_terms(p, q, gamma, x, np.full(len(x), spend))[0])
    note = (
        f"Gamma-Gamma has no maximum-likelihood estimate: all {int(w.sum()):,} repeat buyers "
        f"have the same mean spend {spend:.2f}, so p and q run to infinity (reported at "
        f"p=q={p:.4g}, gamma={gamma:.4g}); expected_avg_spend is {spend:.2f} for every customer"
    )
    return GammaGammaFit(
        params=params,
        log_likelihood=ll,
        converged=True,
        starts=0,
        degenerate=True,
        note=note,
        n_customers=int(w.sum()),
        n_distinct=len(x),
        observed_mean_spend=spend,
    )


def _bgnbd_tuple(params: BgNbdParams | BgNbdFit) -> tuple[float, float, float, float]:
    if isinstance(params, BgNbdFit):
        params = params.params
    values = (params.r, params.alpha, params.a, params.b)
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"BG/NBD parameters must be positive and finite: {params}")
    return values


def _gg_tuple(params: GammaGammaParams | GammaGammaFit) -> tuple[float, float, float]:
    if isinstance(params, GammaGammaFit):
        params = params.params
    values = (params.p, params.q, params.gamma)
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"Gamma-Gamma parameters must be positive and finite: {params}")
    return values


def _as_float(*arrays: ArrayLike) -> list[FloatArray]:
    return [np.asarray(a, dtype="float64") for a in arrays]


def _weights(weights: ArrayLike | None, like: FloatArray) -> FloatArray:
    return np.ones_like(like) if weights is None else np.asarray(weights, dtype="float64")


def _check_same_length(*arrays: FloatArray) -> None:
    if any(a.ndim != 1 for a in arrays) or len({len(a) for a in arrays}) != 1:
        raise ValueError("one value per customer expected: 1-D arrays of the same length")


def _distinct(rows: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The distinct rows and how many customers each stands for."""
    if len(rows) == 0:
        return rows, np.zeros(0)
    unique, counts, _ = distinct_rows(rows)
    return unique, counts.astype("float64")


def distinct_rows(rows: FloatArray) -> tuple[FloatArray, NDArray[np.intp], NDArray[np.intp]]:
    """np.unique(rows, axis=0, return_counts=True, return_inverse=True) of finite rows: the
    same arrays in the same (lexicographic) order, several times faster. Each column's
    values become integer codes, combined into one int64 key per row, and the keys are
    sorted instead of the rows (np.unique sorts them as records, with a generic comparison).
    Returns the distinct rows, how many rows each stands for, and each row's distinct row."""
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.size == 0:
        unique, inverse, counts = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
        return unique, counts, inverse.reshape(-1)
    values, codes = zip(*(np.unique(column, return_inverse=True) for column in rows.T), strict=True)
    sizes = [len(v) for v in values]
    if math.prod(sizes) >= 2**62:  # the key would overflow: sort the rows themselves
        unique, inverse, counts = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
        return unique, counts, inverse.reshape(-1)
    key = np.zeros(len(rows), dtype=np.int64)
    for code, size in zip(codes, sizes, strict=True):
        key = key * size + code
    unique_keys, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    columns = []
    for column_values, size in zip(values[::-1], sizes[::-1], strict=True):
        unique_keys, code = np.divmod(unique_keys, size)
        columns.append(column_values[code])
    unique = np.column_stack(columns[::-1]).astype(rows.dtype, copy=False)
    return unique, counts, inverse.reshape(-1)


def _lgamma_ratio(z: FloatArray | float, d: FloatArray | float) -> FloatArray:
    """log Gamma(z + d) - log Gamma(z) for z, d > 0 without the cancellation of the plain
    difference when z is huge (Stirling's series, error < 1e-30 for z >= 1e6)."""
    z, d = np.broadcast_arrays(np.asarray(z, dtype="float64"), np.asarray(d, dtype="float64"))
    out = np.empty(z.shape)
    small = z < 1e6
    out[small] = special.gammaln(z[small] + d[small]) - special.gammaln(z[small])
    zb, db = z[~small], d[~small]
    zd = zb + db
    out[~small] = (
        (zb - 0.5) * np.log1p(db / zb)
        + db * np.log(zd)
        - db
        + (1.0 / zd - 1.0 / zb) / 12.0
        - (1.0 / zd**3 - 1.0 / zb**3) / 360.0
    )
    return out


def _digamma_diff(z: FloatArray | float, d: FloatArray | float) -> FloatArray:
    """digamma(z + d) - digamma(z) for z, d > 0, keeping its digits when z is huge (the
    gradient in log z multiplies it by z): the asymptotic series past z = 1e6."""
    z, d = np.broadcast_arrays(np.asarray(z, dtype="float64"), np.asarray(d, dtype="float64"))
    out = np.empty(z.shape)
    small = z < 1e6
    out[small] = special.digamma(z[small] + d[small]) - special.digamma(z[small])
    zb, db = z[~small], d[~small]
    zd = zb + db
    out[~small] = np.log1p(db / zb) + db / (2 * zb * zd) + db * (zb + zd) / (12 * zb**2 * zd**2)
    return out


def _bgnbd_ll_terms(
    r: float,
    alpha: float,
    a: float,
    b: float,
    x: FloatArray,
    t_x: FloatArray,
    T: FloatArray,
    gradient: bool = False,
    by_x: tuple[FloatArray, NDArray[np.intp]] | None = None,
    by_tx: tuple[FloatArray, NDArray[np.intp]] | None = None,
    by_T: tuple[FloatArray, NDArray[np.intp]] | None = None,
) -> tuple[FloatArray, FloatArray | None]:
    """Per-row log-likelihood and, optionally, its gradient in (r, alpha, a, b) (4 x rows).

    log L = log[Gamma(r + x) / Gamma(r)] + log[B(a, b + x) / B(a, b)]
            + log[(alpha / (alpha + T))^r (alpha + T)^-x
                  + [x > 0] a / (b + x - 1) (alpha / (alpha + t_x))^r (alpha + t_x)^-x],
    the powers of alpha written with log1p so that huge r and alpha keep their digits.
    `by_x`, `by_tx`, `by_T` (np.unique(x, return_inverse=True), ...) let the terms in x, t_x
    or T alone be computed once per distinct value (the same numbers, elementwise, as per
    row: fits evaluate thousands of rows that share a few hundred ages)."""
    ux, inverse = by_x if by_x is not None else np.unique(x, return_inverse=True)
    utx, at_tx = by_tx if by_tx is not None else (t_x, slice(None))
    uT, at_T = by_T if by_T is not None else (T, slice(None))
    repeat = x > 0
    ub_x = np.where(ux > 0, b + ux - 1, 1.0)
    b_x = ub_x[inverse]
    log1p_T = np.log1p(uT / alpha)[at_T]
    log1p_tx = np.log1p(utx / alpha)[at_tx]
    log_T = -r * log1p_T - x * np.log(alpha + uT)[at_T]
    log_tx = np.where(
        repeat,
        math.log(a) - np.log(ub_x)[inverse] - r * log1p_tx - x * np.log(alpha + utx)[at_tx],
        -np.inf,
    )
    both = np.logaddexp(log_T, log_tx)
    in_x = _lgamma_ratio(r, ux) + _lgamma_ratio(b, ux) - _lgamma_ratio(a + b, ux)
    ll = in_x[inverse] + both
    if not gradient:
        return ll, None
    w_T = np.exp(log_T - both)
    w_tx = np.exp(log_tx - both)  # 0 where x = 0
    psi_ab = _digamma_diff(a + b, ux)
    psi_r = _digamma_diff(r, ux)[inverse]
    psi_a = -psi_ab[inverse]
    psi_b = (_digamma_diff(b, ux) - psi_ab)[inverse]
    d_r = psi_r - w_T * log1p_T - w_tx * log1p_tx
    # r / alpha - (r + x) / (alpha + T), without the difference of two near-equal rates.
    d_alpha = (
        w_T * (r * T - x * alpha) / (alpha * (alpha + uT))[at_T]
        + w_tx * (r * t_x - x * alpha) / (alpha * (alpha + utx))[at_tx]
    )
    d_a = psi_a + w_tx / a
    d_b = psi_b - w_tx / b_x
    return ll, np.vstack([d_r, d_alpha, d_a, d_b])


def _gg_ll_terms(
    p: float,
    q: float,
    gamma: float,
    x: FloatArray,
    m: FloatArray,
    gradient: bool = False,
) -> tuple[FloatArray, FloatArray | None]:
    """Per-row Gamma-Gamma log-likelihood and, optionally, its gradient in (p, q, gamma).

    log f = log[Gamma(px + q) / Gamma(px)] - log Gamma(q) + q log gamma + (px - 1) log m
            + px log x - (px + q) log(gamma + m x),
    regrouped with log1p so that p -> infinity, gamma -> 0 (constant spend) stays accurate."""
    px = p * x
    mx = m * x
    ll = (
        _lgamma_ratio(px, q)
        - special.gammaln(q)
        - px * np.log1p(gamma / mx)
        - q * np.log1p(mx / gamma)
        - np.log(m)
    )
    if not gradient:
        return ll, None
    d_p = x * (_digamma_diff(px, q) - np.log1p(gamma / mx))
    d_q = _digamma_diff(q, px) - np.log1p(mx / gamma)
    d_gamma = q / gamma - (px + q) / (gamma + mx)
    return ll, np.vstack([d_p, d_q, d_gamma])


@dataclass(frozen=True)
class _Optimum:
    params: tuple[float, ...]
    mean_ll: float  # mean log-likelihood per customer
    success: bool  # the optimizer's own verdict on the best run
    gradient: float  # largest |gradient| component not held by a bound
    at_bound: bool  # a search coordinate stopped at its bound
    starts: int

    @property
    def converged(self) -> bool:
        return self.gradient <= _GRADIENT_TOL


def _maximize(
    mean_ll: Callable[[FloatArray], tuple[float, FloatArray]],
    starts: Sequence[Sequence[float]],
    to_search: FloatArray,
) -> _Optimum:
    """Maximize the mean log-likelihood from each start; keep the best.

    `mean_ll(params)` returns the mean log-likelihood and its gradient in the parameters;
    the search runs over phi = to_search @ log(params) inside +-_LOG_BOUND, so positivity
    needs no constraint and a ridge to a boundary is one coordinate running to its bound."""
    from_search = np.linalg.inv(to_search)
    k = len(to_search)
    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * k

    def objective(phi: FloatArray) -> tuple[float, FloatArray]:
        theta = np.exp(from_search @ phi)
        with np.errstate(all="ignore"):
            value, grad = mean_ll(theta)
            grad_phi = from_search.T @ (grad * theta)
        if not (np.isfinite(value) and np.isfinite(grad_phi).all()):
            return 1e100, np.zeros(k)
        return -value, -grad_phi

    def lbfgsb(phi0: FloatArray) -> optimize.OptimizeResult:
        return optimize.minimize(
            objective,
            np.clip(phi0, -_LOG_BOUND, _LOG_BOUND),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-10},
        )

    # The likelihoods are dot products over at most a few hundred thousand rows: a second
    # BLAS thread costs more in hand-offs than it saves (the fit takes 2.5x as long on 2 cores).
    with threadpool_limits(1, user_api="blas"):
        runs = [lbfgsb(to_search @ np.log(np.asarray(s, dtype="float64"))) for s in starts]
        best = min(runs, key=lambda res: res.fun)
        if _projected_gradient(objective, best.x) > _GRADIENT_TOL:
            # A line search that gave up on a curved ridge: a simplex walk, then the gradient again.
            simplex = optimize.minimize(
                lambda phi: objective(phi)[0],
                best.x,
                method="Nelder-Mead",
                bounds=bounds,
                options={"maxiter": 300 * k, "xatol": 1e-8, "fatol": 1e-13, "adaptive": True},
            )
            again = lbfgsb(simplex.x)
            if again.fun <= best.fun:
                best = again
    phi = np.asarray(best.x)
    return _Optimum(
        params=tuple(float(v) for v in np.exp(from_search @ phi)),
        mean_ll=-float(best.fun),
        success=bool(best.success),
        gradient=_projected_gradient(objective, phi),
        at_bound=bool((np.abs(phi) > _LOG_BOUND - _AT_BOUND).any()),
        starts=len(starts),
    )


def _projected_gradient(
    objective: Callable[[FloatArray], tuple[float, FloatArray]], phi: FloatArray
) -> float:
    """Largest gradient component not held by a bound (minimization: pushing outwards)."""
    value, grad = objective(phi)
    if value >= 1e100:
        return math.inf
    grad = grad.copy()
    grad[(phi <= -_LOG_BOUND + _AT_BOUND) & (grad > 0)] = 0.0
    grad[(phi >= _LOG_BOUND - _AT_BOUND) & (grad < 0)] = 0.0
    return float(np.abs(grad).max())


def _boundary(best: _Optimum, shapes: dict[str, float]) -> list[str]:
    """Why the estimate lies on a boundary of the parameter space (empty: it does not)."""
    problems = []
    for name, value in shapes.items():
        if value > BOUNDARY_SHAPE:
            problems.append(f"{name} > {BOUNDARY_SHAPE:.0e}")
        elif value < BOUNDARY_SMALL:
            problems.append(f"{name} < {BOUNDARY_SMALL:.0e}")
    if best.at_bound:
        problems.append("the search stopped at its bound")
    return problems


def _unconverged_note(model: str, best: _Optimum, figures: str, note: str | None) -> str | None:
    if best.converged:
        return note
    text = (
        f"{model} did not converge ({figures}; mean log-likelihood {best.mean_ll:.6g}, "
        f"largest gradient {best.gradient:.2g}, optimizer "
        f"{'succeeded' if best.success else 'failed'}, best of {best.starts} starts)"
    )
    return f"{text}; {note}" if note else text


def _p_alive(
    r: float, alpha: float, a: float, b: float, x: FloatArray, t_x: FloatArray, T: FloatArray
) -> FloatArray:
    repeat = x > 0
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        log_odds_dead = (
            math.log(a)
            - np.log(np.where(repeat, b + x - 1, 1.0))
            + (r + x) * np.log1p((T - t_x) / (alpha + t_x))
        )
    return np.where(repeat, special.expit(-log_odds_dead), 1.0)


def _expected_if_alive(
    r: float,
    alpha: float,
    a: float,
    b: float,
    t: FloatArray,
    x: FloatArray,
    T: FloatArray,
) -> FloatArray:
    """E[purchases in (T, T + t] | alive at T, x, T]; lambda | data ~ Gamma(r + x, alpha + T),
    p | data ~ Beta(a, b + x)."""
    out = np.zeros(t.shape)
    todo = t > 0
    if not todo.any():
        return out
    k, big_b, c = r + x[todo], b + x[todo], t[todo] / (alpha + T[todo])
    upper = k * c  # no dropout at all
    lower = -np.expm1(-k * np.log1p(c))  # dropout right after the next purchase
    # Parameters this large send a row to the quadrature whatever hyp2f1 gives: not computed.
    bad = (np.maximum(k, big_b) > _HYP2F1_MAX_PARAMETER) | (a > _HYP2F1_MAX_PARAMETER)
    value = np.full(len(k), np.nan)
    rest = ~bad
    if rest.any():
        k_, b_, c_ = k[rest], big_b[rest], c[rest]
        z = c_ / (1.0 + c_)
        with np.errstate(all="ignore"):
            h = special.hyp2f1(k_, b_, a + b_ - 1.0, z)
            log_term = k_ * np.log1p(-z) + np.log(h)
            v = (a + b_ - 1.0) / (a - 1.0) * -np.expm1(log_term)
            # Digits left in 1 - term: the rounding of log_term against its size.
            rel_error = (
                1e-15 * (np.abs(k_ * np.log1p(-z)) + np.abs(np.log(h)) + 1.0) / np.abs(log_term)
            )
        value[rest] = v
        bad[rest] = (
            ~np.isfinite(v)
            | ~(rel_error < _HYP2F1_REL_TOL)
            | (v > upper[rest] * (1 + 1e-9))
            | (v < lower[rest] * (1 - 1e-9))
        )
    narrow = bad & (np.minimum(a, big_b) > _NARROW_BETA)
    if narrow.any():
        value[narrow] = _expected_narrow_beta(a, k[narrow], big_b[narrow], c[narrow])
    bad &= ~narrow
    if bad.any():
        value[bad] = _expected_by_quadrature(a, k[bad], big_b[bad], c[bad])
    out[todo] = np.clip(value, lower, upper)
    return out


def _expected_narrow_beta(a: float, k: FloatArray, big_b: FloatArray, c: FloatArray) -> FloatArray:
    """E[(1 - (1 + p c)^-k) / p] for p ~ Beta(a, big_b) with both shapes huge (a degenerate
    fit: every customer drops out with the same probability): p hardly varies, so three
    Gauss-Hermite nodes on its normal approximation suffice, where the general rule would
    invert the Beta CDF at 242 nodes per shape."""
    total = a + big_b
    mean = a / total
    spread = np.sqrt(3.0 * mean * (big_b / total) / (total + 1.0))
    value = np.zeros(len(k))
    for node, weight in ((-1.0, 1 / 6), (0.0, 2 / 3), (1.0, 1 / 6)):
        p = mean + node * spread
        value += weight * -np.expm1(-k * np.log1p(p * c)) / p
    return value


def _expected_by_quadrature(
    a: float, k: FloatArray, big_b: FloatArray, c: FloatArray
) -> FloatArray:
    """E[(1 - (1 + p c)^-k) / p] for p ~ Beta(a, big_b), integrated over the quantile
    u = F(p) with the tanh-sinh rule, separately for p below and above 1/2: the integrand is
    bounded (k c at p = 0), the rule crowds its nodes into the ends of each piece, and the
    split keeps a U-shaped Beta (a, b + x both tiny) from hiding its jump between nodes. So it
    stays accurate for any shapes, including the huge or tiny ones of a degenerate fit."""
    s = np.linspace(-_TANH_SINH_SPAN, _TANH_SINH_SPAN, 2 * _TANH_SINH_NODES + 1)
    frac, rest = special.expit(np.pi * np.sinh(s)), special.expit(-np.pi * np.sinh(s))
    w = np.pi * np.cosh(s) * frac * rest * (s[1] - s[0])  # d frac = pi cosh(s) frac rest ds
    out = np.empty(len(k))
    for shape in np.unique(big_b):
        rows = big_b == shape
        below, above = special.betainc(a, shape, 0.5), special.betaincc(a, shape, 0.5)
        # Each piece from its own end, so that u and 1 - u keep their digits.
        p = np.concatenate(
            [
                special.betaincinv(a, shape, below * frac),
                special.betainccinv(a, shape, above * rest),
            ]
        )
        weights = np.concatenate([below * w, above * w])
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            f = -np.expm1(-k[rows, None] * np.log1p(p[None, :] * c[rows, None])) / p[None, :]
        f = np.where(p[None, :] > 0, f, (k * c)[rows, None])
        out[rows] = f @ weights
    return out
