"""The graph on Dagster's Celery executor, as a deployment with workers runs it: two
`dagster-celery worker start` workers (separate processes, one task at a time each) on RabbitMQ,
an instance on deploy/dagster.yaml shared by the runs and the workers, and the runs started with
`dagster job execute` under RETENTION_EXECUTOR=celery.

1. A generated folder split into monthly drops (26 files, each a partition) is loaded the way
   the sensor asks for it (one run per source, its files as one partition range), then the
   analytics run: every step runs on a worker (Dagster's event log names it, and the step's
   process belongs to that worker's process tree), both workers work, every partition is
   materialized, and the tables equal those of the same data run in-process, row by row.
2. The next analytics run's `snapshot` step is held while it publishes (the test locks the
   last table it swaps) and its worker is killed (SIGKILL, the whole process tree): readers
   still see the previous run's tables; the broker hands the step to the other worker, which
   publishes, and the tables then equal the in-process result of that run.

No RabbitMQ on 127.0.0.1:5672 skips the test, or fails it with RETENTION_REQUIRE_BROKER=1 (CI).
`-m "not celery"` deselects it.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from amqp.exceptions import AMQPError
from dagster._core.instance.ref import InstanceRef
from dagster._core.system_config.objects import ResolvedRunConfig
from kombu import Connection
from kombu.exceptions import OperationalError

from retention_assets.core.sources import SOURCES
from retention_assets.definitions import build_definitions
from retention_assets.generate import generate_dataset
from retention_assets.ingest.plan import plan_drops
from retention_assets.jobs import ANALYTICS_JOB, load_requests, register_partitions
from retention_assets.settings import CELERY_BACKEND, CELERY_BROKER, Settings, SettingsError
from retention_assets.storage.database import connect

from .graph_helpers import ANALYTICS, materialize, stored_rows
from .services import (
    BIN,
    REPO_ROOT,
    Service,
    group_alive,
    instance_environment,
    running_services,
    start,
    wait_for,
)

BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
BACKEND = "rpc://"  # results come back to the run's process over the broker: no other server
SCHEMA, REFERENCE = "celery_e2e", "celery_reference"
WORKERS = ("w1", "w2")
EARLIER = {"ops": {"rfm_features": {"config": {"as_of": "2026-09-30"}}}}  # run 1; run 2: default
LAST_SWAPPED = "segment_migration"  # staging.publish swaps tables in name order
COMPARED = (
    *SOURCES,
    "rfm_features",
    "rfm",
    "clv",
    "retention",
    "clv_forecast",
    "clv_holdout",
    "cohort_retention",
    "rfm_history",
    LAST_SWAPPED,
)
MODELS = ("rfm_model", "clv_model")
PUBLISHED = (*COMPARED[len(SOURCES) :], *MODELS)  # what `snapshot` swaps in
LAUNCH_TAG = "retention_tests/launch"
START_TIMEOUT, RUN_TIMEOUT = 120, 300


@pytest.fixture(scope="module")
def broker() -> str:
    try:
        with Connection(BROKER, connect_timeout=5) as connection:
            connection.ensure_connection(max_retries=1)
    except (OSError, OperationalError, AMQPError) as exc:  # down, or refusing the login
        reason = f"no RabbitMQ broker at 127.0.0.1:5672 (guest): {exc}"
        if os.environ.get("RETENTION_REQUIRE_BROKER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return BROKER


def monthly_drops(folder: Path) -> dict[str, list[str]]:
    """A year of generated data with transactions and attendance as monthly drop files
    (`transactions_2025-11.csv`, ...), the way exports arrive; the files of each source."""
    generate_dataset(folder, customers=300, seed=3, history_days=365)
    for name, column in (("transactions", "transaction_date"), ("attendance", "check_in")):
        whole = folder / f"{name}.csv"
        with whole.open(newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            months: dict[str, list[list[str]]] = {}
            for row in reader:
                months.setdefault(row[header.index(column)][:7], []).append(row)
        for month, rows in months.items():
            with (folder / f"{name}_{month}.csv").open("w", newline="") as f:
                csv.writer(f).writerows([header, *rows])
        whole.unlink()
    return {name: sorted(p.name for p in folder.glob(f"{name}*.csv")) for name in SOURCES}


def state(conn, schema: str, tables: tuple[str, ...] = COMPARED) -> dict[str, object]:
    """The tables' rows (see stored_rows) and what the stored models describe."""
    rows: dict[str, object] = dict(stored_rows(conn, schema, tables))
    with conn.cursor() as cur:
        for model in MODELS:
            cur.execute(f'SELECT description FROM "{schema}"."{model}"')
            rows[model] = cur.fetchone()[0]
    return rows


