"""End to end, as deployed: dagster-webserver + dagster-daemon on a PostgreSQL-backed instance.

The instance is `deploy/dagster.yaml` itself (the file the docker-compose deployment ships),
pointed at the test database through its DAGSTER_POSTGRES_* variables; runs queue and run one at
a time, as deployed. Everything goes through the GraphQL API and the `csv_drops` sensor (on by
default), as a deployment would:

1. the sensor's first ticks load the generated folder: one `load_<source>` run per source (the
   referenced sources, customers and packages, a tick before the others), each of its file's
   partition (added by that tick), then a later tick runs `analytics` once, and further ticks
   run nothing;
2. a new `transactions_<date>.csv` drop gets a run of just its partition, then the analytics,
   and the tables hold its rows.

Which files are loaded is read back as the source assets' partitions (partitionKeys and
assetPartitionStatuses). A textual summary (partitions, runs, table counts) is written to
artifacts/e2e_daemon/summary.txt; the browser test takes the screenshots.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

from retention_assets.generate import generate_dataset

from .graph_helpers import ANALYTICS
from .services import BIN, REPO_ROOT, Service, instance_environment, running_services, start
from .services import wait_for as poll

SUMMARY = REPO_ROOT / "artifacts" / "e2e_daemon" / "summary.txt"
LOCATION = "retention_assets"  # location_name in workspace.yaml (and deploy/workspace.yaml)
REPOSITORY = "__repository__"  # the repository a Definitions object becomes
SENSOR = "csv_drops"
SCHEMA = "e2e_daemon"
SOURCES = ["customers", "packages", "transactions", "attendance"]
LOAD_JOBS = {f"load_{name}" for name in SOURCES}
ANALYTICS_JOB = "analytics"
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
# generate_dataset's feeds both end on 2026-10-31, the default as_of: a drop of that day's
# late purchases counts towards every figure of the snapshot.
AS_OF = "2026-10-31"
DROP = f"transactions_{AS_OF}.csv"
DROP_AMOUNT = Decimal("49.00")
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
# Generous: on a busy 2-core machine each run is a fresh process that imports the stack
# (5-10 s), and the queue runs them one at a time. The whole test takes ~2-3 minutes there.
START_TIMEOUT = 180
CYCLE_TIMEOUT = 480

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(1500),  # the whole test, start-up and shutdown included
    # dagster_graphql's client calls gql in a way gql 4 deprecates; not ours to fix.
    pytest.mark.filterwarnings("ignore:Using variable_values:DeprecationWarning"),
    pytest.mark.skipif(
        not (BIN / "dagster-webserver").exists() or not (BIN / "dagster-daemon").exists(),
        reason=f"dagster-webserver / dagster-daemon not installed in {BIN}",
    ),
]


# ---------------------------------------------------------------------------------------------
# Processes (see services.py)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# GraphQL


class GraphQLError(RuntimeError):
    pass


def wait_for(
    what: str,
    probe: Callable[[], Any],
    timeout: float,
    services: list[Service],
    interval: float = 0.5,
) -> Any:
    """services.wait_for, an unanswered or failed query counting as not yet."""
    transient = (requests.RequestException, GraphQLError, DagsterGraphQLClientError)
    return poll(what, probe, timeout, services, interval, retry_on=transient)


RUN_FIELDS = "runId jobName status startTime endTime tags { key value }"
PARTITIONS_QUERY = """query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) {
    __typename
    ... on AssetNode {
        partitionKeys
        partitionStats { numPartitions numMaterialized numFailed numMaterializing }
        assetPartitionStatuses { __typename
            ... on DefaultPartitionStatuses {
                materializedPartitions failedPartitions materializingPartitions
                unmaterializedPartitions } } } } }"""


class Dagster:
    """The GraphQL client for run status, plus the queries it has no method for."""

    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"
        self.client = DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=60)

    def query(self, text: str, **variables: Any) -> dict:
        response = requests.post(
            f"{self.base}/graphql", json={"query": text, "variables": variables}, timeout=60
        )
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise GraphQLError(str(body["errors"]))
        return body["data"]

    def server_info(self) -> bool:
        return requests.get(f"{self.base}/server_info", timeout=5).ok

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

    def sensor_status(self) -> str:
        data = self.query(
            """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) {
                    __typename ... on Sensor { sensorState { status } }
                    ... on PythonError { message } ... on SensorNotFoundError { message } } }""",
            s=self.sensor_selector,
        )["sensorOrError"]
        if data["__typename"] != "Sensor":
            raise GraphQLError(f"sensor {SENSOR}: {data}")
        return data["sensorState"]["status"]

    def sensor_runs(self) -> list[dict]:
        """The runs the sensor requested, oldest first."""
        data = self.query(
            f"""query($f: RunsFilter) {{ runsOrError(filter: $f) {{ __typename
                    ... on Runs {{ results {{ {RUN_FIELDS} }} }}
                    ... on PythonError {{ message }} }} }}""",
            f={"tags": [{"key": "dagster/sensor_name", "value": SENSOR}]},
        )["runsOrError"]
        if data["__typename"] != "Runs":
            raise GraphQLError(f"runsOrError: {data}")
        return data["results"][::-1]

    def ticks(self, statuses: list[str] | None = None, limit: int = 200) -> list[dict]:
        """The sensor's ticks, oldest first."""
        data = self.query(
            """query($s: SensorSelector!, $statuses: [InstigationTickStatus!], $limit: Int) {
                sensorOrError(sensorSelector: $s) { ... on Sensor { sensorState {
                    ticks(limit: $limit, statuses: $statuses) {
                        status timestamp skipReason runIds error { message }
                        dynamicPartitionsRequestResults {
                            partitionsDefName type partitionKeys skippedPartitionKeys }
                    } } } } }""",
            s=self.sensor_selector,
            statuses=statuses,
            limit=limit,
        )
        return sorted(
            data["sensorOrError"]["sensorState"]["ticks"], key=lambda tick: tick["timestamp"]
        )

    def describe_ticks(self) -> str:
        """The sensor's last ticks, for failure messages."""
        try:
            return "\n".join(
                f"{t['timestamp']:.1f} {t['status']} runs={t['runIds']} "
                f"skip={t['skipReason']!r} error={(t['error'] or {}).get('message')}"
                for t in self.ticks(limit=15)
            )
        except Exception as exc:  # diagnostics only
            return f"(ticks unavailable: {exc})"

    def materialized(self, run_id: str) -> set[tuple[str, str | None]]:
        """(asset, partition) of what the run materialized (from its event log)."""
        data = self.query(
            """query($id: ID!) { runOrError(runId: $id) { __typename
                    ... on Run { assetMaterializations { assetKey { path } partition } } } }""",
            id=run_id,
        )["runOrError"]
        return {
            ("/".join(m["assetKey"]["path"]), m["partition"]) for m in data["assetMaterializations"]
        }

    def partitions(self, asset: str) -> dict:
        """The asset's partition keys (the drop files) and which are materialized (loaded)."""
        node = self.query(PARTITIONS_QUERY, key={"path": [asset]})["assetNodeOrError"]
        if node["__typename"] != "AssetNode":
            raise GraphQLError(f"assetNodeOrError({asset}): {node}")
        return node

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


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture
def environment(tmp_path: Path, database_url: str, instance_url: str) -> dict[str, str]:
    """DAGSTER_HOME on deploy/dagster.yaml (an instance database of its own), a generated data
    folder, the test database's tables."""
    data = tmp_path / "data"
    rows = generate_dataset(data, customers=200, seed=1)
    assert rows["customers.csv"] == 200
    env = instance_environment(tmp_path / "dagster_home", database_url, data, SCHEMA, instance_url)
    env.update(RETENTION_SETTLE_SECONDS="1", RETENTION_SENSOR_INTERVAL="2")
    return env


