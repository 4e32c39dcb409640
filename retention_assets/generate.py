"""Synthetic gym CSV exports (customers, packages, transactions, attendance).

The data is built so the analytics have something real to find: every customer follows one of
a few behaviour profiles (loyal, lapsed, new, occasional, high-value) whose recency, frequency
and spend differ enough for KMeans to recover the four RFM segments, with enough per-customer
noise that the groups overlap a little. Customers are generated in chunks, fully vectorised,
and appended to the CSV files, so memory stays bounded at millions of customers and the output
depends only on the seed and the arguments.

Ids come in three shapes because real exports differ and readers must not lean on one: `padded`
(C0000001: sorted, fixed width, string order = numeric order), `int` (1..N as auto-increment
keys give, where "10" < "9") and `uuid` (random UUID4). The shape only relabels: the same seed
gives the same customers, visits and purchases in every shape, and `shuffle` only reorders.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from tqdm import tqdm

# Customer x day cells generated at once: 10,000 customers at the default 730 days, which keeps
# the peak around 500 MB whatever the customer count (20,000 costs 800 MB and is no faster).
_CHUNK_CELLS = 10_000 * 730

# Occasional promotions: this share of purchases is sold at DISCOUNT_PERCENT off the list price
# (rounded to the cent), every other purchase is charged exactly the list price.
DISCOUNT_SHARE = 0.05
DISCOUNT_PERCENT = 10

IdShape = Literal["padded", "int", "uuid"]
ID_SHAPES: tuple[IdShape, ...] = ("padded", "int", "uuid")

# Extra seed words for the id and shuffle draws: streams apart from the behaviour draws
# ([seed, chunk]), so neither the shape nor shuffle changes what the customers do.
_UUID_STREAM, _SHUFFLE_STREAM, _DATASET_STREAM = 1, 2, 3


@dataclass(frozen=True)
class Package:
    """One row of packages.csv; sessions_included None means unlimited visits."""

    package_id: str
    package_name: str
    price_cents: int
    duration_days: int
    sessions_included: int | None


PACKAGES: tuple[Package, ...] = (
    Package("P01", "Day Pass", 1500, 1, 1),
    Package("P02", "10-Visit Pass", 12000, 180, 10),
    Package("P03", "Monthly Basic", 4900, 30, None),
    Package("P04", "Monthly Premium", 7900, 30, None),
    Package("P05", "Quarterly Membership", 13500, 90, None),
    Package("P06", "Annual Membership", 59900, 365, None),
    Package("P07", "Personal Training 10-Pack", 45000, 180, 10),
    Package("P08", "Personal Training Session", 5500, 30, 1),
)
_PKG_INDEX = {p.package_id: i for i, p in enumerate(PACKAGES)}


@dataclass(frozen=True)
class Plan:
    """A purchase repeated every `every_days` (drawn per customer) while the customer is active."""

    package_id: str
    every_days: tuple[int, int]
    share: float


@dataclass(frozen=True)
class Profile:
    """A behaviour archetype; signup and stop ranges count days back from end_date.

    Each customer draws exactly one of `plans` (shares sum to 1) and each of `addons`
    independently with probability `share`.
    """

    name: str
    share: float
    signup_days_ago: tuple[int, int]
    weekly_visits: tuple[float, float]
    stopped_days_ago: tuple[int, int]
    plans: tuple[Plan, ...]
    addons: tuple[Plan, ...] = ()


# Loyal -> Loyalist, lapsed -> At Risk, new + occasional -> New/Potential,
# high_value -> High-Value.
PROFILES: tuple[Profile, ...] = (
    Profile(
        "loyal",
        0.35,
        signup_days_ago=(120, 1200),
        weekly_visits=(1.5, 4.0),
        stopped_days_ago=(0, 10),
        plans=(
            Plan("P03", (30, 30), 0.50),
            Plan("P04", (30, 30), 0.25),
            Plan("P05", (90, 90), 0.25),
        ),
        addons=(Plan("P08", (60, 180), 0.20),),
    ),
    Profile(
        "lapsed",
        0.25,
        signup_days_ago=(240, 1200),
        weekly_visits=(1.0, 3.0),
        stopped_days_ago=(75, 450),
        plans=(Plan("P03", (30, 30), 0.70), Plan("P02", (35, 70), 0.30)),
    ),
    Profile(
        "new",
        0.15,
        signup_days_ago=(0, 120),
        weekly_visits=(1.0, 3.5),
        stopped_days_ago=(0, 0),
        plans=(Plan("P03", (30, 30), 0.70), Plan("P02", (30, 60), 0.30)),
    ),
    Profile(
        "occasional",
        0.15,
        signup_days_ago=(60, 1500),
        weekly_visits=(0.1, 0.6),
        stopped_days_ago=(0, 60),
        plans=(Plan("P01", (45, 120), 0.60), Plan("P02", (150, 300), 0.40)),
    ),
    Profile(
        "high_value",
        0.10,
        signup_days_ago=(200, 1500),
        weekly_visits=(2.5, 5.0),
        stopped_days_ago=(0, 20),
        plans=(Plan("P06", (365, 365), 1.0),),
        addons=(Plan("P07", (30, 75), 0.90), Plan("P08", (30, 60), 0.20)),
    ),
)

# A lapsed member still came for at least this many days before stopping.
_MIN_ACTIVE_DAYS = 30

CLUBS = ("Downtown", "Riverside", "Northgate", "Westfield", "Harbourview")
_CLUB_WEIGHTS = (0.30, 0.25, 0.20, 0.15, 0.10)
_HOME_CLUB_SHARE = 0.88  # visits at the member's home club; the rest at a random club

# Attendance seasonality: relative visit probability by weekday (Mon..Sun) and by month.
_WEEKDAY_FACTOR = np.array([1.20, 1.15, 1.10, 1.00, 0.85, 0.90, 0.80])
_MONTH_FACTOR = np.array([1.25, 1.15, 1.05, 1.00, 0.95, 0.90, 0.85, 0.85, 1.00, 1.00, 0.95, 0.85])

# Space-separated word lists stay readable; as list literals they would take 120 lines.
_FEMALE_NAMES = (  # noqa: SIM905
    "Emma Olivia Ava Sophia Isabella Mia Amelia Harper Evelyn Abigail Emily Ella Grace Chloe "
    "Lily Hannah Zoe Nora Leah Aria Maya Sarah Laura Julia Anna Clara Ruby Alice Freya Ivy"
).split()
_MALE_NAMES = (  # noqa: SIM905
    "Liam Noah Oliver Elijah James William Benjamin Lucas Henry Theodore Jack Leo Daniel "
    "Samuel Owen Ethan Jacob Logan Mason Caleb Ryan Adam Adrian Max Oscar Felix Hugo Luke Isaac"
).split()
_LAST_NAMES = (  # noqa: SIM905
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "
    "Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Thompson White Harris Clark Lewis "
    "Robinson Walker Young Allen King Wright Scott Green Baker Adams Nelson Hill Campbell "
    "Mitchell Roberts Carter Phillips Evans Turner Torres Parker Collins Edwards Stewart Morris "
    "Murphy Cook Rogers Morgan Peterson Cooper Reed Bailey Bell Kelly"
).split()

_CUSTOMER_COLUMNS = [
    *("customer_id", "first_name", "last_name", "email", "gender"),
    *("date_of_birth", "signup_date", "home_club"),
]
_TRANSACTION_COLUMNS = [
    *("transaction_id", "customer_id", "transaction_date"),
    *("amount", "package_id", "payment_method"),
]
_ATTENDANCE_COLUMNS = ["attendance_id", "customer_id", "check_in", "check_out", "club"]
_PACKAGE_COLUMNS = ["package_id", "package_name", "price", "duration_days", "sessions_included"]


def generate_dataset(
    out_dir: Path,
    customers: int,
    seed: int = 7,
    end_date: date = date(2026, 10, 31),
    history_days: int = 730,
    progress: bool = False,
    id_shape: IdShape = "padded",
    shuffle: bool = False,
) -> dict[str, int]:
    """Write customers/packages/transactions/attendance CSVs into out_dir; return rows per file.

    Every file is written under a temporary name and renamed into place at the end, so a folder
    watcher never picks up a half-written CSV and a failed run leaves no partial files.

    `shuffle` writes rows in random order instead of by customer and time. customers.csv and
    packages.csv are shuffled whole (held until the end: a few hundred bytes per customer);
    event rows are shuffled within a chunk (about 10,000 customers), as a global shuffle would
    need the whole file in memory.
    """
    if customers < 1:
        raise ValueError(f"customers must be at least 1, got {customers}")
    if id_shape not in ID_SHAPES:
        raise ValueError(f"id_shape must be one of {', '.join(ID_SHAPES)}, got {id_shape!r}")
    if history_days < 2 * _MIN_ACTIVE_DAYS:
        raise ValueError(f"history_days must be at least {2 * _MIN_ACTIVE_DAYS}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    start = np.datetime64(end_date - timedelta(days=history_days - 1), "D")
    chunk_size = max(1, _CHUNK_CELLS // history_days)
    # Widths fit the most rows the generator could produce (one visit per customer and day,
    # at most three purchase streams per customer, each renewing at most daily).
    ids = _IdSequences(
        customer=_IdSequence("C", max(7, len(str(customers))), id_shape),
        transaction=_IdSequence("T", max(9, len(str(customers * history_days * 3))), id_shape),
        attendance=_IdSequence("A", max(10, len(str(customers * history_days))), id_shape),
    )
    side_rng = np.random.default_rng([seed, 0, _DATASET_STREAM])
    package_ids = _package_ids(id_shape, side_rng)
    held: list[pa.Table] = []  # customers, when shuffled
    files = {
        "customers.csv": _CUSTOMER_COLUMNS,
        "packages.csv": _PACKAGE_COLUMNS,
        "transactions.csv": _TRANSACTION_COLUMNS,
        "attendance.csv": _ATTENDANCE_COLUMNS,
    }
    partial = {name: out_dir / f".{name}.partial" for name in files}
    try:
        with ExitStack() as stack:
            writers = {
                name: stack.enter_context(_CsvAppender(partial[name], columns))
                for name, columns in files.items()
            }
            packages = _packages_table(package_ids)
            writers["packages.csv"].write(
                packages.take(side_rng.permutation(len(PACKAGES))) if shuffle else packages
            )
            bar = stack.enter_context(
                tqdm(total=customers, unit="customer", disable=not progress, desc="generate")
            )
            for chunk_no, first in enumerate(range(0, customers, chunk_size)):
                n = min(chunk_size, customers - first)
                rng = np.random.default_rng([seed, chunk_no])
                id_rng = np.random.default_rng([seed, chunk_no, _UUID_STREAM])
                order = np.random.default_rng([seed, chunk_no, _SHUFFLE_STREAM])
                numbers = np.arange(first + 1, first + n + 1)
                customer_ids = ids.customer.label(numbers, id_rng)
                cohort = _draw_cohort(rng, numbers, customer_ids, history_days)
                customers_table = _customers_table(rng, cohort, start)  # rng order matters
                transactions = _transactions_table(rng, cohort, start, package_ids)
                attendance = _attendance_table(rng, cohort, start, history_days)
                tables = {
                    "customers.csv": customers_table,
                    "transactions.csv": transactions.add_column(
                        0, "transaction_id", ids.transaction.take(len(transactions), id_rng)
                    ),
                    "attendance.csv": attendance.add_column(
                        0, "attendance_id", ids.attendance.take(len(attendance), id_rng)
                    ),
                }
                if shuffle:
                    held.append(tables.pop("customers.csv"))
                for name, table in tables.items():
                    if shuffle:
                        table = table.take(order.permutation(table.num_rows))
                    writers[name].write(table)
                bar.update(n)
            if held:
                everyone = pa.concat_tables(held)
                writers["customers.csv"].write(everyone.take(side_rng.permutation(customers)))
            rows = {name: writer.rows for name, writer in writers.items()}
        for name in files:
            os.replace(partial[name], out_dir / name)
    except BaseException:
        for path in partial.values():
            path.unlink(missing_ok=True)
        raise
    return rows


class _IdSequence:
    """Ids numbered 1, 2, ... across chunks, labelled in one shape: C0000001, 1 or a UUID4."""

    def __init__(self, prefix: str, width: int, shape: IdShape) -> None:
        self.prefix = prefix
        self.width = width
        self.shape = shape
        self.issued = 0

    def take(self, n: int, rng: np.random.Generator) -> pa.Array:
        numbers = np.arange(self.issued + 1, self.issued + n + 1, dtype=np.int64)
        self.issued += n
        return self.label(numbers, rng)

    def label(self, numbers: np.ndarray, rng: np.random.Generator) -> pa.Array:
        if self.shape == "uuid":
            return _uuid4(rng, len(numbers))
        digits = pa.array(numbers, pa.int64()).cast(pa.string())
        if self.shape == "int":
            return digits
        digits = pc.utf8_lpad(digits, self.width, padding="0")
        return pc.binary_join_element_wise(self.prefix, digits, "")


@dataclass(frozen=True)
class _IdSequences:
    customer: _IdSequence
    transaction: _IdSequence
    attendance: _IdSequence


# Two hex digits per byte value, laid out so that indexing with bytes and viewing the result as
# uint8 spells the bytes in hex.
_HEX_PAIRS = np.frombuffer(b"".join(b"%02x" % i for i in range(256)), dtype=np.uint16)


def _uuid4(rng: np.random.Generator, n: int) -> pa.Array:
    """n random UUID4 strings (RFC 9562 version and variant bits), built without a Python loop."""
    raw = np.frombuffer(rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexed = _HEX_PAIRS[raw].view(np.uint8)  # (n, 32) ASCII
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    for src, dst, width in ((0, 0, 8), (8, 9, 4), (12, 14, 4), (16, 19, 4), (20, 24, 12)):
        text[:, dst : dst + width] = hexed[:, src : src + width]
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(text)])


def _package_ids(shape: IdShape, rng: np.random.Generator) -> list[str]:
    """The catalogue's ids in the chosen shape: P01.., 1.. or UUIDs."""
    if shape == "padded":
        return [p.package_id for p in PACKAGES]
    if shape == "int":
        return [str(i) for i in range(1, len(PACKAGES) + 1)]
    return _uuid4(rng, len(PACKAGES)).to_pylist()


