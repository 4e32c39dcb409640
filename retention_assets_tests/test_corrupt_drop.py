"""A valid export with a random byte range overwritten: the run either succeeds (the bad rows
rejected) or fails with a clear message, and every stored table is then either the old one
or exactly what a rebuild from the folder gives, never a mix."""

from __future__ import annotations

import os
import shutil
import uuid

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retention_assets.core.sources import SOURCES

from .graph_helpers import materialize, stored_rows
from .hand_fixture import HAND_DIR

DERIVED = ("rfm_features", "rfm", "clv", "retention")
TABLES = (*SOURCES, *DERIVED)


def _same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    try:
        pd.testing.assert_frame_equal(a, b)
    except AssertionError:
        return False
    return True


@settings(
    max_examples=int(os.environ.get("RETENTION_CORRUPTION_EXAMPLES", "8")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    victim=st.sampled_from(["customers.csv", "transactions.csv", "attendance.csv"]),
    at=st.floats(0, 1),
    garbage=st.binary(min_size=1, max_size=80),
)
def test_a_corrupted_export_gives_old_or_rebuilt_tables(
    conn, database_url, tmp_path_factory, victim, at, garbage
):
    folder = tmp_path_factory.mktemp("corrupt") / "data"
    shutil.copytree(HAND_DIR, folder)
    live, rebuilt = f"co_{uuid.uuid4().hex[:8]}", f"cr_{uuid.uuid4().hex[:8]}"
    try:
        assert materialize(folder, database_url, live).success
        before = stored_rows(conn, live, TABLES)

        path = folder / victim
        data = bytearray(path.read_bytes())
        start = int(at * (len(data) - 1))
        data[start : start + len(garbage)] = garbage
        path.write_bytes(bytes(data))
        os.utime(path, ns=(10**18, 10**18))  # a change, whatever the clock

        run = materialize(folder, database_url, live)
        after = stored_rows(conn, live, TABLES)
        if not run.success:
            messages = run.failure_messages() + [
                e.description or "" for e in run.get_asset_check_evaluations() if not e.passed
            ]
            assert any(messages), "a failed run says why"
            assert not any("Traceback" in m for m in messages)
        fresh = materialize(folder, database_url, rebuilt)
        if fresh.success:
            expected = stored_rows(conn, rebuilt, TABLES)
            for name in TABLES:
                assert _same(after[name], before[name]) or _same(after[name], expected[name]), name
            if run.success:
                for name in TABLES:
                    pd.testing.assert_frame_equal(after[name], expected[name], obj=name)
        else:  # the folder cannot give a result at all: nothing derived may have changed
            for name in DERIVED:
                pd.testing.assert_frame_equal(after[name], before[name], obj=name)
    finally:
        with conn.cursor() as cur:
            for schema in (live, rebuilt):
                cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
