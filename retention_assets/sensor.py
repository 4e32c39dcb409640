"""The sensor: a settled change in a source's CSV drops re-materializes it and its downstream."""

import json
from pathlib import Path

import dagster as dg

from .core.loading import SourceError
from .core.sources import SOURCES
from .data_folder import DataFolder
from .drops import changed_sources

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
        target=dg.AssetSelection.all(),
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Watches the data folder; one run per settled change of a source's drops.",
        required_resource_keys={"data_folder"},
    )


def csv_drops(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Compares each source's fingerprint with the cursor; requests changed sources + downstream."""
    data_folder: DataFolder = context.resources.data_folder
    busy = context.instance.get_runs_count(
        dg.RunsFilter(statuses=IN_FLIGHT, tags={"dagster/sensor_name": SENSOR_NAME})
    )
    if busy:  # its tables are being rewritten: look again once that run is over
        return dg.SensorResult(skip_reason="a run requested by this sensor is still in flight")
    previous: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    try:
        changed = changed_sources(
            Path(data_folder.path), list(SOURCES), previous, data_folder.settle_seconds
        )
    except SourceError as e:
        return dg.SensorResult(skip_reason=str(e))
    if not changed:
        return dg.SensorResult(skip_reason="no settled change in the data folder")
    selection = dg.AssetSelection.assets(*changed).downstream()
    keys = selection.resolve(context.repository_def.asset_graph)
    names = sorted(changed)
    request = dg.RunRequest(
        run_key="|".join(f"{name}:{changed[name]}" for name in names),
        asset_selection=sorted(keys, key=lambda k: k.to_user_string()),
        tags={"retention/changed_sources": ",".join(names)},
    )
    context.log.info(f"New drops for {', '.join(names)}: requesting {len(keys)} assets")
    return dg.SensorResult(run_requests=[request], cursor=json.dumps(previous | changed))
