"""The jobs a drop plan runs: one per source (its file partitions), then `analytics`
(`loaded_files` and everything downstream). The sensor requests them; `retention-assets run`
executes them in this process."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import dagster as dg

from .assets.sources import PARTITIONS, loaded_files
from .core.sources import SOURCES
from .ingest.plan import DropPlan
from .io_managers import release_run_frames

ANALYTICS_JOB = "analytics"
RANGE_START, RANGE_END = (
    "dagster/asset_partition_range_start",
    "dagster/asset_partition_range_end",
)


def load_job_name(source: str) -> str:
    return f"load_{source}"


JOBS = [
    *(
        dg.define_asset_job(
            load_job_name(name),
            selection=[name],
            description=f"Store {name} drop files (one partition per file).",
        )
        for name in SOURCES
    ),
    dg.define_asset_job(
        ANALYTICS_JOB,
        selection=dg.AssetSelection.assets(loaded_files).downstream(),
        description="Take out removed files, then RFM, segments, CLV and retention.",
    ),
]


def partition_ranges(ordered: Sequence[str], wanted: Sequence[str]) -> list[tuple[str, str]]:
    """The fewest [first, last] runs of consecutive partition keys covering `wanted`."""
    wanted_set, ranges = set(wanted), []
    start = previous = None
    for key in ordered:
        if key in wanted_set:
            start = key if start is None else start
            previous = key
        elif start is not None:
            ranges.append((start, previous))
            start = None
    if start is not None:
        ranges.append((start, previous))
    return ranges


def range_tags(first: str, last: str) -> dict[str, str]:
    return {RANGE_START: first, RANGE_END: last}


def register_partitions(instance: dg.DagsterInstance, plan: DropPlan) -> None:
    """Partitions for the plan's new files, none for its removed ones."""
    for name, files in plan.load.items():
        known = set(instance.get_dynamic_partitions(PARTITIONS[name].name))
        new = [p.name for p in files if p.name not in known]
        if new:
            instance.add_dynamic_partitions(PARTITIONS[name].name, new)
    for entry in plan.remove:
        partitions = PARTITIONS[entry.source].name
        if instance.has_dynamic_partition(partitions, entry.file):
            instance.delete_dynamic_partition(partitions, entry.file)


def load_requests(
    partition_keys: Callable[[str], Sequence[str]], plan: DropPlan
) -> list[tuple[str, dict]]:
    """(job name, run tags) of the runs storing the plan's files: one per source, or one per
    run of consecutive partitions when changed files sit between others. `partition_keys`
    gives a partitions definition's keys in order."""
    requests = []
    for name, files in plan.load.items():
        ordered = partition_keys(PARTITIONS[name].name)
        for first, last in partition_ranges(ordered, [p.name for p in files]):
            requests.append((load_job_name(name), range_tags(first, last)))
    return requests


def execute_plan(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    plan: DropPlan,
    run_config: dict | None = None,
    loggers_config: dict | None = None,
) -> list[dg.ExecuteInProcessResult]:
    """Run what the sensor would request for `plan`, in this process, one run after another:
    each source's files, then the analytics (also when nothing changed, so a new as_of or
    setting takes effect). Stops at the first failed run; returns every run's result."""
    results = execute_loads(defs, instance, plan, loggers_config)
    if results and not results[-1].success:
        return results
    return [*results, execute_analytics(defs, instance, [run_config or {}], loggers_config)]


def execute_loads(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    plan: DropPlan,
    loggers_config: dict | None = None,
    source_config: dict | None = None,
) -> list[dg.ExecuteInProcessResult]:
    """The runs storing the plan's files, one after another, up to the first that fails;
    `source_config`: every source asset's config (SourceConfig's fields)."""
    register_partitions(instance, plan)
    results = []
    for job_name, tags in load_requests(instance.get_dynamic_partitions, plan):
        source = job_name.removeprefix(load_job_name(""))
        ops = {"ops": {source: {"config": source_config}}} if source_config else {}
        result = defs.resolve_job_def(job_name).execute_in_process(
            instance=instance,
            tags=tags,
            run_config=ops | _logging(loggers_config),
            raise_on_error=False,
        )
        results.append(result)
        if not result.success:
            break
    return results


def execute_analytics(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    run_configs: Sequence[dict],
    loggers_config: dict | None = None,
) -> dg.ExecuteInProcessResult:
    """One analytics run per run config (e.g. one per as_of, oldest first, so each snapshot's
    segment_migration compares with the one before), up to the first that fails; returns the
    last run's result. Earlier results are let go as the next run starts: each holds every
    output of its run (the per-customer frames), which would pile up over a long history."""
    if not run_configs:
        raise ValueError("execute_analytics: no run config given")
    analytics = defs.resolve_job_def(ANALYTICS_JOB)
    for config in run_configs:
        result = None  # the previous run's result goes before the next run starts
        result = analytics.execute_in_process(
            instance=instance, run_config=config | _logging(loggers_config), raise_on_error=False
        )
        release_run_frames()
        if not result.success:
            break
    return result


def _logging(loggers_config: dict | None) -> dict:
    return {"loggers": loggers_config} if loggers_config else {}
