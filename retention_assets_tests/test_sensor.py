"""The csv_drops sensor over a temporary data folder, evaluated with build_sensor_context."""

import json
import os
import shutil
import time

import dagster as dg
import pytest

from retention_assets.definitions import build_definitions
from retention_assets.settings import Settings

from .hand_fixture import HAND_DIR

ALL = {
    "customers",
    "packages",
    "transactions",
    "attendance",
    "rfm_features",
    "rfm_model",
    "rfm",
    "clv",
    "retention",
}


def age(path, seconds=60):
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.fixture
def folder(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(HAND_DIR, data)
    for path in data.iterdir():
        age(path)
    return data


def evaluate(folder, cursor=None, instance=None):
    defs = build_definitions(Settings(str(folder), "public", "unused", settle_seconds=5))
    sensor = defs.get_sensor_def("csv_drops")
    context = dg.build_sensor_context(
        cursor=cursor,
        definitions=defs,
        resources={"data_folder": defs.resources["data_folder"]},
        instance=instance or dg.DagsterInstance.ephemeral(),
    )
    result = sensor.evaluate_tick(context)
    return result.run_requests, result.cursor, result.skip_message


def selected(request):
    return {key.to_user_string() for key in request.asset_selection}


def test_first_sight_runs_everything_once(folder):
    requests, cursor, _ = evaluate(folder)
    assert len(requests) == 1 and selected(requests[0]) == ALL
    assert (
        requests[0].tags["retention/changed_sources"]
        == "attendance,customers,packages,transactions"
    )
    again, same_cursor, skip = evaluate(folder, cursor)
    assert again == [] and "no settled change" in skip
    assert same_cursor in (None, cursor)


def test_a_new_drop_runs_its_source_and_downstream_only(folder):
    _, cursor, _ = evaluate(folder)
    drop = folder / "transactions_2026-11-26.csv"
    drop.write_text("transaction_id,customer_id,transaction_date,amount\nT99,C01,2024-07-06,5\n")
    writing, _, _ = evaluate(folder, cursor)
    assert writing == []  # modified less than settle_seconds ago: still being written
    age(drop)
    requests, new_cursor, _ = evaluate(folder, cursor)
    assert len(requests) == 1
    assert selected(requests[0]) == {
        "transactions",
        "rfm_features",
        "rfm_model",
        "rfm",
        "clv",
        "retention",
    }
    assert requests[0].run_key.startswith("transactions:")
    assert json.loads(new_cursor).keys() == {"customers", "packages", "transactions", "attendance"}
    assert json.loads(new_cursor)["customers"] == json.loads(cursor)["customers"]
    assert evaluate(folder, new_cursor)[0] == []


def test_same_change_gives_the_same_run_key(folder, tmp_path):
    _, cursor, _ = evaluate(folder)
    (folder / "packages.csv").write_text("package_id,package_name,price\nP1,Monthly,55\n")
    age(folder / "packages.csv")
    first, _, _ = evaluate(folder, cursor)
    second, _, _ = evaluate(folder, cursor)  # e.g. the cursor was not saved: same run_key
    assert first[0].run_key == second[0].run_key
    assert selected(first[0]) == ALL - {"customers", "attendance"}


def test_non_csv_files_are_ignored(folder):
    _, cursor, _ = evaluate(folder)
    for name in ("notes.txt", "transactions.xlsx", "attendance.csv.bak"):
        (folder / name).write_text("x")
        age(folder / name)
    assert evaluate(folder, cursor)[0] == []


def test_cursor_stays_small_with_many_drops(folder):
    for day in range(200):
        path = folder / f"attendance_2026-{day:03d}.csv"
        path.write_text("attendance_id,customer_id,check_in\n")
        age(path)
    _, cursor, _ = evaluate(folder)
    assert len(cursor) < 200


def test_missing_folder_is_a_skip_with_the_reason(tmp_path):
    requests, _, skip = evaluate(tmp_path / "nowhere")
    assert requests == [] and "data folder does not exist" in skip


def test_waits_while_its_previous_run_is_in_flight(folder):
    instance = dg.DagsterInstance.ephemeral()
    running = dg.DagsterRun(
        job_name="__ASSET_JOB",
        status=dg.DagsterRunStatus.STARTED,
        tags={"dagster/sensor_name": "csv_drops"},
    )
    instance.add_run(running)
    requests, _, skip = evaluate(folder, instance=instance)
    assert requests == [] and "still in flight" in skip
    instance.handle_run_event(
        running.run_id,
        dg.DagsterEvent(
            event_type_value="PIPELINE_SUCCESS", job_name="__ASSET_JOB", message="done"
        ),
    )
    assert len(evaluate(folder, instance=instance)[0]) == 1


def test_file_names_match_in_any_letter_case(folder):
    _, cursor, _ = evaluate(folder)
    drop = folder / "Transactions_2026-11-27.CSV"
    drop.write_text("transaction_id,customer_id,transaction_date,amount\nT98,C01,2024-07-06,5\n")
    age(drop)
    requests, _, _ = evaluate(folder, cursor)
    assert requests[0].tags["retention/changed_sources"] == "transactions"
