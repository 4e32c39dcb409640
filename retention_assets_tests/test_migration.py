"""Segment migration between two hand-made snapshots, counted by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from retention_assets import plots
from retention_assets.core.migration import (
    GONE,
    NEW,
    SegmentGrowth,
    moved_into,
    ordered_segments,
    segment_growth,
    segment_migration,
)


def snapshot(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    """customer_id, segment, monetary; recency and frequency derived so each row differs."""
    return pd.DataFrame(
        {
            "customer_id": pd.Series([r[0] for r in rows], dtype="str"),
            "segment": [r[1] for r in rows],
            "recency_days": [10 * i for i in range(len(rows))],
            "frequency": [len(rows) - i for i in range(len(rows))],
            "monetary": [r[2] for r in rows],
        }
    )


PREVIOUS = snapshot(
    [
        ("C01", "High-Value", 900.0),
        ("C02", "High-Value", 800.0),
        ("C03", "Loyalist", 300.0),
        ("C04", "Loyalist", 250.0),
        ("C05", "Loyalist", 200.0),
        ("C06", "Loyalist", 150.0),
        ("C07", "New/Potential", 50.0),
        ("C08", "New/Potential", 40.0),
        ("C09", "At Risk", 30.0),
        ("C10", "At Risk", 20.0),
        ("C11", "Loyalist 2", 120.0),
    ]
)
CURRENT = snapshot(
    [
        ("C01", "High-Value", 950.0),
        ("C02", "At Risk", 800.0),  # High-Value -> At Risk, biggest spender moved
        ("C03", "At Risk", 300.0),  # Loyalist -> At Risk
        ("C04", "Loyalist", 260.0),
        ("C05", "At Risk", 300.0),  # Loyalist -> At Risk, ties C03 on monetary
        # C06 gone
        ("C07", "Loyalist", 80.0),
        ("C08", "At Risk", 40.0),  # New/Potential -> At Risk
        ("C09", "At Risk", 30.0),  # stayed At Risk: not "moved"
        # C10 gone
        ("C11", "Loyalist 2", 130.0),
        ("C12", "At Risk", 5000.0),  # new: not "moved" although the biggest spender
        ("C13", "New/Potential", 10.0),
    ]
)


def rows(frame: pd.DataFrame) -> list[tuple]:
    return [tuple(r) for r in frame.itertuples(index=False)]


def test_migration_counts_shares_and_order():
    result = segment_migration(PREVIOUS, CURRENT)

    assert list(result.columns) == ["from_segment", "to_segment", "customers", "share"]
    expected = [
        ("High-Value", "High-Value", 1, 1 / 2),
        ("High-Value", "At Risk", 1, 1 / 2),
        ("Loyalist", "Loyalist", 1, 1 / 4),
        ("Loyalist", "At Risk", 2, 2 / 4),
        ("Loyalist", GONE, 1, 1 / 4),
        ("New/Potential", "Loyalist", 1, 1 / 2),
        ("New/Potential", "At Risk", 1, 1 / 2),
        ("At Risk", "At Risk", 1, 1 / 2),
        ("At Risk", GONE, 1, 1 / 2),
        ("Loyalist 2", "Loyalist 2", 1, 1.0),
        (NEW, "New/Potential", 1, 1 / 2),
        (NEW, "At Risk", 1, 1 / 2),
    ]
    assert rows(result[["from_segment", "to_segment", "customers"]]) == [r[:3] for r in expected]
    assert result["share"].tolist() == pytest.approx([r[3] for r in expected])
    assert result["customers"].dtype == "int64"
    assert result["customers"].sum() == 13  # 11 before + 2 new
    assert result.groupby("from_segment")["share"].sum().tolist() == pytest.approx([1.0] * 6)


@pytest.mark.parametrize("previous", [None, PREVIOUS.iloc[0:0]])
def test_no_previous_snapshot_everyone_is_new(previous):
    result = segment_migration(previous, CURRENT)
    assert rows(result) == [
        (NEW, "High-Value", 1, 1 / 11),
        (NEW, "Loyalist", 2, 2 / 11),
        (NEW, "New/Potential", 1, 1 / 11),
        (NEW, "At Risk", 6, 6 / 11),
        (NEW, "Loyalist 2", 1, 1 / 11),
    ]
    assert moved_into(previous, CURRENT).empty
    growth = segment_growth(previous, CURRENT)
    assert growth == SegmentGrowth("At Risk", None, 6, None)
    assert not growth.exceeds(0.0)
    assert "no previous snapshot" in growth.describe()


def test_everyone_gone_and_nothing_at_all():
    assert rows(segment_migration(PREVIOUS.iloc[:2], CURRENT.iloc[0:0])) == [
        ("High-Value", GONE, 2, 1.0)
    ]
    empty = segment_migration(None, CURRENT.iloc[0:0])
    assert empty.empty and list(empty.columns) == [
        "from_segment",
        "to_segment",
        "customers",
        "share",
    ]


def test_moved_into_at_risk_by_monetary_then_id():
    result = moved_into(PREVIOUS, CURRENT)

    assert list(result.columns) == [
        "customer_id",
        "from_segment",
        "recency_days",
        "frequency",
        "monetary",
    ]
    # C12 is new and C09 was At Risk already: neither moved. C03 and C05 tie at 300: by id.
    assert rows(result[["customer_id", "from_segment", "monetary"]]) == [
        ("C02", "High-Value", 800.0),
        ("C03", "Loyalist", 300.0),
        ("C05", "Loyalist", 300.0),
        ("C08", "New/Potential", 40.0),
    ]
    assert result["recency_days"].tolist() == [10, 20, 40, 60]  # from the current frame
    assert result["frequency"].tolist() == [10, 9, 7, 5]
    assert moved_into(PREVIOUS, CURRENT, top=2)["customer_id"].tolist() == ["C02", "C03"]
    assert rows(
        moved_into(PREVIOUS, CURRENT, segment="Loyalist")[["customer_id", "from_segment"]]
    ) == [("C07", "New/Potential")]


def test_growth_figures():
    growth = segment_growth(PREVIOUS, CURRENT)
    assert (growth.before, growth.now) == (2, 6)
    assert growth.growth == pytest.approx(2.0)  # 2 -> 6: +200%
    assert growth.exceeds(0.2) and not growth.exceeds(2.0)
    assert growth.describe() == "At Risk: 2 -> 6 customers (+200.0%)"

    shrink = segment_growth(PREVIOUS, CURRENT, segment="Loyalist")
    assert (shrink.before, shrink.now, shrink.growth) == (4, 2, -0.5)
    assert not shrink.exceeds(0.0)

    appeared = segment_growth(PREVIOUS.iloc[:2], CURRENT)  # no At Risk before
    assert appeared.before == 0 and math.isinf(appeared.growth) and appeared.exceeds(10.0)
    absent = segment_growth(PREVIOUS.iloc[:2], CURRENT.iloc[:1])
    assert (absent.before, absent.now, absent.growth) == (0, 0, 0.0)


def test_order_of_segment_names():
    assert ordered_segments(
        [GONE, "Loyalist 3", "At Risk", NEW, "Loyalist 2", "High-Value", "Loyalist", "At Risk"]
    ) == ["High-Value", "Loyalist", "At Risk", "Loyalist 2", "Loyalist 3", NEW, GONE]


def test_duplicate_customer_is_refused():
    doubled = pd.concat([CURRENT, CURRENT.iloc[:1]])
    with pytest.raises(ValueError, match="C01"):
        segment_migration(PREVIOUS, doubled)
    with pytest.raises(ValueError, match="more than once"):
        segment_growth(doubled, CURRENT)


def test_migration_figure_cells():
    fig = plots.migration_figure(segment_migration(PREVIOUS, CURRENT))
    ax = fig.axes[0]

    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "High-Value (2)",
        "Loyalist (4)",
        "New/Potential (2)",
        "At Risk (2)",
        "Loyalist 2 (1)",
        "(new) (2)",
    ]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "High-Value (1)",
        "Loyalist (2)",
        "New/Potential (1)",
        "At Risk (6)",
        "Loyalist 2 (1)",
        "(gone) (2)",
    ]
    cells = {
        (round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts
    }
    assert len(cells) == 12  # one per pair with customers
    assert cells[(1, 3)] == "2\n50%"  # Loyalist -> At Risk
    assert cells[(1, 5)] == "1\n25%"  # Loyalist -> (gone)
    assert cells[(4, 4)] == "1\n100%"
    assert (0, 1) not in cells  # no High-Value -> Loyalist
    assert plots.to_png(fig).startswith(b"\x89PNG")
    assert plots.to_png(plots.migration_figure(segment_migration(None, CURRENT.iloc[0:0])))
