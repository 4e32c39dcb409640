"""Change over time through the graph: rfm_history keeps one slice per as_of, segment_migration
compares with the snapshot before, and `run --history N` builds N monthly snapshots."""

import datetime as dt
import gc
import uuid
import weakref
from contextlib import closing

import dagster as dg
import pandas as pd
import pytest

from retention_assets import io_managers
from retention_assets.cli import main
from retention_assets.jobs import ANALYTICS_JOB
from retention_assets.storage.database import connect
from retention_assets.storage.tables import read_table

from .graph_helpers import materialize
from .hand_fixture import HAND_DIR

MAY, JUNE = "2024-05-31", "2024-06-30"


def _config(as_of: str) -> dict:
    return {"ops": {"rfm_features": {"config": {"as_of": as_of}}}}


def _tables(database_url: str, schema: str, *names: str) -> list[pd.DataFrame]:
    with closing(connect(database_url)) as conn:
        return [read_table(conn, schema, name) for name in names]


def _sorted(frame: pd.DataFrame, *keys: str) -> pd.DataFrame:
    return frame.sort_values(list(keys), ignore_index=True)


@pytest.fixture
def schema() -> str:
    return f"hist_{uuid.uuid4().hex[:8]}"


def test_history_keeps_each_as_of_and_migration_compares_with_the_one_before(database_url, schema):
    assert materialize(HAND_DIR, database_url, schema, _config(MAY)).success
    (first,) = _tables(database_url, schema, "segment_migration")
    # No earlier snapshot: the 11 customers signed up by May 31 are all "(new)".
    assert first["from_segment"].unique().tolist() == ["(new)"]
    assert first["customers"].sum() == 11 and first["previous_as_of"].isna().all()

    assert materialize(HAND_DIR, database_url, schema, _config(JUNE)).success
    history, rfm, migration = _tables(
        database_url, schema, "rfm_history", "rfm", "segment_migration"
    )
    assert sorted(history["as_of"].astype(str).unique()) == [MAY, JUNE]
    june = history.loc[history["as_of"] == dt.date(2024, 6, 30)]
    assert _sorted(june[rfm.columns], "customer_id").equals(_sorted(rfm, "customer_id"))

    # June against May: C12 (signed up June 30) is the one new customer; nobody is gone.
    assert (migration["previous_as_of"] == dt.date(2024, 5, 31)).all()
    new = migration.loc[migration["from_segment"] == "(new)"]
    assert new["customers"].sum() == 1
    assert "(gone)" not in set(migration["to_segment"])
    assert migration["customers"].sum() == 12
    may = history.loc[history["as_of"] == dt.date(2024, 5, 31)].set_index("customer_id")
    now = rfm.set_index("customer_id")
    for row in migration.loc[migration["from_segment"] != "(new)"].itertuples():
        moved = (may["segment"] == row.from_segment) & (
            now["segment"].reindex(may.index) == row.to_segment
        )
        assert row.customers == moved.sum(), row
        assert row.share == pytest.approx(
            row.customers / (may["segment"] == row.from_segment).sum()
        )

    # The same as_of again replaces its own rows: the history is unchanged.
    assert materialize(HAND_DIR, database_url, schema, _config(JUNE)).success
    (again,) = _tables(database_url, schema, "rfm_history")
    assert _sorted(again, "as_of", "customer_id").equals(_sorted(history, "as_of", "customer_id"))


def test_cohort_retention_counts_the_hand_fixture(database_url, schema):
    assert materialize(HAND_DIR, database_url, schema, _config(JUNE)).success
    (cohorts,) = _tables(database_url, schema, "cohort_retention")
    sizes = cohorts.groupby("cohort_month")["cohort_size"].first()
    assert sizes.sum() == 12  # every customer signed up by as_of, in one cohort
    # C11 signed up 2023-12-31 18:45: still December's cohort, alone in it.
    assert sizes[dt.date(2023, 12, 1)] == 1
    assert cohorts.groupby("cohort_month")["partial"].sum().eq(1).all()
    june = cohorts.loc[cohorts["partial"]]
    assert (june["months_since_signup"] == june["cohort_month"].map(_months_to_june)).all()


def _months_to_june(month: dt.date) -> int:
    return (2024 - month.year) * 12 + 6 - month.month


def test_run_history_builds_monthly_snapshots_oldest_first(database_url, monkeypatch, capsys):
    schema = f"cli_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("RETENTION_DB_SCHEMA", schema)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    argv = ["run", "--data-dir", str(HAND_DIR), "--as-of", "2024-06-15", "--history", "3"]
    assert main(argv) == 0
    retention, history, migration = _tables(
        database_url, schema, "retention", "rfm_history", "segment_migration"
    )
    expected = ["2024-04-30", "2024-05-31", "2024-06-15"]
    assert sorted(retention["as_of"].astype(str)) == expected
    assert sorted(history["as_of"].astype(str).unique()) == expected
    assert (migration["previous_as_of"].astype(str) == "2024-05-31").all()
    assert "Retention rate:" in capsys.readouterr().out


def test_run_history_lets_go_of_each_run_before_the_next(database_url, monkeypatch):
    """A run's result holds every output of the run (the per-customer frames), and the IO
    manager keeps the frames it wrote: over a long history neither may pile up."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("RETENTION_DB_SCHEMA", f"cli_{uuid.uuid4().hex[:8]}")
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    execute = dg.JobDefinition.execute_in_process
    earlier: list[weakref.ref] = []
    seen_at_start: list[tuple[int, int]] = []

    def recording(job: dg.JobDefinition, *args, **kwargs):
        if job.name != ANALYTICS_JOB:
            return execute(job, *args, **kwargs)
        gc.collect()
        alive = sum(ref() is not None for ref in earlier)
        seen_at_start.append((alive, len(io_managers._RUN_CACHE.frames)))
        result = execute(job, *args, **kwargs)
        earlier.append(weakref.ref(result))
        return result

    monkeypatch.setattr(dg.JobDefinition, "execute_in_process", recording)
    argv = ["run", "--data-dir", str(HAND_DIR), "--as-of", "2024-06-15", "--history", "3"]
    assert main(argv) == 0
    assert seen_at_start == [(0, 0)] * 3


def test_run_history_must_be_positive(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--history", "0"])
    assert exit_info.value.code == 2
    assert "argument --history: 0 is not allowed" in capsys.readouterr().err
