"""The analysts' figures, drawn from the analytics frames: pure matplotlib + pandas, no Dagster.

The same figures go into the Dagster UI (as markdown metadata) and into the HTML report, so
both show one picture of the results. Figures are built on `matplotlib.figure.Figure` with the
Agg canvas, never through pyplot: no global figure state to leak between runs or threads.
"""

from __future__ import annotations

import base64
import io

import matplotlib.ticker as mticker
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .core.clv import CHURNED, HIGH, LOW, MEDIUM
from .core.segmentation import AT_RISK, HIGH_VALUE, LOYALIST, NEW_POTENTIAL

# Above this many customers the scatter draws a sample: more points only blur into a blob,
# while the PNG embedded in the run's metadata grows with every point.
MAX_SCATTER_POINTS = 20_000
SAMPLE_SEED = 42  # fixed, so the same data always gives the same picture

# Fixed colours: a segment keeps its colour from run to run and across the UI and the report.
SEGMENT_COLOURS = {
    HIGH_VALUE: "#d4a017",
    LOYALIST: "#2e8b57",
    NEW_POTENTIAL: "#4682b4",
    AT_RISK: "#c0392b",
}
_EXTRA_COLOURS = ["#8e44ad", "#16a085", "#7f8c8d", "#d35400", "#2c3e50", "#e84393"]
SEGMENT_ORDER = [HIGH_VALUE, LOYALIST, NEW_POTENTIAL, AT_RISK]
CUSTOMER_TYPE_ORDER = [HIGH, MEDIUM, LOW, CHURNED]
_MAX_DATE_TICKS = 12


def sample_points(
    frame: pd.DataFrame, max_points: int = MAX_SCATTER_POINTS, seed: int = SAMPLE_SEED
) -> pd.DataFrame:
    """At most `max_points` rows, drawn with a fixed seed and kept in the frame's order, so a
    re-run on the same data draws the same picture."""
    if len(frame) <= max_points:
        return frame
    return frame.sample(n=max_points, random_state=seed).sort_index()


def segment_order(segments: pd.Series) -> list[str]:
    """The four named segments first (best to worst), then any extra tiers ("Loyalist 2")."""
    present = set(segments.unique())
    known = [name for name in SEGMENT_ORDER if name in present]
    return known + sorted(present - set(known))


