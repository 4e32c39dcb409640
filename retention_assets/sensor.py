"""The sensor: settled new, changed or removed drop files get runs of just their partitions,
then one run of the analytics."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from .assets.sources import PARTITIONS
from .core.loading import SourceError
from .data_folder import DataFolder
from .ingest.plan import DropPlan, fingerprint, plan_drops
from .jobs import ANALYTICS_JOB, JOBS, load_requests
from .resources import PostgresResource
from .storage import slices
from .storage.database import DatabaseUnavailable

SENSOR_NAME = "csv_drops"
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def csv_drops_sensor(minimum_interval_seconds: int = 15) -> dg.SensorDefinition:
    """The `csv_drops` sensor, running by default whenever the daemon runs."""
    return dg.SensorDefinition(
        name=SENSOR_NAME,
        evaluation_fn=csv_drops,
        jobs=JOBS,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Watches the data folder: each settled new or changed file gets a run of "
        "its partition, removed files are taken out, then the analytics run once.",
        required_resource_keys={"data_folder", "database"},
    )


def csv_drops(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Compares the folder with the manifest of loaded files.

    The cursor holds the fingerprints of the files whose load it requested (a failed load is
    not requested again until the file changes or someone re-runs its partition) and the
    state of the folder the analytics last ran for."""
    data_folder: DataFolder = context.resources.data_folder
    database: PostgresResource = context.resources.database
    busy = context.instance.get_runs_count(
        dg.RunsFilter(statuses=IN_FLIGHT, tags={"dagster/sensor_name": SENSOR_NAME})
    )
    if busy:  # its tables are being rewritten: look again once that run is over
        return dg.SensorResult(skip_reason="a run requested by this sensor is still in flight")
    cursor = json.loads(context.cursor) if context.cursor else {}
    requested: dict[str, list[int]] = cursor.get("requested", {})
    try:
        with database.connect() as conn:
            loaded = slices.manifest(conn, database.db_schema)
        plan = plan_drops(Path(data_folder.path), loaded, data_folder.settle_seconds)
    except (SourceError, DatabaseUnavailable) as e:
        return dg.SensorResult(skip_reason=str(e))
    fresh = DropPlan(
        load={
            name: todo
            for name, files in plan.load.items()
            if (todo := [p for p in files if requested.get(_key(name, p)) != list(fingerprint(p))])
        },
        remove=plan.remove,
    )
    if fresh.load:
        partition_requests = [
            PARTITIONS[name].build_add_request(new)
            for name, files in fresh.load.items()
            if (new := [p.name for p in files if not _known(context, name, p.name)])
        ]
        for name, files in fresh.load.items():
            requested |= {_key(name, p): list(fingerprint(p)) for p in files}
        runs = [
            dg.RunRequest(job_name=job, tags=tags)
            for job, tags in load_requests(_keys_once_added(context, partition_requests), fresh)
        ]
        context.log.info(f"New or changed drops: {fresh.describe()}")
        return dg.SensorResult(
            run_requests=runs,
            dynamic_partitions_requests=partition_requests,
            cursor=json.dumps(cursor | {"requested": requested}),
        )
    state = _folder_state(plan, loaded)
    if state == cursor.get("analyzed") or plan.unsettled:
        return dg.SensorResult(skip_reason=f"nothing new to run ({plan.describe()})")
    removals = [
        PARTITIONS[e.source].build_delete_request([e.file])
        for e in plan.remove
        if _known(context, e.source, e.file)
    ]
    return dg.SensorResult(
        run_requests=[dg.RunRequest(job_name=ANALYTICS_JOB, run_key=state)],
        dynamic_partitions_requests=removals,
        cursor=json.dumps(cursor | {"requested": requested, "analyzed": state}),
    )


def _key(source: str, path: Path) -> str:
    return f"{source}/{path.name}"


def _known(context: dg.SensorEvaluationContext, source: str, file: str) -> bool:
    return context.instance.has_dynamic_partition(PARTITIONS[source].name, file)


def _folder_state(plan: DropPlan, loaded: dict[tuple[str, str], slices.LoadedFile]) -> str:
    """What the analytics would describe: the loaded files that are still in the folder."""
    removed = {(e.source, e.file) for e in plan.remove}
    kept = sorted(
        (key, entry.size, entry.mtime_ns) for key, entry in loaded.items() if key not in removed
    )
    return hashlib.sha256(json.dumps(kept).encode()).hexdigest()[:16]


def _keys_once_added(context: dg.SensorEvaluationContext, adds: list) -> Callable[[str], list]:
    """Partition keys in order as they will be once the sensor's add requests are applied."""
    by_name = {r.partitions_def_name: list(r.partition_keys) for r in adds}

    def keys(name: str) -> list[str]:
        known = list(context.instance.get_dynamic_partitions(name))
        return known + [k for k in by_name.get(name, []) if k not in known]

    return keys
