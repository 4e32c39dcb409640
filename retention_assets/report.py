"""What analysts read: the summary tables, and a one-page HTML report built from the stored tables.

The assets attach the same summaries and figures to their materializations, so the Dagster UI
and the report (for people outside Dagster) never disagree. No Dagster here.
"""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psycopg2.extensions

from .core.forecast import holdout_buckets
from .core.migration import moved_into
from .core.retention import RetentionSummary
from .core.segmentation import AT_RISK, segment_profile
from .plots import (
    CUSTOMER_TYPE_ORDER,
    clv_by_segment_figure,
    clv_figure,
    cohort_curve_figure,
    cohort_heatmap_figure,
    data_uri,
    holdout_figure,
    migration_figure,
    p_alive_figure,
    retention_figure,
    segment_figure,
    segment_order,
    to_png,
)
from .storage.history import previous_snapshot
from .storage.tables import read_table

TOP_CUSTOMERS = 10
HTML_NAME = "index.html"
PNG_NAMES = {
    "segments": "segments.png",
    "clv": "clv_by_type.png",
    "retention": "retention_history.png",
    "migration": "segment_migration.png",
    "cohorts": "cohort_retention.png",
    "cohort_curve": "cohort_curve.png",
    "p_alive": "p_alive.png",
    "clv_by_segment": "predicted_clv_by_segment.png",
    "holdout": "clv_holdout.png",
}


def segment_summary(rfm: pd.DataFrame) -> pd.DataFrame:
    """The segment profile in the plots' order (best segment first), so table and figure line
    up."""
    profile = segment_profile(rfm).set_index("segment")
    return profile.loc[segment_order(rfm["segment"])].reset_index()


def clv_by_type(clv: pd.DataFrame) -> pd.DataFrame:
    """How clv_value is spread within each predicted_customer_type: size, share, centre, tail and
    total, the figures a box plot shows, as numbers."""
    grouped = clv.groupby("predicted_customer_type")["clv_value"]
    summary = grouped.agg(
        customers="size", mean_clv="mean", median_clv="median", max_clv="max", total_clv="sum"
    )
    summary.insert(1, "share", summary["customers"] / max(len(clv), 1))
    order = [t for t in CUSTOMER_TYPE_ORDER if t in summary.index]
    order += sorted(set(summary.index) - set(order))
    return summary.loc[order].rename_axis("predicted_customer_type").reset_index()


def top_customers(clv: pd.DataFrame, n: int = TOP_CUSTOMERS) -> pd.DataFrame:
    """The `n` customers with the highest clv_value; ties go to the lower customer_id, so the list
    is the same on every run."""
    columns = [
        "customer_id",
        "clv_value",
        "predicted_customer_type",
        "n_orders",
        "average_order_value",
        "purchase_frequency",
    ]
    ranked = clv.sort_values(["clv_value", "customer_id"], ascending=[False, True], kind="stable")
    return ranked[columns].head(n).reset_index(drop=True)


def retention_snapshot(history: pd.DataFrame, as_of: dt.date | None = None) -> RetentionSummary:
    """The history row of `as_of` (the snapshot the other tables were computed for), else the
    newest one."""
    history = history.sort_values("as_of")
    matching = history.loc[history["as_of"] == as_of] if as_of is not None else history.iloc[:0]
    row = (matching if len(matching) else history).iloc[-1]
    return RetentionSummary(
        as_of=row["as_of"],
        total_customers=int(row["total_customers"]),
        churned_customers=int(row["churned_customers"]),
        churn_days=int(row["churn_days"]),
    )


@dataclass(frozen=True)
class Report:
    html: Path
    pngs: dict[str, Path]


@dataclass(frozen=True)
class StoredTables:
    """What the report shows, read from the stored tables of one snapshot."""

    rfm: pd.DataFrame
    clv: pd.DataFrame
    history: pd.DataFrame
    migration: pd.DataFrame
    previous: pd.DataFrame | None  # rfm_history at the snapshot before rfm's
    cohorts: pd.DataFrame
    forecast: pd.DataFrame
    holdout: pd.DataFrame

    @classmethod
    def read(cls, conn: psycopg2.extensions.connection, schema: str) -> StoredTables:
        """Raises TableNotFoundError when an asset was never materialized into `schema`."""
        rfm = read_table(conn, schema, "rfm")
        as_of = rfm["as_of"].iloc[0] if len(rfm) else dt.date.max
        return cls(
            rfm=rfm,
            clv=read_table(conn, schema, "clv"),
            history=read_table(conn, schema, "retention"),
            migration=read_table(conn, schema, "segment_migration"),
            previous=previous_snapshot(conn, schema, "rfm_history", as_of),
            cohorts=read_table(conn, schema, "cohort_retention"),
            forecast=read_table(conn, schema, "clv_forecast"),
            holdout=read_table(conn, schema, "clv_holdout"),
        )

    def figures(self) -> dict[str, bytes]:
        segmented = self.forecast.merge(self.rfm[["customer_id", "segment"]], on="customer_id")
        return {
            "segments": to_png(segment_figure(self.rfm)),
            "clv": to_png(clv_figure(self.clv)),
            "retention": to_png(retention_figure(self.history)),
            "migration": to_png(migration_figure(self.migration)),
            "cohorts": to_png(cohort_heatmap_figure(self.cohorts)),
            "cohort_curve": to_png(cohort_curve_figure(self.cohorts)),
            "p_alive": to_png(p_alive_figure(self.forecast)),
            "clv_by_segment": to_png(clv_by_segment_figure(segmented)),
            "holdout": to_png(holdout_figure(holdout_buckets(self.holdout))),
        }


