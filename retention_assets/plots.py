"""The analysts' figures, drawn from the analytics frames: pure matplotlib + pandas, no Dagster.

The same figures go into the Dagster UI (as markdown metadata) and into the HTML report, so
both show one picture of the results. Figures are built on `matplotlib.figure.Figure` with the
Agg canvas, never through pyplot: no global figure state to leak between runs or threads.
"""

from __future__ import annotations

import base64
import io

import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.path import Path
from matplotlib.textpath import TextPath
from matplotlib.transforms import Affine2D

from .core.clv import CHURNED, HIGH, LOW, MEDIUM
from .core.migration import ordered_segments
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


# Cohort cells: fixed size, so a figure with 40 cohorts grows instead of squeezing its numbers.
_CELL_WIDTH, _CELL_HEIGHT = 0.42, 0.26
_RECENT_COHORTS = 3  # thin lines of the latest cohorts beside the average curve


def cohort_heatmap_figure(cohorts: pd.DataFrame) -> Figure:
    """The triangular retention table: one row per signup-month cohort (oldest on top), one
    column per month since signup, coloured by active_share with the percentage in each cell.

    The as_of month's cells are hatched: the month is incomplete, so its shares run low and
    should not be read as a drop. Months before the first check-in on record are grey, without
    a number. The figure grows with the number of cohorts and months, so the numbers stay
    readable at 36+ cohorts.
    """
    if cohorts.empty:
        return _empty_figure("Cohort retention: no customers signed up by as_of")
    shares = cohorts.pivot(
        index="cohort_month", columns="months_since_signup", values="active_share"
    ).sort_index()
    partial = (
        cohorts.pivot(index="cohort_month", columns="months_since_signup", values="partial")
        .reindex(index=shares.index, columns=shares.columns)
        .fillna(False)
        .astype("bool")
    )
    sizes = cohorts.groupby("cohort_month")["cohort_size"].first().reindex(shares.index)
    n_rows, n_cols = shares.shape
    values = shares.to_numpy(dtype="float64")  # NaN below the triangle: drawn transparent
    unobserved = cohorts.loc[cohorts["active_share"].isna()]
    rows_unobserved = shares.index.get_indexer(unobserved["cohort_month"])
    cols_unobserved = shares.columns.get_indexer(unobserved["months_since_signup"])

    width = max(7.0, 2.8 + _CELL_WIDTH * n_cols)
    height = max(3.0, 1.6 + _CELL_HEIGHT * n_rows)
    # Margins fixed in inches instead of a layout engine: the size already follows the cells.
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    fig.subplots_adjust(
        left=1.5 / width, right=1 - 0.3 / width, top=1 - 1.1 / height, bottom=0.15 / height
    )
    ax = fig.subplots()
    image = ax.imshow(values, cmap="YlGnBu", vmin=0.0, vmax=1.0, aspect="auto")
    fontsize = 7 if n_cols <= 24 else 6
    rows, cols = (~np.isnan(values)).nonzero()
    shown = values[rows, cols]
    ax.add_collection(
        CellLabels(
            [f"{value:.0%}" for value in shown],
            np.column_stack([cols, rows]),
            ax,
            fontsize=fontsize,
            facecolors=np.where(shown > 0.6, "white", "black"),
        ),
        autolim=False,
    )
    if len(rows_unobserved):  # one image over the cells, transparent elsewhere
        grey = np.zeros((n_rows, n_cols, 4))
        grey[rows_unobserved, cols_unobserved] = to_rgba("#e5e5e5")
        ax.imshow(grey, aspect="auto", interpolation="nearest")
    rows_partial, cols_partial = partial.to_numpy().nonzero()
    if len(rows_partial):
        ax.bar(
            cols_partial,
            1.0,
            bottom=rows_partial - 0.5,
            width=1.0,
            linewidth=0,
            fill=False,
            hatch="///",
            edgecolor="#95a5a6",
        )
    ax.set_ylim(n_rows - 0.5, -0.5)  # bar() resets the limits imshow set
    ax.set_xlim(-0.5, n_cols - 0.5)
    ax.set_yticks(
        range(n_rows),
        labels=[
            f"{pd.Timestamp(str(month)):%Y-%m} ({size:,})"
            for month, size in zip(shares.index, sizes, strict=True)
        ],
        fontsize=fontsize + 1,
    )
    ax.set_xticks(range(n_cols), labels=[str(k) for k in shares.columns], fontsize=fontsize + 1)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("months since signup (k)")
    ax.set_ylabel("signup month (cohort size)")
    ax.set_title(
        "Cohort retention: share with a check-in k months after signup"
        + ("\n(hatched: the as_of month, still incomplete)" if len(rows_partial) else "")
        + ("\n(grey: before the first check-in on record)" if len(rows_unobserved) else ""),
        fontsize=10,
    )
    colourbar = fig.colorbar(image, ax=ax, shrink=min(1.0, 8 / max(n_rows, 1) + 0.3))
    colourbar.ax.yaxis.set_major_formatter(mticker.PercentFormatter(1.0))
    return fig


