"""Dagster processes for the end-to-end tests: an instance on deploy/dagster.yaml pointed at the
test database, and services (webserver, daemon, Celery workers) started in process groups of
their own and stopped with everything they started."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dotenv import dotenv_values
from sqlalchemy.engine import make_url

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv running pytest (.venv/bin with `make test`)


def instance_environment(
    home: Path, database_url: str, data: Path, schema: str, instance_url: str
) -> dict[str, str]:
    """The environment of a Dagster process on DAGSTER_HOME=`home` (created, holding
    deploy/dagster.yaml, whose storage is the database of `instance_url`), with the tables in
    `schema` of `database_url` and the drops in `data`; this venv's commands first on PATH.
    Skips when ./.env would override it."""
    home.mkdir()
    shutil.copy(REPO_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    url = make_url(instance_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "RETENTION_"))}
    env.update(
        DAGSTER_HOME=str(home),
        DAGSTER_POSTGRES_USER=url.username or "postgres",
        # deploy/dagster.yaml reads a password from the environment; trust auth ignores it.
        DAGSTER_POSTGRES_PASSWORD=url.password or "unused",
        # No host: the embedded server's URL names its socket folder as ?host=, which the
        # host:port URL dagster-postgres builds cannot carry; libpq's PGHOST (below) can.
        DAGSTER_POSTGRES_HOST=url.host or ("" if "host" in url.query else "127.0.0.1"),
        DAGSTER_POSTGRES_PORT=str(url.port or 5432),
        DAGSTER_POSTGRES_DB=url.database,
        DATABASE_URL=database_url,
        RETENTION_DATA_DIR=str(data),
        RETENTION_DB_SCHEMA=schema,
        PATH=os.pathsep.join([str(BIN), env.get("PATH", "")]),
        PYTHONUNBUFFERED="1",
    )
    if not url.host and "host" in url.query:
        env["PGHOST"] = url.query["host"]
    # The Dagster CLIs load .env from their working directory *over* the environment, so a
    # developer's .env (DATABASE_URL is documented there) would send this test's tables and runs
    # to their own database.
    overridden = sorted(set(dotenv_values(REPO_ROOT / ".env")) & set(env))
    if overridden:
        pytest.skip(
            f"{REPO_ROOT / '.env'} sets {', '.join(overridden)}, which the Dagster commands "
            "would apply over the test's settings"
        )
    return env


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


def group_alive(pgid: int) -> bool:
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
        if group_alive(service.proc.pid):
            os.killpg(service.proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for service in services:
        while group_alive(service.proc.pid) and time.monotonic() < deadline:
            service.proc.poll()  # reap the leader, or the group never looks empty
            time.sleep(0.2)
        if group_alive(service.proc.pid):
            print(f"{service.name}: still running {timeout:.0f} s after SIGTERM, sending SIGKILL")
            os.killpg(service.proc.pid, signal.SIGKILL)
        try:
            service.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            print(f"{service.name}: pid {service.proc.pid} did not exit after SIGKILL")
    print(f"stopped {', '.join(s.name for s in services)} in {time.monotonic() - started:.1f} s")


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


def wait_for(
    what: str,
    probe: Callable[[], Any],
    timeout: float,
    services: list[Service],
    interval: float = 0.5,
    retry_on: tuple[type[Exception], ...] = (),
) -> Any:
    """Poll `probe` until it returns something truthy (an error in `retry_on` counts as not
    yet); fail early if a service died."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        for service in services:
            if service.proc.poll() is not None:
                pytest.fail(f"{service.name} exited ({service.proc.returncode}) while {what}")
        try:
            result = probe()
        except retry_on as exc:
            last_error, result = exc, None
        if result:
            return result
        time.sleep(interval)
    pytest.fail(
        f"timed out after {timeout:.0f} s {what}" + (f": {last_error}" if last_error else "")
    )
