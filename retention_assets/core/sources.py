"""What each CSV source must hold: the column contract of SPEC section 2."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["text", "date", "timestamp", "money", "count"]


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