class CellLabels(PathCollection):
    """Centred texts at data positions, drawn as one collection of glyph outlines: the same
    picture as a Text per cell at a fraction of the cost for a heatmap's thousand-odd cells,
    each distinct text laid out once. `texts` keeps the strings, in the order of the offsets."""

    def __init__(
        self,
        texts: list[str],
        offsets: np.ndarray,
        ax: Axes,
        fontsize: float,
        **style: object,
    ) -> None:
        font = FontProperties(size=fontsize)
        outlines: dict[str, Path] = {}
        for text in texts:
            if text not in outlines:
                path = TextPath((0, 0), text, prop=font)
                # The control points' box: within a hair of the outline's, and cheap.
                centre = (path.vertices.min(axis=0) + path.vertices.max(axis=0)) / 2
                outlines[text] = path.transformed(Affine2D().translate(*-centre))
        super().__init__(
            [outlines[text] for text in texts],
            offsets=offsets,
            offset_transform=ax.transData,
            linewidths=0,
            **style,
        )
        # Outlines in points, whatever the dpi the figure is saved at.
        self.set_transform(Affine2D().scale(1 / 72) + ax.figure.dpi_scale_trans)
        self.texts = texts


def cohort_curve_figure(cohorts: pd.DataFrame) -> Figure:
    """Average retention curve: for each month since signup, the active share over all cohorts
    weighted by cohort size (total active / total customers), from complete, observed months
    only: the as_of month would pull every curve down at its end, and months before the first
    check-in on record would count their cohorts as absent. The latest cohorts are drawn as
    thin lines, to see whether recent signups retain better or worse than the average.
    """
    complete = cohorts.loc[~cohorts["partial"].astype("bool") & cohorts["active_share"].notna()]
    if complete.empty:
        return _empty_figure("Retention curve: no complete month since any signup yet")
    totals = complete.groupby("months_since_signup")[["active_customers", "cohort_size"]].sum()
    curve = totals["active_customers"] / totals["cohort_size"]
    counted = complete.groupby("months_since_signup").size()

    fig = _figure(9, 4.5)
    ax = fig.subplots()
    ax.plot(
        curve.index,
        curve.to_numpy(),
        marker="o",
        markersize=3,
        linewidth=2.2,
        color="#2c3e50",
        label="all cohorts, weighted by size",
    )
    by_cohort = complete.groupby("cohort_month")
    recent = [month for month, rows in by_cohort if len(rows) >= 2][-_RECENT_COHORTS:]
    for month, colour in zip(recent, ["#4682b4", "#d35400", "#8e44ad"], strict=False):
        rows = by_cohort.get_group(month).sort_values("months_since_signup")
        ax.plot(
            rows["months_since_signup"],
            rows["active_share"],
            linewidth=0.9,
            alpha=0.8,
            color=colour,
            label=f"cohort {pd.Timestamp(str(month)):%Y-%m} ({int(rows['cohort_size'].iloc[0]):,})",
        )
    ax.set_ylim(0, 1.02)
    ax.yaxis.set_major_formatter(mticker.PercentFormatter(1.0))
    ax.xaxis.set_major_locator(mticker.MaxNLocator(integer=True))
    ax.set_xlabel(
        "months since signup (k); the average at large k covers only the oldest cohorts "
        f"({int(counted.iloc[-1])} at k={int(counted.index[-1])})",
        fontsize=8,
    )
    ax.set_ylabel("share of the cohort with a check-in")
    ax.set_title("Average retention curve (complete months only)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def migration_figure(migration: pd.DataFrame) -> Figure:
    """Segment transitions between the previous snapshot (rows) and now (columns): the number
    of customers and the share of the row in each cell, coloured by that share, so a small
    segment's moves stand out as much as a big one's."""
    if migration.empty:
        return _empty_figure("Segment migration: no customers in either snapshot")
    order = ordered_segments([*migration["from_segment"], *migration["to_segment"]])
    sources = [name for name in order if name in set(migration["from_segment"])]
    targets = [name for name in order if name in set(migration["to_segment"])]
    counts = (
        migration.pivot(index="from_segment", columns="to_segment", values="customers")
        .reindex(index=sources, columns=targets)
        .fillna(0)
        .astype("int64")
    )
    shares = migration.pivot(index="from_segment", columns="to_segment", values="share").reindex(
        index=sources, columns=targets
    )
    values = shares.to_numpy(dtype="float64")

    fig = _figure(max(6.0, 2.5 + 1.25 * len(targets)), max(3.0, 1.5 + 0.6 * len(sources)))
    ax = fig.subplots()
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    for row in range(len(sources)):
        for col in range(len(targets)):
            share = values[row, col]
            if share == share:  # not NaN: a pair with customers
                ax.text(
                    col,
                    row,
                    f"{counts.iat[row, col]:,}\n{share:.0%}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if share > 0.6 else "black",
                )
    ax.set_yticks(
        range(len(sources)),
        labels=[f"{name} ({total:,})" for name, total in counts.sum(axis=1).items()],
    )
    ax.set_xticks(
        range(len(targets)),
        labels=[f"{name} ({total:,})" for name, total in counts.sum(axis=0).items()],
        rotation=20,
        ha="right",
    )
    ax.set_ylabel("segment at the previous snapshot (customers)")
    ax.set_xlabel("segment now (customers)")
    ax.set_title("Segment migration: customers and share of the row")
    colourbar = fig.colorbar(image, ax=ax)
    colourbar.ax.yaxis.set_major_formatter(mticker.PercentFormatter(1.0))
    return fig


def _empty_figure(message: str) -> Figure:
    fig = _figure(6, 2)
    ax = fig.subplots()
    ax.text(0.5, 0.5, message, ha="center", va="center")
    ax.set_axis_off()
    return fig


P_ALIVE_BINS = 20  # 5% wide


def p_alive_figure(forecast: pd.DataFrame) -> Figure:
    """Histogram of p_alive: how many customers the BG/NBD believes still active, and how sure
    it is (mass near 0 and 1), with the mean, whose sum over customers is the expected number
    of active customers."""
    alive = forecast["p_alive"].astype("float64")
    fig = _figure(9, 4)
    ax = fig.subplots()
    ax.hist(alive, bins=P_ALIVE_BINS, range=(0.0, 1.0), color="#2e8b57", edgecolor="white")
    if len(alive):
        ax.axvline(alive.mean(), color="#c0392b", linestyle="--", label=f"mean {alive.mean():.0%}")
        ax.legend(loc="upper center")
    ax.set_title(
        f"P(alive) per customer ({len(alive):,} customers, {alive.sum():,.0f} expected active)"
    )
    ax.set_xlabel("p_alive (BG/NBD probability the customer is still active at as_of)")
    ax.set_ylabel("customers")
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(mticker.PercentFormatter(1.0))
    ax.yaxis.set_major_formatter(mticker.StrMethodFormatter("{x:,.0f}"))
    ax.grid(axis="y", alpha=0.3)
    return fig


NO_SEGMENT = "(no segment)"


def clv_by_segment_figure(forecast_with_segment: pd.DataFrame) -> Figure:
    """Box plot of predicted_clv per RFM segment (best segment on top, in the segment colours):
    whether the probabilistic model agrees with the segmentation on who is worth most.
    Customers without a segment are shown as NO_SEGMENT."""
    frame = forecast_with_segment.assign(
        segment=forecast_with_segment["segment"].astype("object").fillna(NO_SEGMENT)
    )
    names = segment_order(frame["segment"])
    colours = segment_colours(names)
    values = [frame.loc[frame["segment"] == name, "predicted_clv"].to_numpy() for name in names]

    fig = _figure(9, 1.6 + 0.7 * max(len(names), 1))
    ax = fig.subplots()
    if names:
        boxes = ax.boxplot(
            values,
            orientation="horizontal",
            tick_labels=[f"{n} ({len(v):,})" for n, v in zip(names, values, strict=True)],
            showmeans=True,
            patch_artist=True,
            flierprops={"markersize": 2, "alpha": 0.4},
            medianprops={"color": "black"},
        )
        for box, name in zip(boxes["boxes"], names, strict=True):
            box.set_facecolor(colours[name])
            box.set_alpha(0.75)
        ax.invert_yaxis()  # best segment on top
    ax.set_title("predicted_clv by RFM segment (customers)")
    ax.set_xlabel("predicted_clv (box: quartiles, line: median, triangle: mean)")
    ax.xaxis.set_major_formatter(mticker.StrMethodFormatter("{x:,.0f}"))
    ax.grid(axis="x", alpha=0.3)
    return fig


def holdout_figure(by_bucket: pd.DataFrame) -> Figure:
    """Mean purchases per customer in the holdout weeks, predicted against actual, by the
    number of repeat purchases before them: the classic calibration check of a BG/NBD, where
    the two lines should lie on top of each other."""
    positions = list(range(len(by_bucket)))
    fig = _figure(9, 4.2)
    ax = fig.subplots()
    ax.plot(
        positions,
        by_bucket["actual_mean"],
        marker="o",
        color="#2c3e50",
        label="actual",
    )
    ax.plot(
        positions,
        by_bucket["predicted_mean"],
        marker="s",
        linestyle="--",
        color="#d35400",
        label="predicted (BG/NBD)",
    )
    ax.set_xticks(
        positions,
        labels=[
            f"{bucket}\n({customers:,})"
            for bucket, customers in zip(by_bucket["bucket"], by_bucket["customers"], strict=True)
        ],
    )
    ax.set_title("Holdout: mean purchases per customer, predicted vs actual")
    ax.set_xlabel("repeat purchases before the holdout weeks (customers)")
    ax.set_ylabel("purchases in the holdout weeks")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return fig
