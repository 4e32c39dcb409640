"""The judgements behind the asset checks, on plain frames, each with the figures it judged."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .lookup import is_in, same_ids
from .migration import SegmentGrowth


@dataclass(frozen=True)
class Verdict:
    passed: bool
    description: str
    figures: dict[str, object] = field(default_factory=dict)


def reject_fraction(rows_read: int, rows_rejected: int, max_fraction: float) -> Verdict:
    fraction = rows_rejected / rows_read if rows_read else 0.0
    passed = fraction <= max_fraction
    return Verdict(
        passed,
        f"{rows_rejected:,} of {rows_read:,} rows rejected ({fraction:.2%}; "
        f"limit {max_fraction:.2%})",
        {"rows_read": rows_read, "rows_rejected": rows_rejected, "reject_fraction": fraction},
    )


def segment_counts(rfm: pd.DataFrame, universe: pd.Series, n_clusters: int) -> Verdict:
    """Exactly n_clusters segments, every customer of the universe in exactly one."""
    counts = rfm["segment"].value_counts().sort_index()
    duplicated = int(rfm["customer_id"].duplicated().sum())
    missing = int((~is_in(universe, rfm["customer_id"])).sum())
    unexpected = int((~is_in(rfm["customer_id"], universe)).sum())
    unassigned = int(rfm["segment"].isna().sum())
    problems = []
    if len(counts) != n_clusters:
        problems.append(f"{len(counts)} segments instead of {n_clusters}")
    if int(counts.sum()) != len(universe):
        problems.append(f"counts add up to {int(counts.sum()):,}, universe is {len(universe):,}")
    for n, what in (
        (duplicated, "customers more than once"),
        (missing, "customers of the universe missing"),
        (unexpected, "customers outside the universe"),
        (unassigned, "customers without a segment"),
    ):
        if n:
            problems.append(f"{n:,} {what}")
    return Verdict(
        not problems,
        "; ".join(problems) or f"{n_clusters} segments over {len(universe):,} customers",
        {
            **{f"segment/{name}": int(n) for name, n in counts.items()},
            "segments": len(counts),
            "customers": len(universe),
            "duplicated": duplicated,
            "missing": missing,
        },
    )


def segment_shares(rfm: pd.DataFrame, min_share: float) -> Verdict:
    shares = rfm["segment"].value_counts(normalize=True).sort_index()
    small = shares[shares < min_share]
    return Verdict(
        small.empty,
        (
            "segments below the minimum share: "
            + ", ".join(f"{name} {share:.2%}" for name, share in small.items())
            if len(small)
            else f"every segment holds at least {min_share:.0%} of customers"
        ),
        {f"share/{name}": float(share) for name, share in shares.items()}
        | {"min_segment_share": min_share},
    )


def clv_rows(clv: pd.DataFrame, universe: pd.Series) -> Verdict:
    """One row per customer of the universe, and no negative value anywhere."""
    numeric = clv.select_dtypes("number")
    negatives = {c: int((numeric[c] < 0).sum()) for c in numeric.columns}
    negatives = {c: n for c, n in negatives.items() if n}
    duplicated = int(clv["customer_id"].duplicated().sum())
    problems = [f"{n:,} negative {c}" for c, n in negatives.items()]
    if duplicated:
        problems.append(f"{duplicated:,} customers more than once")
    if not (same_ids(clv["customer_id"], universe) and len(clv) == len(universe)):
        problems.append(f"{len(clv):,} rows for a universe of {len(universe):,} customers")
    return Verdict(
        not problems,
        "; ".join(problems) or f"{len(clv):,} customers, no negative values",
        {"rows": len(clv), "customers": len(universe), "duplicated": duplicated}
        | {f"negative/{c}": n for c, n in negatives.items()},
    )


def retention_bounds(rate: float) -> Verdict:
    passed = 0.0 <= rate <= 100.0
    return Verdict(
        passed,
        f"retention_rate {rate:.2f}% is {'within' if passed else 'outside'} [0, 100]",
        {"retention_rate": rate},
    )


def feeds_in_step(
    last_check_in: dt.date | None, last_transaction: dt.date | None, max_gap_days: int = 7
) -> Verdict:
    """Both event feeds end within max_gap_days of each other: otherwise one is behind (a
    missing drop) and the default snapshot date waits for it."""
    figures = {
        "last_check_in": str(last_check_in),
        "last_transaction": str(last_transaction),
    }
    if last_check_in is None or last_transaction is None:
        return Verdict(False, "one event feed is empty", figures)
    gap = abs((last_check_in - last_transaction).days)
    figures["gap_days"] = gap
    behind = "attendance" if last_check_in < last_transaction else "transactions"
    description = (
        f"latest check-in {last_check_in}, latest transaction {last_transaction}: {gap} days apart"
    )
    if gap > max_gap_days:
        description += f" (more than {max_gap_days}; {behind} is behind)"
    return Verdict(gap <= max_gap_days, description, figures)


def events_before_signup(activity: pd.DataFrame) -> Verdict:
    """No customer has a check-in or payment dated before their signup_date: such events are
    counted, but usually mean a wrong signup date or a wrong customer_id in the export."""
    early = activity.loc[
        activity["first_event"].notna() & (activity["first_event"] < activity["signup_date"]),
        "customer_id",
    ]
    examples = ", ".join(sorted(early.astype(str))[:5])
    return Verdict(
        early.empty,
        "no event before its customer's signup"
        if early.empty
        else f"{len(early):,} customers have events dated before their signup_date "
        f"(e.g. {examples})",
        {"customers_with_events_before_signup": len(early)},
    )


def model_fit(warnings: list[str], training_rows: int) -> Verdict:
    """Every fit converged inside the parameter space; otherwise the notes say which did not,
    with the figures (its predictions then follow the formulas' limits)."""
    return Verdict(
        not warnings,
        "; ".join(warnings) or f"both models converged on {training_rows:,} customers",
        {"training_rows": training_rows, "warnings": len(warnings)},
    )


def forecast_rows(forecast: pd.DataFrame, paying: pd.Series) -> Verdict:
    """One row per paying customer; every figure finite and not negative; p_alive a
    probability."""
    figures = forecast.drop(columns=["avg_repeat_spend"]).select_dtypes("number")
    not_finite = int((~np.isfinite(figures.to_numpy(dtype=float))).any(axis=1).sum())
    negative = int((figures < 0).any(axis=1).sum())
    outside = int((~forecast["p_alive"].between(0, 1)).sum())
    duplicated = int(forecast["customer_id"].duplicated().sum())
    problems = [
        f"{n:,} {what}"
        for n, what in (
            (not_finite, "rows with a missing or infinite figure"),
            (negative, "rows with a negative figure"),
            (outside, "p_alive outside [0, 1]"),
            (duplicated, "customers more than once"),
        )
        if n
    ]
    if not same_ids(forecast["customer_id"], paying):
        problems.append(f"{len(forecast):,} rows for {len(paying):,} paying customers")
    return Verdict(
        not problems,
        "; ".join(problems) or f"{len(forecast):,} paying customers, every figure in range",
        {"rows": len(forecast), "paying_customers": len(paying), "not_finite": not_finite},
    )


def holdout_error(per_customer: pd.DataFrame, mae: float, max_total_error: float) -> Verdict:
    """The purchases predicted for the holdout weeks, in total, within max_total_error of the
    actual ones."""
    predicted = float(per_customer["predicted"].sum())
    actual = float(per_customer["actual"].sum())
    error = abs(predicted - actual) / actual if actual else float("inf")
    return Verdict(
        error <= max_total_error,
        f"holdout purchases predicted {predicted:,.0f}, actual {actual:,.0f} "
        f"({error:.1%} off; limit {max_total_error:.0%}); mean absolute error per customer "
        f"{mae:.3f}",
        {
            "predicted_total": round(predicted, 1),
            "actual_total": actual,
            "total_error": round(error, 4) if actual else None,
            "mae": round(mae, 4),
            "customers": len(per_customer),
        },
    )


def segment_growth(growth: SegmentGrowth, moved_in: int, max_growth: float) -> Verdict:
    """The segment grew by at most max_growth (a share of its earlier size) since the
    previous snapshot; `moved_in` customers came from other segments."""
    figures = {"before": growth.before, "now": growth.now, "moved_in": moved_in}
    if growth.growth is not None and np.isfinite(growth.growth):
        figures["growth"] = round(growth.growth, 4)
    limit = f" (limit +{max_growth:.0%})" if growth.before is not None else ""
    return Verdict(
        not growth.exceeds(max_growth),
        f"{growth.describe()}{limit}; {moved_in:,} moved in from other segments",
        figures,
    )
