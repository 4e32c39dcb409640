"""The whole asset graph materialized with Dagster into the test database: the load jobs of
the folder's drop files, then the analytics job (graph_helpers.materialize)."""

import shutil

import numpy as np
import pandas as pd
import psycopg2
import pytest

from retention_assets.jobs import load_job_name, range_tags
from retention_assets.storage import slices
from retention_assets.storage.summaries import SUMMARIES, drop_summary
from retention_assets.storage.tables import read_pickle, read_table

from .graph_helpers import ANALYTICS, materialize
from .hand_fixture import (
    AS_OF,
    DEFAULT_AS_OF,
    EXPECTED,
    HAND_DIR,
    LAST_ATTENDANCE,
    RETENTION_RATE,
)

RUN_CONFIG = {"ops": {"rfm_features": {"config": {"as_of": AS_OF.isoformat()}}}}
SOURCE_ROWS = {"customers": 13, "packages": 3, "transactions": 20, "attendance": 32}


@pytest.fixture
def schema(database_url, request):
    """A schema per test, so tests never see each other's tables."""
    name = f"t_{request.node.name[:40].lower()}"
    yield name
    with psycopg2.connect(_dsn(database_url)) as conn, conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg2://", "postgresql://")


def table(conn, schema, name):
    return read_table(conn, schema, name)


HAND_SCHEMA = "t_hand_fixture"


@pytest.fixture(scope="module")
def hand_run(database_url):
    """One materialization of the hand fixture as of AS_OF, for the tests that only read it."""
    run = materialize(HAND_DIR, database_url, HAND_SCHEMA, RUN_CONFIG)
    yield run
    with psycopg2.connect(_dsn(database_url)) as conn, conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{HAND_SCHEMA}" CASCADE')


def test_hand_fixture_end_to_end(hand_run, conn):
    """The hand-computed numbers (test_core_hand checks them on the pure core), this time
    through the load jobs, the aggregates in PostgreSQL and the IO managers."""
    run, schema = hand_run, HAND_SCHEMA
    assert run.success, run.failure_messages()
    assert run.jobs == [
        "load_customers",
        "load_packages",
        "load_transactions",
        "load_attendance",
        "analytics",
    ]
    expected = EXPECTED.set_index("customer_id")

    features = table(conn, schema, "rfm_features")
    assert features["customer_id"].tolist() == EXPECTED["customer_id"].tolist()  # code points
    last = features.set_index("customer_id")["last_attendance"]
    assert last[["C07", "C12"]].isna().all()
    assert last.dropna().astype(str).to_dict() == LAST_ATTENDANCE

    rfm = table(conn, schema, "rfm")
    assert rfm["customer_id"].tolist() == EXPECTED["customer_id"].tolist()
    rfm = rfm.set_index("customer_id")
    for column in ("recency_days", "frequency", "r_score", "f_score", "m_score", "rfm_score"):
        assert rfm[column].tolist() == expected[column].tolist(), column
    # monetary is a numeric sum in PostgreSQL: exact, compared to the cent
    np.testing.assert_allclose(rfm["monetary"], expected["monetary"], atol=0.005)
    assert set(rfm["segment"]) == {"High-Value", "At Risk", "New/Potential", "Loyalist"}
    assert (rfm["as_of"].astype(str) == AS_OF.isoformat()).all()

    clv = table(conn, schema, "clv").set_index("customer_id")
    assert clv.index.tolist() == EXPECTED["customer_id"].tolist()
    for column in ("n_orders", "purchase_frequency", "predicted_customer_type"):
        assert clv[column].tolist() == expected[column].tolist(), column
    for column in ("total_spend", "average_order_value", "clv_value"):
        np.testing.assert_allclose(clv[column], expected[column], atol=0.005, err_msg=column)

    # Purchase days up to as_of, in weeks: C03's two payments (07-01 23:00, 07-02) are two
    # days; C06's second payment (07-05) is after as_of; C07's 0.00 promo is a purchase day.
    forecast = table(conn, schema, "clv_forecast").set_index("customer_id")
    paying = ["C01", "C02", "C03", "C04", "C05", "C06", "C07", "C09", "C10", "C11"]
    assert forecast.index.tolist() == paying
    summary = forecast.loc[["C01", "C03", "C06", "C11"], ["frequency_repeat", "t_x", "T"]]
    np.testing.assert_allclose(
        summary.to_numpy(dtype=float),
        [[1, 167 / 7, 167 / 7], [1, 1 / 7, 365 / 7], [0, 0, 150 / 7], [3, 13, 181 / 7]],
    )
    assert forecast.loc[["C01", "C03", "C11"], "avg_repeat_spend"].tolist() == [50, 30, 60]
    assert forecast.loc["C06", "avg_repeat_spend"] != forecast.loc["C06", "avg_repeat_spend"]
    assert forecast["p_alive"].between(0, 1).all()
    np.testing.assert_allclose(
        forecast["predicted_clv"], forecast["expected_purchases"] * forecast["expected_avg_spend"]
    )

    retention = table(conn, schema, "retention")
    assert len(retention) == 1
    row = retention.iloc[0]
    assert str(row["as_of"]) == AS_OF.isoformat()
    assert (row["total_customers"], row["churned_customers"]) == (12, 4)
    assert row["retention_rate"] == pytest.approx(RETENTION_RATE)

    for name, rows in SOURCE_ROWS.items():
        assert len(table(conn, schema, name)) == rows, name
    assert table(conn, schema, "rejected_rows").empty

    checks = {
        (c.asset_key.path[-1], c.check_name): c.passed for c in run.get_asset_check_evaluations()
    }
    # Six repeat buyers are too few for a clean fit: fit_quality warns (its verdict is the
    # core's, tested there); the holdout before 2023-12-31 has two repeat buyers.
    assert {("clv_model", "fit_quality"), ("clv_holdout", "holdout_error")} <= set(checks)
    for soft in (("clv_model", "fit_quality"), ("clv_holdout", "holdout_error")):
        checks.pop(soft)
    assert checks == {
        **{(source, "reject_fraction"): True for source in SOURCE_ROWS},
        ("clv_forecast", "forecast_values"): True,
        ("segment_migration", "at_risk_growth"): True,  # no earlier snapshot
        ("loaded_files", "folder_loaded"): True,
        ("rfm_features", "feeds_in_step"): True,  # check-ins end 2024-07-02, payments 07-05
        ("rfm_features", "events_before_signup"): True,
        ("rfm", "segment_counts"): True,
        ("rfm", "segment_min_share"): True,
        ("clv", "one_row_per_customer"): True,
        ("retention", "rate_in_range"): True,
    }
    retention_md = run.asset_materializations_for_node("retention")[0].metadata
    assert retention_md["retention_rate"].value == round(RETENTION_RATE, 2)  # as the UI shows it
    assert retention_md["summary"].value == (
        "Retention rate: 66.67% (4 of 12 customers churned, as of 2024-06-30)"
    )


