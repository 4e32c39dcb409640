"""Errors a user meets before or around a run: passwords never printed, only transient
database errors retried, bad settings and options refused in one line, the schema psql opens,
and a table swap that does not wait forever for a session holding the table."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import uuid
from urllib.parse import quote

import dagster as dg
import pandas as pd
import psycopg2
import psycopg2.errors
import pytest
from sqlalchemy.engine import make_url

from retention_assets.assets.policies import fail_fast
from retention_assets.cli import main
from retention_assets.io_managers import PostgresPandasIOManager
from retention_assets.resources import PostgresResource
from retention_assets.settings import Settings, SettingsError
from retention_assets.storage import tables
from retention_assets.storage.database import (
    DatabaseUnavailable,
    connect,
    connect_kwargs,
    is_transient,
    redact,
)
from retention_assets.storage.tables import TableLocked, read_table, write_table

from .hand_fixture import HAND_DIR

DOWN = "postgresql+psycopg2://postgres@127.0.0.1:1/x"
# Passwords users paste unencoded: each special character of a URL's user info, and mixes.
PASSWORDS = ["S@ECRETpw", "Se:cr:etPw", "Se/cr/etPw", "Sec%ret%Pw", "Xy@Zw:Qr/St%Uv?Pw"]


def with_password(url: str, password: str, encode: bool) -> str:
    """``url`` (no password of its own) with ``password`` raw or percent-encoded."""
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{quote(password, safe='') if encode else password}@{host}"


def assert_hidden(password: str, text: str) -> None:
    """Neither the password nor any 3+ character piece of it between special characters."""
    encoded = quote(password, safe="")
    pieces = [p for p in re.split(r"[@:/%?]", password) if len(p) >= 3]
    for secret in {password, encoded, *pieces}:
        assert secret not in text, (secret, text)


# 1. Passwords -----------------------------------------------------------------------------


@pytest.mark.parametrize("encode", [False, True], ids=["raw", "percent-encoded"])
@pytest.mark.parametrize("password", PASSWORDS)
def test_redact_and_connect_read_the_password_whole_and_never_show_it(password, encode):
    url = with_password("postgresql+psycopg2://analyst@db.example:5433/gym", password, encode)
    shown = redact(url)
    assert shown == "postgresql+psycopg2://analyst:***@db.example:5433/gym"
    assert_hidden(password, shown)
    kwargs = connect_kwargs(url)
    assert kwargs["password"] == password
    assert (kwargs["host"], kwargs["port"], kwargs["dbname"]) == ("db.example", 5433, "gym")


@pytest.mark.parametrize("encode", [False, True], ids=["raw", "percent-encoded"])
@pytest.mark.parametrize("password", PASSWORDS)
def test_connection_errors_never_show_the_password(password, encode):
    with pytest.raises(DatabaseUnavailable) as caught:
        connect(with_password(DOWN, password, encode))
    assert str(caught.value).startswith("cannot connect to PostgreSQL at 127.0.0.1:1 (")
    assert_hidden(password, str(caught.value))


def test_a_password_with_special_characters_reaches_the_server(pg_admin_url):
    """Trust auth ignores the password, so this shows the host and database were read right."""
    conn = connect(with_password(pg_admin_url, "S@ECRET/pw:x", encode=False))
    conn.close()


@pytest.mark.parametrize(
    "url",
    [
        "host=127.0.0.1 port=1 user=analyst password=TopSecretPw",  # a libpq DSN, not a URL
        "postgresql://analyst:TopSecretPw@127.0.0.1:port/gym",  # the port is not a number
        "postgresql://analyst@127.0.0.1:1/gym?password=TopSecretPw",
    ],
)
def test_unparseable_urls_and_query_passwords_are_not_shown(url):
    assert "TopSecretPw" not in redact(url)
    with pytest.raises(DatabaseUnavailable) as caught:
        connect(url)
    assert "TopSecretPw" not in str(caught.value)


@pytest.fixture
def cli_env(database_url, monkeypatch):
    schema = f"errs_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("RETENTION_DB_SCHEMA", schema)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return schema


def test_run_and_report_output_never_shows_the_password(cli_env, monkeypatch, tmp_path, capsys):
    password = "Xy@Zw:Qr/St%Uv?Pw"
    monkeypatch.setenv(
        "DATABASE_URL", with_password(os.environ["DATABASE_URL"], password, encode=False)
    )
    assert main(["run", "--data-dir", str(HAND_DIR), "--as-of", "2024-06-30"]) == 0
    assert main(["report", "--out", str(tmp_path)]) == 0
    monkeypatch.setenv("DATABASE_URL", with_password(DOWN, password, encode=False))
    assert main(["run", "--data-dir", str(HAND_DIR)]) == 1
    assert main(["report", "--out", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert "Retention rate:" in out and ":***@" in out
    assert err.count("cannot connect to PostgreSQL at 127.0.0.1:1 (") == 2
    assert_hidden(password, out + err)


# 2. What is retried --------------------------------------------------------------------------


def connect_error(url: str) -> DatabaseUnavailable:
    with pytest.raises(DatabaseUnavailable) as caught:
        connect(url)
    return caught.value


def test_a_database_that_is_down_missing_or_refuses_the_role_is_not_transient(pg_admin_url):
    admin = make_url(pg_admin_url)
    # The embedded server's URL has no host, its socket folder as ?host= (what connect() names).
    where = f"{admin.host or admin.query['host']}:{admin.port or 5432}"
    missing = connect_error(admin.set(database="no_such_db").render_as_string(False))
    no_role = connect_error(admin.set(username="no_such_role").render_as_string(False))
    down = connect_error(DOWN)
    assert str(missing).startswith(f"cannot connect to PostgreSQL at {where} (database ")
    assert 'database "no_such_db" does not exist' in str(missing)
    assert 'role "no_such_role" does not exist' in str(no_role)
    assert "Connection refused" in str(down)
    assert not any(is_transient(e) for e in (missing, no_role, down))


def test_a_server_starting_up_is_transient(monkeypatch):
    def starting(**kwargs):
        raise psycopg2.OperationalError(
            'connection to server at "db", port 5432 failed: FATAL:  the database system is '
            "starting up\n"
        )

    monkeypatch.setattr(psycopg2, "connect", starting)
    assert is_transient(connect_error("postgresql://u@db/gym"))


def server_error(conn, statement: str) -> psycopg2.Error:
    with pytest.raises(psycopg2.Error) as caught, conn.cursor() as cur:
        cur.execute(statement)
    return caught.value


@pytest.mark.parametrize(
    ("condition", "transient"),
    [
        ("serialization_failure", True),  # 40001
        ("deadlock_detected", True),  # 40P01
        ("lock_not_available", True),  # 55P03
        ("admin_shutdown", True),  # 57P01
        ("crash_shutdown", True),  # 57P02
        ("cannot_connect_now", True),  # 57P03
        ("connection_failure", True),  # 08006
        ("disk_full", False),  # 53100
        ("out_of_memory", False),  # 53200
        ("program_limit_exceeded", False),  # 54000
        ("too_many_columns", False),  # 54011
        ("invalid_password", False),  # 28P01
        ("invalid_catalog_name", False),  # 3D000
        ("insufficient_privilege", False),  # 42501
        ("numeric_value_out_of_range", False),  # 22003
        ("query_canceled", False),  # 57014
    ],
)
def test_sqlstates_the_server_raises(conn, condition, transient):
    error = server_error(conn, f"DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '{condition}'; END $$")
    assert is_transient(error) is transient, (type(error), error.pgcode)


def test_real_errors_from_the_server(conn):
    assert not is_transient(server_error(conn, "SELECT 1/0"))
    columns = ", ".join(f"c{i} int" for i in range(1601))
    too_wide = server_error(conn, f"CREATE TEMP TABLE too_wide ({columns})")
    assert isinstance(too_wide, psycopg2.errors.TooManyColumns)  # 54011, a program limit
    assert isinstance(too_wide, psycopg2.OperationalError) and not is_transient(too_wide)
    assert not is_transient(ValueError("a bug"))


def test_lost_races_are_transient(conn, database_url):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE race (id int PRIMARY KEY, n int); INSERT INTO race VALUES (1, 0)")
    other = connect(database_url)
    try:
        other.set_session(isolation_level="REPEATABLE READ")
        with other.cursor() as cur:
            cur.execute("SELECT n FROM race")
            with conn.cursor() as mine:
                mine.execute("UPDATE race SET n = 1")
            with pytest.raises(psycopg2.errors.SerializationFailure) as conflict:
                cur.execute("UPDATE race SET n = 2")
        other.rollback()
        assert is_transient(conflict.value)
        other.set_session(isolation_level="READ COMMITTED")
        with other.cursor() as cur:
            cur.execute("LOCK TABLE race")  # held in an open transaction
            with pytest.raises(psycopg2.errors.LockNotAvailable) as busy, conn.cursor() as mine:
                mine.execute("SET lock_timeout = '50ms'; SELECT * FROM race")
        assert is_transient(busy.value)
    finally:
        other.close()
        with conn.cursor() as cur:
            cur.execute("RESET lock_timeout; DROP TABLE race")


def test_a_connection_dropped_mid_query_is_transient(conn, database_url):
    victim = connect(database_url)
    pid = victim.info.backend_pid
    killer = threading.Timer(
        0.3, lambda: conn.cursor().execute(f"SELECT pg_terminate_backend({pid})")
    )
    killer.start()
    try:
        with pytest.raises(psycopg2.OperationalError) as dropped, victim.cursor() as cur:
            cur.execute("SELECT pg_sleep(30)")
        assert is_transient(dropped.value)
        with pytest.raises(psycopg2.InterfaceError) as closed:
            victim.cursor().execute("SELECT 1")
        assert is_transient(closed.value)
    finally:
        killer.join()
        victim.close()


def step_failure_and_retries(result: dg.ExecuteInProcessResult) -> tuple[str, int]:
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    [failure] = result.get_step_failure_events()
    error = failure.step_failure_data.error
    return error.message + "".join(c.message for c in [error.cause] if c), len(retries)


RETRY_ONCE = dg.RetryPolicy(max_retries=1)


def raise_in_database(database: PostgresResource, statement: str) -> None:
    with database.connect() as conn, conn.cursor() as cur:
        cur.execute(statement)


@dg.asset(retry_policy=RETRY_ONCE)
@fail_fast
def too_wide_in_asset(database: PostgresResource) -> None:
    raise_in_database(
        database, f"CREATE TEMP TABLE w ({', '.join(f'c{i} int' for i in range(1601))})"
    )


@dg.asset(retry_policy=RETRY_ONCE)
@fail_fast
def bug_in_asset() -> None:
    raise KeyError("no such column")


@dg.asset(retry_policy=RETRY_ONCE)
@fail_fast
def serialization_failure_in_asset(database: PostgresResource) -> None:
    raise_in_database(
        database, "DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = 'serialization_failure'; END $$"
    )


@dg.asset(retry_policy=RETRY_ONCE)
def too_wide_for_the_io_manager() -> pd.DataFrame:
    return pd.DataFrame({f"c{i}": [1] for i in range(1601)})


@pytest.mark.parametrize(
    ("asset", "expected", "retries"),
    [
        (too_wide_in_asset, "TooManyColumns: tables can have at most 1600 columns", 0),
        (too_wide_for_the_io_manager, "tables can have at most 1600 columns", 0),
        (bug_in_asset, "KeyError: 'no such column'", 0),
        (serialization_failure_in_asset, "SerializationFailure", 1),
    ],
)
def test_only_transient_errors_are_retried_by_dagster(database_url, asset, expected, retries):
    database = PostgresResource(database_url=database_url, db_schema="retry_tests")
    resources = {"database": database, "io_manager": PostgresPandasIOManager(database=database)}
    result = dg.materialize([asset], resources=resources, raise_on_error=False)
    message, attempts = step_failure_and_retries(result)
    assert expected in message and attempts == retries, message
    assert ("Exceeded max_retries" in message) is (retries > 0)


def test_a_database_that_is_down_fails_the_step_at_once_with_its_reason():
    database = PostgresResource(database_url=with_password(DOWN, "S@ECRETpw", encode=False))
    resources = {"database": database, "io_manager": PostgresPandasIOManager(database=database)}
    started = time.monotonic()
    result = dg.materialize([too_wide_in_asset], resources=resources, raise_on_error=False)
    message, attempts = step_failure_and_retries(result)
    assert attempts == 0 and time.monotonic() - started < 10
    assert "cannot connect to PostgreSQL at 127.0.0.1:1 (" in message
    assert_hidden("S@ECRETpw", str(result.all_events))


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "retention_assets.cli", *args],
        capture_output=True,
        text=True,
        env=os.environ | (env or {}),
        timeout=120,
    )


def test_run_against_a_database_that_is_down_fails_in_seconds_without_a_traceback():
    started = time.monotonic()
    done = cli("run", "--data-dir", str(HAND_DIR), env={"DATABASE_URL": DOWN})
    elapsed = time.monotonic() - started
    assert done.returncode == 1
    assert "retention-assets: cannot connect to PostgreSQL at 127.0.0.1:1 (" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert elapsed < 20  # imports included; DB_RETRY's retries alone would take 14 s


@pytest.mark.parametrize("command", [["report", "--out", "unused"], ["psql", "-c", "select 1"]])
@pytest.mark.parametrize("problem", ["down", "missing database", "unknown role"])
def test_report_and_psql_name_an_unreachable_database(
    pg_admin_url, monkeypatch, capsys, command, problem
):
    admin = make_url(pg_admin_url)
    url = {
        "down": DOWN,
        "missing database": admin.set(database="no_such_db").render_as_string(False),
        "unknown role": admin.set(username="no_such_role").render_as_string(False),
    }[problem]
    monkeypatch.setenv("DATABASE_URL", url)
    assert main(command) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("retention-assets: cannot connect to PostgreSQL at ")
    assert "Traceback" not in err


# 3. Settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("RETENTION_SETTLE_SECONDS", "five", "a number of seconds >= 0"),
        ("RETENTION_SETTLE_SECONDS", "-1", "a number of seconds >= 0"),
        ("RETENTION_SETTLE_SECONDS", "nan", "a number of seconds >= 0"),
        ("RETENTION_SETTLE_SECONDS", "inf", "a number of seconds >= 0"),
        ("RETENTION_SENSOR_INTERVAL", "15s", "a whole number of seconds >= 1"),
        ("RETENTION_SENSOR_INTERVAL", "0", "a whole number of seconds >= 1"),
        ("RETENTION_SENSOR_INTERVAL", "-15", "a whole number of seconds >= 1"),
        ("RETENTION_SENSOR_INTERVAL", "1.5", "a whole number of seconds >= 1"),
        ("RETENTION_DB_SCHEMA", "s" * 64, "a schema name of at most 63 bytes"),
        ("RETENTION_EXECUTOR", "dask", "in_process or celery"),
    ],
)
def test_bad_settings_name_the_variable_the_value_and_what_is_expected(
    monkeypatch, name, value, expected
):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        Settings.from_env()
    assert str(caught.value).startswith(f"{name}={value!r}: expected {expected}")


def test_good_settings_are_read(monkeypatch):
    for name, value in {
        "RETENTION_DATA_DIR": "drops",
        "RETENTION_DB_SCHEMA": "My Schema",
        "RETENTION_PGDATA": "/srv/pg",
        "RETENTION_SETTLE_SECONDS": "0.5",
        "RETENTION_SENSOR_INTERVAL": "30",
    }.items():
        monkeypatch.setenv(name, value)
    assert Settings.from_env() == Settings("drops", "My Schema", "/srv/pg", 0.5, 30)
    for name in ("RETENTION_DATA_DIR", "RETENTION_SETTLE_SECONDS", "RETENTION_SENSOR_INTERVAL"):
        monkeypatch.setenv(name, "")  # empty means unset, as in docker-compose's `NAME=`
    assert Settings.from_env() == Settings("data", "My Schema", "/srv/pg", 5.0, 15)


@pytest.mark.parametrize(
    ("name", "value"), [("RETENTION_SENSOR_INTERVAL", "15s"), ("RETENTION_SETTLE_SECONDS", "five")]
)
def test_the_cli_reports_a_bad_setting_in_one_line(monkeypatch, capsys, name, value):
    monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATABASE_URL", DOWN)
    for command in (["run"], ["report", "--out", "unused"], ["psql"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.strip().splitlines()[-1].startswith(f"retention-assets: {name}={value!r}: ")
        assert "Traceback" not in err


def test_loading_the_definitions_fails_with_the_clear_message():
    done = subprocess.run(
        [sys.executable, "-c", "import retention_assets.definitions"],
        capture_output=True,
        text=True,
        env=os.environ | {"RETENTION_SENSOR_INTERVAL": "15s"},
        timeout=120,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (
        "retention_assets.settings.SettingsError: RETENTION_SENSOR_INTERVAL='15s': "
        "expected a whole number of seconds >= 1"
    )


# 4. Options -----------------------------------------------------------------------------------


AT_LEAST = "is not allowed: input should be greater than or equal to"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--churn-days", "-1", f"-1 {AT_LEAST} 0"),
        ("--lifespan-years", "0", "0.0 is not allowed: input should be greater than 0"),
        ("--n-clusters", "3", f"3 {AT_LEAST} 4"),
        ("--n-init", "0", f"0 {AT_LEAST} 1"),
        ("--clv-window-days", "0", f"0 {AT_LEAST} 1"),
        ("--as-of", "2026-13-01", "'2026-13-01' is not a date YYYY-MM-DD (month must be in 1..12)"),
        ("--as-of", "soon", "'soon' is not a date YYYY-MM-DD (Invalid isoformat string: 'soon')"),
    ],
)
def test_run_options_are_checked_before_anything_starts(
    monkeypatch, capsys, option, value, message
):
    monkeypatch.setenv("DATABASE_URL", DOWN)  # reaching for the database would say so
    with pytest.raises(SystemExit) as exited:
        main(["run", option, value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == f"retention-assets run: error: argument {option}: {message}"


def test_every_bad_option_is_named_at_once(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--churn-days", "-1", "--n-clusters", "3"])
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.count("argument --churn-days") == 1 and "argument --n-clusters" in last


# 5. psql in any schema -----------------------------------------------------------------------


@pytest.mark.parametrize("schema", ["My Schema", 'Odd\\"Name'])
def test_psql_opens_a_schema_that_needs_quoting(conn, database_url, schema):
    quoted = '"' + schema.replace('"', '""') + '"'
    with conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {quoted}; CREATE TABLE {quoted}.members (name text)")
        cur.execute(f"INSERT INTO {quoted}.members VALUES ('Ada')")
    try:
        done = cli(
            "psql",
            "-tAc",
            "SELECT name FROM members",
            env={"DATABASE_URL": database_url, "RETENTION_DB_SCHEMA": schema},
        )
        assert (done.returncode, done.stdout.strip()) == (0, "Ada"), done.stderr
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP SCHEMA {quoted} CASCADE")


# 6. The table swap does not wait forever ------------------------------------------------------


def test_a_swap_blocked_by_an_idle_session_fails_naming_it(conn, database_url, monkeypatch):
    monkeypatch.setattr(tables, "LOCK_WAIT_SECONDS", 0.2)
    monkeypatch.setattr(tables, "LOCK_ATTEMPTS", 2)
    old = pd.DataFrame({"customer_id": ["C1"], "n": [1]})
    write_table(conn, "locks", "rfm", old)
    holder = connect(database_url)
    try:
        with holder.cursor() as cur:
            cur.execute("SET application_name = 'forgotten psql'")
            cur.execute("LOCK TABLE locks.rfm IN ACCESS SHARE MODE")  # transaction left open
        started = time.monotonic()
        with pytest.raises(TableLocked) as caught:
            write_table(conn, "locks", "rfm", pd.DataFrame({"customer_id": ["C2"], "n": [2]}))
        assert time.monotonic() - started < 3
        message = str(caught.value)
        assert message.startswith("table 'locks.rfm' stayed locked by another session through 2")
        pid = holder.info.backend_pid
        assert (
            f"pid {pid} (application_name 'forgotten psql', state 'idle in transaction'" in message
        )
        assert "query started 20" in message and "holds AccessShareLock" in message
        assert not is_transient(caught.value)
    finally:
        holder.close()
    pd.testing.assert_frame_equal(read_table(conn, "locks", "rfm"), old)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'locks'")
        assert cur.fetchone()[0] == 1  # no staging table left
    new = pd.DataFrame({"customer_id": ["C3"], "n": [3]})
    write_table(conn, "locks", "rfm", new)  # the holder is gone: the swap goes through
    pd.testing.assert_frame_equal(read_table(conn, "locks", "rfm"), new)


def test_a_swap_waits_out_a_short_reader(conn, database_url, monkeypatch):
    monkeypatch.setattr(tables, "LOCK_WAIT_SECONDS", 0.3)
    write_table(conn, "locks_short", "rfm", pd.DataFrame({"n": [1]}))
    reader = connect(database_url)
    try:
        with reader.cursor() as cur:
            cur.execute("LOCK TABLE locks_short.rfm IN ACCESS SHARE MODE")
        commit = threading.Timer(0.5, reader.commit)  # ends within the swap's second wait
        commit.start()
        write_table(conn, "locks_short", "rfm", pd.DataFrame({"n": [2]}))
        commit.join()
    finally:
        reader.close()
    assert read_table(conn, "locks_short", "rfm")["n"].tolist() == [2]
