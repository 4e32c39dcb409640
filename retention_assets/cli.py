"""`retention-assets`: generate sample data, materialize the whole graph in this process, or
write the analysts' HTML report from the stored tables."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import pydantic
from dotenv import load_dotenv
from psycopg2.extensions import make_dsn

from .core.dates import monthly_snapshots
from .core.rfm import default_as_of
from .ingest.loading import SourceError
from .ingest.plan import DropPlan, plan_drops
from .jobs import execute_analytics, execute_loads
from .report import write_report
from .settings import Settings, SettingsError
from .storage import slices
from .storage.activity import feed_ends
from .storage.database import DatabaseUnavailable, connect, connect_kwargs
from .storage.tables import TableNotFoundError

if TYPE_CHECKING:
    from .resources import PostgresResource


# definitions.py builds its `defs` from the environment when imported: imported at the top, a
# bad RETENTION_* value would stop this module before main could report it in one line.
def build_definitions(
    settings: Settings, loggers: dict[str, dg.LoggerDefinition] | None = None
) -> dg.Definitions:
    """definitions.build_definitions, imported once main has checked the settings."""
    from . import definitions

    return definitions.build_definitions(settings, loggers)


def build_resources(settings: Settings) -> dict[str, object]:
    """definitions.build_resources, imported once main has checked the settings."""
    from . import definitions

    return definitions.build_resources(settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="retention-assets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="write a synthetic gym dataset (four CSVs)")
    gen.add_argument("--customers", type=int, default=2000)
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--out", type=Path, default=Path("data"))
    gen.add_argument(
        "--id-shape",
        choices=["padded", "int", "uuid"],
        default="padded",
        help="padded: C0000001 (sorted, fixed width); int: 1..N; uuid: random UUID4",
    )
    gen.add_argument(
        "--shuffle",
        action="store_true",
        help="write rows in random order (event rows within chunks of ~10,000 customers)",
    )

    run = commands.add_parser("run", help="materialize every asset, in this process")
    run.add_argument("--data-dir", help="folder of the CSV drops (default: RETENTION_DATA_DIR)")
    run.add_argument(
        "--as-of",
        help="snapshot date YYYY-MM-DD (default: the last date both event feeds cover)",
    )
    run.add_argument(
        "--history",
        type=int,
        default=1,
        metavar="N",
        help="N monthly snapshots ending with as_of: the month-ends of the N-1 months before "
        "it first, oldest first (fills rfm_history, retention and segment_migration)",
    )
    run.add_argument("--churn-days", type=int, default=90)
    run.add_argument("--clv-window-days", type=int, default=365)
    run.add_argument("--lifespan-years", type=float, default=1.0)
    run.add_argument("--n-clusters", type=int, default=4)
    run.add_argument("--random-state", type=int, default=42)
    run.add_argument("--n-init", type=int, default=10)
    run.add_argument(
        "--max-reject-fraction",
        type=float,
        default=0.05,
        help="a drop that would leave a source with a larger share of its rows rejected is "
        "not stored (default 0.05)",
    )
    run.add_argument(
        "--rebuild", action="store_true", help="reload every file (default: new/changed only)"
    )

    report = commands.add_parser(
        "report", help="write the plots and a one-page HTML summary from the stored tables"
    )
    report.add_argument("--out", type=Path, required=True, help="folder to write into")

    commands.add_parser(
        "psql",
        help="psql on the tables' database, in their schema (starts the embedded server if "
        "it is the one in use); further arguments go to psql",
    )
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["psql"]:  # everything after it is psql's own
            return _psql(argv[1:])
        args = parser.parse_args(argv)
        if args.command == "generate":
            return _generate(args)
        if args.command == "run":
            _check_run_options(run, args)
        # Fail in one line, before any work starts, if the database cannot be reached.
        connect(build_resources(_settings())["database"].url()).close()
        if args.command == "report":
            return _report(args)
        return _run(args)
    except SettingsError as e:
        print(f"retention-assets: {e}", file=sys.stderr)
        return 2
    except (DatabaseUnavailable, dg.Failure, SourceError) as e:
        # Failure: the resource's final database errors; SourceError: the folder, planned
        print(f"retention-assets: {e}", file=sys.stderr)
        return 1


def _check_run_options(run: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse, naming the option, what the assets' run config would refuse only mid-run: the
    limits are the dg.Config classes' own, checked by building them from the options of the
    same names. Exits with status 2, like argparse's own errors."""
    from .assets.analytics import ClvConfig, RetentionConfig, SegmentationConfig, SnapshotConfig
    from .assets.sources import SourceConfig

    options = vars(args)
    problems = []
    for config in (SnapshotConfig, SegmentationConfig, ClvConfig, RetentionConfig, SourceConfig):
        try:
            config(**{name: options[name] for name in config.model_fields if name in options})
        except pydantic.ValidationError as e:
            problems += [
                f"argument --{str(error['loc'][0]).replace('_', '-')}: {error['input']} is not "
                f"allowed: {error['msg'][:1].lower()}{error['msg'][1:]}"
                for error in e.errors()
            ]
    if args.history < 1:
        problems.append(f"argument --history: {args.history} is not allowed: at least 1")
    if args.as_of is not None:
        try:
            dt.date.fromisoformat(args.as_of)
        except ValueError as e:
            problems.append(f"argument --as-of: {args.as_of!r} is not a date YYYY-MM-DD ({e})")
    if problems:
        run.error("; ".join(dict.fromkeys(problems)))  # churn_days is in two configs


