"""The synthetic data generator: file contract, integrity, determinism and archetypes."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.preprocessing import StandardScaler

from retention_assets import generate
from retention_assets.generate import DISCOUNT_PERCENT, ID_SHAPES, PACKAGES, generate_dataset

FILES = ("customers.csv", "packages.csv", "transactions.csv", "attendance.csv")
HEADERS = {
    "customers.csv": "customer_id,first_name,last_name,email,gender,date_of_birth,signup_date,"
    "home_club",
    "packages.csv": "package_id,package_name,price,duration_days,sessions_included",
    "transactions.csv": "transaction_id,customer_id,transaction_date,amount,package_id,"
    "payment_method",
    "attendance.csv": "attendance_id,customer_id,check_in,check_out,club",
}
END = date(2026, 10, 31)


@dataclass
class Dataset:
    out_dir: Path
    rows: dict[str, int]
    end_date: date
    history_days: int

    def read(self, name: str) -> pd.DataFrame:
        return pd.read_csv(self.out_dir / name, dtype=str, keep_default_na=False)


@pytest.fixture(
    scope="module",
    params=[(2000, END, 730), (300, date(2025, 3, 1), 90)],
    ids=["2000x730d", "300x90d"],
)
def dataset(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    customers, end_date, history_days = request.param
    out_dir = tmp_path_factory.mktemp("gen") / "nested" / "out"  # must be created
    # Small chunks, so ids and counters are exercised across chunk boundaries.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(generate, "_CHUNK_CELLS", 450 * history_days)
        rows = generate_dataset(
            out_dir, customers, seed=3, end_date=end_date, history_days=history_days
        )
    return Dataset(out_dir, rows, end_date, history_days)


def test_writes_exactly_the_four_files(dataset: Dataset) -> None:
    assert sorted(p.name for p in dataset.out_dir.iterdir()) == sorted(FILES)
    assert set(dataset.rows) == set(FILES)


def test_returned_row_counts_match_files(dataset: Dataset) -> None:
    for name in FILES:
        lines = (dataset.out_dir / name).read_bytes().count(b"\n")
        assert dataset.rows[name] == lines - 1, name
    assert dataset.rows["packages.csv"] == len(PACKAGES)


def test_format_is_utf8_lf_header_iso(dataset: Dataset) -> None:
    for name in FILES:
        raw = (dataset.out_dir / name).read_bytes()
        assert b"\r" not in raw and b'"' not in raw and raw.endswith(b"\n"), name
        assert not raw.startswith(b"\xef\xbb\xbf")
        assert raw.decode("utf-8").split("\n", 1)[0] == HEADERS[name]
    customers = dataset.read("customers.csv")
    transactions = dataset.read("transactions.csv")
    attendance = dataset.read("attendance.csv")
    date_re, ts_re = r"\d{4}-\d{2}-\d{2}", r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"
    for column in (customers.signup_date, customers.date_of_birth):
        assert column.str.fullmatch(date_re).all()
    for column in (transactions.transaction_date, attendance.check_in, attendance.check_out):
        assert column.str.fullmatch(ts_re).all()
    assert transactions.amount.str.fullmatch(r"\d+\.\d{2}").all()
    assert dataset.read("packages.csv").price.str.fullmatch(r"\d+\.\d{2}").all()


def test_ids_unique_and_formatted(dataset: Dataset) -> None:
    for name, column, pattern in [
        ("customers.csv", "customer_id", r"C\d{7}"),
        ("packages.csv", "package_id", r"P\d{2}"),
        ("transactions.csv", "transaction_id", r"T\d{9}"),
        ("attendance.csv", "attendance_id", r"A\d{10}"),
    ]:
        ids = dataset.read(name)[column]
        assert ids.is_unique, name
        assert ids.str.fullmatch(pattern).all(), name
    assert dataset.read("customers.csv").email.is_unique


def test_referential_integrity(dataset: Dataset) -> None:
    customer_ids = set(dataset.read("customers.csv").customer_id)
    transactions = dataset.read("transactions.csv")
    assert set(transactions.customer_id) <= customer_ids
    assert set(transactions.package_id) <= {p.package_id for p in PACKAGES}
    assert set(dataset.read("attendance.csv").customer_id) <= customer_ids


def test_events_between_signup_and_end_date(dataset: Dataset) -> None:
    customers = dataset.read("customers.csv").set_index("customer_id")
    signup = pd.to_datetime(customers.signup_date)
    window_start = pd.Timestamp(dataset.end_date - timedelta(days=dataset.history_days - 1))
    for name, column in [("transactions.csv", "transaction_date"), ("attendance.csv", "check_in")]:
        events = dataset.read(name)
        day = pd.to_datetime(events[column]).dt.normalize()
        assert (day >= signup.reindex(events.customer_id).to_numpy()).all(), name
        assert (day >= window_start).all(), name
        assert (day <= pd.Timestamp(dataset.end_date)).all(), name
    assert (signup <= pd.Timestamp(dataset.end_date)).all()
    assert (pd.to_datetime(customers.date_of_birth) < signup).all()


def test_check_out_30_to_150_minutes_after_check_in(dataset: Dataset) -> None:
    attendance = dataset.read("attendance.csv")
    stay = pd.to_datetime(attendance.check_out) - pd.to_datetime(attendance.check_in)
    assert stay.min() >= pd.Timedelta(minutes=30)
    assert stay.max() <= pd.Timedelta(minutes=150)
    # One visit per member and day.
    visit_day = attendance.check_in.str[:10]
    assert not pd.DataFrame({"c": attendance.customer_id, "d": visit_day}).duplicated().any()


def test_amounts_are_package_price_or_discounted(dataset: Dataset) -> None:
    packages = dataset.read("packages.csv").set_index("package_id")
    price_cents = (packages.price.astype(float) * 100).round().astype(int)
    transactions = dataset.read("transactions.csv")
    amount = (transactions.amount.astype(float) * 100).round().astype(int).to_numpy()
    list_price = price_cents.reindex(transactions.package_id).to_numpy()
    discounted = (list_price * (100 - DISCOUNT_PERCENT) + 50) // 100
    assert (amount >= 0).all()
    assert ((amount == list_price) | (amount == discounted)).all()
    assert (amount == list_price).mean() > 0.9


def test_packages_are_the_catalogue() -> None:
    prices = {p.package_name: p.price_cents / 100 for p in PACKAGES}
    assert 6 <= len(PACKAGES) <= 10
    assert prices["Day Pass"] == 15.0 and prices["Annual Membership"] == 599.0
    assert prices["Personal Training 10-Pack"] == 450.0


@pytest.fixture(scope="module")
def rfm(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """Per-customer recency / frequency / monetary as of end_date, as the analytics define them."""
    out_dir = tmp_path_factory.mktemp("rfm")
    generate_dataset(out_dir, 2000, seed=11)
    customers = pd.read_csv(out_dir / "customers.csv", dtype=str)
    attendance = pd.read_csv(out_dir / "attendance.csv", dtype=str)
    transactions = pd.read_csv(out_dir / "transactions.csv", dtype={"customer_id": str})
    end = pd.Timestamp(END)
    visit_day = pd.to_datetime(attendance.check_in).dt.normalize()
    visits = visit_day.groupby(attendance.customer_id)
    recent = (visit_day >= end - pd.Timedelta(days=27)).groupby(attendance.customer_id).sum()
    frame = pd.DataFrame(index=pd.Index(sorted(customers.customer_id), name="customer_id"))
    frame["signup"] = pd.to_datetime(customers.set_index("customer_id").signup_date)
    frame["recency"] = (end - visits.max().reindex(frame.index)).dt.days
    frame["recency"] = frame.recency.fillna((end - frame.signup).dt.days)
    frame["frequency"] = visits.size().reindex(frame.index, fill_value=0)
    frame["visits_last_28d"] = recent.reindex(frame.index, fill_value=0)
    monetary = transactions.groupby("customer_id").amount.sum()
    frame["monetary"] = monetary.reindex(frame.index, fill_value=0.0)
    frame["orders"] = transactions.groupby("customer_id").size().reindex(frame.index, fill_value=0)
    return frame


def test_archetypes_present(rfm: pd.DataFrame) -> None:
    end = pd.Timestamp(END)
    lapsed = (rfm.recency > 90).mean()
    weekly_to_the_end = (rfm.visits_last_28d >= 4).mean()
    new = (rfm.signup > end - pd.Timedelta(days=120)).mean()
    rare = (rfm.frequency < 30).mean()
    big_spenders = (rfm.monetary >= 3000).mean()
    assert 0.15 <= lapsed <= 0.40, lapsed
    assert 0.30 <= weekly_to_the_end <= 0.70, weekly_to_the_end
    assert 0.08 <= new <= 0.30, new
    assert 0.15 <= rare <= 0.50, rare
    assert 0.05 <= big_spenders <= 0.20, big_spenders
    # The scale targets: about 140 visits and 10 purchases per customer over two years.
    assert 110 <= rfm.frequency.mean() <= 170
    assert 8 <= rfm.orders.mean() <= 14


def test_kmeans_finds_four_distinct_segments(rfm: pd.DataFrame) -> None:
    features = rfm[["recency", "frequency", "monetary"]]
    scaled = StandardScaler().fit_transform(features)
    labels = KMeans(n_clusters=4, random_state=42, n_init=10).fit_predict(scaled)
    centroids = features.groupby(labels).mean()
    shares = pd.Series(labels).value_counts(normalize=True)
    assert shares.min() >= 0.05, shares

    high_value = centroids.monetary.idxmax()
    rest = centroids.drop(index=high_value)
    at_risk = rest.recency.idxmax()
    rest = rest.drop(index=at_risk)
    new = rest.frequency.idxmin()
    loyal = rest.drop(index=new).index[0]
    assert centroids.monetary[high_value] > 3 * centroids.monetary.drop(index=high_value).max()
    assert centroids.recency[at_risk] > 180
    assert centroids.recency[loyal] < 30 and centroids.recency[high_value] < 30
    assert centroids.frequency[loyal] > 3 * centroids.frequency[new]


def _generate_bytes(out_dir: Path, seed: int, progress: bool = False) -> dict[str, bytes]:
    generate_dataset(out_dir, 300, seed=seed, progress=progress)
    return {name: (out_dir / name).read_bytes() for name in FILES}


def test_same_seed_is_byte_identical_other_seed_differs(tmp_path: Path) -> None:
    first = _generate_bytes(tmp_path / "a", seed=5, progress=True)
    again = _generate_bytes(tmp_path / "b", seed=5)
    other = _generate_bytes(tmp_path / "c", seed=6)
    assert first == again
    assert first["packages.csv"] == other["packages.csv"]
    for name in ("customers.csv", "transactions.csv", "attendance.csv"):
        assert first[name] != other[name], name


def test_rerun_overwrites_existing_files(tmp_path: Path) -> None:
    first = _generate_bytes(tmp_path, seed=5)
    (tmp_path / "attendance.csv").write_text("stale")
    assert _generate_bytes(tmp_path, seed=5) == first


def test_failed_run_leaves_no_partial_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(generate, "_attendance_table", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_dataset(tmp_path, 50)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("customers", "history_days", "message"),
    [(0, 730, "customers"), (10, 10, "history_days")],
)
def test_rejects_bad_arguments(
    tmp_path: Path, customers: int, history_days: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        generate_dataset(tmp_path, customers, history_days=history_days)


# --- id shapes and shuffled rows -------------------------------------------------------------

ID_COLUMNS = {
    "customers.csv": "customer_id",
    "packages.csv": "package_id",
    "transactions.csv": "transaction_id",
    "attendance.csv": "attendance_id",
}
UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def _small(out_dir: Path, seed: int = 5, **options: object) -> dict[str, pd.DataFrame]:
    """300 customers in chunks of 120, so ids and shuffling cross chunk boundaries."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(generate, "_CHUNK_CELLS", 120 * 730)
        generate_dataset(out_dir, 300, seed=seed, **options)
    return {name: pd.read_csv(out_dir / name, dtype=str, keep_default_na=False) for name in FILES}


