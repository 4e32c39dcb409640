"""The sensor: settled new, changed or removed drop files get runs of just their partitions,
then one run of the analytics."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from .assets.sources import PARTITIONS
from .core.sources import SOURCES
from .data_folder import DataFolder
from .ingest.loading import SourceError
from .ingest.plan import DropPlan, fingerprint, plan_drops
from .jobs import ANALYTICS_JOB, JOBS, RANGE_END, RANGE_START, load_requests
from .resources import PostgresResource
from .storage import slices
from .storage.database import DatabaseUnavailable

SENSOR_NAME = "csv_drops"
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
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
    not requested again until the file changes or someone re-runs its partition), the
    multi-file load runs not judged yet, and the state of the folder the analytics last ran
    for, with a count of analytics runs (their run_keys must never repeat: the daemon drops a
    run whose run_key the sensor used before, and a folder can come back to an earlier state).
    """
    data_folder: DataFolder = context.resources.data_folder
    database: PostgresResource = context.resources.database
    busy = context.instance.get_runs_count(
        dg.RunsFilter(statuses=IN_FLIGHT, tags={"dagster/sensor_name": SENSOR_NAME})
    )
    if busy:  # its tables are being rewritten: look again once that run is over
        return dg.SensorResult(skip_reason="a run requested by this sensor is still in flight")
    cursor = json.loads(context.cursor) if context.cursor else {}
    requested: dict[str, list[int]] = dict(cursor.get("requested", {}))
    folder = Path(data_folder.path)
    try:
        with database.connect() as conn:
            loaded = slices.manifest(conn, database.db_schema)
        plan = plan_drops(folder, loaded, data_folder.settle_seconds)
        present = {(name, p.name) for name in SOURCES for p in data_folder.files(name)}
    except (SourceError, DatabaseUnavailable, dg.Failure) as e:  # Failure: a final db error
        return dg.SensorResult(skip_reason=str(getattr(e, "description", None) or e))
    _judge_batches(cursor.get("batches", []), loaded, requested)
    requested = {k: v for k, v in requested.items() if tuple(k.split("/", 1)) in present}
    cleanup = _forgotten_partitions(context, present, loaded)
    fresh = DropPlan(
        load={
            name: todo
            for name, files in plan.load.items()
            if (todo := [p for p in files if requested.get(_key(name, p)) != list(fingerprint(p))])
        },
        remove=plan.remove,
    ).first_stage()
    if fresh.load:
        partition_requests = [
            PARTITIONS[name].build_add_request(new)
            for name, files in fresh.load.items()
            if (new := [p.name for p in files if not _known(context, name, p.name)])
        ]
        for name, files in fresh.load.items():
            requested |= {_key(name, p): list(fingerprint(p)) for p in files}
        keys = _keys_once_added(context, partition_requests)
        loads = load_requests(keys, fresh)
        context.log.info(f"New or changed drops: {fresh.describe()}")
        return dg.SensorResult(
            run_requests=[dg.RunRequest(job_name=job, tags=tags) for job, tags in loads],
            dynamic_partitions_requests=partition_requests + cleanup,
            cursor=_cursor(cursor, requested, _batches(keys, loads)),
        )
    state = _folder_state(plan, loaded)
    unchanged = state == cursor.get("analyzed")
    nothing_loaded = not (set(loaded) & present or plan.remove)
    if unchanged or plan.unsettled or nothing_loaded:
        return dg.SensorResult(
            skip_reason=f"nothing new to run ({plan.describe()})",
            dynamic_partitions_requests=cleanup,
            cursor=_cursor(cursor, requested),
        )
    removals = [
        PARTITIONS[e.source].build_delete_request([e.file])
        for e in plan.remove
        if _known(context, e.source, e.file)
    ]
    analyses = cursor.get("analyses", 0) + 1
    return dg.SensorResult(
        run_requests=[dg.RunRequest(job_name=ANALYTICS_JOB, run_key=f"{state}-{analyses}")],
        dynamic_partitions_requests=removals + cleanup,
        cursor=_cursor({"analyzed": state, "analyses": analyses}, requested),
    )


def _cursor(previous: dict, requested: dict, batches: list | None = None) -> str:
    """The new cursor: only the keys this version reads (an older cursor's others go)."""
    kept = {k: previous[k] for k in ("analyzed", "analyses") if k in previous}
    return json.dumps(kept | {"requested": requested, "batches": batches or []})


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


def _batches(keys: Callable[[str], list], loads: list[tuple[str, dict]]) -> list:
    """[source, [file, ...]] of each load run covering several files, in the order it stores
    them (the partition keys' order)."""
    batches = []
    for job, tags in loads:
        source = job.removeprefix("load_")
        ordered = keys(PARTITIONS[source].name)
        files = ordered[ordered.index(tags[RANGE_START]) : ordered.index(tags[RANGE_END]) + 1]
        if len(files) > 1:
            batches.append([source, files])
    return batches


def _judge_batches(
    batches: list, loaded: dict[tuple[str, str], slices.LoadedFile], requested: dict
) -> None:
    """A load run stores its files one after another and stops at the first that fails: that
    file keeps its request (not run again until it changes), the files after it were never
    tried and are forgotten, so this tick requests them again. Called with no run in flight."""
    for source, files in batches:
        failed = False
        for file in files:
            key = f"{source}/{file}"
            if failed:
                requested.pop(key, None)
                continue
            entry = loaded.get((source, file))
            failed = entry is None or [entry.size, entry.mtime_ns] != requested.get(key)


def _forgotten_partitions(
    context: dg.SensorEvaluationContext,
    present: set[tuple[str, str]],
    loaded: dict[tuple[str, str], slices.LoadedFile],
) -> list[dg.DeleteDynamicPartitionsRequest]:
    """Delete requests for partitions of files neither in the folder nor loaded (a failed or
    never-run drop that was removed): nothing to take out of the tables, so any tick may."""
    requests = []
    for name, partitions in PARTITIONS.items():
        gone = [
            key
            for key in context.instance.get_dynamic_partitions(partitions.name)
            if (name, key) not in present and (name, key) not in loaded
        ]
        if gone:
            requests.append(partitions.build_delete_request(gone))
    return requests