def assert_same(got: dict[str, object], want: dict[str, object]) -> None:
    assert got.keys() == want.keys()
    for name, value in want.items():
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(got[name], value, obj=name)
        else:
            assert got[name] == value, name


def dagster_job(job: str, label: str, tags: dict[str, str], config: Path | None) -> list[str]:
    """`dagster job execute` of `job` in the code location, the run tagged with `label`."""
    command = [str(BIN / "dagster"), "job", "execute", "-m", "retention_assets.definitions"]
    command += ["-a", "defs", "-j", job, "--tags", json.dumps(tags | {LAUNCH_TAG: label})]
    return command + (["-c", str(config)] if config else [])


def launched(instance: dg.DagsterInstance, label: str) -> dg.DagsterRun:
    [run] = instance.get_runs(dg.RunsFilter(tags={LAUNCH_TAG: label}))
    return run


def steps_by_worker(instance: dg.DagsterInstance, run_id: str) -> dict[str, list[str]]:
    """Each step's Celery workers, in order: the worker running a step's task reports itself
    ("Executing steps ... in celery worker", metadata "Celery worker": NAME@host)."""
    workers: dict[str, list[str]] = {}
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        worker = record.dagster_event.engine_event_data.metadata.get("Celery worker")
        if worker is not None:
            workers.setdefault(record.step_key, []).append(worker.value)
    return workers


def step_pids(instance: dg.DagsterInstance, run_id: str) -> dict[str, int]:
    """The process each step succeeded in."""
    return {
        record.step_key: record.dagster_event.pid
        for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
    }


def ready_workers(services: list[Service]) -> dict[str, str] | None:
    """NAME@host of every worker once all of them have said they are ready."""
    found = {}
    for service in services:
        match = re.search(r"^.*\] (\S+@\S+) ready\.$", service.tail(), re.MULTILINE)
        if match is None:
            return None
        found[service.name] = match.group(1)
    return found


def test_steps_run_in_process_unless_celery_is_asked_for_with_what_workers_need(
    monkeypatch, tmp_path
):
    monkeypatch.chdir(tmp_path)  # no .env
    for name in ("RETENTION_EXECUTOR", CELERY_BROKER, CELERY_BACKEND, "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert build_definitions(Settings.from_env()).executor is dg.in_process_executor

    monkeypatch.setenv("RETENTION_EXECUTOR", "celery")
    with pytest.raises(SettingsError) as caught:
        Settings.from_env()
    message = str(caught.value)
    assert message.startswith(f"RETENTION_EXECUTOR='celery' needs {CELERY_BROKER} (the broker")
    assert f"; {CELERY_BACKEND} (the result backend" in message
    assert "; DATABASE_URL (a PostgreSQL server every worker reaches: the embedded" in message
    monkeypatch.setenv(CELERY_BROKER, BROKER)
    monkeypatch.setenv(CELERY_BACKEND, BACKEND)
    with pytest.raises(SettingsError, match=r"needs DATABASE_URL \(a PostgreSQL server"):
        Settings.from_env()

    (tmp_path / ".env").write_text("DATABASE_URL=postgresql://app@db/gym\n")  # as for the tables
    analytics = build_definitions(Settings.from_env()).resolve_job_def(ANALYTICS_JOB)
    assert analytics.executor_def.name == "celery"
    # Broker and backend are read when a run starts, from the variables the workers read too.
    monkeypatch.setenv(CELERY_BROKER, "pyamqp://u:p@elsewhere:5672//")
    execution = ResolvedRunConfig.build(analytics, {}).execution.execution_engine_config
    assert (execution["broker"], execution["backend"]) == ("pyamqp://u:p@elsewhere:5672//", BACKEND)


def test_a_worker_without_what_steps_need_stops_as_it_starts(tmp_path):
    """deploy/celery.yaml has every worker import retention_assets.celery_worker first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETENTION_", "DATABASE_"))}
    env |= {"RETENTION_EXECUTOR": "celery", CELERY_BROKER: BROKER, CELERY_BACKEND: BACKEND}
    for extra, error in [
        ({}, "SettingsError: RETENTION_EXECUTOR='celery' needs DATABASE_URL (a PostgreSQL"),
        ({"RETENTION_EXECUTOR": "in_process"}, "SettingsError: RETENTION_EXECUTOR is not 'celery'"),
        ({"DATABASE_URL": "postgresql://app@db/gym"}, None),
    ]:
        started = subprocess.run(
            [sys.executable, "-c", "import retention_assets.celery_worker"],
            cwd=tmp_path,  # no .env
            env=env | extra,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if error is None:
            assert started.returncode == 0, started.stderr
        else:
            assert started.returncode == 1
            assert error in started.stderr.strip().splitlines()[-1]


def published(conn) -> dict[str, int]:
    """The table (oid) each name of PUBLISHED is, from the catalog: reading it waits for no
    lock, and a swap not committed yet is not visible."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT relname, oid FROM pg_class WHERE relnamespace = %s::regnamespace"
            " AND relname = ANY(%s)",
            [SCHEMA, list(PUBLISHED)],
        )
        return dict(cur.fetchall())