class _CsvAppender:
    """Appends Arrow tables to one CSV file with a plain (unquoted) header line."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.columns = columns
        self.rows = 0
        self._file: BinaryIO | None = None
        self._writer: pacsv.CSVWriter | None = None

    def __enter__(self) -> _CsvAppender:
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed in __exit__
        self._file.write((",".join(self.columns) + "\n").encode())
        return self

    def write(self, table: pa.Table) -> None:
        table = table.select(self.columns)
        if self._writer is None:
            # quoting "none" refuses (raises on) any value that would need quoting.
            options = pacsv.WriteOptions(include_header=False, quoting_style="none")
            self._writer = pacsv.CSVWriter(self._file, table.schema, write_options=options)
        self._writer.write_table(table)
        self.rows += table.num_rows

    def __exit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._file is not None:
            self._file.close()


@dataclass(frozen=True)
class _Cohort:
    """One chunk of customers; days are offsets from the window start (end_date = last day)."""

    customer_ids: pa.Array
    customer_number: np.ndarray  # 1..N, whatever the id shape (unique, for the emails)
    profile: np.ndarray  # index into PROFILES
    signup_day: np.ndarray  # negative when the member joined before the window
    active_from: np.ndarray  # first day of visits and purchases
    active_to: np.ndarray  # last day of visits and purchases
    daily_rate: np.ndarray  # expected visits per day (before seasonality)
    home_club: np.ndarray  # index into CLUBS


def _draw_cohort(
    rng: np.random.Generator, numbers: np.ndarray, customer_ids: pa.Array, history_days: int
) -> _Cohort:
    n = len(customer_ids)
    end_day = history_days - 1
    shares = np.array([p.share for p in PROFILES])
    profile = rng.choice(len(PROFILES), size=n, p=shares / shares.sum())

    def per_customer(field: str) -> tuple[np.ndarray, np.ndarray]:
        bounds = np.array([getattr(p, field) for p in PROFILES])
        return bounds[profile, 0], bounds[profile, 1]

    signup_day = end_day - rng.integers(*per_customer("signup_days_ago"), endpoint=True)
    active_from = np.maximum(signup_day, 0)
    active_to = end_day - rng.integers(*per_customer("stopped_days_ago"), endpoint=True)
    active_to = np.clip(active_to, np.minimum(active_from + _MIN_ACTIVE_DAYS, end_day), end_day)
    return _Cohort(
        customer_ids=customer_ids,
        customer_number=numbers,
        profile=profile,
        signup_day=signup_day,
        active_from=active_from,
        active_to=active_to,
        daily_rate=rng.uniform(*per_customer("weekly_visits")) / 7,
        home_club=rng.choice(len(CLUBS), size=n, p=_CLUB_WEIGHTS),
    )


def _packages_table(package_ids: list[str]) -> pa.Table:
    return pa.table(
        {
            "package_id": pa.array(package_ids, pa.string()),
            "package_name": [p.package_name for p in PACKAGES],
            "price": _money(np.array([p.price_cents for p in PACKAGES], dtype=np.int64)),
            "duration_days": pa.array([p.duration_days for p in PACKAGES], pa.int32()),
            "sessions_included": pa.array([p.sessions_included for p in PACKAGES], pa.int32()),
        }
    )


def _customers_table(rng: np.random.Generator, cohort: _Cohort, start: np.datetime64) -> pa.Table:
    n = len(cohort.customer_ids)
    gender = rng.choice(3, size=n, p=[0.49, 0.48, 0.03])  # Female, Male, Other
    female = (gender == 0) | ((gender == 2) & (rng.random(n) < 0.5))
    first_name = np.where(
        female,
        rng.integers(0, len(_FEMALE_NAMES), n),
        len(_FEMALE_NAMES) + rng.integers(0, len(_MALE_NAMES), n),
    )
    first_arr = _labels(_FEMALE_NAMES + _MALE_NAMES, first_name)
    last_arr = _labels(_LAST_NAMES, rng.integers(0, len(_LAST_NAMES), n))
    number = pa.array(cohort.customer_number, pa.int64()).cast(pa.string())  # unique
    email = pc.utf8_lower(
        pc.binary_join_element_wise(first_arr, ".", last_arr, number, "@example.com", "")
    )
    signup_date = start + cohort.signup_day
    age_at_signup_days = (np.clip(rng.normal(31, 9, n), 16, 70) * 365.25).astype(np.int64)
    return pa.table(
        {
            "customer_id": cohort.customer_ids,
            "first_name": first_arr,
            "last_name": last_arr,
            "email": email,
            "gender": _labels(("Female", "Male", "Other"), gender),
            "date_of_birth": pa.array(signup_date - age_at_signup_days),
            "signup_date": pa.array(signup_date),
            "home_club": _labels(CLUBS, cohort.home_club),
        }
    )


def _transactions_table(
    rng: np.random.Generator, cohort: _Cohort, start: np.datetime64, package_ids: list[str]
) -> pa.Table:
    """Recurring purchases: one stream per customer plan and add-on, renewed while active.

    Without transaction_id: the caller numbers the rows (the writer orders the columns)."""
    stream_cust, stream_pkg, stream_every = [], [], []
    for k, prof in enumerate(PROFILES):
        members = np.flatnonzero(cohort.profile == k)
        plan_shares = np.array([plan.share for plan in prof.plans])
        choice = rng.choice(len(prof.plans), size=len(members), p=plan_shares / plan_shares.sum())
        picks = [(plan, members[choice == j]) for j, plan in enumerate(prof.plans)]
        picks += [(addon, members[rng.random(len(members)) < addon.share]) for addon in prof.addons]
        for plan, who in picks:
            stream_cust.append(who)
            stream_pkg.append(np.full(len(who), _PKG_INDEX[plan.package_id]))
            stream_every.append(rng.integers(*plan.every_days, len(who), endpoint=True))
    cust = np.concatenate(stream_cust)
    pkg = np.concatenate(stream_pkg)
    every = np.concatenate(stream_every)

    # Members who joined inside the window buy on signup day; older members are mid-cycle.
    active_to = cohort.active_to[cust]
    first_buy = cohort.active_from[cust] + np.where(
        cohort.signup_day[cust] >= 0, 0, rng.integers(0, every, dtype=np.int64)
    )
    count = np.where(first_buy <= active_to, (active_to - first_buy) // every + 1, 0)
    stream = np.repeat(np.arange(len(cust)), count)
    nth = np.arange(len(stream)) - np.repeat(np.cumsum(count) - count, count)
    day = first_buy[stream] + nth * every[stream] + rng.integers(0, 3, len(stream))
    day = np.minimum(day, active_to[stream])
    seconds = day * 86_400 + rng.integers(6 * 3600, 21 * 3600, len(day))
    order = np.lexsort((seconds, cust[stream]))
    cust, pkg, seconds = cust[stream][order], pkg[stream][order], seconds[order]

    price = np.array([p.price_cents for p in PACKAGES], dtype=np.int64)[pkg]
    discounted = rng.random(len(price)) < DISCOUNT_SHARE
    amount = np.where(discounted, (price * (100 - DISCOUNT_PERCENT) + 50) // 100, price)
    # Monthly memberships are mostly paid by direct debit, everything else over the counter.
    monthly = np.array([p.duration_days == 30 and p.sessions_included is None for p in PACKAGES])
    payment = np.where(
        monthly[pkg] & (rng.random(len(pkg)) < 0.85),
        3,
        rng.choice(3, size=len(pkg), p=[0.70, 0.20, 0.10]),
    )
    return pa.table(
        {
            "customer_id": cohort.customer_ids.take(pa.array(cust)),
            "transaction_date": pa.array(start + seconds.astype("timedelta64[s]")),
            "amount": _money(amount),
            "package_id": _labels(package_ids, pkg),
            "payment_method": _labels(("card", "online", "cash", "direct_debit"), payment),
        }
    )


def _attendance_table(
    rng: np.random.Generator,
    cohort: _Cohort,
    start: np.datetime64,
    history_days: int,
) -> pa.Table:
    """Visits with per-member habits: usual time slot, home club, a stay of 30-150 minutes.

    Without attendance_id: the caller numbers the rows (the writer orders the columns)."""
    n = len(cohort.customer_ids)
    dates = start + np.arange(history_days)
    weekday = (dates.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    month = dates.astype("datetime64[M]").astype(np.int64) % 12
    season = _WEEKDAY_FACTOR[weekday] * _MONTH_FACTOR[month]
    cust, day = _visit_days(rng, cohort, season)
    rows = len(cust)

    # Each member has a habitual time slot on weekdays; weekends are spread over the day.
    habit_hour = rng.choice([6.5, 12.25, 18.0], size=n, p=[0.35, 0.20, 0.45])
    habit_hour = habit_hour + rng.normal(0, 0.5, n)
    weekend = weekday[day] >= 5
    hour = np.where(weekend, rng.uniform(8, 17, rows), habit_hour[cust] + rng.normal(0, 0.75, rows))
    # Opening hours 05:30-23:30: the last check-in at 21:00 still ends before midnight.
    check_in = day * 86_400 + (np.clip(hour, 5.5, 21.0) * 3600).astype(np.int64)
    stay = (np.clip(rng.normal(70, 22, rows), 30, 150) * 60).astype(np.int64)
    elsewhere = rng.random(rows) >= _HOME_CLUB_SHARE
    club = np.where(elsewhere, rng.integers(0, len(CLUBS), rows), cohort.home_club[cust])
    return pa.table(
        {
            "customer_id": cohort.customer_ids.take(pa.array(cust)),
            "check_in": pa.array(start + check_in.astype("timedelta64[s]")),
            "check_out": pa.array(start + (check_in + stay).astype("timedelta64[s]")),
            "club": _labels(CLUBS, club),
        }
    )


def _visit_days(
    rng: np.random.Generator, cohort: _Cohort, season: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One Bernoulli draw per customer and day, so nobody checks in twice on the same day.

    Returns (customer index, day offset) ordered by customer, then day; kept separate so the
    customer x day matrices are freed before the per-visit columns are built.
    """
    days = np.arange(len(season))
    prob = cohort.daily_rate.astype(np.float32)[:, None] * season.astype(np.float32)[None, :]
    prob[(days < cohort.active_from[:, None]) | (days > cohort.active_to[:, None])] = 0
    return np.nonzero(rng.random(prob.shape, dtype=np.float32) < prob)


def _labels(values: Sequence[str], index: np.ndarray) -> pa.Array:
    return pa.array(values, pa.string()).take(pa.array(index))


def _money(cents: np.ndarray) -> pa.Array:
    """Exact 2-decimal text; float formatting would print 49.0 or 44.099999999."""
    units = pa.array(cents // 100).cast(pa.string())
    frac = pc.utf8_lpad(pa.array(cents % 100).cast(pa.string()), 2, padding="0")
    return pc.binary_join_element_wise(units, frac, ".")