def test_default_as_of_is_the_last_date_both_feeds_cover(database_url, schema, conn):
    """SPEC section 3: without as_of the snapshot is the EARLIER of the latest check-in date
    (2024-07-02) and the latest transaction date (2024-07-05), no longer the latest event:
    transactions running ahead must not age every customer's recency. At 2024-07-02 C13
    (signed up 2024-07-01) is in the universe and C05's check-in of that day counts."""
    run = materialize(HAND_DIR, database_url, schema)
    assert run.success, run.failure_messages()
    rfm = table(conn, schema, "rfm").set_index("customer_id")
    assert set(rfm["as_of"].astype(str)) == {DEFAULT_AS_OF.isoformat()}
    assert len(rfm) == 13 and rfm.loc["C13", "recency_days"] == 0
    assert rfm.loc["C05", "recency_days"] == 0 and rfm.loc["C05", "frequency"] == 2
    # C06's payment of 2024-07-05 is after the snapshot: ignored
    assert rfm.loc["C06", "monetary"] == pytest.approx(200.0, abs=0.005)
    summary = run.asset_materializations_for_node("retention")[0].metadata["summary"].value
    assert summary == "Retention rate: 76.92% (3 of 13 customers churned, as of 2024-07-02)"


def test_model_is_loadable_and_scores_like_the_run(hand_run, conn):
    assert hand_run.success
    model = read_pickle(conn, HAND_SCHEMA, "rfm_model")
    rfm = table(conn, HAND_SCHEMA, "rfm")
    assert model.assign(rfm)["segment"].tolist() == rfm["segment"].tolist()
    assert model.n_training_rows == 12 and model.as_of == AS_OF


