"""Faults around the database: a writer killed mid-COPY, and a database that is down."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import dagster as dg
import pandas as pd
import pytest

from retention_assets.assets import SOURCE_ASSETS
from retention_assets.assets.sources import PARTITIONS
from retention_assets.definitions import build_resources
from retention_assets.settings import Settings
from retention_assets.storage.tables import read_table, write_table

from .hand_fixture import HAND_DIR


def staging_tables(conn, schema):
    with conn.cursor() as cur:
        cur.execute(
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND relname LIKE '\\_staging\\_%%'",
            (schema,),
        )
        return [name for (name,) in cur.fetchall()]


def copy_in_progress(conn, database):
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND query LIKE 'COPY %%'",
            (database,),
        )
        return cur.fetchone()[0] > 0


def test_writer_killed_mid_copy_leaves_old_table_and_no_staging(database_url, conn):
    schema = "faults_kill"
    old = pd.DataFrame({"customer_id": ["C1", "C2"], "n": [1, 2]})
    write_table(conn, schema, "rfm", old)
    writer = textwrap.dedent(
        f"""
        import pandas as pd
        from retention_assets.storage.database import connect
        from retention_assets.storage.tables import write_table
        n = 3_000_000
        frame = pd.DataFrame({{"customer_id": [f"C{{i:09d}}" for i in range(n)], "n": range(n)}})
        write_table(connect({database_url!r}), {schema!r}, "rfm", frame)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", writer])
    database = conn.info.dbname  # not the URL's tail: the embedded server's ends in ?host=...
    deadline = time.monotonic() + 60
    while not copy_in_progress(conn, database):
        assert proc.poll() is None, "the writer finished before it could be killed"
        assert time.monotonic() < deadline, "the writer never started its COPY"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    pd.testing.assert_frame_equal(read_table(conn, schema, "rfm"), old)
    deadline = time.monotonic() + 30  # the server notices the dead client and rolls back
    while staging_tables(conn, schema) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert staging_tables(conn, schema) == []
    new = pd.DataFrame({"customer_id": ["C3"], "n": [3]})
    write_table(conn, schema, "rfm", new)  # the next run succeeds
    pd.testing.assert_frame_equal(read_table(conn, schema, "rfm"), new)


@pytest.mark.timeout(120)
def test_database_down_fails_at_once_clearly_without_the_password():
    """A refused connection is not transient: no retries hide the reason."""
    url = "postgresql+psycopg2://retention:s3cret-pw@127.0.0.1:1/analytics"
    settings = Settings(data_dir=str(HAND_DIR), db_schema="public", pgdata="unused")
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(PARTITIONS["customers"].name, ["customers.csv"])
        result = dg.materialize(
            SOURCE_ASSETS[:1],
            resources=build_resources(settings, url),
            partition_key="customers.csv",
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert retries == []
    error = result.get_step_failure_events()[0].event_specific_data.error
    text = error.message + "".join(c.message for c in [error.cause] if c)
    assert "cannot connect to PostgreSQL at 127.0.0.1:1" in text and "analytics" in text
    assert "s3cret-pw" not in str(result.all_events)


KILLED_MID_LOAD = """
import sys
from pathlib import Path
from retention_assets.core.sources import SOURCES
from retention_assets.ingest import store
from retention_assets.storage.database import connect

url, path, schema = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
conn, admin = connect(url), connect(url)
admin.autocommit = True
copy_in, pid = store._copy_in, conn.get_backend_pid()

def copy_then_lose_the_connection(*args, **kwargs):
    admin.cursor().execute("SELECT pg_terminate_backend(%s)", [pid])
    return copy_in(*args, **kwargs)

store._copy_in = copy_then_lose_the_connection
try:
    store.store_file(conn, schema, SOURCES["attendance"], path, "run")
except Exception as e:
    print(type(e).__name__)
"""


def test_a_connection_lost_mid_load_raises_cleanly(database_url, tmp_path):
    """The load fails with the database's error and the process exits cleanly. Arrow frees
    what it holds of Python (the file, each block read, the bad-row callback) on its own
    threads: one still doing so at interpreter exit aborted the process ("terminate called
    without an active exception", code -6), about one run in seven with both cores busy, as
    they are kept here, until the parse waited all of it back (arrow_feed)."""
    from retention_assets.generate import generate_dataset

    generate_dataset(tmp_path, 20000, seed=3)  # many blocks: the read-ahead is busy
    spin = [sys.executable, "-c", "while True: pass"]
    busy = [subprocess.Popen(spin) for _ in range(os.cpu_count() or 2)]
    aborted = []
    try:
        for n in range(10):
            done = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    KILLED_MID_LOAD,
                    database_url,
                    str(tmp_path / "attendance.csv"),
                    f"killed_{n}",
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.stdout.strip() in ("OperationalError", "InterfaceError", "AdminShutdown")
            if done.returncode != 0:
                aborted.append((n, done.returncode, done.stderr))
            assert "SystemError" not in done.stderr  # psycopg2 decoding the server's FATAL
    finally:
        for spinner in busy:
            spinner.kill()
            spinner.wait()
    assert aborted == []
