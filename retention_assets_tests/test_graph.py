"""The whole asset graph materialized with Dagster into the test database."""

import shutil

import dagster as dg
import numpy as np
import pandas as pd
import psycopg2
import pytest

from retention_assets.assets import ALL_ASSETS, ANALYTICS_ASSETS
from retention_assets.definitions import build_resources
from retention_assets.settings import Settings
from retention_assets.storage.tables import read_pickle, read_table

from .hand_fixture import AS_OF, EXPECTED, HAND_DIR, RETENTION_RATE

RUN_CONFIG = {"ops": {"rfm_features": {"config": {"as_of": AS_OF.isoformat()}}}}


@pytest.fixture
def schema(database_url, request):
    """A schema per test, so tests never see each other's tables."""
    name = f"t_{request.node.name[:40].lower()}"
    yield name
    with psycopg2.connect(_dsn(database_url)) as conn, conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg2://", "postgresql://")


def materialize(data_dir, database_url, schema, run_config=RUN_CONFIG, **kwargs):
    settings = Settings(data_dir=str(data_dir), db_schema=schema, pgdata="unused")
    return dg.materialize(
        ALL_ASSETS,
        resources=build_resources(settings, database_url),
        run_config=run_config,
        raise_on_error=False,
        **kwargs,
    )


def table(conn, schema, name):
    return read_table(conn, schema, name)


def test_hand_fixture_end_to_end(database_url, schema, conn):
    result = materialize(HAND_DIR, database_url, schema)
    assert result.success
    rfm = table(conn, schema, "rfm").set_index("customer_id")
    expected = EXPECTED.set_index("customer_id")
    for column in ("recency_days", "frequency", "r_score", "f_score", "m_score", "rfm_score"):
        assert rfm[column].tolist() == expected[column].tolist(), column
    np.testing.assert_allclose(rfm["monetary"], expected["monetary"], atol=0.005)
    assert set(rfm["segment"]) == {"High-Value", "At Risk", "New/Potential", "Loyalist"}

    clv = table(conn, schema, "clv").set_index("customer_id")
    np.testing.assert_allclose(clv["clv_value"], expected["clv_value"], atol=0.005)
    assert clv["predicted_customer_type"].tolist() == expected["predicted_customer_type"].tolist()

    retention = table(conn, schema, "retention")
    assert len(retention) == 1
    row = retention.iloc[0]
    assert str(row["as_of"]) == "2024-06-30"
    assert (row["total_customers"], row["churned_customers"]) == (12, 4)
    assert row["retention_rate"] == pytest.approx(RETENTION_RATE)

    for name, rows in (
        ("customers", 13),
        ("packages", 3),
        ("transactions", 20),
        ("attendance", 32),
    ):
        assert len(table(conn, schema, name)) == rows, name
    assert table(conn, schema, "rejected_rows").empty

    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {
        "reject_fraction": True,
        "segment_counts": True,
        "segment_min_share": True,
        "one_row_per_customer": True,
        "rate_in_range": True,
    }
    retention_md = result.asset_materializations_for_node("retention")[0].metadata
    assert retention_md["retention_rate"].value == pytest.approx(RETENTION_RATE)


def test_model_is_loadable_and_scores_like_the_run(database_url, schema, conn):
    assert materialize(HAND_DIR, database_url, schema).success
    model = read_pickle(conn, schema, "rfm_model")
    rfm = table(conn, schema, "rfm")
    assert model.assign(rfm)["segment"].tolist() == rfm["segment"].tolist()
    assert model.n_training_rows == 12 and model.as_of == AS_OF


def test_rerun_is_idempotent_and_retention_keeps_history(database_url, schema, conn):
    assert materialize(HAND_DIR, database_url, schema).success
    first = {name: table(conn, schema, name) for name in ("rfm", "clv", "attendance")}
    assert materialize(HAND_DIR, database_url, schema).success
    for name, frame in first.items():
        pd.testing.assert_frame_equal(table(conn, schema, name), frame)
    assert len(table(conn, schema, "retention")) == 1
    later = {"ops": {"rfm_features": {"config": {"as_of": "2024-07-05"}}}}
    assert materialize(HAND_DIR, database_url, schema, run_config=later).success
    history = table(conn, schema, "retention").sort_values("as_of")
    assert history["as_of"].astype(str).tolist() == ["2024-06-30", "2024-07-05"]


