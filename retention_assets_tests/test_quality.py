"""Each check's judgement passing and failing on crafted frames, with its figures."""

import datetime as dt

import pandas as pd
import pyarrow as pa
import pytest

from retention_assets.core import quality
from retention_assets.core.lookup import is_in, same_ids

UNIVERSE = pd.Series([f"C{i}" for i in range(10)])


def segmented(segments):
    return pd.DataFrame({"customer_id": UNIVERSE[: len(segments)], "segment": segments})


GOOD = ["A"] * 3 + ["B"] * 3 + ["C"] * 2 + ["D"] * 2


def test_reject_fraction():
    ok = quality.reject_fraction(100, 5, 0.05)
    assert ok.passed and ok.figures == {
        "rows_read": 100,
        "rows_rejected": 5,
        "reject_fraction": 0.05,
    }
    bad = quality.reject_fraction(100, 6, 0.05)
    assert not bad.passed and bad.description == "6 of 100 rows rejected (6.00%; limit 5.00%)"
    assert quality.reject_fraction(0, 0, 0.05).passed


def test_segment_counts_pass_with_counts_per_segment():
    verdict = quality.segment_counts(segmented(GOOD), UNIVERSE, 4)
    assert verdict.passed
    assert {k: v for k, v in verdict.figures.items() if k.startswith("segment/")} == {
        "segment/A": 3,
        "segment/B": 3,
        "segment/C": 2,
        "segment/D": 2,
    }


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (segmented(["A"] * 4 + ["B"] * 3 + ["C"] * 3), "3 segments instead of 4"),
        (segmented(GOOD[:9]), "1 customers of the universe missing"),
        (
            pd.concat([segmented(GOOD), segmented(["A"])], ignore_index=True),
            "1 customers more than once",
        ),
        (
            segmented(GOOD).assign(customer_id=["X"] + UNIVERSE[1:].tolist()),
            "1 customers outside the universe",
        ),
    ],
)
def test_segment_counts_fail(frame, expected):
    verdict = quality.segment_counts(frame, UNIVERSE, 4)
    assert not verdict.passed and expected in verdict.description


def test_segment_shares_warn_below_minimum():
    frame = segmented(["A"] * 7 + ["B", "C", "D"])
    assert quality.segment_shares(frame, 0.1).passed
    verdict = quality.segment_shares(frame, 0.11)
    assert not verdict.passed
    assert verdict.description == ("segments below the minimum share: B 10.00%, C 10.00%, D 10.00%")
    assert verdict.figures["share/A"] == pytest.approx(0.7)


def test_clv_rows():
    clv = pd.DataFrame({"customer_id": UNIVERSE, "clv_value": 1.0, "n_orders": 1})
    assert quality.clv_rows(clv, UNIVERSE).passed
    negative = clv.assign(clv_value=[-1.0] + [1.0] * 9)
    verdict = quality.clv_rows(negative, UNIVERSE)
    assert not verdict.passed and verdict.figures["negative/clv_value"] == 1
    assert not quality.clv_rows(clv.head(9), UNIVERSE).passed
    duplicated = pd.concat([clv, clv.head(1)], ignore_index=True)
    assert "1 customers more than once" in quality.clv_rows(duplicated, UNIVERSE).description
    stranger = clv.assign(customer_id=[*UNIVERSE[:-1], "C10"])  # as many rows, one not ours
    verdict = quality.clv_rows(stranger, UNIVERSE)
    assert verdict.description == "10 rows for a universe of 10 customers"


def test_forecast_rows():
    forecast = pd.DataFrame(
        {"customer_id": UNIVERSE[::-1], "avg_repeat_spend": float("nan"), "p_alive": 0.5}
    ).assign(expected_purchases=1.0, predicted_clv=2.0)
    assert quality.forecast_rows(forecast, UNIVERSE).passed
    assert quality.forecast_rows(forecast.head(9), UNIVERSE).description == (
        "9 rows for 10 paying customers"
    )
    other = forecast.assign(customer_id=[*UNIVERSE[:-1], "C10"], p_alive=[1.5] + [0.5] * 9)
    verdict = quality.forecast_rows(other, UNIVERSE)
    assert verdict.description == "1 p_alive outside [0, 1]; 10 rows for 10 paying customers"


@pytest.mark.parametrize(
    ("rate", "passed"),
    [(0.0, True), (100.0, True), (-0.1, False), (100.01, False), (float("nan"), False)],
)
def test_retention_bounds(rate, passed):
    assert quality.retention_bounds(rate).passed is passed


def test_feeds_in_step_warns_with_both_dates_when_a_feed_is_behind():
    ok = quality.feeds_in_step(dt.date(2024, 7, 2), dt.date(2024, 7, 9))
    assert ok.passed and ok.figures == {
        "last_check_in": "2024-07-02",
        "last_transaction": "2024-07-09",
        "gap_days": 7,
    }
    behind = quality.feeds_in_step(dt.date(2024, 7, 2), dt.date(2024, 7, 10))
    assert not behind.passed
    assert behind.description == (
        "latest check-in 2024-07-02, latest transaction 2024-07-10: 8 days apart "
        "(more than 7; attendance is behind)"
    )
    assert (
        "transactions is behind"
        in quality.feeds_in_step(dt.date(2024, 8, 1), dt.date(2024, 7, 1)).description
    )
    empty = quality.feeds_in_step(dt.date(2024, 7, 2), None)
    assert not empty.passed and empty.description == "one event feed is empty"


def test_events_before_signup_names_the_customers():
    dates = pd.ArrowDtype(pa.date32())
    activity = pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C3"],
            "signup_date": pd.Series(
                [dt.date(2024, 5, 1), dt.date(2024, 5, 1), dt.date(2024, 5, 1)], dtype=dates
            ),
            "first_event": pd.Series(
                [dt.date(2024, 4, 30), dt.date(2024, 5, 1), None], dtype=dates
            ),
        }
    )
    verdict = quality.events_before_signup(activity)
    assert not verdict.passed
    assert verdict.description == "1 customers have events dated before their signup_date (e.g. C1)"
    assert verdict.figures == {"customers_with_events_before_signup": 1}
    assert quality.events_before_signup(activity.iloc[1:]).passed


def test_is_in_matches_pandas_isin_on_ids_of_every_shape():
    ids = pd.Series(["10", "9", "C01", "é", None, "1"], dtype="str", index=[5, 4, 3, 2, 1, 0])
    candidates = pd.Series(["9", "é", None, "01"], dtype="object")
    got = is_in(ids, candidates)
    assert got.tolist() == [False, True, False, True, True, False]
    assert got.index.tolist() == [5, 4, 3, 2, 1, 0]
    pd.testing.assert_series_equal(got, ids.isin(candidates))
    assert is_in(ids.iloc[:0], candidates).tolist() == []


def test_same_ids_ignores_order_and_repeats_but_not_a_missing_or_extra_id():
    ids = pd.Series(["10", "9", "1"], dtype="str")
    assert same_ids(ids, pd.Series(["1", "10", "9", "9"], dtype="object"))
    assert not same_ids(ids, ids.iloc[:2])
    assert not same_ids(ids.iloc[:2], ids)
    assert same_ids(ids.iloc[:0], pd.Series([], dtype="str"))