def test_rerun_loads_nothing_again_is_idempotent_and_retention_keeps_history(
    database_url, schema, conn
):
    """A second run over an unchanged folder loads no file (the manifest says they are loaded)
    and runs only the analytics, from the stored tables: every table comes out the same."""
    assert materialize(HAND_DIR, database_url, schema, RUN_CONFIG).success
    names = ("rfm_features", "rfm", "clv", "attendance")
    first = {name: table(conn, schema, name) for name in names}
    manifest = slices.manifest(conn, schema)
    again = materialize(HAND_DIR, database_url, schema, RUN_CONFIG)
    assert again.success and again.jobs == ["analytics"]
    assert again.materialized() == ANALYTICS
    for name, frame in first.items():
        pd.testing.assert_frame_equal(table(conn, schema, name), frame, obj=name)
    assert slices.manifest(conn, schema) == manifest
    assert len(table(conn, schema, "retention")) == 1
    later = {"ops": {"rfm_features": {"config": {"as_of": "2024-07-05"}}}}
    assert materialize(HAND_DIR, database_url, schema, later).success
    history = table(conn, schema, "retention").sort_values("as_of")
    assert history["as_of"].astype(str).tolist() == ["2024-06-30", "2024-07-05"]


def test_a_database_loaded_before_the_summaries_gets_them_at_the_next_run(
    database_url, schema, conn
):
    """Sources stored by a version without the per-customer summaries (dropped here, with
    their triggers): the next run, with no file to load, sums the stored rows once and gives
    the same tables; later changes keep the summaries up to date."""
    assert materialize(HAND_DIR, database_url, schema, RUN_CONFIG).success
    names = ("rfm_features", "rfm", "clv", "clv_forecast", "cohort_retention")
    first = {name: table(conn, schema, name) for name in names}
    summaries = {s.table: _sorted(table(conn, schema, s.table)) for s in SUMMARIES.values()}
    with conn.cursor() as cur:
        for summary in SUMMARIES.values():
            drop_summary(cur, schema, summary)
    again = materialize(HAND_DIR, database_url, schema, RUN_CONFIG)
    assert again.success and again.jobs == ["analytics"]
    for name, frame in first.items():
        pd.testing.assert_frame_equal(table(conn, schema, name), frame, obj=name)
    for name, frame in summaries.items():
        pd.testing.assert_frame_equal(_sorted(table(conn, schema, name)), frame, obj=name)
    with conn.cursor() as cur:
        cur.execute(f"DELETE FROM \"{schema}\".attendance WHERE customer_id = 'C01'")
    months = table(conn, schema, SUMMARIES["attendance"].table)
    assert "C01" not in set(months["customer_id"]) and len(months) > 0


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns), ignore_index=True)


def test_a_removed_drop_is_taken_out(database_url, schema, conn, tmp_path):
    shutil.copytree(HAND_DIR, tmp_path, dirs_exist_ok=True)
    (tmp_path / "transactions_2024-06-30.csv").write_text(
        "transaction_id,customer_id,transaction_date,amount\nT90,C12,2024-06-30 09:00,12.34\n"
    )
    assert materialize(tmp_path, database_url, schema, RUN_CONFIG).success
    rfm = table(conn, schema, "rfm").set_index("customer_id")
    assert rfm.loc["C12", "monetary"] == pytest.approx(12.34, abs=0.005)
    (tmp_path / "transactions_2024-06-30.csv").unlink()
    run = materialize(tmp_path, database_url, schema, RUN_CONFIG)
    assert run.success and run.jobs == ["analytics"]
    removed = run.asset_materializations_for_node("loaded_files")[0].metadata["removed_files"]
    assert removed.value == ["transactions_2024-06-30.csv"]
    assert len(table(conn, schema, "transactions")) == SOURCE_ROWS["transactions"]
    rfm = table(conn, schema, "rfm").set_index("customer_id")
    assert rfm.loc["C12", "monetary"] == 0.0


