"""The csv_drops sensor over a temporary data folder and the test database.

`Daemon` plays the dagster-daemon's part: it evaluates the sensor with build_sensor_context,
applies the dynamic-partition requests, skips a run whose run_key the sensor already used (as
the daemon does, over the sensor's whole history) and executes the requested runs in this
process, one after another, on the same instance. So the manifest the sensor reads is the one
real runs wrote to PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from retention_assets.assets import ALL_ASSETS
from retention_assets.definitions import build_resources
from retention_assets.jobs import ANALYTICS_JOB, JOBS, RANGE_END, RANGE_START
from retention_assets.resources import PostgresResource
from retention_assets.sensor import SENSOR_NAME, csv_drops_sensor
from retention_assets.settings import Settings
from retention_assets.storage import slices

from .graph_helpers import ANALYTICS
from .hand_fixture import HAND_DIR

SETTLE = 5.0
SOURCES = ["customers", "packages", "transactions", "attendance"]
DROP = "transactions_2026-11-26.csv"
DROP_ROWS = (
    "transaction_id,customer_id,transaction_date,amount,package_id,payment_method\n"
    "T90,C01,2024-06-10 10:00:00,50.00,P1,card\n"
    "T91,C02,2024-06-11 10:00:00,15.00,P2,cash\n"
)
RUN_KEY_TAG = "dagster/run_key"


def age(path: Path, seconds: float = 60) -> None:
    """Make `path` look written `seconds` ago (settled)."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def write(path: Path, text: str, seconds_ago: float | None = 60) -> Path:
    path.write_text(text)
    if seconds_ago is not None:
        age(path, seconds_ago)
    return path


@dataclass
class Tick:
    result: dg.SensorExecutionData
    launched: list[dg.RunRequest]  # the run requests the daemon would submit
    runs: list[dg.ExecuteInProcessResult] = field(default_factory=list)

    @property
    def requests(self) -> list[dg.RunRequest]:
        return list(self.result.run_requests or [])

    @property
    def jobs(self) -> list[str]:
        return [r.job_name for r in self.launched]

    def ranges(self) -> dict[str, list[tuple[str, str]]]:
        """job -> [(first, last) partition keys] of the launched load runs."""
        out: dict[str, list[tuple[str, str]]] = {}
        for r in self.launched:
            if r.job_name != ANALYTICS_JOB:
                out.setdefault(r.job_name, []).append((r.tags[RANGE_START], r.tags[RANGE_END]))
        return out

    def partition_requests(self, kind: type) -> dict[str, list[str]]:
        return {
            r.partitions_def_name: list(r.partition_keys)
            for r in self.result.dynamic_partitions_requests or []
            if isinstance(r, kind)
        }

    @property
    def added(self) -> dict[str, list[str]]:
        return self.partition_requests(dg.AddDynamicPartitionsRequest)

    @property
    def deleted(self) -> dict[str, list[str]]:
        return self.partition_requests(dg.DeleteDynamicPartitionsRequest)

    @property
    def nothing(self) -> bool:
        return not self.requests and not self.result.dynamic_partitions_requests


