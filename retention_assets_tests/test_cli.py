"""The command line: `run` on the hand fixture, and `psql` on the same tables."""

import shutil
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


def test_a_folder_problem_reads_as_one_line_without_a_traceback(env, tmp_path, capsys):
    shutil.copytree(HAND_DIR, tmp_path / "data")
    (tmp_path / "data" / "attendance_late.csv").symlink_to(tmp_path / "gone.csv")
    assert main(["run", "--data-dir", str(tmp_path / "data")]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        f"retention-assets: {tmp_path}/data/attendance_late.csv: broken link: the file it "
        "points to does not exist"
    )
    assert main(["run", "--data-dir", str(tmp_path / "nowhere")]) == 1
    assert "nowhere: data folder does not exist" in capsys.readouterr().err


def test_a_failed_blocking_check_says_why_and_that_nothing_is_published(env, tmp_path, capsys):
    """40 members alike (no visit, no payment by as_of) make one segment of four."""
    shutil.copytree(HAND_DIR, tmp_path, dirs_exist_ok=True)
    (tmp_path / "customers_alike.csv").write_text(
        "customer_id,signup_date\n" + "".join(f"Z{i:02d},2020-01-01\n" for i in range(40))
    )
    assert main(["run", "--data-dir", str(tmp_path), "--as-of", "2021-01-01"]) == 1
    out = capsys.readouterr().out
    assert "    check segment_counts: FAILED (ERROR): " in out
    [check] = [line for line in out.splitlines() if "check segment_counts" in line]
    assert "segments" in check.split("FAILED (ERROR): ")[1]  # the check's own description
    assert "  rfm FAILED: a blocking check failed (see above): nothing of this run is " in out
    assert "  snapshot not run: a step before it failed" in out
    assert "dagster._core" not in out and "Dependencies for step" not in out


def test_max_reject_fraction_is_an_option_and_the_refusal_names_the_reasons(env, tmp_path, capsys):
    shutil.copytree(HAND_DIR, tmp_path, dirs_exist_ok=True)
    with (tmp_path / "attendance.csv").open("a") as f:
        f.write("A40,C99,2024-06-01 10:00:00,,North\n")
        f.write("A41,C01,not-a-date,,North\n")
    assert main(["run", "--data-dir", str(tmp_path), "--as-of", "2024-06-30"]) == 1
    out = capsys.readouterr().out
    assert (
        "attendance FAILED: attendance.csv: storing it would leave attendance with 2 of 34 rows "
        "rejected (5.88%; limit 5.00%), most for: unknown customer_id (1), unparseable check_in "
        "(1); nothing from it was stored (fix the file, or raise max_reject_fraction)"
    ) in out
    args = ["run", "--data-dir", str(tmp_path), "--as-of", "2024-06-30"]
    assert main([*args, "--max-reject-fraction", "0.1"]) == 0
    assert "attendance.csv: rejected 1 of 34 rows" in capsys.readouterr().out  # + 1 held
    with pytest.raises(SystemExit) as exited:
        main([*args, "--max-reject-fraction", "2"])
    assert exited.value.code == 2
    assert "argument --max-reject-fraction: 2.0 is not allowed" in capsys.readouterr().err