@pytest.fixture(scope="module", params=[(s, False) for s in ID_SHAPES] + [("int", True)])
def shaped(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, bool, dict[str, pd.DataFrame]]:
    shape, shuffle = request.param
    out_dir = tmp_path_factory.mktemp(f"{shape}-{shuffle}")
    return shape, shuffle, _small(out_dir, id_shape=shape, shuffle=shuffle)


@pytest.fixture(scope="module")
def padded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    return _small(tmp_path_factory.mktemp("padded"))


def test_padded_default_output_is_unchanged(tmp_path: Path) -> None:
    """Pinned digest of the padded output from before id shapes existed: benchmarks and caches
    made with the default must stay comparable. Update it only for a deliberate change."""
    _small(tmp_path)
    digest = hashlib.sha256(b"".join((tmp_path / name).read_bytes() for name in FILES))
    assert digest.hexdigest() == (
        "27693ca48e14403f4794c9818c6fe5b4e2988406e9c2d82f73ae329ce0a86535"
    )


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("shape", ID_SHAPES)
def test_each_shape_reproducible_for_a_seed(tmp_path: Path, shape: str, shuffle: bool) -> None:
    def files(out: str, seed: int) -> dict[str, bytes]:
        _small(tmp_path / out, seed=seed, id_shape=shape, shuffle=shuffle)
        return {name: (tmp_path / out / name).read_bytes() for name in FILES}

    first = files("a", 5)
    assert files("b", 5) == first
    other = files("c", 6)
    for name in ("customers.csv", "transactions.csv", "attendance.csv"):
        assert other[name] != first[name], name


