"""How customers moved between segments from one rfm snapshot to the next: pure pandas.

A snapshot is a frame with one row per customer (customer_id, segment, ...), e.g. the rows
`rfm_history` keeps for one as_of. Customers only in the current snapshot come from "(new)",
customers only in the previous one go to "(gone)".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from .segmentation import AT_RISK, HIGH_VALUE, LOYALIST, NEW_POTENTIAL

NEW, GONE = "(new)", "(gone)"
SEGMENT_ORDER = [HIGH_VALUE, LOYALIST, NEW_POTENTIAL, AT_RISK]
MIGRATION_COLUMNS = ["from_segment", "to_segment", "customers", "share"]
MOVED_COLUMNS = ["customer_id", "from_segment", "recency_days", "frequency", "monetary"]


def ordered_segments(names: Iterable[str]) -> list[str]:
    """The named segments best to worst, then other names sorted ("Loyalist 2"), then "(new)"
    and "(gone)": a fixed order, so tables and figures read the same from run to run.

    Parameters
    ----------
    names : iterable of str
        Segment names, repeats allowed.

    Returns
    -------
    list of str
        Each distinct name once, in display order.
    """
    present = set(names)
    known = [name for name in SEGMENT_ORDER if name in present]
    markers = [name for name in (NEW, GONE) if name in present]
    return known + sorted(present - set(known) - set(markers)) + markers


def _snapshot(frame: pd.DataFrame | None, what: str) -> pd.DataFrame:
    """customer_id -> segment of a snapshot (None or empty: no snapshot), checked: a duplicate
    or unnamed customer would be counted twice or silently dropped."""
    if frame is None or frame.empty:
        return pd.DataFrame({"segment": pd.Series(dtype="str")}, index=pd.Index([], dtype="str"))
    ids = frame["customer_id"].astype("str")
    if ids.duplicated().any():
        raise ValueError(f"{what} snapshot lists customers more than once: {_duplicated_ids(ids)}")
    segments = frame["segment"]
    if segments.isna().any():
        raise ValueError(f"{what} snapshot has customers without a segment")
    return pd.DataFrame({"segment": segments.astype("str").to_numpy()}, index=ids.to_numpy())


def _duplicated_ids(ids: pd.Series, n: int = 5) -> list[str]:
    return sorted(ids[ids.duplicated()].unique())[:n]


def _pairs(previous: pd.DataFrame | None, current: pd.DataFrame) -> pd.DataFrame:
    before, now = _snapshot(previous, "previous"), _snapshot(current, "current")
    joined = before.rename(columns={"segment": "from_segment"}).join(
        now.rename(columns={"segment": "to_segment"}), how="outer"
    )
    return joined.fillna({"from_segment": NEW, "to_segment": GONE}).astype("str")


def segment_migration(previous: pd.DataFrame | None, current: pd.DataFrame) -> pd.DataFrame:
    """Customers counted by (segment at the previous snapshot, segment now).

    Parameters
    ----------
    previous : DataFrame or None
        The earlier snapshot (customer_id, segment); None or empty when there is none, and
        then every current customer comes from "(new)".
    current : DataFrame
        The snapshot now (customer_id, segment).

    Returns
    -------
    DataFrame
        from_segment (a segment or "(new)"), to_segment (a segment or "(gone)"), customers
        (int64) and share (float64: customers over all customers of the same from_segment, so
        each from_segment's shares sum to 1: "of last time's At Risk, 30% are Loyalists now").
        Only pairs with customers; sorted by from_segment then to_segment in the
        `ordered_segments` order.

    Raises
    ------
    ValueError
        If a snapshot lists a customer twice or has a missing segment.
    """
    pairs = _pairs(previous, current)
    if pairs.empty:
        return pd.DataFrame(
            {
                "from_segment": pd.Series(dtype="str"),
                "to_segment": pd.Series(dtype="str"),
                "customers": pd.Series(dtype="int64"),
                "share": pd.Series(dtype="float64"),
            }
        )
    counts = pairs.groupby(["from_segment", "to_segment"]).size().rename("customers").reset_index()
    counts["customers"] = counts["customers"].astype("int64")
    totals = counts.groupby("from_segment")["customers"].transform("sum")
    counts["share"] = counts["customers"] / totals
    order = ordered_segments([*pairs["from_segment"], *pairs["to_segment"]])
    rank = {name: i for i, name in enumerate(order)}
    counts = counts.sort_values(["from_segment", "to_segment"], key=lambda column: column.map(rank))
    return counts.reset_index(drop=True)[MIGRATION_COLUMNS]


def moved_into(
    previous: pd.DataFrame | None,
    current: pd.DataFrame,
    segment: str = AT_RISK,
    top: int = 20,
) -> pd.DataFrame:
    """The most valuable customers who fell into `segment` since the previous snapshot: the
    ones worth a call first.

    Parameters
    ----------
    previous : DataFrame or None
        The earlier snapshot (customer_id, segment); None or empty gives no rows (nobody moved).
    current : DataFrame
        The snapshot now: customer_id, segment, recency_days, frequency, monetary.
    segment : str
        The segment moved into.
    top : int
        At most this many rows.

    Returns
    -------
    DataFrame
        customer_id, from_segment, recency_days, frequency, monetary of the customers
        in `segment` now who were in another segment before (new customers are not "moved"),
        sorted by monetary descending then customer_id (code-point order, reproducible ties).
    """
    before = _snapshot(previous, "previous")["segment"]
    _snapshot(current, "current")  # the same checks as segment_migration
    now = current.loc[
        current["segment"] == segment, ["customer_id", "recency_days", "frequency", "monetary"]
    ]
    now = now.assign(customer_id=now["customer_id"].astype("str"))
    from_segment = now["customer_id"].map(before)
    moved = now.assign(from_segment=from_segment).loc[
        from_segment.notna() & (from_segment != segment)
    ]
    moved = moved.sort_values(["monetary", "customer_id"], ascending=[False, True], kind="stable")
    return moved.head(top).reset_index(drop=True)[MOVED_COLUMNS]


@dataclass(frozen=True)
class SegmentGrowth:
    """Size of a segment at the previous snapshot and now.

    Attributes
    ----------
    segment : str
        The segment counted.
    before : int or None
        Its customers at the previous snapshot; None when there is no previous snapshot.
    now : int
        Its customers now.
    growth : float or None
        (now - before) / before: 0.25 = a quarter more customers. None without a previous
        snapshot; ``inf`` when the segment was empty before and is not now, 0.0 when empty in
        both.
    """

    segment: str
    before: int | None
    now: int
    growth: float | None

    def exceeds(self, max_growth: float) -> bool:
        """True when the segment grew by more than `max_growth` (0.2 = 20%): the WARN check's
        condition. Never without a previous snapshot: a first run has nothing to compare."""
        return self.growth is not None and self.growth > max_growth

    def describe(self) -> str:
        if self.before is None:
            return f"{self.segment}: {self.now:,} customers (no previous snapshot to compare)"
        change = "new" if self.growth == float("inf") else f"{self.growth:+.1%}"
        return f"{self.segment}: {self.before:,} -> {self.now:,} customers ({change})"


def segment_growth(
    previous: pd.DataFrame | None, current: pd.DataFrame, segment: str = AT_RISK
) -> SegmentGrowth:
    """How much `segment` grew since the previous snapshot, for a check that warns when At Risk
    swells (a sign of churn, or of a drop that missed recent check-ins).

    Parameters
    ----------
    previous : DataFrame or None
        The earlier snapshot (customer_id, segment); None or empty = no previous snapshot.
    current : DataFrame
        The snapshot now (customer_id, segment).
    segment : str
        The segment counted.

    Returns
    -------
    SegmentGrowth
        before, now and the relative growth; see `SegmentGrowth.exceeds`.
    """
    before_frame = _snapshot(previous, "previous")
    now = int((_snapshot(current, "current")["segment"] == segment).sum())
    if before_frame.empty:
        return SegmentGrowth(segment, None, now, None)
    before = int((before_frame["segment"] == segment).sum())
    if before:
        return SegmentGrowth(segment, before, now, (now - before) / before)
    return SegmentGrowth(segment, before, now, float("inf") if now else 0.0)