def waiting_for(conn, pid: int) -> list[int]:
    """The sessions waiting for a lock session `pid` holds."""
    with conn.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", [pid])
        return [waiting for (waiting,) in cur.fetchall()]


def session_open(conn, pid: int) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return cur.fetchone()[0] == 1


def locked_by(conn, pid: int) -> set[int]:
    """The tables (oids) session `pid` holds to itself."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT relation::bigint FROM pg_locks WHERE pid = %s AND granted"
            " AND mode = 'AccessExclusiveLock' AND relation IS NOT NULL",
            [pid],
        )
        return {oid for (oid,) in cur.fetchall()}


@pytest.mark.celery
@pytest.mark.timeout(900)
def test_two_workers_run_the_graph_and_a_worker_killed_mid_publish_loses_nothing(
    broker, tmp_path, database_url, instance_url, conn, monkeypatch
):
    started = time.monotonic()

    def phase(label: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {label}", flush=True)

    data = tmp_path / "data"
    files = monthly_drops(data)
    assert sum(map(len, files.values())) == 26
    home = tmp_path / "dagster_home"
    env = instance_environment(home, database_url, data, SCHEMA, instance_url)
    env.update(
        RETENTION_EXECUTOR="celery",
        RETENTION_CELERY_BROKER=broker,
        RETENTION_CELERY_BACKEND=BACKEND,
    )
    earlier = tmp_path / "earlier.yaml"
    earlier.write_text(json.dumps(EARLIER))  # JSON is YAML

    # The same data in-process (ephemeral instance, its own schema): what the workers must give.
    assert materialize(data, database_url, REFERENCE, EARLIER).success
    expected_earlier = state(conn, REFERENCE)
    in_process_started = time.monotonic()
    assert materialize(data, database_url, REFERENCE).success
    in_process_seconds = time.monotonic() - in_process_started
    expected_latest = state(conn, REFERENCE)
    phase(f"in-process reference done (the second analytics: {in_process_seconds:.1f} s)")

    # The instance the runs and the workers share; its storage tables exist before they start.
    for name, value in env.items():
        if name.startswith("DAGSTER_") or name == "PGHOST":
            monkeypatch.setenv(name, value)
    with (
        dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance,
        running_services() as services,
    ):
        worker_cmd = [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app"]
        worker_cmd += ["-y", str(REPO_ROOT / "deploy" / "celery.yaml")]
        for name in WORKERS:  # one task at a time each: two steps run in parallel
            command = [*worker_cmd, "-n", name, "--", "--concurrency", "1"]
            services.append(start(name, command, env, tmp_path))
        hosts = wait_for(
            "starting the workers", lambda: ready_workers(services), START_TIMEOUT, services
        )
        phase(f"workers ready: {hosts}")

        # 1. Loads (one run per source, as the sensor asks), then the analytics.
        plan = plan_drops(data, {})
        register_partitions(instance, plan)
        launches = [
            (job, job, tags, None)
            for job, tags in load_requests(instance.get_dynamic_partitions, plan)
        ]
        launches.append((ANALYTICS_JOB, "analytics-1", {}, earlier))
        for job, label, tags, config in launches:
            done = subprocess.run(
                dagster_job(job, label, tags, config),
                cwd=REPO_ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT,
            )
            assert done.returncode == 0, f"{job}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        runs = [launched(instance, label) for _, label, _, _ in launches]
        assert [run.status for run in runs] == [dg.DagsterRunStatus.SUCCESS] * len(runs)
        phase(f"{len(runs)} runs on the workers")

        for name, names in files.items():
            assert instance.get_materialized_partitions(dg.AssetKey(name)) == set(names), name
        assert {
            (name, record.dagster_event.partition)
            for run in runs[:-1]
            for record in instance.all_logs(
                run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
            )
            for name in [record.dagster_event.asset_key.to_user_string()]
        } == {(name, file) for name, names in files.items() for file in names}

        worker_of_group = {service.proc.pid: hosts[service.name] for service in services}
        ran_on: dict[str, str] = {}
        for run in runs:
            workers = steps_by_worker(instance, run.run_id)
            pids = step_pids(instance, run.run_id)
            assert workers.keys() == pids.keys()  # every step ran on a worker and succeeded
            for step, [worker] in workers.items():  # exactly one attempt each
                assert worker_of_group[os.getpgid(pids[step])] == worker, (run.job_name, step)
                ran_on[f"{run.job_name}.{step}"] = worker
        assert {key.split(".")[1] for key in ran_on if key.startswith("analytics.")} == ANALYTICS
        assert set(ran_on.values()) == set(hosts.values()), ran_on  # both workers worked
        # Inputs another worker's process wrote: read from PostgreSQL, not a process's memory.
        handed_over = {
            (loaded.upstream_step_key, record.step_key)
            for record in instance.all_logs(
                runs[-1].run_id, of_type=dg.DagsterEventType.LOADED_INPUT
            )
            for loaded in [record.dagster_event.event_specific_data]
            if ran_on.get(f"analytics.{loaded.upstream_step_key}")
            not in (None, ran_on[f"analytics.{record.step_key}"])
        }
        assert handed_over, ran_on
        print("step -> worker:", json.dumps(ran_on, indent=1))
        assert_same(state(conn, SCHEMA), expected_earlier)
        stats = instance.get_run_stats(runs[-1].run_id)
        phase(
            f"tables equal the in-process ones; analytics on the workers took "
            f"{stats.end_time - stats.start_time:.1f} s"
        )

        # 2. The next analytics run, its snapshot held mid-publish, its worker killed.
        before = published(conn)
        holder = connect(database_url)
        try:
            with holder.cursor() as cur:
                cur.execute(f'LOCK TABLE "{SCHEMA}"."{LAST_SWAPPED}" IN ACCESS EXCLUSIVE MODE')
                cur.execute("SELECT pg_backend_pid()")
                [holder_pid] = cur.fetchone()
            command = dagster_job(ANALYTICS_JOB, "analytics-2", {}, None)
            run_process = start("analytics-2", command, env, tmp_path)
            services.append(run_process)

            def publishing() -> tuple[str, int] | None:
                """snapshot's worker and its session, once that waits for the held table."""
                waiting = waiting_for(conn, holder_pid)
                run = launched(instance, "analytics-2") if waiting else None
                workers = steps_by_worker(instance, run.run_id).get("snapshot") if run else None
                return (workers[0], waiting[0]) if workers else None

            victim, session = wait_for("snapshot to publish", publishing, RUN_TIMEOUT, services)
            # Mid-publish: every other table is already swapped, in its uncommitted transaction.
            earlier_tables = {before[name] for name in PUBLISHED if name != LAST_SWAPPED}
            assert earlier_tables <= locked_by(conn, session)
            [killed] = [s for s in services if hosts.get(s.name) == victim]
            os.killpg(killed.proc.pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while group_alive(killed.proc.pid) and time.monotonic() < deadline:
                killed.proc.poll()  # reap the leader, or the group never looks empty
                time.sleep(0.1)
            assert not group_alive(killed.proc.pid)
            phase(f"killed {victim} while it published")
            # PostgreSQL ends the dead worker's session when its lock wait times out (10 s),
            # rolling its transaction back: every published table is still the earlier one.
            wait_for(
                "the killed worker's session to end",
                lambda: not session_open(conn, session),
                60,
                [run_process],
            )
            assert published(conn) == before
            phase("its session ended, rolled back")
        finally:
            holder.rollback()
            holder.close()

        assert run_process.proc.wait(timeout=RUN_TIMEOUT) == 0, run_process.tail()
        run = launched(instance, "analytics-2")
        assert run.status == dg.DagsterRunStatus.SUCCESS
        [survivor] = set(hosts.values()) - {victim}
        assert steps_by_worker(instance, run.run_id)["snapshot"] == [victim, survivor]
        assert_same(state(conn, SCHEMA), expected_latest)
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename LIKE %s",
                [SCHEMA, "\\_staged\\_%\\_%"],
            )
            assert cur.fetchone()[0] == 0  # nothing staged left behind
        phase(f"the other worker published: tables equal the in-process ones ({survivor})")
