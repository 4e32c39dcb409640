"""The PostgreSQL IO managers inside real Dagster runs (in-process)."""

import socket
import uuid
from datetime import date

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.preprocessing import StandardScaler

from retention_assets.io_managers import PostgresPandasIOManager, PostgresPickleIOManager
from retention_assets.resources import PostgresResource
from retention_assets.storage.database import DatabaseUnavailable
from retention_assets.storage.tables import TableNotFoundError, read_table

DATE = pd.ArrowDtype(pa.date32())


@pytest.fixture
def database(database_url: str) -> PostgresResource:
    return PostgresResource(database_url=database_url, db_schema=f"io_{uuid.uuid4().hex[:10]}")


def io_managers(database: PostgresResource) -> dict[str, object]:
    return {
        "io_manager": PostgresPandasIOManager(database=database),
        "model_io_manager": PostgresPickleIOManager(database=database),
    }


def payments_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": pd.Series(["17", "CUST-2", "17"], dtype="str"),
            "paid_on": pd.array([date(2024, 5, 1), date(2024, 5, 2), None], dtype=DATE),
            "amount": [19.99, 0.1, 100.0],
            "note": pd.Series(["", None, 'a "quoted", note'], dtype="str"),
        }
    )


@dg.asset(metadata={"money_columns": ["amount"]})
def payments() -> pd.DataFrame:
    return payments_frame()


@dg.asset
def spend(payments: pd.DataFrame) -> pd.DataFrame:
    # The input arrives with the dtypes the upstream asset produced.
    assert payments["paid_on"].dtype == DATE and payments["amount"].dtype == np.float64
    assert payments["note"].tolist()[0] == "" and payments["note"].isna().tolist()[1]
    return payments.groupby("customer_id", as_index=False).agg(total=("amount", "sum"))


def metadata_of(result: dg.ExecuteInProcessResult, node: str) -> dict:
    [materialization] = result.asset_materializations_for_node(node)
    return dict(materialization.metadata)


def test_frames_are_written_loaded_and_described(database):
    result = dg.materialize([payments, spend], resources=io_managers(database))
    assert result.success
    with database.connect() as conn:
        stored = read_table(conn, database.db_schema, "payments")
        totals = read_table(conn, database.db_schema, "spend")
    pd.testing.assert_frame_equal(stored, payments_frame())
    assert dict(zip(totals["customer_id"], totals["total"], strict=True)) == {
        "17": 119.99,
        "CUST-2": 0.1,
    }

    metadata = metadata_of(result, "payments")
    assert metadata["dagster/row_count"].value == 3
    assert metadata["dagster/table_name"].value == f"{database.db_schema}.payments"
    columns = metadata["dagster/column_schema"].schema.columns
    assert [(column.name, column.type) for column in columns] == [
        ("customer_id", "text"),
        ("paid_on", "date"),
        ("amount", "numeric"),
        ("note", "text"),
    ]
    assert metadata["written_at"].value > 0
    assert metadata_of(result, "spend")["dagster/row_count"].value == 2


class SnapshotConfig(dg.Config):
    as_of: str
    churned: int


@dg.asset(metadata={"upsert_key": ["as_of"]})
def retention(config: SnapshotConfig) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "as_of": pd.array([date.fromisoformat(config.as_of)], dtype=DATE),
            "churned_customers": [config.churned],
        }
    )


def test_upsert_key_keeps_one_row_per_key(database):
    def run(as_of: str, churned: int) -> dg.ExecuteInProcessResult:
        config = dg.RunConfig({"retention": SnapshotConfig(as_of=as_of, churned=churned)})
        return dg.materialize([retention], resources=io_managers(database), run_config=config)

    run("2024-01-31", 10)
    run("2024-02-29", 12)
    last = run("2024-01-31", 11)
    with database.connect() as conn:
        out = read_table(conn, database.db_schema, "retention").sort_values("as_of")
    assert out["churned_customers"].tolist() == [11, 12]
    assert out["as_of"].tolist() == [date(2024, 1, 31), date(2024, 2, 29)]
    metadata = metadata_of(last, "retention")
    assert metadata["dagster/row_count"].value == 2
    assert metadata["rows_upserted"].value == 1


class Segmenter:
    """A stand-in for the fitted RFM model: an object with describe()."""

    def __init__(self, scaler: StandardScaler, as_of: date) -> None:
        self.scaler = scaler
        self.as_of = as_of

    def describe(self) -> dict[str, object]:
        return {"as_of": self.as_of, "training_rows": int(self.scaler.n_samples_seen_)}


@dg.asset(io_manager_key="model_io_manager")
def rfm_model() -> Segmenter:
    features = np.array([[1.0, 5.0], [3.0, 7.0], [5.0, 9.0]])
    return Segmenter(StandardScaler().fit(features), date(2024, 5, 1))