def test_too_many_rejects_store_nothing_of_the_file_and_stop_downstream(
    database_url, schema, conn, tmp_path
):
    """2 of 34 attendance rows rejected is above max_reject_fraction (5%): the drop is not
    stored at all (its rejects neither) and nothing downstream runs. With the limit raised
    the rows are stored, the rejects with file, line, reason and raw text."""
    shutil.copytree(HAND_DIR, tmp_path, dirs_exist_ok=True)
    with (tmp_path / "attendance.csv").open("a") as f:
        f.write("A40,C99,2024-06-01 10:00:00,,North\n")  # unknown customer: decided in SQL
        f.write("A41,C01,not-a-date,,North\n")  # unparseable: decided while parsing
    run = materialize(tmp_path, database_url, schema, RUN_CONFIG)
    assert not run.success
    assert run.jobs[-1] == "load_attendance"  # stopped there: no analytics run
    [message] = run.failure_messages()
    assert (
        "attendance.csv: storing it would leave attendance with 2 of 34 rows rejected (5.88%"
        in (message)
    )
    assert "most for: unknown customer_id (1), unparseable check_in (1); nothing" in message
    assert run.materialized() == {"customers", "packages", "transactions"}
    assert _loaded_sources(conn, schema) == {"customers", "packages", "transactions"}
    assert table(conn, schema, "rejected_rows").empty
    with pytest.raises(psycopg2.errors.UndefinedTable), conn.cursor() as cur:
        cur.execute(f'SELECT 1 FROM "{schema}".rfm')

    relaxed = {"ops": {"attendance": {"config": {"max_reject_fraction": 0.1}}}}
    load = _load_file(run, "attendance", "attendance.csv", relaxed)
    assert load.success
    rejects = table(conn, schema, "rejected_rows").sort_values("line", ignore_index=True)
    assert rejects[["source", "file", "line"]].values.tolist() == [
        ["attendance", "attendance.csv", 34],
        ["attendance", "attendance.csv", 35],
    ]
    assert rejects["reason"].tolist() == [
        "unknown customer_id 'C99'",
        "unparseable check_in 'not-a-date'",
    ]
    assert rejects["raw"].tolist() == [
        "A40,C99,2024-06-01 10:00:00,,North",
        "A41,C01,not-a-date,,North",
    ]
    assert rejects["run_id"].tolist() == [load.run_id] * 2
    [check] = load.get_asset_check_evaluations()
    assert check.passed and check.metadata["rows_rejected"].value == 2
    assert len(table(conn, schema, "attendance")) == SOURCE_ROWS["attendance"]
    assert materialize(tmp_path, database_url, schema, RUN_CONFIG).success


def _loaded_sources(conn, schema):
    with conn.cursor() as cur:
        cur.execute(f'SELECT DISTINCT source FROM "{schema}".loaded_files')
        return {source for (source,) in cur.fetchall()}


def _load_file(run, source, file, run_config):
    """The load job of one file, with run config: what a user does from the UI after raising
    a source's limit (execute_plan passes run config to the analytics job only)."""
    job = run.defs.resolve_job_def(load_job_name(source))
    return job.execute_in_process(
        instance=run.instance,
        tags=range_tags(file, file),
        run_config=run_config,
        raise_on_error=False,
    )


def test_structural_error_fails_the_source_and_keeps_stored_tables(
    database_url, schema, conn, tmp_path
):
    shutil.copytree(HAND_DIR, tmp_path, dirs_exist_ok=True)
    assert materialize(tmp_path, database_url, schema, RUN_CONFIG).success
    before = {name: table(conn, schema, name) for name in ("transactions", "rfm", "clv")}
    (tmp_path / "transactions_2024-07-06.csv").write_text(
        "transaction_id,customer_id,amount\nT90,C01,5.00\n"
    )
    run = materialize(tmp_path, database_url, schema, RUN_CONFIG)
    assert not run.success and run.jobs == ["load_transactions"]
    [message] = run.failure_messages()
    assert message.strip().endswith(
        "transactions_2024-07-06.csv, line 1, column 'transaction_date': missing required column"
    )
    for name, frame in before.items():
        pd.testing.assert_frame_equal(table(conn, schema, name), frame, obj=name)


def test_a_source_without_any_file_fails_naming_it(database_url, schema, conn, tmp_path):
    """No attendance*.csv at all: the analytics stop at loaded_files with the file named, not
    on a missing table."""
    shutil.copytree(HAND_DIR, tmp_path, dirs_exist_ok=True)
    (tmp_path / "attendance.csv").unlink()
    run = materialize(tmp_path, database_url, schema, RUN_CONFIG)
    assert not run.success and run.jobs[-1] == "analytics"
    [failure] = run.get_step_failure_events()
    assert failure.step_key == "loaded_files"
    message = failure.event_specific_data.error.message
    assert "attendance.csv: missing file: no CSV for this source was found" in message
    assert "rfm_features" not in run.materialized()


def test_bad_data_fails_at_once_without_retries(database_url, schema):
    config = {"ops": RUN_CONFIG["ops"] | {"rfm_model": {"config": {"n_clusters": 13}}}}
    run = materialize(HAND_DIR, database_url, schema, config)
    assert not run.success
    retries = [e for e in run.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert retries == []
    [failure] = run.get_step_failure_events()
    assert failure.step_key == "rfm_model"
    assert "12 customers cannot form 13 segments" in failure.event_specific_data.error.message