def write_report(conn: psycopg2.extensions.connection, schema: str, out_dir: Path) -> Report:
    """Read the stored tables of `schema` and write the figures as PNGs plus a self-contained
    HTML page (figures inlined) that can be mailed or opened from a share.

    Raises TableNotFoundError when an asset was never materialized into `schema`.
    """
    tables = StoredTables.read(conn, schema)
    pngs = tables.figures()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, png in pngs.items():
        paths[key] = out_dir / PNG_NAMES[key]
        paths[key].write_bytes(png)
    page = out_dir / HTML_NAME
    page.write_text(render_html(tables, pngs), encoding="utf-8")
    return Report(html=page, pngs=paths)


def render_html(tables: StoredTables, pngs: dict[str, bytes]) -> str:
    """The one-page summary: retention first (the headline), then segments and who moved
    between them, cohorts, then customer value."""
    rfm, clv, history = tables.rfm, tables.clv, tables.history
    as_of = rfm["as_of"].iloc[0] if len(rfm) else None
    snapshot = retention_snapshot(history, as_of)
    history_table = history.sort_values("as_of", ascending=False)[
        ["as_of", "retention_rate", "total_customers", "churned_customers", "churn_days"]
    ].assign(retention_rate=lambda f: f["retention_rate"] / 100)
    movers = moved_into(tables.previous, rfm, AT_RISK, TOP_CUSTOMERS)
    since = tables.previous["as_of"].iloc[0] if tables.previous is not None else None
    buckets = holdout_buckets(tables.holdout)
    top_forecast = tables.forecast.sort_values(
        ["predicted_clv", "customer_id"], ascending=[False, True], kind="stable"
    ).head(TOP_CUSTOMERS)
    sections = [
        _section(
            "Retention",
            f'<p class="headline">{html.escape(snapshot.message())}</p>',
            _image(pngs["retention"], "retention rate by snapshot"),
            _table(history_table, percent=("retention_rate",)),
        ),
        _section(
            f"Segments ({len(rfm):,} customers)",
            _table(segment_summary(rfm), percent=("share",)),
            _image(pngs["segments"], "segments: recency vs monetary, and sizes"),
        ),
        _section(
            f"Segment migration since {since or 'no earlier snapshot'}",
            _image(pngs["migration"], "segment migration matrix"),
            f"<h3>Moved into {AT_RISK}: the top {TOP_CUSTOMERS} by spend</h3>",
            _table(movers) if len(movers) else "<p>Nobody moved into At Risk.</p>",
        ),
        _section(
            "Cohort retention",
            _image(pngs["cohorts"], "cohort retention heatmap"),
            _image(pngs["cohort_curve"], "average retention curve"),
        ),
        _section(
            "Customer lifetime value",
            _table(clv_by_type(clv), percent=("share",)),
            _image(pngs["clv"], "clv_value by predicted_customer_type"),
            f"<h3>Top {TOP_CUSTOMERS} customers by clv_value</h3>",
            _table(top_customers(clv)),
        ),
        _section(
            "Probabilistic CLV (BG/NBD + Gamma-Gamma)",
            _image(pngs["p_alive"], "P(alive) histogram"),
            _image(pngs["clv_by_segment"], "predicted_clv by segment"),
            f"<h3>Top {TOP_CUSTOMERS} customers by predicted_clv</h3>",
            _table(top_forecast),
            "<h3>Holdout: predicted vs actual purchases</h3>",
            _image(pngs["holdout"], "holdout predicted vs actual"),
            _table(buckets) if len(buckets) else "<p>Too little history for a holdout.</p>",
        ),
    ]
    title = f"Retention analytics as of {snapshot.as_of.isoformat()}"
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return _PAGE.format(
        title=html.escape(title),
        generated=html.escape(generated),
        body="\n".join(sections),
    )


def _section(heading: str, *parts: str) -> str:
    return f"<section><h2>{html.escape(heading)}</h2>\n" + "\n".join(parts) + "\n</section>"


def _image(png: bytes, alt: str) -> str:
    return f'<img src="{data_uri(png)}" alt="{html.escape(alt)}">'


def _table(frame: pd.DataFrame, percent: tuple[str, ...] = ()) -> str:
    """An HTML table with the numbers as an analyst reads them: thousands separators, two
    decimals, the `percent` columns (fractions) as percentages."""
    return frame.to_html(
        index=False,
        border=0,
        classes="summary",
        formatters={name: "{:.2%}".format for name in percent},
        float_format=lambda v: f"{v:,.2f}",
        na_rep="",
    )


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }}
h1 {{ margin-bottom: 0; }}
.generated {{ color: #777; margin-top: .3em; }}
.headline {{ font-size: 1.1em; font-weight: 600; }}
table.summary {{ border-collapse: collapse; margin: 1em 0; }}
table.summary th, table.summary td {{ padding: .3em .8em; border-bottom: 1px solid #ddd; }}
table.summary th {{ background: #f4f4f4; text-align: left; }}
img {{ max-width: 100%; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p class="generated">Generated {generated} from the stored tables.</p>
{body}
</body>
</html>
"""
