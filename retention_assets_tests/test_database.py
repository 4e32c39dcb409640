"""Choosing and reaching the database: URLs, redaction, errors, the embedded server."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from retention_assets.storage import database
from retention_assets.storage.database import (
    DatabaseUnavailable,
    connect,
    normalise_url,
    redact,
    resolve_database_url,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@h:5432/db", "postgresql+psycopg2://u:p@h:5432/db"),
        ("postgres://u@h/db?sslmode=require", "postgresql+psycopg2://u@h/db?sslmode=require"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_normalise_url(url, expected):
    assert normalise_url(url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://alice:hunter2@db.example:6543/prod",
            "postgresql://alice:***@db.example:6543/prod",
        ),
        ("postgresql://alice:hun%40ter2@db/prod", "postgresql://alice:***@db/prod"),
        ("postgresql+psycopg2://alice@db/prod", "postgresql+psycopg2://alice@db/prod"),
        (
            "postgresql+psycopg2://postgres:@/postgres?host=/tmp/sock",
            "postgresql+psycopg2://postgres@/postgres?host=%2Ftmp%2Fsock",
        ),
        ("postgresql://u@h/db?password=hunter2", "postgresql://u@h/db?password=%2A%2A%2A"),
        (
            "not-a-url//user:hunter2@host?password=hunter2&x=1",
            "<unparseable database URL, not shown>",
        ),
    ],
)
def test_redact_hides_passwords(url, expected):
    assert redact(url) == expected
    assert "ter2" not in redact(url)


def test_resolve_prefers_explicit_then_env_then_dotenv(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    (tmp_path / ".env").write_text("DATABASE_URL=postgresql://from:dotenv@h/db\nOTHER=1\n")
    assert resolve_database_url() == "postgresql+psycopg2://from:dotenv@h/db"
    assert "DATABASE_URL" not in os.environ and "OTHER" not in os.environ
    monkeypatch.setenv("DATABASE_URL", "postgres://from:env@h/db")
    assert resolve_database_url() == "postgresql+psycopg2://from:env@h/db"
    assert (
        resolve_database_url("postgresql://explicit@h/db") == "postgresql+psycopg2://explicit@h/db"
    )


def test_socket_url_becomes_libpq_keywords():
    kwargs = database.connect_kwargs(
        "postgresql+psycopg2://postgres:@/postgres?host=/tmp/sock&sslmode=disable"
    )
    assert kwargs == {
        "dbname": "postgres",
        "user": "postgres",
        "host": "/tmp/sock",
        "sslmode": "disable",
        "connect_timeout": 10,
    }
    assert database.connect_kwargs("postgresql://u:p@h:1/d?host=a&host=b")["host"] == "a,b"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_server_names_where_but_not_the_password():
    port = closed_port()
    with pytest.raises(DatabaseUnavailable) as caught:
        connect(f"postgresql://analyst:TopSecret99@127.0.0.1:{port}/warehouse")
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "'warehouse'" in message
    assert "refused" in message.lower()
    # The driver's exception is not chained, so no traceback can show the connection string.
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert "TopSecret99" not in "".join(traceback.format_exception_only(caught.value))
    assert isinstance(caught.value, RuntimeError)


def test_connect_reaches_the_test_database(database_url):
    conn = connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_database(), current_setting('client_encoding')")
            name, encoding = cur.fetchone()
    finally:
        conn.close()
    # parse_url, not the text's end: the embedded server's URL ends in ?host=<socket folder>.
    assert database.parse_url(database_url).database == name and encoding == "UTF8"


EMBEDDED = """
import json, os, sys, time
import pandas as pd
from retention_assets.storage.database import connect, resolve_database_url
from retention_assets.storage.tables import read_table, write_table

pgdata, mode = sys.argv[1], sys.argv[2]
url = resolve_database_url(pgdata=pgdata)
assert resolve_database_url(pgdata=pgdata) == url  # cached: one server per process
conn = connect(url)
if mode == "write":
    write_table(conn, "public", "t", pd.DataFrame({"id": ["a", "b"], "n": [1, 2]}))
out = read_table(conn, "public", "t")
conn.close()
print(json.dumps({"url": url, "rows": out.to_dict("records"),
                  "dtypes": [str(d) for d in out.dtypes]}), flush=True)
if mode == "wait":
    time.sleep(600)  # until the test sends SIGTERM
"""


def _default_sigterm() -> None:
    """In the child before it starts: SIGTERM as a service manager would deliver it. This test
    process may ignore SIGTERM by then (an in-process Dagster run maps SIGTERM to SIGINT's
    handler, which is "ignore" under a shell that started the tests in the background), and an
    ignored signal stays ignored across exec."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run_embedded(tmp_path: Path, pgdata: Path, mode: str) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    return subprocess.Popen(
        [sys.executable, "-c", EMBEDDED, str(pgdata), mode],
        cwd=tmp_path,  # no .env here
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigterm,
    )


def finish(process: subprocess.Popen) -> dict:
    stdout, stderr = process.communicate(timeout=300)  # a busy machine starts slowly
    assert process.returncode == 0, stderr
    return json.loads(stdout)


@pytest.fixture
def pgdata(tmp_path: Path) -> Iterator[Path]:
    """A data folder whose server is stopped (fast shutdown) even if the test fails."""
    folder = tmp_path / "state" / "pgdata"  # the parent folder does not exist yet
    yield folder
    pid_file = folder / "postmaster.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)


def test_embedded_server_starts_persists_and_stops(tmp_path, pgdata):
    first = finish(run_embedded(tmp_path, pgdata, "write"))
    assert first["url"].startswith("postgresql+psycopg2://") and "host=" in first["url"]
    assert first["rows"] == [{"id": "a", "n": 1}, {"id": "b", "n": 2}]
    assert first["dtypes"] == ["str", "int64"]
    assert not (pgdata / "postmaster.pid").exists(), "the last user must stop the server"

    # A process killed with SIGKILL leaves its pid behind; it must not keep the server alive.
    dead = subprocess.Popen(["true"])
    dead.wait()
    (pgdata / ".handle_pids.json").write_text(json.dumps([dead.pid]))
    second = finish(run_embedded(tmp_path, pgdata, "read"))
    assert second["rows"] == first["rows"]
    assert not (pgdata / "postmaster.pid").exists()

    # SIGTERM is a normal exit: the server is stopped too.
    waiting = run_embedded(tmp_path, pgdata, "wait")
    assert json.loads(waiting.stdout.readline())["rows"] == first["rows"]
    assert (pgdata / "postmaster.pid").exists()
    waiting.send_signal(signal.SIGTERM)
    waiting.communicate(timeout=300)
    assert waiting.returncode == 128 + signal.SIGTERM
    assert not (pgdata / "postmaster.pid").exists()
    assert json.loads((pgdata / ".handle_pids.json").read_text()) == []