def _generate(args: argparse.Namespace) -> int:
    from .generate import generate_dataset

    started = time.perf_counter()
    rows = generate_dataset(
        args.out,
        args.customers,
        seed=args.seed,
        progress=True,
        id_shape=args.id_shape,
        shuffle=args.shuffle,
    )
    for name, n in rows.items():
        print(f"{name:<18} {n:>12,} rows")
    print(f"wrote {args.out} in {time.perf_counter() - started:.1f} s")
    return 0


def run_config(args: argparse.Namespace, as_of: str | None = None) -> dict:
    """The per-asset run config the command-line options stand for (`as_of`: instead of
    --as-of)."""
    churn = {"churn_days": args.churn_days}
    return {
        "ops": {
            "loaded_files": {"config": source_config(args)},
            "rfm_features": {"config": {"as_of": as_of or args.as_of}},
            "rfm_model": {
                "config": {
                    "n_clusters": args.n_clusters,
                    "random_state": args.random_state,
                    "n_init": args.n_init,
                }
            },
            "clv": {
                "config": {
                    **churn,
                    "clv_window_days": args.clv_window_days,
                    "lifespan_years": args.lifespan_years,
                }
            },
            "retention": {"config": churn},
        },
    }


def source_config(args: argparse.Namespace) -> dict:
    """The source assets' config (and loaded_files', which takes files out) from the options."""
    return {"max_reject_fraction": args.max_reject_fraction}


class _ProgressHandler(logging.Handler):
    """Prints one line per step start / end and the assets' own messages, not engine chatter."""

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", {}) or {}
        event = meta.get("dagster_event")
        step = meta.get("step_key") or ""
        if event is None:
            message = meta.get("orig_message", record.getMessage())
            if message.startswith("Dependencies for step "):  # the engine skipping a step
                print(
                    f"  {step or message.split()[3]} not run: a step before it failed", flush=True
                )
            elif record.levelno >= logging.INFO:
                print(f"    {message}", flush=True)
            return
        kind = event.event_type_value
        if kind == "STEP_START":
            print(f"  {step} ...", flush=True)
        elif kind == "STEP_SUCCESS":
            seconds = event.event_specific_data.duration_ms / 1000
            print(f"  {step} done in {seconds:.1f} s", flush=True)
        elif kind == "STEP_FAILURE":
            error = event.event_specific_data.error
            message = error.message.strip() if error else ""
            # A data error raised as dg.Failure reads as its description, not a class path.
            message = message.removeprefix(f"{dg.Failure.__module__}.{dg.Failure.__name__}: ")
            if error and error.cls_name == "DagsterAssetCheckFailedError":
                message = "a blocking check failed (see above): nothing of this run is published"
            print(f"  {step} FAILED: {message}", flush=True)
        elif kind == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            verdict = "passed" if data.passed else f"FAILED ({data.severity.value})"
            why = f": {data.description}" if not data.passed and data.description else ""
            print(f"    check {data.check_name}: {verdict}{why}", flush=True)


@dg.logger(description="Concise progress lines for the command line.")
def progress_logger(_init_context: dg.InitLoggerContext) -> logging.Logger:
    log = logging.Logger("retention_assets.progress", level=logging.DEBUG)
    log.addHandler(_ProgressHandler())
    return log


def _settings() -> Settings:
    """The RETENTION_* settings, env first, then ./.env; raises SettingsError."""
    load_dotenv(".env", override=False)
    return Settings.from_env()