class Daemon:
    """What dagster-daemon does with the sensor, in this process."""

    def __init__(self, folder: Path, database_url: str, schema: str):
        self.folder = folder
        settings = Settings(str(folder), schema, "unused", settle_seconds=SETTLE)
        resources = build_resources(settings, database_url)
        self.defs = dg.Definitions(
            assets=ALL_ASSETS,
            jobs=JOBS,
            resources=resources,
            sensors=[csv_drops_sensor()],
            executor=dg.in_process_executor,
        )
        self.sensor_resources = {k: resources[k] for k in ("data_folder", "database")}
        self.database: PostgresResource = resources["database"]  # type: ignore[assignment]
        self.instance = dg.DagsterInstance.ephemeral()
        self.cursor: str | None = None

    def evaluate(self) -> dg.SensorExecutionData:
        with dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            definitions=self.defs,
            resources=self.sensor_resources,
            sensor_name=SENSOR_NAME,
        ) as context:
            return self.defs.get_sensor_def(SENSOR_NAME).evaluate_tick(context)

    def tick(self, launch: bool = True) -> Tick:
        """One evaluation; partitions first, then the runs (each to its end), then the cursor."""
        result = self.evaluate()
        for request in result.dynamic_partitions_requests or []:
            if isinstance(request, dg.AddDynamicPartitionsRequest):
                self.instance.add_dynamic_partitions(
                    request.partitions_def_name, list(request.partition_keys)
                )
            else:
                for key in request.partition_keys:  # the daemon skips unknown keys
                    if self.instance.has_dynamic_partition(request.partitions_def_name, key):
                        self.instance.delete_dynamic_partition(request.partitions_def_name, key)
        launched = [r for r in result.run_requests or [] if not self._key_used(r)]
        if result.cursor is not None:
            self.cursor = result.cursor
        tick = Tick(result, launched)
        if launch:
            tick.runs = [self.launch(r) for r in launched]
        return tick

    def _key_used(self, request: dg.RunRequest) -> bool:
        if not request.run_key:
            return False
        tags = {RUN_KEY_TAG: request.run_key, "dagster/sensor_name": SENSOR_NAME}
        return bool(self.instance.get_runs(dg.RunsFilter(tags=tags)))

    def launch(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        tags = dict(request.tags)
        if request.run_key:
            tags[RUN_KEY_TAG] = request.run_key
        return self.defs.resolve_job_def(request.job_name).execute_in_process(
            instance=self.instance,
            tags=tags,
            run_config=request.run_config,
            raise_on_error=False,
        )

    def settle(self) -> None:
        """Ticks until the sensor asks for nothing more; every run must succeed."""
        for _ in range(6):
            tick = self.tick()
            assert all(run.success for run in tick.runs), tick.jobs
            if tick.nothing:
                return
        pytest.fail("the sensor kept requesting runs")

    def manifest(self) -> dict[tuple[str, str], slices.LoadedFile]:
        with self.database.connect() as conn:
            return slices.manifest(conn, self.database.db_schema)

    def partitions(self, source: str) -> list[str]:
        return list(self.instance.get_dynamic_partitions(f"{source}_files"))


def materialized(run: dg.ExecuteInProcessResult) -> set[tuple[str, str | None]]:
    return {
        (event.asset_key.to_user_string(), event.partition)
        for event in run.get_asset_materialization_events()
    }


def count(conn, schema: str, table: str, where: str = "") -> int:
    with conn.cursor() as cur:
        cur.execute(f'SELECT count(*) FROM "{schema}"."{table}" {where}')
        return cur.fetchone()[0]


@pytest.fixture
def schema(database_url: str):
    name = f"sensor_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg2.connect(database_url.replace("+psycopg2", "")) as conn, conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    data = shutil.copytree(HAND_DIR, tmp_path / "data")
    for path in data.iterdir():
        age(path)
    return data


@pytest.fixture
def daemon(folder: Path, database_url: str, schema: str) -> Daemon:
    return Daemon(folder, database_url, schema)


@pytest.fixture
def loaded(daemon: Daemon) -> Daemon:
    """The hand fixture loaded and analysed: the sensor has nothing left to do."""
    daemon.settle()
    assert len(daemon.manifest()) == 4
    return daemon


# ---------------------------------------------------------------------------------------------


def test_fresh_folder_loads_each_source_then_runs_the_analytics_once(daemon, folder, conn, schema):
    """One run per source, the referenced sources (customers, packages) a tick before the
    others, each run's files added as partitions by the tick that requests it."""
    write(folder / DROP, DROP_ROWS)
    first = daemon.tick()
    assert first.ranges() == {
        "load_customers": [("customers.csv", "customers.csv")],
        "load_packages": [("packages.csv", "packages.csv")],
    }
    assert first.added == {"customers_files": ["customers.csv"], "packages_files": ["packages.csv"]}
    second = daemon.tick()
    assert second.ranges() == {
        "load_transactions": [("transactions.csv", DROP)],  # both files in one run
        "load_attendance": [("attendance.csv", "attendance.csv")],
    }
    assert second.added == {
        "transactions_files": ["transactions.csv", DROP],
        "attendance_files": ["attendance.csv"],
    }
    loads = first.launched + second.launched
    assert sorted(r.job_name for r in loads) == sorted(f"load_{name}" for name in SOURCES)
    assert all(r.run_key is None for r in loads)
    assert first.deleted == second.deleted == {}
    assert all(run.success for run in first.runs + second.runs)
    transactions_run = second.runs[second.jobs.index("load_transactions")]
    assert materialized(transactions_run) == {
        ("transactions", "transactions.csv"),
        ("transactions", DROP),
    }
    assert set(daemon.manifest()) == {(name, f"{name}.csv") for name in SOURCES} | {
        ("transactions", DROP)
    }

    analytics = daemon.tick()
    assert analytics.jobs == [ANALYTICS_JOB]
    assert analytics.launched[0].run_key
    assert analytics.result.dynamic_partitions_requests in (None, [])
    assert analytics.runs[0].success
    assert {key for key, _ in materialized(analytics.runs[0])} == ANALYTICS
    assert count(conn, schema, "transactions") == 22
    assert count(conn, schema, "rfm") == 13  # default as_of 2024-07-05: C13 has signed up

    idle = daemon.tick()
    assert idle.nothing and "nothing new" in idle.result.skip_message
    assert daemon.tick().nothing


def test_a_file_still_being_written_is_left_for_later(daemon, folder):
    drop = write(folder / DROP, DROP_ROWS, seconds_ago=None)  # modified just now
    daemon.tick()  # customers, packages
    second = daemon.tick()
    assert second.ranges()["load_transactions"] == [("transactions.csv", "transactions.csv")]
    assert second.added["transactions_files"] == ["transactions.csv"]
    waiting = daemon.tick()  # the others are loaded, but the analytics wait for the drop
    assert waiting.nothing
    assert DROP in waiting.result.skip_message and "still being written" in (
        waiting.result.skip_message
    )
    age(drop)
    settled = daemon.tick()
    assert settled.ranges() == {"load_transactions": [(DROP, DROP)]}
    assert settled.added == {"transactions_files": [DROP]}
    assert daemon.tick().jobs == [ANALYTICS_JOB]
    assert daemon.tick().nothing


def test_a_new_drop_runs_just_its_partition_then_the_analytics(loaded, folder, conn, schema):
    before = count(conn, schema, "transactions")
    write(folder / DROP, DROP_ROWS)
    tick = loaded.tick()
    assert tick.jobs == ["load_transactions"]
    assert tick.ranges() == {"load_transactions": [(DROP, DROP)]}
    assert tick.added == {"transactions_files": [DROP]}
    assert tick.runs[0].success
    assert materialized(tick.runs[0]) == {("transactions", DROP)}
    assert count(conn, schema, "transactions") == before + 2
    assert loaded.partitions("transactions") == ["transactions.csv", DROP]

    analytics = loaded.tick()
    assert analytics.jobs == [ANALYTICS_JOB] and analytics.runs[0].success
    assert loaded.tick().nothing


def test_a_changed_file_reruns_its_partition(loaded, folder, conn, schema):
    packages = folder / "packages.csv"
    write(packages, packages.read_text() + "P9,Annual,500.00,365,\n", seconds_ago=30)
    tick = loaded.tick()
    assert tick.ranges() == {"load_packages": [("packages.csv", "packages.csv")]}
    assert tick.added == {}  # its partition exists already
    assert materialized(tick.runs[0]) == {("packages", "packages.csv")}
    assert count(conn, schema, "packages") == 4
    assert loaded.tick().jobs == [ANALYTICS_JOB]
    assert loaded.tick().nothing

    age(folder / "attendance.csv", 20)  # same bytes, new modification time: loaded again
    tick = loaded.tick()
    assert tick.ranges() == {"load_attendance": [("attendance.csv", "attendance.csv")]}
    assert tick.runs[0].success
    assert loaded.tick().jobs == [ANALYTICS_JOB]
    assert loaded.tick().nothing


def test_a_removed_file_gives_an_analytics_run_and_a_partition_delete(loaded, folder, conn, schema):
    drop = write(folder / DROP, DROP_ROWS)
    loaded.settle()
    assert count(conn, schema, "transactions") == 22
    kept = drop.read_text(), drop.stat().st_mtime_ns
    drop.unlink()

    tick = loaded.tick()
    assert tick.jobs == [ANALYTICS_JOB]
    assert tick.deleted == {"transactions_files": [DROP]}
    assert tick.runs[0].success
    assert count(conn, schema, "transactions") == 20
    assert ("transactions", DROP) not in loaded.manifest()
    assert loaded.partitions("transactions") == ["transactions.csv"]
    assert DROP not in loaded.cursor  # the cursor keeps the files in the folder only
    assert loaded.tick().nothing

    # Put back as it was (same bytes, same time): the folder is again what an earlier analytics
    # run described, yet the tables changed twice since; the analytics must run again.
    drop.write_text(kept[0])
    os.utime(drop, ns=(kept[1], kept[1]))
    tick = loaded.tick()
    assert tick.ranges() == {"load_transactions": [(DROP, DROP)]}
    again = loaded.tick()
    assert again.jobs == [ANALYTICS_JOB], "the analytics run was dropped as a repeated run_key"
    assert again.runs[0].success
    assert count(conn, schema, "transactions") == 22
    assert loaded.tick().nothing


def test_a_failed_load_is_not_requested_again_until_the_file_changes(loaded, folder):
    bad = write(folder / DROP, "transaction_id,customer_id\nT90,C01\n")  # required columns missing
    tick = loaded.tick()
    assert tick.ranges() == {"load_transactions": [(DROP, DROP)]}
    assert not tick.runs[0].success
    assert ("transactions", DROP) not in loaded.manifest()
    for _ in range(2):  # the same failure is not run again, nor are the analytics
        assert loaded.tick().nothing

    write(bad, DROP_ROWS, seconds_ago=10)  # fixed: a new size and time
    tick = loaded.tick()
    assert tick.ranges() == {"load_transactions": [(DROP, DROP)]}
    assert tick.runs[0].success
    assert loaded.tick().jobs == [ANALYTICS_JOB]
    assert loaded.tick().nothing


def test_a_failed_file_does_not_hold_back_the_files_after_it_in_its_run(daemon, folder):
    """A source's new files are one run; the run stops at the file that fails. Only that file
    waits for a change: the ones after it are loaded by the next tick."""
    bad = write(folder / "transactions_2026-11-01.csv", "transaction_id\nT80\n")
    write(folder / DROP, DROP_ROWS)
    daemon.tick()  # customers, packages
    first = daemon.tick()
    assert first.ranges()["load_transactions"] == [("transactions.csv", DROP)]
    failed = first.runs[first.jobs.index("load_transactions")]
    assert not failed.success
    loaded = daemon.manifest()
    assert ("transactions", "transactions.csv") in loaded
    assert ("transactions", bad.name) not in loaded and ("transactions", DROP) not in loaded

    retry = daemon.tick()
    assert retry.ranges() == {"load_transactions": [(DROP, DROP)]}
    assert retry.runs[0].success
    assert ("transactions", DROP) in daemon.manifest()
    analytics = daemon.tick()  # runs; its folder_loaded check reports the failed file
    assert analytics.jobs == [ANALYTICS_JOB]
    assert daemon.tick().nothing


def test_a_failed_file_removed_loses_its_partition(loaded, folder):
    bad = write(folder / DROP, "transaction_id\nT90\n")
    assert not loaded.tick().runs[0].success
    assert loaded.partitions("transactions") == ["transactions.csv", DROP]
    bad.unlink()  # never loaded, so no rows to take out and no analytics to run
    tick = loaded.tick()
    assert tick.requests == [] and tick.deleted == {"transactions_files": [DROP]}
    assert loaded.partitions("transactions") == ["transactions.csv"]
    assert loaded.tick().nothing


def test_an_empty_folder_runs_nothing(tmp_path, database_url, schema):
    (tmp_path / "empty").mkdir()
    tick = Daemon(tmp_path / "empty", database_url, schema).tick()
    assert tick.nothing and "nothing new" in tick.result.skip_message


def test_waits_while_a_sensor_run_is_in_flight(daemon, folder):
    running = dg.DagsterRun(
        job_name="load_transactions",
        status=dg.DagsterRunStatus.STARTED,
        tags={"dagster/sensor_name": SENSOR_NAME},
    )
    daemon.instance.add_run(running)
    waiting = daemon.tick()
    assert waiting.nothing and "still in flight" in waiting.result.skip_message
    assert daemon.cursor is None

    daemon.instance.report_run_failed(running)  # over (how it ended does not matter)
    assert daemon.tick(launch=False).jobs == ["load_customers", "load_packages"]


def test_a_run_not_started_by_the_sensor_does_not_hold_it(daemon):
    other = dg.DagsterRun(job_name=ANALYTICS_JOB, status=dg.DagsterRunStatus.STARTED)
    daemon.instance.add_run(other)
    assert daemon.tick(launch=False).jobs == ["load_customers", "load_packages"]


def test_non_csv_files_are_ignored(loaded, folder):
    names = ("notes.txt", "transactions.xlsx", "attendance.csv.bak", f"{DROP}.part", "README")
    for name in names:
        write(folder / name, "x\n")
    (folder / "transactions_archive").mkdir()  # no .csv suffix: not a drop either
    assert loaded.tick().nothing


def test_file_names_match_in_any_letter_case(loaded, folder):
    drop = write(folder / "Transactions_2026-11-27.CSV", DROP_ROWS)
    tick = loaded.tick()
    assert tick.ranges() == {"load_transactions": [(drop.name, drop.name)]}
    assert tick.runs[0].success


def test_missing_folder_is_a_skip_with_the_reason(tmp_path, database_url, schema):
    tick = Daemon(tmp_path / "nowhere", database_url, schema).tick()
    assert tick.nothing and "data folder does not exist" in tick.result.skip_message


def test_unreachable_database_is_a_skip_with_the_reason(folder, database_url):
    missing = database_url.rsplit("/", 1)[0] + "/no_such_database_here"
    tick = Daemon(folder, missing, "public").tick()
    assert tick.nothing and "no_such_database_here" in tick.result.skip_message