def test_shaped_ids_unique_and_references_consistent(
    shaped: tuple[str, bool, dict[str, pd.DataFrame]],
) -> None:
    _, _, frames = shaped
    for name, column in ID_COLUMNS.items():
        assert frames[name][column].is_unique, name
    customer_ids = set(frames["customers.csv"].customer_id)
    assert set(frames["transactions.csv"].customer_id) <= customer_ids
    assert set(frames["attendance.csv"].customer_id) <= customer_ids
    assert set(frames["transactions.csv"].package_id) <= set(frames["packages.csv"].package_id)
    assert frames["customers.csv"].email.is_unique


def test_shaped_ids_have_their_shape(shaped: tuple[str, bool, dict[str, pd.DataFrame]]) -> None:
    shape, _, frames = shaped
    for name, column in ID_COLUMNS.items():
        ids = frames[name][column]
        if shape == "int":  # exactly 1..N, as an auto-increment key gives
            assert sorted(ids.astype(int)) == list(range(1, len(ids) + 1)), name
            assert ids.str.fullmatch(r"[1-9]\d*").all(), name
        elif shape == "uuid":
            assert ids.str.fullmatch(UUID4).all(), name
            assert all(str(uuid.UUID(i)) == i for i in ids.head(50)), name
        else:
            assert ids.str.fullmatch(r"[CTAP]\d+").all(), name


