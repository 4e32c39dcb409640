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
    description: str = ""  # what the column means, shown next to it in the UI


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
        Column("customer_id", "text", required=True, description="The member's id; unique."),
        Column("signup_date", "date", required=True, description="Date the member joined."),
    ),
)
PACKAGES = SourceSpec(
    "packages",
    "package_id",
    (
        Column("package_id", "text", required=True, description="The package's id; unique."),
        Column("package_name", "text", required=True, description="Name members see."),
        Column("price", "money", required=True, description="List price."),
        Column("duration_days", "count", positive=True, description="Days it runs (> 0)."),
        Column("sessions_included", "count", description="Visits the package includes."),
    ),
)
TRANSACTIONS = SourceSpec(
    "transactions",
    "transaction_id",
    (
        Column("transaction_id", "text", required=True, description="The payment's id; unique."),
        Column(
            "customer_id",
            "text",
            required=True,
            references="customers",
            description="Who paid: a customer_id of customers.",
        ),
        Column("transaction_date", "timestamp", required=True, description="When it was paid."),
        Column("amount", "money", required=True, description="Amount paid (>= 0)."),
        Column(
            "package_id",
            "text",
            references="packages",
            description="Package bought, a package_id of packages (empty: none).",
        ),
        Column("payment_method", "text", description="card, cash, ... as exported."),
    ),
)
ATTENDANCE = SourceSpec(
    "attendance",
    "attendance_id",
    (
        Column("attendance_id", "text", required=True, description="The visit's id; unique."),
        Column(
            "customer_id",
            "text",
            required=True,
            references="customers",
            description="Who came: a customer_id of customers.",
        ),
        Column("check_in", "timestamp", required=True, description="When the member arrived."),
        Column(
            "check_out",
            "timestamp",
            not_before="check_in",
            description="When the member left (not before check_in; empty: unknown).",
        ),
        Column("club", "text", description="Club visited."),
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