def test_analytics_alone_read_their_columns_from_the_stored_sources(database_url, schema, conn):
    """In one run the sources hand on a few columns, ids as categorical codes; a run of the
    analytics alone reads those columns from the tables, ids as text. Same tables either way."""
    assert materialize(HAND_DIR, database_url, schema).success
    first = {name: table(conn, schema, name) for name in ("rfm_features", "rfm", "clv")}
    analytics = [dg.AssetKey(a.key.path) for a in ANALYTICS_ASSETS]
    result = materialize(HAND_DIR, database_url, schema, selection=analytics)
    assert result.success
    ran = {m.asset_key.path[-1] for m in result.get_asset_materialization_events()}
    assert ran == {"rfm_features", "rfm_model", "rfm", "clv", "retention"}
    for name, frame in first.items():
        pd.testing.assert_frame_equal(table(conn, schema, name), frame)


def test_rejected_rows_are_stored_and_the_blocking_check_stops_downstream(
    database_url, schema, conn, tmp_path
):
    shutil.copytree(HAND_DIR, tmp_path, dirs_exist_ok=True)
    with (tmp_path / "attendance.csv").open("a") as f:
        f.write("A40,C99,2024-06-01 10:00:00,,North\n")  # unknown customer
        f.write("A41,C01,not-a-date,,North\n")
    result = materialize(tmp_path, database_url, schema)
    assert not result.success  # 2 of 34 attendance rows rejected: above 5%
    rejects = table(conn, schema, "rejected_rows")
    assert rejects[["source", "file", "line"]].values.tolist() == [
        ["attendance", "attendance.csv", 34],
        ["attendance", "attendance.csv", 35],
    ]
    assert rejects["reason"].tolist() == [
        "unknown customer_id 'C99'",
        "unparseable check_in 'not-a-date'",
    ]
    assert rejects["raw"].tolist()[0] == "A40,C99,2024-06-01 10:00:00,,North"
    assert rejects["run_id"].nunique() == 1
    failed = [c for c in result.get_asset_check_evaluations() if not c.passed]
    assert [(c.asset_key.path[-1], c.check_name) for c in failed] == [
        ("attendance", "reject_fraction")
    ]
    materialized = {m.asset_key.path[-1] for m in result.get_asset_materialization_events()}
    assert "rfm_features" not in materialized and "rfm" not in materialized
    relaxed = {"ops": {"attendance": {"config": {"max_reject_fraction": 0.1}}} | RUN_CONFIG["ops"]}
    assert materialize(tmp_path, database_url, schema, run_config=relaxed).success


def test_structural_error_fails_the_source_and_keeps_stored_tables(
    database_url, schema, conn, tmp_path
):
    shutil.copytree(HAND_DIR, tmp_path, dirs_exist_ok=True)
    assert materialize(tmp_path, database_url, schema).success
    before = {name: table(conn, schema, name) for name in ("transactions", "rfm", "clv")}
    (tmp_path / "transactions_2024-07-06.csv").write_text(
        "transaction_id,customer_id,amount\nT90,C01,5.00\n"
    )
    result = materialize(tmp_path, database_url, schema)
    assert not result.success
    failure = result.get_step_failure_events()[0]
    message = failure.event_specific_data.error.message
    assert "transactions_2024-07-06.csv" in message and "transaction_date" in message
    for name, frame in before.items():
        pd.testing.assert_frame_equal(table(conn, schema, name), frame)


def test_bad_data_fails_at_once_without_retries(database_url, schema):
    config = {"ops": RUN_CONFIG["ops"] | {"rfm_model": {"config": {"n_clusters": 13}}}}
    result = materialize(HAND_DIR, database_url, schema, run_config=config)
    assert not result.success
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert retries == []
    [failure] = result.get_step_failure_events()
    assert failure.step_key == "rfm_model"
    assert "12 customers cannot form 13 segments" in failure.event_specific_data.error.message
