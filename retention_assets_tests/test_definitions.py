"""Every definition of the code location loads, and its shape is the checked-in one.

`retention_assets.definitions.defs` is what `dagster dev`, `dg` and the deployment load: its asset
graph and repository are resolved here (a broken dependency, a check on a missing asset or a job
selecting nothing fails at once), then their shape (assets with group, partitions and deps, asset
checks, jobs, sensors, schedules, resources) is compared with fixtures/definitions_snapshot.json.
A change of shape must be deliberate: regenerate the file and commit it with the change:

    RETENTION_UPDATE_SNAPSHOT=1 .venv/bin/pytest retention_assets_tests/test_definitions.py
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from retention_assets.definitions import defs

SNAPSHOT = Path(__file__).parent / "fixtures" / "definitions_snapshot.json"
REGENERATE = (
    "RETENTION_UPDATE_SNAPSHOT=1 .venv/bin/pytest retention_assets_tests/test_definitions.py"
)


def _partitions(partitions_def: dg.PartitionsDefinition | None) -> dict[str, str] | None:
    if partitions_def is None:
        return None
    shape = {"type": type(partitions_def).__name__}
    name = getattr(partitions_def, "name", None)  # dynamic partitions are known by name
    return shape | ({"name": name} if name else {})


def shape_of(defs: dg.Definitions) -> dict[str, Any]:
    """What the snapshot holds: names and wiring only (no descriptions, no settings read from
    the environment such as the sensor's interval), sorted so the JSON diffs line by line."""
    graph = defs.resolve_asset_graph()
    repo = defs.get_repository_def()
    assets = {}
    for key in sorted(graph.get_all_asset_keys()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "partitions": _partitions(node.partitions_def),
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
        }
    checks = [
        {
            "asset": key.asset_key.to_user_string(),
            "name": key.name,
            "blocking": graph.get(key).blocking,
        }
        for key in sorted(graph.asset_check_keys, key=lambda k: (k.asset_key, k.name))
    ]
    jobs = {
        job.name: sorted(key.to_user_string() for key in job.asset_layer.selected_asset_keys)
        for job in sorted(repo.get_all_jobs(), key=lambda job: job.name)
        if not job.name.startswith("__")  # Dagster's implicit asset job
    }
    sensors = {
        sensor.name: {
            "default_status": sensor.default_status.value,
            "jobs": sorted(target.job_name for target in sensor.targets),
        }
        for sensor in sorted(repo.sensor_defs, key=lambda s: s.name)
    }
    return {
        "assets": assets,
        "asset_checks": checks,
        "jobs": jobs,
        "sensors": sensors,
        "schedules": sorted(schedule.name for schedule in repo.schedule_defs),
        "resources": sorted(repo.get_top_level_resources()),
    }


def _render(shape: dict[str, Any]) -> str:
    return json.dumps(shape, indent=2, sort_keys=True) + "\n"


def test_definitions_match_the_snapshot():
    current = _render(shape_of(defs))
    if os.environ.get("RETENTION_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(current)
        pytest.skip(f"wrote {SNAPSHOT}: review `git diff` and commit it with the change")
    expected = SNAPSHOT.read_text() if SNAPSHOT.exists() else ""
    if current != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                current.splitlines(keepends=True),
                fromfile=f"{SNAPSHOT.name} (checked in)",
                tofile="definitions now",
            )
        )
        pytest.fail(
            f"The definitions' shape differs from {SNAPSHOT.name} (- checked in, + now):\n"
            f"{diff}\nIf the change is deliberate, regenerate the snapshot and commit it:\n"
            f"    {REGENERATE}",
            pytrace=False,
        )
