"""The command line: `run` on the hand fixture, and `psql` on the same tables."""

import subprocess
import sys
import uuid

import pytest

from retention_assets.cli import main

from .hand_fixture import HAND_DIR


@pytest.fixture
def env(database_url, monkeypatch):
    schema = f"cli_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("RETENTION_DB_SCHEMA", schema)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return schema


def test_run_prints_progress_the_rate_and_where_the_tables_are(env, capsys):
    assert main(["run", "--data-dir", str(HAND_DIR), "--as-of", "2024-06-30"]) == 0
    out = capsys.readouterr().out
    for step in ("customers", "attendance", "rfm_model", "rfm", "clv", "retention"):
        assert f"  {step} done in " in out, step
    assert "check segment_counts: passed" in out
    assert "Retention rate: 66.67% (4 of 12 customers churned, as of 2024-06-30)" in out
    assert f"(schema {env})" in out and "***" not in out
    assert "clv_forecast, clv_holdout, clv_model, cohort_retention, retention, rfm" in out


def test_run_fails_with_a_non_zero_exit_on_bad_data(env, tmp_path, capsys):
    (tmp_path / "customers.csv").write_text("customer_id\nC1\n")
    assert main(["run", "--data-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "customers FAILED" in out and "missing required column" in out
    assert "dagster._core" not in out  # a data error reads as its description


def test_psql_opens_in_the_tables_schema(env):
    out = subprocess.run(
        [sys.executable, "-m", "retention_assets.cli", "psql", "-tAc", "show search_path"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == env
