"""Date handling shared by the loaders and the analytics.

Dates are stored as Arrow date32 (a real SQL `date`), timestamps as naive
datetime64[us]; these helpers convert between the two without Python loops.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

DATE_DTYPE = pd.ArrowDtype(pa.date32())


def parse_timestamps(text: pa.Array) -> pa.Array:
    """ISO 8601 text (nulls allowed) -> timestamp[us]; anything unparseable becomes null."""
    try:
        return pc.cast(text, pa.timestamp("us"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass  # some value is not plain ISO 8601: parse value by value, coercing failures
    # utc=True: values with an offset are converted to UTC, naive values are kept as written.
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
