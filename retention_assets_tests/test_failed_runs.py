"""A failed run never replaces stored results: the analytics tables of a run are published
together by `snapshot`, after every check, or not at all."""

from __future__ import annotations

import hashlib
import shutil

import dagster as dg
import pandas as pd
import pytest

from retention_assets.storage import slices, staging
from retention_assets.storage.tables import read_table

from .graph_helpers import materialize
from .hand_fixture import HAND_DIR

DERIVED = ("rfm_features", "rfm", "clv", "retention")


@pytest.fixture
def schema(conn, request):
    name = f"fr_{request.node.name[:40].lower()}"
    yield name
    with conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _state(conn, schema: str) -> dict[str, object]:
    """Every derived table's rows (without the retention row's computed_at), and the stored
    model's bytes."""
    state: dict[str, object] = {name: read_table(conn, schema, name) for name in DERIVED}
    state["retention"] = state["retention"].drop(columns="computed_at")
    with conn.cursor() as cur:
        cur.execute(f'SELECT payload FROM "{schema}".rfm_model')
        state["rfm_model"] = hashlib.sha256(bytes(cur.fetchone()[0])).hexdigest()
    return state


def _assert_unchanged(before: dict[str, object], after: dict[str, object]) -> None:
    assert after.keys() == before.keys()
    for name, value in before.items():
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(after[name], value, obj=name)
        else:
            assert after[name] == value, name


def _staged_tables(conn, schema: str) -> list[str]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename LIKE %s",
            [schema, "\\_staged\\_%"],
        )
        return sorted(name for (name,) in cur.fetchall() if name != staging.REGISTRY)


def test_a_step_failing_half_way_replaces_no_table(conn, database_url, schema):
    """rfm_features and clv are computed, then rfm_model fails (more clusters than customers):
    nothing of that run is visible, the retention history gains no row."""
    with dg.DagsterInstance.ephemeral() as instance:
        first = materialize(HAND_DIR, database_url, schema, instance=instance)
        assert first.success
        before = _state(conn, schema)
        failing = {
            "ops": {
                "rfm_features": {"config": {"as_of": "2024-06-15"}},
                "rfm_model": {"config": {"n_clusters": 40}},
            }
        }
        second = materialize(HAND_DIR, database_url, schema, failing, instance=instance)
        assert not second.success
        assert {"rfm_features", "clv", "retention"} <= second.materialized()
        assert "snapshot" not in second.materialized()
        _assert_unchanged(before, _state(conn, schema))
        assert _staged_tables(conn, schema)  # the failed run's work waits, unpublished

        third = materialize(HAND_DIR, database_url, schema, instance=instance)
        assert third.success
        assert _staged_tables(conn, schema) == []  # published, and the failed run's dropped
        _assert_unchanged(before, _state(conn, schema))  # same data, same results


def test_a_failed_blocking_check_keeps_every_table(conn, database_url, schema, tmp_path):
    """40 customers exactly alike give one segment: rfm's blocking segment_counts check fails,
    and neither rfm nor the features, clv or retention of that run are published."""
    folder = tmp_path / "data"
    shutil.copytree(HAND_DIR, folder)
    assert materialize(folder, database_url, schema).success
    before = _state(conn, schema)

    # 40 members who signed up long before the others and have no visit or payment by as_of
    (folder / "customers_alike.csv").write_text(
        "customer_id,signup_date\n" + "".join(f"Z{i:02d},2020-01-01\n" for i in range(40))
    )
    as_of = {"ops": {"rfm_features": {"config": {"as_of": "2021-01-01"}}}}
    run = materialize(folder, database_url, schema, as_of)
    assert not run.success
    failed = [e for e in run.get_asset_check_evaluations() if e.check_name == "segment_counts"]
    assert len(failed) == 1 and not failed[0].passed
    assert "snapshot" not in run.materialized()
    _assert_unchanged(before, _state(conn, schema))


def test_an_empty_export_replacing_customers_changes_nothing(conn, database_url, schema, tmp_path):
    """A header-only customers.csv (an upstream export that produced nothing) would hold back
    every visit and payment: the file is refused and every table keeps its rows."""
    folder = tmp_path / "data"
    shutil.copytree(HAND_DIR, folder)
    assert materialize(folder, database_url, schema).success
    sources = ("customers", "transactions", "attendance")
    before = _state(conn, schema) | {name: read_table(conn, schema, name) for name in sources}

    (folder / "customers.csv").write_text("customer_id,signup_date\n")
    run = materialize(folder, database_url, schema)
    assert not run.success
    assert run.jobs == ["load_customers"]
    (message,) = run.failure_messages()
    assert "customers.csv: storing it would leave transactions with " in message
    assert "rows rejected" in message and "nothing from it was stored" in message
    held = len(before["transactions"])  # every payment's customer would be gone
    assert f"most for: unknown customer_id ({held:,}); nothing" in message
    after = _state(conn, schema) | {name: read_table(conn, schema, name) for name in sources}
    _assert_unchanged(before, after)


def test_removing_the_customers_file_is_refused_when_it_would_hold_back_the_visits(
    conn, database_url, schema, tmp_path
):
    folder = tmp_path / "data"
    shutil.copytree(HAND_DIR, folder)
    (folder / "customers_more.csv").write_text("customer_id,signup_date\nC90,2024-01-01\n")
    assert materialize(folder, database_url, schema).success
    (folder / "customers.csv").rename(folder / "customers.old")
    run = materialize(folder, database_url, schema)
    assert not run.success
    (message,) = run.failure_messages()
    assert "taking out customers.csv would leave " in message
    assert ("customers", "customers.csv") in slices.manifest(conn, schema)  # not taken out