def _run(args: argparse.Namespace) -> int:
    settings = _settings()
    if args.data_dir:
        settings = dataclasses.replace(settings, data_dir=args.data_dir)
    defs = build_definitions(settings, loggers={"progress": progress_logger})
    database = defs.resources["database"]
    folder = Path(settings.data_dir)
    started = time.perf_counter()
    with database.connect() as conn:
        if args.rebuild:
            slices.drop_sources(conn, database.db_schema)
        plan = _settled_plan(folder, slices.manifest(conn, database.db_schema), settings)
    print(
        f"Updating the retention graph from {folder}/ into {database.describe()}: {plan.describe()}"
    )
    persistent = bool(os.environ.get("DAGSTER_HOME"))
    loggers = {"progress": {}}
    with dg.DagsterInstance.get() if persistent else dg.DagsterInstance.ephemeral() as inst:
        results = execute_loads(defs, inst, plan, loggers, source_config(args))
        if not results or results[-1].success:
            configs = [run_config(args, day) for day in _snapshot_dates(args, database)]
            results.append(execute_analytics(defs, inst, configs, loggers))
    elapsed = time.perf_counter() - started
    if not results[-1].success:
        print(f"Run failed after {elapsed:.1f} s (see the messages above).", file=sys.stderr)
        return 1
    summary = results[-1].asset_materializations_for_node("retention")[0].metadata["summary"]
    print(summary.value)
    print(f"Done in {elapsed:.1f} s. Tables are in {database.describe()}:")
    published = results[-1].asset_materializations_for_node("snapshot")[0].metadata["published"]
    print("  customers, packages, transactions, attendance, rejected_rows, loaded_files,")
    print(f"  {', '.join(published.value)} (rfm_model, clv_model: the fitted models)")
    command = sys.argv[0] if sys.argv[0].endswith("retention-assets") else "retention-assets"
    print(f"Look at them with: {command} psql")
    return 0


def _snapshot_dates(args: argparse.Namespace, database: PostgresResource) -> list[str | None]:
    """The as_of of each analytics run: --as-of (None: the default as_of, which rfm_features
    works out), preceded by --history's month-ends."""
    if args.history == 1:
        return [args.as_of]
    if args.as_of:
        as_of = dt.date.fromisoformat(args.as_of)
    else:
        with database.connect() as conn:
            ends = feed_ends(conn, database.db_schema)
        if ends == (None, None):
            return [None]  # nothing to look back over: rfm_features says what is missing
        as_of = default_as_of(*ends)
    return [day.isoformat() for day in monthly_snapshots(as_of, args.history)]


def _settled_plan(folder: Path, loaded: dict, settings: Settings) -> DropPlan:
    """The plan once no drop is still being written: the sensor's settle rule, waited out."""
    for _ in range(3):
        plan = plan_drops(folder, loaded, settings.settle_seconds)
        if not plan.unsettled:
            return plan
        names = ", ".join(p.name for p in plan.unsettled)
        print(f"Waiting {settings.settle_seconds:g} s for files still being written: {names}")
        time.sleep(settings.settle_seconds)
    print(f"Left out, still changing: {names}", file=sys.stderr)
    return plan


def _psql(psql_args: list[str]) -> int:
    """psql on the configured database, in the tables' schema; the password goes through
    PGPASSWORD, never the command line. Connecting first reports an unreachable database
    like run and report do, and lets the server quote the schema name as search_path needs."""
    database = build_resources(_settings())["database"]
    conn = connect(database.url())
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT quote_ident(%s)", [database.db_schema])
            schema = cur.fetchone()[0]
    finally:
        conn.close()
    params = connect_kwargs(database.url())
    password = params.pop("password", None)
    env = os.environ | ({"PGPASSWORD": str(password)} if password else {})
    # libpq splits options at white space; a backslash keeps the next character literal.
    options = "-csearch_path=" + re.sub(r"([\\\s])", r"\\\1", schema)
    dsn = make_dsn(**params, options=options)
    return subprocess.call(["psql", dsn, *psql_args], env=env)


def _report(args: argparse.Namespace) -> int:
    database = build_resources(_settings())["database"]
    try:
        with database.connect() as conn:
            report = write_report(conn, database.db_schema, args.out)
    except DatabaseUnavailable as e:
        print(f"Cannot build the report: {e}", file=sys.stderr)
        return 1
    except TableNotFoundError as e:
        print(
            f"Cannot build the report from {database.describe()}: {e}. "
            "Materialize the graph first (retention-assets run).",
            file=sys.stderr,
        )
        return 1
    print(f"Wrote {report.html} and {', '.join(p.name for p in report.pngs.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