def segment_colours(names: list[str]) -> dict[str, str]:
    extras = iter(_EXTRA_COLOURS * (len(names) // len(_EXTRA_COLOURS) + 1))
    return {name: SEGMENT_COLOURS.get(name) or next(extras) for name in names}


def segment_figure(rfm: pd.DataFrame, max_points: int = MAX_SCATTER_POINTS) -> Figure:
    """Recency vs monetary per customer coloured by segment, beside the segment sizes.

    The bars count every customer; only the scatter is sampled above `max_points`.
    """
    names = segment_order(rfm["segment"])
    colours = segment_colours(names)
    sizes = rfm["segment"].value_counts().reindex(names)
    shown = sample_points(rfm, max_points)

    fig = _figure(11, 4.6)
    scatter, bars = fig.subplots(1, 2, width_ratios=[2, 1])
    for name in names:
        points = shown.loc[shown["segment"] == name]
        scatter.scatter(
            points["recency_days"],
            points["monetary"],
            s=20 if len(shown) < 2_000 else 4,
            alpha=0.7,
            color=colours[name],
            label=f"{name} ({sizes[name]:,})",
            linewidths=0,
        )
    sampled = f", sample of {len(shown):,} of {len(rfm):,}" if len(shown) < len(rfm) else ""
    scatter.set_title(f"Recency vs monetary by segment{sampled}")
    scatter.set_xlabel("recency_days (days since last visit)")
    scatter.set_ylabel("monetary (total spend)")
    scatter.yaxis.set_major_formatter(mticker.StrMethodFormatter("{x:,.0f}"))
    # Below the axes: inside, it would hide the extreme customers an analyst looks for first.
    scatter.legend(
        title="segment (customers)",
        loc="upper center",
        bbox_to_anchor=(0.5, -0.15),
        ncols=min(len(names), 4),
        fontsize=8,
        markerscale=2,
    )
    scatter.grid(alpha=0.3)

    bars.barh(names, sizes.to_numpy(), color=[colours[n] for n in names])
    bars.invert_yaxis()  # best segment on top, as in the legend
    total = max(len(rfm), 1)
    for y, count in enumerate(sizes.to_numpy()):
        bars.annotate(
            f" {count:,} ({count / total:.0%})",
            (count, y),
            va="center",
            fontsize=8,
        )
    bars.set_title(f"Segment sizes ({len(rfm):,} customers)")
    bars.set_xlabel("customers")
    bars.xaxis.set_major_formatter(mticker.StrMethodFormatter("{x:,.0f}"))
    bars.margins(x=0.3)
    return fig


def clv_figure(clv: pd.DataFrame) -> Figure:
    """Box plot of clv_value per predicted_customer_type: where each type's value lies and how
    far it spreads, which a mean per type would hide."""
    present = set(clv["predicted_customer_type"].unique())
    types = [t for t in CUSTOMER_TYPE_ORDER if t in present] + sorted(
        present - set(CUSTOMER_TYPE_ORDER)
    )
    values = [clv.loc[clv["predicted_customer_type"] == t, "clv_value"].to_numpy() for t in types]

    fig = _figure(9, 1.6 + 0.7 * max(len(types), 1))
    ax = fig.subplots()
    ax.boxplot(
        values,
        orientation="horizontal",
        tick_labels=[f"{t} ({len(v):,})" for t, v in zip(types, values, strict=True)],
        showmeans=True,
        flierprops={"markersize": 2, "alpha": 0.4},
    )
    ax.invert_yaxis()  # High Value on top
    ax.set_title("clv_value by predicted_customer_type (customers)")
    ax.set_xlabel("clv_value (box: quartiles, line: median, triangle: mean)")
    ax.xaxis.set_major_formatter(mticker.StrMethodFormatter("{x:,.0f}"))
    ax.grid(axis="x", alpha=0.3)
    return fig


def retention_figure(history: pd.DataFrame) -> Figure:
    """retention_rate per as_of snapshot, oldest to newest, with the latest value labelled."""
    history = history.sort_values("as_of")
    dates = pd.to_datetime(history["as_of"].astype("str"))
    rates = history["retention_rate"].astype("float64")

    fig = _figure(9, 4)
    ax = fig.subplots()
    ax.plot(dates, rates, marker="o", color="#2e8b57")
    if len(history):
        ax.annotate(
            f"{rates.iloc[-1]:.2f}%",
            (dates.iloc[-1], rates.iloc[-1]),
            textcoords="offset points",
            xytext=(0, 8),
            ha="center",
            fontweight="bold",
        )
        ax.set_ylim(max(0.0, rates.min() - 10), min(100.0, rates.max() + 10))
    if len(history) <= _MAX_DATE_TICKS:  # few snapshots: label exactly those dates
        ax.set_xticks(dates, labels=[d.date().isoformat() for d in dates])
    if len(history) == 1:  # a lone date would otherwise get a range of years around it
        ax.set_xlim(dates.iloc[0] - pd.Timedelta(days=7), dates.iloc[0] + pd.Timedelta(days=7))
    churn_days = history["churn_days"].unique()
    rule = (
        f" (churned = no visit for more than {churn_days[0]} days)" if len(churn_days) == 1 else ""
    )
    ax.set_title(f"Retention rate by snapshot date{rule}")
    ax.set_xlabel("as_of")
    ax.set_ylabel("retention_rate")
    ax.yaxis.set_major_formatter(mticker.PercentFormatter(decimals=None))
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    return fig


def to_png(fig: Figure, dpi: int = 100) -> bytes:
    """Render a figure through the Agg canvas."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    """A PNG inlined as a data URI: the UI's markdown and a single-file HTML page show it with no
    file server behind them."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def markdown_image(png: bytes, alt: str) -> str:
    """Markdown showing the PNG, for MetadataValue.md (the UI allows data: image sources)."""
    return f"![{alt}]({data_uri(png)})"


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig
