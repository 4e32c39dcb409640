"""The analysts' figures, drawn from tiny frames whose content is known."""

import base64
import datetime as dt
import io

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

from retention_assets import plots
from retention_assets.core.dates import DATE_DTYPE

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def rfm() -> pd.DataFrame:
    segments = ["At Risk"] * 3 + ["High-Value"] + ["Loyalist"] * 5 + ["New/Potential"] * 3
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:02d}" for i in range(1, 13)],
            "recency_days": [121, 157, 212, 29, 0, 10, 10, 0, 61, 1, 0, 112],
            "monetary": [60.0, 59.97, 900.0, 200.0, 100.0, 120.0, 75.5, 15.0, 240.0, 0, 0, 0],
            "segment": segments,
        }
    )


@pytest.fixture
def clv() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["C01", "C02", "C03", "C04", "C05", "C06"],
            "clv_value": [100.0, 0.0, 30.0, 75.5, 200.0, 450.0],
            "predicted_customer_type": [
                "Medium Value",
                "Low Value",
                "Churned",
                "Medium Value",
                "High Value",
                "Churned",
            ],
        }
    )


def history(*rows: tuple[str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "as_of": pd.Series([dt.date.fromisoformat(d) for d, _ in rows], dtype=DATE_DTYPE),
            "retention_rate": [rate for _, rate in rows],
            "churn_days": [90] * len(rows),
        }
    )


def scatter_points(fig: Figure) -> dict[str, int]:
    """Points drawn per legend label, across the figure's scatter collections."""
    ax = fig.axes[0]
    return {
        c.get_label(): len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection)
    }


def test_png_is_a_valid_image_of_the_figure_size(rfm):
    png = plots.to_png(plots.segment_figure(rfm), dpi=50)
    assert png.startswith(PNG_SIGNATURE)
    image = mpimg.imread(io.BytesIO(png))
    height, width = image.shape[:2]
    assert (width, height) == (11 * 50, round(4.6 * 50))


def test_markdown_image_inlines_the_png_bytes():
    markdown = plots.markdown_image(b"\x89PNG-bytes", "segments")
    prefix = "![segments](data:image/png;base64,"
    assert markdown.startswith(prefix) and markdown.endswith(")")
    assert base64.b64decode(markdown[len(prefix) : -1]) == b"\x89PNG-bytes"


def test_sampling_keeps_small_frames_and_is_deterministic_above_the_limit():
    frame = pd.DataFrame({"x": np.arange(25_000)})
    small = frame.head(plots.MAX_SCATTER_POINTS)
    assert plots.sample_points(small) is small
    first, second = plots.sample_points(frame), plots.sample_points(frame)
    assert len(first) == plots.MAX_SCATTER_POINTS
    pd.testing.assert_frame_equal(first, second)
    assert first.index.is_monotonic_increasing and first.index.is_unique
    assert set(first["x"]) <= set(frame["x"])
    assert not plots.sample_points(frame, seed=1).equals(first)


def test_segment_figure_draws_every_customer_with_segment_names_and_sizes(rfm):
    fig = plots.segment_figure(rfm)
    assert scatter_points(fig) == {
        "High-Value (1)": 1,
        "Loyalist (5)": 5,
        "New/Potential (3)": 3,
        "At Risk (3)": 3,
    }
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["High-Value (1)", "Loyalist (5)", "New/Potential (3)", "At Risk (3)"]
    bars = fig.axes[1]
    assert [label.get_text() for label in bars.get_yticklabels()] == [
        "High-Value",
        "Loyalist",
        "New/Potential",
        "At Risk",
    ]
    assert [p.get_width() for p in bars.patches] == [1, 5, 3, 3]
    assert "sample" not in fig.axes[0].get_title()
    assert fig.axes[0].get_xlabel().startswith("recency_days")
    assert fig.axes[0].get_ylabel().startswith("monetary")


def test_segment_figure_samples_the_scatter_but_counts_everyone_in_the_bars(rfm):
    fig = plots.segment_figure(rfm, max_points=6)
    assert sum(scatter_points(fig).values()) == 6
    assert "sample of 6 of 12" in fig.axes[0].get_title()
    assert sum(p.get_width() for p in fig.axes[1].patches) == 12


def test_extra_loyalist_tiers_get_their_own_colour(rfm):
    rfm.loc[rfm["segment"] == "Loyalist", "segment"] = ["Loyalist"] * 3 + ["Loyalist 2"] * 2
    fig = plots.segment_figure(rfm)
    colours = {c.get_label(): tuple(c.get_facecolor()[0]) for c in fig.axes[0].collections}
    assert len(colours) == 5 and len(set(colours.values())) == 5
    assert list(colours)[-1] == "Loyalist 2 (2)"


def test_clv_figure_has_one_box_per_type_best_first(clv):
    fig = plots.clv_figure(clv)
    ax = fig.axes[0]
    labels = [label.get_text() for label in ax.get_yticklabels()]
    assert labels == ["High Value (1)", "Medium Value (2)", "Low Value (1)", "Churned (2)"]
    means = [line.get_xdata()[0] for line in ax.lines if line.get_marker() == "^"]
    assert means == pytest.approx([200.0, 87.75, 0.0, 240.0])  # one box per type, same order
    assert "clv_value" in ax.get_xlabel()


def test_retention_figure_plots_each_snapshot_in_date_order_and_labels_the_latest():
    fig = plots.retention_figure(history(("2024-07-05", 76.92), ("2024-06-30", 66.67)))
    ax = fig.axes[0]
    (line,) = ax.get_lines()
    assert list(line.get_ydata()) == [66.67, 76.92]
    assert [t.get_text() for t in ax.texts] == ["76.92%"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2024-06-30", "2024-07-05"]
    assert "90 days" in ax.get_title()


def test_retention_figure_of_one_snapshot_stays_around_that_date():
    fig = plots.retention_figure(history(("2024-06-30", 66.67)))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["66.67%"]
    low, high = ax.get_xlim()
    assert high - low == pytest.approx(14)  # days, not the years matplotlib picks by default
    assert plots.to_png(fig).startswith(PNG_SIGNATURE)
