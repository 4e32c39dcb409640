"""Date handling shared by the loaders and the analytics.

Dates are stored as Arrow date32 (a real SQL `date`), timestamps as naive
datetime64[us]; these helpers convert between the two without Python loops.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

DATE_DTYPE = pd.ArrowDtype(pa.date32())

# No date or timestamp before this is a real signup or visit: it is a placeholder or a typo.
EARLIEST = pd.Timestamp("1900-01-01")
# How far past the load time a value may lie (clocks and time zones differ) before it is
# rejected as in the future.
FUTURE_SLACK = pd.Timedelta(days=1)
_load_time: ContextVar[pd.Timestamp | None] = ContextVar("load_time", default=None)

# A time of day followed by a UTC offset (Z, +hh, +hhmm, +hh:mm): group 1 is the text before it.
_WITH_OFFSET = (
    r"^(\d{4}-?\d{2}-?\d{2}[T ]\d{2}(?::?\d{2}(?::?\d{2}(?:[.,]\d+)?)?)?)"
    r"\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
)


@contextmanager
def loading_at(now: pd.Timestamp | None = None) -> Iterator[None]:
    """Fix the load time for everything loaded in the block, so one load judges every row
    against the same "now", and tests can choose it. Without `now`: the load time of an
    enclosing block, else the clock, read once."""
    if now is None:
        now = _load_time.get() or pd.Timestamp.now()
    token = _load_time.set(pd.Timestamp(now))
    try:
        yield
    finally:
        _load_time.reset(token)


def latest_allowed() -> pd.Timestamp:
    """The latest date or timestamp a load accepts: the load time (see `loading_at`; the clock
    outside one) plus FUTURE_SLACK. A check-in in 2100 would move every snapshot to 2100."""
    now = _load_time.get()
    return (pd.Timestamp.now() if now is None else now) + FUTURE_SLACK


def parse_timestamps(text: pa.Array) -> pa.Array:
    """ISO 8601 text (nulls allowed) -> timestamp[us] as written; anything unparseable becomes
    null.

    A UTC offset is dropped, not applied: naive values are the business's wall-clock time, and
    the analytics work on calendar dates as the gym sees them. Converting
    "2024-05-01T23:30:00-05:00" to UTC would move a May 1 signup or visit to May 2 (and mix
    UTC with local times in one column).
    """
    try:
        return pc.cast(text, pa.timestamp("us"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass  # an offset, or some value that is not plain ISO 8601
    text = pc.replace_substring_regex(text, _WITH_OFFSET, r"\1")
    try:
        return pc.cast(text, pa.timestamp("us"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass  # parse value by value, coercing failures
    # utc=True only so that a rare offset the pattern missed cannot fail the whole column.
    parsed = pd.to_datetime(text.to_pandas(), format="ISO8601", errors="coerce", utc=True)
    return pa.array(parsed.dt.tz_localize(None).astype("datetime64[us]"), pa.timestamp("us"))


def as_datetime(dates: pd.Series) -> pd.Series:
    """A date32 (or datetime) column as datetime64[us] at midnight, for day arithmetic."""
    if isinstance(dates.dtype, pd.ArrowDtype):
        return dates.astype("datetime64[us]")
    return dates.dt.normalize().astype("datetime64[us]")


def day_end(as_of: dt.date) -> pd.Timestamp:
    """The first instant after `as_of`: events strictly before it count for the snapshot."""
    return pd.Timestamp(as_of) + pd.Timedelta(days=1)


def date_column(value: dt.date, index: pd.Index) -> pd.Series:
    """The same date on every row, as an Arrow date32 column."""
    days = pa.array(np.full(len(index), np.datetime64(value, "D")))
    return pd.Series(pd.arrays.ArrowExtensionArray(days.cast(pa.date32())), index=index)


def monthly_snapshots(as_of: dt.date, count: int) -> list[dt.date]:
    """`count` snapshot dates, oldest first, ending with as_of: the last days of the count - 1
    months before as_of's month, then as_of itself."""
    ends = []
    month_start = as_of.replace(day=1)
    for _ in range(count - 1):
        month_end = month_start - dt.timedelta(days=1)
        ends.append(month_end)
        month_start = month_end.replace(day=1)
    return [*reversed(ends), as_of]