def count(conn, table: str) -> int:
    with conn.cursor() as cur:
        cur.execute(f'SELECT count(*) FROM "{SCHEMA}"."{table}"')
        return cur.fetchone()[0]


def column(conn, query: str) -> list:
    with conn.cursor() as cur:
        cur.execute(query)
        return [row[0] for row in cur.fetchall()]


def monetary(conn, customers: list[str]) -> dict[str, Decimal]:
    with conn.cursor() as cur:
        cur.execute(
            f'SELECT customer_id, monetary FROM "{SCHEMA}".rfm WHERE customer_id = ANY(%s)',
            [customers],
        )
        return {customer: Decimal(str(value)) for customer, value in cur.fetchall()}


def write_drop(data_dir: Path, customers: list[str]) -> Path:
    """A transactions drop of late purchases on AS_OF, renamed into place in one step."""
    lines = ["transaction_id,customer_id,transaction_date,amount,package_id,payment_method"]
    lines += [
        f"TE2E{i:04d},{customer},{AS_OF} 2{i}:15:00,{DROP_AMOUNT},P03,card"
        for i, customer in enumerate(customers)
    ]
    target = data_dir / DROP
    partial = target.with_suffix(".csv.part")  # not a .csv: ignored by the sensor
    partial.write_text("\n".join(lines) + "\n")
    partial.replace(target)
    return target


