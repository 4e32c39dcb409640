"""End to end, as deployed: dagster-webserver + dagster-daemon on a PostgreSQL-backed instance.

The instance is `deploy/dagster.yaml` itself (the file the docker-compose deployment ships),
pointed at the test database through its DAGSTER_POSTGRES_* variables. The test launches a
materialization of every asset through the GraphQL API, then lets the `csv_drops` sensor pick
up a new transactions drop and checks that its run covers transactions + downstream only.

The sensor is on by default, so its first tick (empty cursor) would launch a run of everything
at the same time as ours; the test switches it off through GraphQL before the daemon starts
and back on once the GraphQL run has succeeded.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError
from dotenv import dotenv_values
from sqlalchemy.engine import make_url

from retention_assets.generate import generate_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv running pytest (.venv/bin with `make test`)
LOCATION = "retention_assets"  # location_name in workspace.yaml (and deploy/workspace.yaml)
REPOSITORY = "__repository__"  # the repository a Definitions object becomes
ASSET_JOB = "__ASSET_JOB"  # the implicit job over every asset
SENSOR = "csv_drops"
SCHEMA = "e2e_daemon"
SOURCES = {"customers", "packages", "transactions", "attendance"}
ANALYTICS = {"rfm_features", "rfm_model", "rfm", "clv", "retention"}
TRANSACTIONS_DOWNSTREAM = {"transactions"} | ANALYTICS
DROP_DATE = "2026-11-26"  # later than anything generate_dataset writes (it ends 2026-10-31)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(180),  # the whole test, start-up and shutdown included; it takes ~45 s
    # dagster_graphql's client calls gql in a way gql 4 deprecates; not ours to fix.
    pytest.mark.filterwarnings("ignore:Using variable_values:DeprecationWarning"),
    pytest.mark.skipif(
        not (BIN / "dagster-webserver").exists() or not (BIN / "dagster-daemon").exists(),
        reason=f"dagster-webserver / dagster-daemon not installed in {BIN}",
    ),
]


# ---------------------------------------------------------------------------------------------
# Processes


@dataclass
class Service:
    name: str
    proc: subprocess.Popen
    log: Path

    def tail(self, lines: int = 150) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _restore_signals() -> None:
    # A shell that starts pytest in the background makes SIGINT ignored, and ignored signals
    # are inherited: Dagster's CLIs would then never stop on SIGINT/SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start(name: str, args: list[str], env: dict[str, str], logs: Path) -> Service:
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: code servers and runs go with it
            preexec_fn=_restore_signals,
        )
    return Service(name, proc, log)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(services: list[Service], timeout: float = 20.0) -> None:
    """SIGTERM every process group, then SIGKILL whatever is left after `timeout`."""
    started = time.monotonic()
    for service in services:
        if _group_alive(service.proc.pid):
            os.killpg(service.proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for service in services:
        while _group_alive(service.proc.pid) and time.monotonic() < deadline:
            service.proc.poll()  # reap the leader, or the group never looks empty
            time.sleep(0.2)
        if _group_alive(service.proc.pid):
            print(f"{service.name}: still running {timeout:.0f} s after SIGTERM, sending SIGKILL")
            os.killpg(service.proc.pid, signal.SIGKILL)
        try:
            service.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            print(f"{service.name}: pid {service.proc.pid} did not exit after SIGKILL")
    print(f"stopped {', '.join(s.name for s in services)} in {time.monotonic() - started:.1f} s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    what: str,
    probe: Callable[[], Any],
    timeout: float,
    services: list[Service],
    interval: float = 0.5,
) -> Any:
    """Poll `probe` until it returns something truthy; fail early if a service died."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        for service in services:
            if service.proc.poll() is not None:
                pytest.fail(f"{service.name} exited ({service.proc.returncode}) while {what}")
        try:
            result = probe()
        except (requests.RequestException, GraphQLError, DagsterGraphQLClientError) as exc:
            last_error, result = exc, None
        if result:
            return result
        time.sleep(interval)
    pytest.fail(
        f"timed out after {timeout:.0f} s {what}" + (f": {last_error}" if last_error else "")
    )


# ---------------------------------------------------------------------------------------------
# GraphQL


