"""What each CSV source must hold: required and optional columns, their kinds and rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd
import pyarrow as pa

from .dates import DATE_DTYPE

Kind = Literal["text", "date", "timestamp", "money", "count"]

# A price or amount above this is a typo or garbage, not a payment: a trillion is far beyond
# any gym's takings, keeps every value exact to the cent in float64 (2**53 cents ~ 9e13) and
# any sum of them finite (1e308 / 1e12 rows), and fits PostgreSQL numeric with room to spare.
MAX_MONEY = 1e12
# Counts are parsed through float64 (so "30.0" and "1e3" are accepted), which holds every whole
# number up to this one exactly: a larger count would be stored rounded. Fits int64.
MAX_COUNT = 2**53 - 1
# PostgreSQL truncates longer identifiers, so two long names could end up as one column.
MAX_COLUMN_NAME_BYTES = 63
# Every PostgreSQL table already has these columns: a CSV column of the same name cannot be created.
SYSTEM_COLUMNS = frozenset({"tableoid", "xmin", "cmin", "xmax", "cmax", "ctid"})


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    required: bool = False
    positive: bool = False  # counts: > 0 instead of >= 0
    references: str | None = None  # another source whose id this column must name
    not_before: str | None = None  # a timestamp column this one may not precede


@dataclass(frozen=True)
class SourceSpec:
    name: str
    id_column: str
    columns: tuple[Column, ...]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


CUSTOMERS = SourceSpec(
    "customers",
    "customer_id",
    (
        Column("customer_id", "text", required=True),
        Column("signup_date", "date", required=True),
    ),
)
PACKAGES = SourceSpec(
    "packages",
    "package_id",
    (
        Column("package_id", "text", required=True),
        Column("package_name", "text", required=True),
        Column("price", "money", required=True),
        Column("duration_days", "count", positive=True),
        Column("sessions_included", "count"),
    ),
)
TRANSACTIONS = SourceSpec(
    "transactions",
    "transaction_id",
    (
        Column("transaction_id", "text", required=True),
        Column("customer_id", "text", required=True, references="customers"),
        Column("transaction_date", "timestamp", required=True),
        Column("amount", "money", required=True),
        Column("package_id", "text", references="packages"),
        Column("payment_method", "text"),
    ),
)
ATTENDANCE = SourceSpec(
    "attendance",
    "attendance_id",
    (
        Column("attendance_id", "text", required=True),
        Column("customer_id", "text", required=True, references="customers"),
        Column("check_in", "timestamp", required=True),
        Column("check_out", "timestamp", not_before="check_in"),
        Column("club", "text"),
    ),
)

SOURCES: dict[str, SourceSpec] = {
    s.name: s for s in (CUSTOMERS, PACKAGES, TRANSACTIONS, ATTENDANCE)
}

# Where each stored row came from: its drop file and physical line.
FILE_COLUMN, LINE_COLUMN = "_file", "_line"
# Names the loader keeps for its own bookkeeping (where a row came from, why it was rejected):
# a CSV column of the same name would collide with them.
RESERVED_COLUMNS = frozenset({FILE_COLUMN, LINE_COLUMN, "_reason"})

# The type each kind of column is loaded as (Arrow), and how typed Arrow columns become pandas
# dtypes (floats and timestamps convert as they are).
ARROW_TYPES = {
    "text": pa.string(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "money": pa.float64(),
    "count": pa.int64(),
}
PANDAS_TYPES = {
    pa.string(): pd.Series(dtype="str").dtype,
    pa.date32(): DATE_DTYPE,
    pa.int64(): pd.Int64Dtype(),
}


def empty_column(kind: Kind) -> pd.Series:
    """An empty column of a kind, with the dtype its loaded values get."""
    return pa.chunked_array([], ARROW_TYPES[kind]).to_pandas(types_mapper=PANDAS_TYPES.get)


def spec_template(spec: SourceSpec) -> pd.DataFrame:
    """The empty frame of a source's own columns, typed as loaded rows are."""
    return pd.DataFrame({col.name: empty_column(col.kind) for col in spec.columns})