def tags_of(run: dict) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in run["tags"]}


def file_range(run: dict) -> tuple[str | None, str | None]:
    tags = tags_of(run)
    return tags.get(RANGE_START), tags.get(RANGE_END)


class SensorWatch:
    """Waits on the sensor's runs, failing at once (with the run's errors) if one fails."""

    def __init__(self, dagster: Dagster, services: list[Service]):
        self.dagster, self.services = dagster, services

    def runs_after(self, seen: int, job: str) -> list[dict] | None:
        """The sensor's runs after the first `seen`, once a run of `job` among them succeeded
        and none is still going."""
        runs = self.dagster.sensor_runs()[seen:]
        for run in runs:
            if run["status"] in ("FAILURE", "CANCELED"):
                pytest.fail(
                    f"sensor run {run['jobName']} {run['runId']} ended {run['status']}:\n"
                    f"{self.dagster.run_errors(run['runId'])}\n{self.dagster.describe_ticks()}"
                )
        done = any(r["jobName"] == job and r["status"] == "SUCCESS" for r in runs)
        return runs if done and all(r["status"] in FINISHED for r in runs) else None

    def cycle(self, seen: int, what: str) -> list[dict]:
        return wait_for(
            f"waiting for {what} (sensor ticks:\n{self.dagster.describe_ticks()})",
            lambda: self.runs_after(seen, ANALYTICS_JOB),
            CYCLE_TIMEOUT,
            self.services,
            interval=2,
        )

    def quiet_ticks(self, since: float, n: int = 2) -> list[dict]:
        """Waits for `n` ticks after `since` (epoch seconds); returns them."""

        def later() -> list[dict] | None:
            ticks = [t for t in self.dagster.ticks(limit=20) if t["timestamp"] > since]
            return ticks if len(ticks) >= n else None

        return wait_for("waiting for further sensor ticks", later, 120, self.services, 2)


def launching_ticks(dagster: Dagster) -> list[dict]:
    return [t for t in dagster.ticks(statuses=["SUCCESS"]) if t["runIds"]]


def summarize(dagster: Dagster, conn, started: float) -> str:
    """What a user would read in the UI, as text: partitions of each source, the sensor's runs,
    the tables."""
    lines = [f"e2e daemon summary ({time.monotonic() - started:.0f} s into the test)", ""]
    lines.append("Source partitions (one per drop file):")
    for name in SOURCES:
        node = dagster.partitions(name)
        status = node["assetPartitionStatuses"]
        lines.append(
            f"  {name}: {node['partitionStats']['numMaterialized']}/"
            f"{node['partitionStats']['numPartitions']} materialized"
        )
        for key in node["partitionKeys"]:
            state = "materialized" if key in status["materializedPartitions"] else "NOT loaded"
            lines.append(f"    {key}: {state}")
    lines += ["", "Sensor runs (oldest first):"]
    for run in dagster.sensor_runs():
        first, last = file_range(run)
        files = f" files {first}..{last}" if first else ""
        lines.append(f"  {run['jobName']:<18} {run['status']:<8}{files}  {run['runId']}")
    lines += ["", f"Tables in schema {SCHEMA}:"]
    for table in ("loaded_files", *SOURCES, "rfm", "clv", "retention"):
        lines.append(f"  {table:<14} {count(conn, table):>7,} rows")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# The test