class GraphQLError(RuntimeError):
    pass


class Dagster:
    """The GraphQL client for runs, plus the few queries it has no method for."""

    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"
        self.client = DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=30)

    def query(self, text: str, **variables: Any) -> dict:
        response = requests.post(
            f"{self.base}/graphql", json={"query": text, "variables": variables}, timeout=30
        )
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise GraphQLError(str(body["errors"]))
        return body["data"]

    def server_info(self) -> bool:
        return requests.get(f"{self.base}/server_info", timeout=2).ok

    def location_loaded(self) -> bool:
        data = self.query(
            """{ workspaceOrError { __typename ... on Workspace { locationEntries {
                    name loadStatus
                    locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
        )
        entries = {e["name"]: e for e in data["workspaceOrError"].get("locationEntries", [])}
        entry = entries.get(LOCATION)
        if entry is None or entry["loadStatus"] != "LOADED":
            return False
        loaded = entry["locationOrLoadError"]
        if loaded["__typename"] != "RepositoryLocation":
            pytest.fail(f"code location {LOCATION} failed to load: {loaded.get('message')}")
        return True

    @property
    def sensor_selector(self) -> dict:
        return {
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
            "sensorName": SENSOR,
        }

    def sensor(self) -> dict:
        data = self.query(
            """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) {
                    __typename ... on Sensor { id sensorState { status } }
                    ... on PythonError { message } ... on SensorNotFoundError { message } } }""",
            s=self.sensor_selector,
        )["sensorOrError"]
        if data["__typename"] != "Sensor":
            raise GraphQLError(f"sensor {SENSOR}: {data}")
        return data

    def stop_sensor(self) -> str:
        result = self.query(
            """mutation($id: String!) { stopSensor(id: $id) { __typename
                    ... on StopSensorMutationResult { instigationState { status } }
                    ... on PythonError { message } } }""",
            id=self.sensor()["id"],
        )["stopSensor"]
        if result["__typename"] != "StopSensorMutationResult":
            raise GraphQLError(f"stopSensor: {result}")
        return result["instigationState"]["status"]

    def start_sensor(self) -> str:
        result = self.query(
            """mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) { __typename
                    ... on Sensor { sensorState { status } } ... on PythonError { message } } }""",
            s=self.sensor_selector,
        )["startSensor"]
        if result["__typename"] != "Sensor":
            raise GraphQLError(f"startSensor: {result}")
        return result["sensorState"]["status"]

    def runs(self, tags: dict[str, str]) -> list[dict]:
        """Runs carrying `tags`, newest first."""
        data = self.query(
            """query($f: RunsFilter) { runsOrError(filter: $f) { __typename
                    ... on Runs { results { runId status assetSelection { path }
                                            tags { key value } } }
                    ... on PythonError { message } } }""",
            f={"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        )["runsOrError"]
        if data["__typename"] != "Runs":
            raise GraphQLError(f"runsOrError: {data}")
        return data["results"]

    def sensor_ticks(self) -> str:
        """The sensor's recent ticks, for failure messages."""
        try:
            data = self.query(
                """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) {
                        ... on Sensor { sensorState { ticks(limit: 10) {
                            status timestamp skipReason runIds
                            error { message } } } } } }""",
                s=self.sensor_selector,
            )
            return str(data["sensorOrError"]["sensorState"]["ticks"])
        except Exception as exc:  # diagnostics only
            return f"(ticks unavailable: {exc})"

    def materialized(self, run_id: str) -> set[str]:
        """The assets the run materialized (from its event log, not its request)."""
        data = self.query(
            """query($id: ID!) { runOrError(runId: $id) { __typename
                    ... on Run { assetMaterializations { assetKey { path } } } } }""",
            id=run_id,
        )["runOrError"]
        return {"/".join(m["assetKey"]["path"]) for m in data["assetMaterializations"]}

    def run_errors(self, run_id: str) -> str:
        """The run's error-level messages, for failure messages."""
        try:
            data = self.query(
                """query($id: ID!) { logsForRun(runId: $id) {
                        ... on EventConnection { events { __typename
                            ... on MessageEvent { message level } } } } }""",
                id=run_id,
            )
            events = data["logsForRun"].get("events", [])
            return "\n".join(
                e["message"] for e in events if e.get("level") in ("ERROR", "CRITICAL")
            )
        except Exception as exc:  # diagnostics only
            return f"(logs unavailable: {exc})"

    def wait_for_run(self, run_id: str, timeout: float, services: list[Service]) -> None:
        finished = {"SUCCESS", "FAILURE", "CANCELED"}

        def status() -> str | None:
            value = self.client.get_run_status(run_id).value
            return value if value in finished else None

        final = wait_for(f"waiting for run {run_id}", status, timeout, services, interval=1)
        assert final == "SUCCESS", f"run {run_id} ended {final}:\n{self.run_errors(run_id)}"


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture
def environment(tmp_path: Path, database_url: str) -> dict[str, str]:
    """DAGSTER_HOME on deploy/dagster.yaml, a generated data folder, the test database."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    data = tmp_path / "data"
    rows = generate_dataset(data, customers=200, seed=1)
    assert rows["customers.csv"] == 200
    url = make_url(database_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "RETENTION_"))}
    env.update(
        DAGSTER_HOME=str(home),
        DAGSTER_POSTGRES_USER=url.username or "postgres",
        # deploy/dagster.yaml reads a password from the environment; trust auth ignores it.
        DAGSTER_POSTGRES_PASSWORD=url.password or "unused",
        DAGSTER_POSTGRES_HOST=url.host or "127.0.0.1",
        DAGSTER_POSTGRES_PORT=str(url.port or 5432),
        DAGSTER_POSTGRES_DB=url.database,
        DATABASE_URL=database_url,
        RETENTION_DATA_DIR=str(data),
        RETENTION_DB_SCHEMA=SCHEMA,
        RETENTION_SETTLE_SECONDS="1",
        RETENTION_SENSOR_INTERVAL="2",
        PYTHONUNBUFFERED="1",
    )
    # The Dagster CLIs load .env from their working directory *over* the environment, so a
    # developer's .env (DATABASE_URL is documented there) would send this test's tables and runs
    # to their own database.
    overridden = sorted(set(dotenv_values(REPO_ROOT / ".env")) & set(env))
    if overridden:
        pytest.skip(
            f"{REPO_ROOT / '.env'} sets {', '.join(overridden)}, which dagster-webserver "
            "and dagster-daemon would apply over the test's settings"
        )
    return env


@contextmanager
def running_services() -> Iterator[list[Service]]:
    """Services started inside the block; stopped on the way out, logs printed on failure."""
    running: list[Service] = []
    try:
        yield running
    except BaseException:
        for service in running:
            print(f"\n===== {service.name}: last lines of {service.log} =====")
            print(service.tail())
        raise
    finally:
        stop(running)


def count(conn, table: str) -> int:
    with conn.cursor() as cur:
        cur.execute(f'SELECT count(*) FROM "{SCHEMA}"."{table}"')
        return cur.fetchone()[0]


def retention_dates(conn) -> list[str]:
    with conn.cursor() as cur:
        cur.execute(f'SELECT as_of FROM "{SCHEMA}".retention ORDER BY as_of')
        return [str(row[0]) for row in cur.fetchall()]


def write_drop(data_dir: Path, customers: list[str]) -> Path:
    """A new transactions drop dated DROP_DATE, renamed into place in one step."""
    lines = ["transaction_id,customer_id,transaction_date,amount,package_id,payment_method"]
    lines += [
        f"TE2E{i:04d},{customer},{DROP_DATE} 1{i}:15:00,49.00,P03,card"
        for i, customer in enumerate(customers)
    ]
    target = data_dir / f"transactions_{DROP_DATE}.csv"
    partial = target.with_suffix(".csv.part")  # not a .csv: ignored by the sensor
    partial.write_text("\n".join(lines) + "\n")
    partial.replace(target)
    return target


def asset_names(run: dict) -> set[str]:
    return {"/".join(key["path"]) for key in run["assetSelection"] or []}


# ---------------------------------------------------------------------------------------------
# The test


def test_webserver_daemon_graphql_run_then_sensor_run_on_a_drop(environment, conn):
    with running_services() as services:
        check_deployment(environment, services, conn)


def check_deployment(environment: dict[str, str], services: list[Service], conn) -> None:
    started = time.monotonic()

    def phase(label: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {label}", flush=True)

    port = free_port()
    dagster = Dagster(port)
    webserver_cmd = [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port)]
    webserver_cmd += ["-w", "workspace.yaml"]
    logs = Path(environment["DAGSTER_HOME"])
    services.append(start("dagster-webserver", webserver_cmd, environment, logs))
    wait_for("waiting for /server_info", dagster.server_info, 60, services)
    phase("webserver answers /server_info")
    wait_for("loading the code location", dagster.location_loaded, 60, services)
    phase("code location loaded")

    # Off before the daemon exists, so its first tick cannot race the GraphQL run.
    assert dagster.stop_sensor() == "STOPPED"
    daemon_cmd = [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"]
    services.append(start("dagster-daemon", daemon_cmd, environment, logs))

    # 1. Everything, through the GraphQL client (queued; the daemon launches it).
    run_id = dagster.client.submit_job_execution(
        ASSET_JOB,
        repository_location_name=LOCATION,
        repository_name=REPOSITORY,
        tags={"e2e": "graphql"},
    )
    phase(f"submitted {ASSET_JOB} run {run_id}")
    dagster.wait_for_run(run_id, 60, services)
    phase("GraphQL run succeeded")
    assert dagster.materialized(run_id) == SOURCES | ANALYTICS
    customers = count(conn, "customers")
    assert customers == 200
    assert count(conn, "rfm") == customers
    assert count(conn, "clv") == customers
    assert retention_dates(conn) == ["2026-10-31"]
    transactions_before = count(conn, "transactions")
    assert transactions_before > 0
    assert dagster.runs({"dagster/sensor_name": SENSOR}) == []

    # 2. The sensor back on: its first tick (empty cursor) runs everything once.
    assert dagster.start_sensor() == "RUNNING"

    def sensor_runs() -> list[dict]:
        return dagster.runs({"dagster/sensor_name": SENSOR})

    def first_sensor_run() -> dict | None:
        runs = sensor_runs()
        return runs[-1] if runs else None

    first = wait_for("waiting for the sensor's first tick", first_sensor_run, 30, services)
    phase(f"sensor's first run {first['runId']}")
    assert asset_names(first) == SOURCES | ANALYTICS, dagster.sensor_ticks()
    dagster.wait_for_run(first["runId"], 60, services)
    phase("sensor's first run succeeded")
    assert retention_dates(conn) == ["2026-10-31"]  # same data, same as_of: still one row

    # 3. A new drop: one run of transactions and its downstream, nothing else.
    with conn.cursor() as cur:
        cur.execute(f'SELECT customer_id FROM "{SCHEMA}".customers ORDER BY customer_id LIMIT 3')
        some_customers = [row[0] for row in cur.fetchall()]
    write_drop(Path(environment["RETENTION_DATA_DIR"]), some_customers)
    phase("dropped the transactions file")

    def drop_run() -> dict | None:
        runs = [r for r in sensor_runs() if r["runId"] != first["runId"]]
        return runs[0] if runs else None

    second = wait_for("waiting for the sensor to see the drop", drop_run, 30, services)
    phase(f"sensor's drop run {second['runId']}")
    tags = {tag["key"]: tag["value"] for tag in second["tags"]}
    assert tags.get("retention/changed_sources") == "transactions", tags
    assert asset_names(second) == TRANSACTIONS_DOWNSTREAM, dagster.sensor_ticks()
    dagster.wait_for_run(second["runId"], 60, services)
    phase("sensor's drop run succeeded")
    assert dagster.materialized(second["runId"]) == TRANSACTIONS_DOWNSTREAM

    assert count(conn, "transactions") == transactions_before + len(some_customers)
    assert count(conn, "customers") == customers
    assert count(conn, "rfm") == customers
    assert retention_dates(conn) == ["2026-10-31", DROP_DATE]
    with conn.cursor() as cur:
        cur.execute(f'SELECT DISTINCT as_of FROM "{SCHEMA}".rfm')
        assert [str(row[0]) for row in cur.fetchall()] == [DROP_DATE]
    assert len(sensor_runs()) == 2  # the drop was run once, not once per tick
    phase("tables updated")
