"""The analysts' view of the hand fixture: the HTML report, the CLI command and the metadata the
assets attach for the Dagster UI, all from one materialization."""

import re
from html.parser import HTMLParser

import pandas as pd
import psycopg2
import pytest

from retention_assets.assets import clv as clv_asset
from retention_assets.assets import clv_forecast as clv_forecast_asset
from retention_assets.assets import cohort_retention as cohort_retention_asset
from retention_assets.assets import rfm as rfm_asset
from retention_assets.assets import segment_migration as segment_migration_asset
from retention_assets.cli import main
from retention_assets.report import segment_summary, top_customers, write_report
from retention_assets.storage.tables import read_table

from .graph_helpers import materialize
from .hand_fixture import AS_OF, EXPECTED, HAND_DIR

SEGMENT_COUNTS = {"High-Value": 1, "Loyalist": 5, "New/Potential": 3, "At Risk": 3}


class _Tables(HTMLParser):
    """Every <table> of a page as a list of rows of cell texts (stdlib only)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def tables_of(html: str) -> dict[str, list[dict[str, str]]]:
    """The page's tables keyed by their first header (the second table with the same first
    header as "header#2", ...), rows as dicts."""
    parser = _Tables()
    parser.feed(html)
    tables: dict[str, list[dict[str, str]]] = {}
    for header, *rows in parser.tables:
        seen = sum(1 for key in tables if key.split("#")[0] == header[0])
        key = header[0] if not seen else f"{header[0]}#{seen + 1}"
        tables[key] = [dict(zip(header, row, strict=True)) for row in rows]
    return tables


@pytest.fixture
def schema(database_url, request):
    name = f"r_{request.node.name[:40].lower()}"
    yield name
    with psycopg2.connect(database_url.replace("+psycopg2", "")) as conn, conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


RUN_CONFIG = {"ops": {"rfm_features": {"config": {"as_of": AS_OF.isoformat()}}}}
HAND_SCHEMA = "r_hand_fixture"


@pytest.fixture(scope="module")
def materialized(database_url):
    """One materialization of the hand fixture (into HAND_SCHEMA) for the tests that only read
    what it stored."""
    result = materialize(HAND_DIR, database_url, HAND_SCHEMA, RUN_CONFIG)
    assert result.success, result.failure_messages()
    yield result
    with psycopg2.connect(database_url.replace("+psycopg2", "")) as conn, conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{HAND_SCHEMA}" CASCADE')


def test_report_shows_segments_clv_and_the_retention_rate(materialized, conn, tmp_path):
    report = write_report(conn, HAND_SCHEMA, tmp_path / "out")
    html = report.html.read_text()
    assert "Retention rate: 66.67% (4 of 12 customers churned, as of 2024-06-30)" in html
    assert "Retention analytics as of 2024-06-30" in html
    tables = tables_of(html)

    segments = tables["segment"]
    assert {row["segment"]: int(row["customers"]) for row in segments} == SEGMENT_COUNTS
    assert [row["segment"] for row in segments] == list(SEGMENT_COUNTS)  # best segment first
    assert {row["segment"]: row["share"] for row in segments}["Loyalist"] == "41.67%"

    history = tables["as_of"]
    assert history == [
        {
            "as_of": "2024-06-30",
            "retention_rate": "66.67%",
            "total_customers": "12",
            "churned_customers": "4",
            "churn_days": "90",
        }
    ]

    by_type = {row["predicted_customer_type"]: row for row in tables["predicted_customer_type"]}
    expected_types = EXPECTED["predicted_customer_type"].value_counts()
    assert {t: int(row["customers"]) for t, row in by_type.items()} == expected_types.to_dict()
    assert by_type["High Value"]["total_clv"] == "440.00"  # C06 200 + C11 240

    top = tables["customer_id"]
    assert [row["customer_id"] for row in top[:3]] == ["C09", "C11", "C06"]
    assert len(top) == 10
    # Ties on clv_value 0.00 (C02, C07, C08, C12) go to the lower customer_id.
    assert [row["customer_id"] for row in top[-3:]] == ["C10", "C02", "C07"]

    # Change over time: one snapshot only, so everyone is new and nobody moved.
    assert "Segment migration since no earlier snapshot" in html
    assert "Nobody moved into At Risk." in html
    # Probabilistic CLV: the top customers by predicted_clv, as stored.
    forecast = read_table(conn, HAND_SCHEMA, "clv_forecast")
    ranked = forecast.sort_values(["predicted_clv", "customer_id"], ascending=[False, True])
    shown = [row["customer_id"] for row in tables["customer_id#2"]]
    assert shown == ranked["customer_id"].head(10).tolist()
    holdout = read_table(conn, HAND_SCHEMA, "clv_holdout")
    assert sum(int(row["customers"]) for row in tables.get("bucket", [])) == len(holdout)

    assert len(re.findall(r'<img src="data:image/png;base64,', html)) == 9
    for png in report.pngs.values():
        assert png.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.joinpath("out").iterdir()) == [
        "clv_by_type.png",
        "clv_holdout.png",
        "cohort_curve.png",
        "cohort_retention.png",
        "index.html",
        "p_alive.png",
        "predicted_clv_by_segment.png",
        "retention_history.png",
        "segment_migration.png",
        "segments.png",
    ]


def test_report_command_uses_the_configured_database(
    materialized, database_url, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("RETENTION_DB_SCHEMA", HAND_SCHEMA)
    assert main(["report", "--out", str(tmp_path / "report")]) == 0
    assert "index.html" in capsys.readouterr().out
    assert "66.67%" in (tmp_path / "report" / "index.html").read_text()


def test_report_command_without_tables_says_what_to_do(
    database_url, schema, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("RETENTION_DB_SCHEMA", schema)  # never materialized
    assert main(["report", "--out", str(tmp_path / "report")]) == 1
    err = capsys.readouterr().err
    assert "rfm" in err and "retention-assets run" in err
    assert not (tmp_path / "report").exists()


def test_ui_metadata_matches_the_report(materialized, conn):
    rfm_md = materialized.asset_materializations_for_node("rfm")[0].metadata
    profile = rfm_md["segment_profile"].value
    assert [r.data["segment"] for r in profile.records] == list(SEGMENT_COUNTS)
    assert {r.data["segment"]: r.data["customers"] for r in profile.records} == SEGMENT_COUNTS
    assert [c.name for c in profile.schema.columns] == [
        "segment",
        "customers",
        "share",
        "avg recency (days)",  # short headers: the table fits the asset page
        "avg visits",
        "avg spend",
    ]
    rfm = read_table(conn, HAND_SCHEMA, "rfm")
    expected_means = segment_summary(rfm).set_index("segment")["mean_monetary"].round(2)
    assert {r.data["segment"]: r.data["avg spend"] for r in profile.records} == (
        expected_means.to_dict()
    )
    assert rfm_md["segment_plot"].value.startswith("![segments](data:image/png;base64,")

    clv_md = materialized.asset_materializations_for_node("clv")[0].metadata
    top = [r.data for r in clv_md["top_customers"].value.records]
    expected_top = top_customers(read_table(conn, HAND_SCHEMA, "clv"))
    assert [r["customer_id"] for r in top] == expected_top["customer_id"].tolist()
    assert clv_md["clv_plot"].value.startswith("![clv_value by predicted_customer_type](data:")
    assert {r.data["type"] for r in clv_md["clv_by_type"].value.records} == {
        "High Value",
        "Medium Value",
        "Low Value",
        "Churned",
    }


def test_column_lineage_names_real_upstream_columns(materialized, conn):
    for asset in ("rfm", "clv"):
        metadata = materialized.asset_materializations_for_node(asset)[0].metadata
        lineage = metadata["dagster/column_lineage"].value.deps_by_column
        assert set(lineage) == set(read_table(conn, HAND_SCHEMA, asset).columns), asset
        for column, deps in lineage.items():
            for dep in deps:
                upstream = read_table(conn, HAND_SCHEMA, dep.asset_key.path[-1])
                assert dep.column_name in upstream.columns, (asset, column, dep)


def test_column_descriptions_cover_every_stored_column(materialized, conn):
    for asset in (
        rfm_asset,
        clv_asset,
        clv_forecast_asset,
        cohort_retention_asset,
        segment_migration_asset,
    ):
        spec = next(iter(asset.specs))
        described = spec.metadata["dagster/column_schema"].columns
        stored = materialized.asset_materializations_for_node(spec.key.path[-1])[0].metadata[
            "dagster/column_schema"
        ]
        assert [(c.name, c.type) for c in described] == [
            (c.name, c.type) for c in stored.schema.columns
        ]
        assert all(c.description for c in described)
        assert spec.owners and spec.tags["audience"] == "analysts"


def test_retention_plot_and_rate_follow_the_snapshot_history(database_url, schema):
    first = materialize(HAND_DIR, database_url, schema, RUN_CONFIG)
    later = {"ops": {"rfm_features": {"config": {"as_of": "2024-07-05"}}}}
    second = materialize(HAND_DIR, database_url, schema, later)
    again = materialize(HAND_DIR, database_url, schema, RUN_CONFIG)  # as `first`: replaced
    snapshots = [
        r.asset_materializations_for_node("retention")[0].metadata for r in (first, second, again)
    ]
    assert [m["snapshots"].value for m in snapshots] == [1, 2, 2]
    assert snapshots[0]["retention_rate"].value == 66.67  # 200 / 3, rounded as the UI shows it
    assert isinstance(snapshots[1]["retention_rate"].value, float)
    assert all(
        m["retention_plot"].value.startswith("![retention history](data:") for m in snapshots
    )
    assert AS_OF.isoformat() == snapshots[2]["as_of"].value


def test_segment_summary_orders_segments_like_the_plots():
    rfm = pd.DataFrame(
        {
            "segment": ["At Risk", "Loyalist", "High-Value", "Loyalist 2", "New/Potential"],
            "recency_days": [100, 5, 10, 20, 2],
            "frequency": [1, 9, 5, 4, 1],
            "monetary": [10.0, 50.0, 900.0, 40.0, 5.0],
        }
    )
    summary = segment_summary(rfm)
    assert summary["segment"].tolist() == [
        "High-Value",
        "Loyalist",
        "New/Potential",
        "At Risk",
        "Loyalist 2",
    ]
    assert summary["share"].sum() == pytest.approx(1.0)