def test_sensor_loads_the_folder_then_each_drop_under_webserver_and_daemon(environment, conn):
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
    wait_for("waiting for /server_info", dagster.server_info, START_TIMEOUT, services)
    phase("webserver answers /server_info")
    wait_for("loading the code location", dagster.location_loaded, START_TIMEOUT, services)
    phase("code location loaded")
    assert dagster.sensor_status() == "RUNNING"  # on by default: the daemon ticks it at once
    assert dagster.sensor_runs() == []
    for name in SOURCES:  # no file is a partition before the sensor's first tick
        assert dagster.partitions(name)["partitionKeys"] == []

    daemon_cmd = [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"]
    services.append(start("dagster-daemon", daemon_cmd, environment, logs))
    watch = SensorWatch(dagster, services)

    # 1. The first ticks load the folder: one run per source, then one analytics run.
    runs = watch.cycle(0, "the sensor to load the folder and run the analytics")
    phase(f"folder loaded and analysed in {len(runs)} sensor runs")
    assert [r["jobName"] for r in runs[-1:]] == [ANALYTICS_JOB], dagster.describe_ticks()
    loads = runs[:-1]
    assert sorted(r["jobName"] for r in loads) == sorted(LOAD_JOBS), dagster.describe_ticks()
    # Referenced sources first: customers and packages, then a tick later the others.
    stages = [["customers", "packages"], ["transactions", "attendance"]]
    *load_ticks, analytics_tick = launching_ticks(dagster)[:3]
    by_id = {r["runId"]: r for r in loads}
    for tick, names in zip(load_ticks, stages, strict=True):
        jobs = sorted(by_id[i]["jobName"] for i in tick["runIds"])
        assert jobs == sorted(f"load_{name}" for name in names), dagster.describe_ticks()
        added = {
            r["partitionsDefName"]: r["partitionKeys"]
            for r in tick["dynamicPartitionsRequestResults"]
            if r["type"] == "ADD_PARTITIONS"
        }
        assert added == {f"{name}_files": [f"{name}.csv"] for name in names}
    assert analytics_tick["runIds"] == [runs[-1]["runId"]]
    for run in loads:
        name = run["jobName"].removeprefix("load_")
        assert file_range(run) == (f"{name}.csv", f"{name}.csv")
        assert dagster.materialized(run["runId"]) == {(name, f"{name}.csv")}
    assert {asset for asset, _ in dagster.materialized(runs[-1]["runId"])} == ANALYTICS
    for name in SOURCES:
        node = dagster.partitions(name)
        assert node["partitionKeys"] == [f"{name}.csv"]
        assert node["assetPartitionStatuses"]["materializedPartitions"] == [f"{name}.csv"]
        assert node["partitionStats"]["numFailed"] == 0

    customers = count(conn, "customers")
    assert customers == 200
    assert count(conn, "rfm") == count(conn, "clv") == customers
    assert count(conn, "loaded_files") == len(SOURCES)
    assert [str(d) for d in column(conn, f'SELECT as_of FROM "{SCHEMA}".retention')] == [AS_OF]
    transactions_before = count(conn, "transactions")

    # Nothing changed: further ticks run nothing.
    end = max(r["endTime"] for r in runs)
    quiet = watch.quiet_ticks(since=end)
    assert all(not t["runIds"] for t in quiet), dagster.describe_ticks()
    assert len(dagster.sensor_runs()) == len(runs)
    phase(f"{len(quiet)} further ticks ran nothing")

    # 2. A new drop: a run of just its partition, then the analytics.
    some_customers = column(
        conn, f'SELECT customer_id FROM "{SCHEMA}".customers ORDER BY customer_id LIMIT 3'
    )
    spent_before = monetary(conn, some_customers)
    write_drop(Path(environment["RETENTION_DATA_DIR"]), some_customers)
    phase(f"dropped {DROP}")
    after = watch.cycle(len(runs), "the drop's run and the analytics")
    phase(f"drop loaded and analysed in {len(after)} sensor runs")
    assert [r["jobName"] for r in after] == ["load_transactions", ANALYTICS_JOB]
    assert file_range(after[0]) == (DROP, DROP)
    assert dagster.materialized(after[0]["runId"]) == {("transactions", DROP)}
    assert {asset for asset, _ in dagster.materialized(after[1]["runId"])} == ANALYTICS
    transactions = dagster.partitions("transactions")
    assert transactions["partitionKeys"] == ["transactions.csv", DROP]
    statuses = transactions["assetPartitionStatuses"]
    assert sorted(statuses["materializedPartitions"]) == ["transactions.csv", DROP]
    assert statuses["failedPartitions"] == statuses["unmaterializedPartitions"] == []

    assert count(conn, "transactions") == transactions_before + len(some_customers)
    assert count(conn, "loaded_files") == len(SOURCES) + 1
    assert count(conn, "customers") == count(conn, "rfm") == customers
    assert monetary(conn, some_customers) == {
        customer: spent + DROP_AMOUNT for customer, spent in spent_before.items()
    }
    assert [str(d) for d in column(conn, f'SELECT as_of FROM "{SCHEMA}".retention')] == [AS_OF]

    summary = summarize(dagster, conn, started)
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    SUMMARY.write_text(summary)
    print(summary)
    phase(f"tables updated; summary in {SUMMARY.relative_to(REPO_ROOT)}")