def test_shape_and_shuffle_only_relabel_and_reorder(
    shaped: tuple[str, bool, dict[str, pd.DataFrame]], padded: dict[str, pd.DataFrame]
) -> None:
    """The same seed gives the same members, visits and purchases whatever the ids look like,
    so benchmarks across shapes compare like with like."""
    _, shuffle, frames = shaped

    def twin_ids(name: str, key: str) -> pd.Series:
        """Our id -> the padded dataset's id, pairing rows on a unique non-id column."""
        ours = frames[name].set_index(key)[ID_COLUMNS[name]]
        theirs = padded[name].set_index(key)[ID_COLUMNS[name]].reindex(ours.index)
        return pd.Series(theirs.to_numpy(), index=ours.to_numpy())

    # Emails carry the customer number (unique in every shape), packages their name.
    twins = {"customer_id": twin_ids("customers.csv", "email")}
    twins["package_id"] = twin_ids("packages.csv", "package_name")
    for name, frame in frames.items():
        ours = frame.drop(columns=ID_COLUMNS[name])
        for column, twin in twins.items():
            if column in ours:
                ours[column] = ours[column].map(twin)
        theirs = padded[name].drop(columns=ID_COLUMNS[name])
        assert ours.notna().all().all(), name
        assert ours.equals(theirs) is not shuffle, name  # same rows in the same order
        columns = list(ours.columns)
        assert ours.sort_values(columns, ignore_index=True).equals(
            theirs.sort_values(columns, ignore_index=True)
        ), name


def test_rejects_unknown_id_shape(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="id_shape"):
        generate_dataset(tmp_path, 10, id_shape="hex")  # type: ignore[arg-type]


def test_cli_passes_id_shape_and_shuffle(tmp_path: Path) -> None:
    from retention_assets.cli import main

    argv = ["generate", "--customers", "30", "--seed", "5", "--id-shape", "uuid", "--shuffle"]
    assert main([*argv, "--out", str(tmp_path / "cli")]) == 0
    generate_dataset(tmp_path / "api", 30, seed=5, id_shape="uuid", shuffle=True)
    for name in FILES:
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "api" / name).read_bytes()