@dg.asset
def scored(rfm_model: Segmenter) -> pd.DataFrame:
    scaled = rfm_model.scaler.transform(np.array([[3.0, 7.0], [5.0, 9.0]]))
    return pd.DataFrame({"z0": scaled[:, 0], "z1": scaled[:, 1]})


def test_pickled_objects_are_stored_and_loaded_by_downstream_assets(database):
    result = dg.materialize([rfm_model, scored], resources=io_managers(database))
    assert result.success
    with database.connect() as conn:
        out = read_table(conn, database.db_schema, "scored")
        with conn.cursor() as cur:
            cur.execute(f'SELECT description FROM "{database.db_schema}".rfm_model')
            [(description,)] = cur.fetchall()
        conn.rollback()
    assert out["z0"].tolist() == pytest.approx([0.0, 1.224744871391589])
    assert description == {
        "type": "retention_assets_tests.test_io_managers.Segmenter",
        "as_of": "2024-05-01",
        "training_rows": 3,
    }
    metadata = metadata_of(result, "rfm_model")
    assert metadata["dagster/table_name"].value == f"{database.db_schema}.rfm_model"
    assert metadata["payload_bytes"].value > 100


@dg.asset
def nothing() -> None:
    return None


@dg.asset
def not_a_frame() -> list[int]:
    return [1, 2]


def test_none_is_not_stored_and_other_objects_are_refused(database):
    assert dg.materialize([nothing], resources=io_managers(database)).success
    with database.connect() as conn, pytest.raises(TableNotFoundError):
        read_table(conn, database.db_schema, "nothing")
    result = dg.materialize([not_a_frame], resources=io_managers(database), raise_on_error=False)
    assert not result.success
    [failure] = [event for event in result.all_events if event.is_step_failure]
    assert "stores pandas DataFrames" in str(failure.step_failure_data.error)


@dg.asset(retry_policy=dg.RetryPolicy(max_retries=1))
def flaky_target() -> pd.DataFrame:
    return pd.DataFrame({"a": [1]})


def test_a_transient_database_error_reaches_the_retry_policy(database, monkeypatch):
    """A server that is starting up may take the write on the next attempt: the IO manager's
    error reaches Dagster's RetryPolicy, and the retry stores the table."""
    import retention_assets.resources as resources

    attempts = []
    real_connect = resources.connect

    def starting_up(url):
        attempts.append(url)
        if len(attempts) == 1:
            raise DatabaseUnavailable(
                "cannot connect to PostgreSQL at db:5432 (the database system is starting up)",
                transient=True,
            )
        return real_connect(url)

    monkeypatch.setattr(resources, "connect", starting_up)
    result = dg.materialize([flaky_target], resources=io_managers(database), raise_on_error=False)
    assert result.success
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retries) == 1
    with database.connect() as conn:
        assert read_table(conn, database.db_schema, "flaky_target")["a"].tolist() == [1]


def test_an_unreachable_database_fails_at_once_naming_the_host_not_the_password():
    """Nobody is listening: retrying cannot help (SPEC: only transient errors are retried)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    unreachable = PostgresResource(
        database_url=f"postgresql://retention:PaSsWoRd@127.0.0.1:{port}/analytics"
    )
    result = dg.materialize(
        [flaky_target], resources=io_managers(unreachable), raise_on_error=False
    )
    assert not result.success
    retries = [
        event for event in result.all_events if event.event_type_value == "STEP_UP_FOR_RETRY"
    ]
    assert retries == []
    [failure] = [event for event in result.all_events if event.is_step_failure]
    error = str(failure.step_failure_data.error)
    assert f"cannot connect to PostgreSQL at 127.0.0.1:{port}" in error
    assert "PaSsWoRd" not in str(result.all_events)


def test_describe_redacts_the_password():
    resource = PostgresResource(database_url="postgres://app:hunter2@db:5432/gym", db_schema="bi")
    assert resource.url() == "postgresql+psycopg2://app:hunter2@db:5432/gym"
    assert resource.describe() == "postgresql+psycopg2://app:***@db:5432/gym (schema bi)"


def test_a_frame_written_in_this_run_is_not_read_back(database, monkeypatch):
    import retention_assets.io_managers as io

    assert dg.materialize([payments], resources=io_managers(database)).success
    reads = []
    real_read = io.read_table
    monkeypatch.setattr(io, "read_table", lambda *a, **k: reads.append(a[2]) or real_read(*a, **k))
    # payments written in this run: spend gets the frame it returned, no read
    assert dg.materialize([payments, spend], resources=io_managers(database)).success
    assert reads == []
    # payments from an earlier run: read from its table, with the same dtypes
    result = dg.materialize([spend, payments.to_source_asset()], resources=io_managers(database))
    assert result.success and reads == ["payments"]
