"""One asset per CSV source, partitioned by drop file; and `loaded_files`, what is loaded.

A partition is one file of the data folder (key = file name): materializing it makes that
file's slice of the source table exactly its valid rows, in one transaction, and stores its
rejects. Duplicate ids and references are decided across files in PostgreSQL, so any order
of drops gives the tables a full rebuild would.
"""

import warnings
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import Field

from ..core import quality
from ..core.sources import SOURCES, SourceSpec
from ..data_folder import DataFolder
from ..ingest.loading import SourceError, source_files
from ..ingest.plan import plan_drops
from ..ingest.store import store_file
from ..io_managers import table_metadata
from ..resources import PostgresResource
from ..storage import slices
from ..storage.tables import Cursor
from .metadata import md_table
from .policies import DB_RETRY, TABLE_KINDS, check_result, check_spec, fail_fast

REJECT_CHECK = "reject_fraction"
FOLDER_CHECK = "folder_loaded"
PARTITIONS = {name: dg.DynamicPartitionsDefinition(name=f"{name}_files") for name in SOURCES}


class SourceConfig(dg.Config):
    max_reject_fraction: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Above this share of the source's rows rejected, a drop is not stored.",
    )


class _TooManyRejects(Exception):
    """A change refused, and what it would reject the source's rows for: read before the
    change is rolled back, as nothing of it is stored for rejected_rows to show."""

    def __init__(self, cur: Cursor, schema: str, source: str, verdict: quality.Verdict) -> None:
        reasons = slices.reasons_rejected(cur, schema, source, limit=3)
        self.source, self.verdict = source, verdict
        self.reasons = ", ".join(f"{why} ({n:,})" for why, n in reasons) or "none recorded"
        super().__init__(f"{source}: {verdict.description}")

    def outcome(self) -> str:
        return f"{self.source} with {self.verdict.description}, most for: {self.reasons}"


def _refuse_pushed_past(
    cur: Cursor, schema: str, before: dict[str, tuple[int, int]], max_fraction: float
) -> None:
    """No other source pushed past the limit by this change: a customers file that lost rows
    (an export that came out empty) holds back the visits and payments of those customers."""
    for source, (_, rejected_before) in before.items():
        read, rejected = slices.reject_counts(cur, schema, source)
        verdict = quality.reject_fraction(read, rejected, max_fraction)
        if not verdict.passed and rejected > rejected_before:
            raise _TooManyRejects(cur, schema, source, verdict)


def _source_asset(spec: SourceSpec, description: str) -> dg.AssetsDefinition:
    @fail_fast
    def source(
        context: dg.AssetExecutionContext,
        config: SourceConfig,
        data_folder: DataFolder,
        database: PostgresResource,
    ):
        return _store_drops(context, config, spec, Path(data_folder.path), database)

    # backfill_policy is "beta" (since 1.5), and the command line would print that each run.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.asset(
            name=spec.name,
            group_name="sources",
            kinds=TABLE_KINDS | {"csv"},
            partitions_def=PARTITIONS[spec.name],
            # many files of a source are stored by one run (a range of partitions)
            backfill_policy=dg.BackfillPolicy.single_run(),
            retry_policy=DB_RETRY,
            description=description,
            metadata={"dagster/column_schema": _column_schema(spec)},
            check_specs=[
                check_spec(
                    spec.name,
                    REJECT_CHECK,
                    "Rejected rows stay at or below max_reject_fraction of the source's rows; "
                    "a drop that would exceed it is not stored.",
                )
            ],
        )(source)


def _column_schema(spec: SourceSpec) -> dg.TableSchema:
    """The source's columns with their meaning (the UI merges each load's types in)."""
    return dg.TableSchema(
        columns=[dg.TableColumn(c.name, c.kind, c.description) for c in spec.columns]
    )


def _store_drops(
    context: dg.AssetExecutionContext,
    config: SourceConfig,
    spec: SourceSpec,
    folder: Path,
    database: PostgresResource,
) -> dg.MaterializeResult:
    """Store each file of the run's partitions as its slice, each in its own transaction."""
    schema = database.db_schema
    verdicts: list[quality.Verdict] = []

    def accepting(before: dict[str, tuple[int, int]]) -> Callable[[Cursor], None]:
        """The check of one file: `before` holds the other sources' counts without it."""

        def accept(cur: Cursor) -> None:
            read, rejected = slices.reject_counts(cur, schema, spec.name)
            verdict = quality.reject_fraction(read, rejected, config.max_reject_fraction)
            if not verdict.passed:
                raise _TooManyRejects(cur, schema, spec.name, verdict)
            _refuse_pushed_past(cur, schema, before, config.max_reject_fraction)
            verdicts.append(verdict)

        return accept

    stored = []
    with database.connect() as conn:
        for key in context.partition_keys:
            path = folder / key
            try:
                if not path.is_file():
                    raise SourceError(path, "no such file in the data folder (removed?)")
                before = slices.reject_counts_by_source(conn, schema, exclude=spec.name)
                entry = store_file(conn, schema, spec, path, context.run.run_id, accepting(before))
            except SourceError as e:  # say where: file, column, line
                raise dg.Failure(
                    description=str(e),
                    metadata={"file": e.file, "column": e.column or "", "line": e.line or 0},
                    allow_retries=False,
                ) from e
            except _TooManyRejects as e:
                raise dg.Failure(
                    description=f"{key}: storing it would leave {e.outcome()}; nothing from "
                    "it was stored (fix the file, or raise max_reject_fraction)",
                    metadata={**e.verdict.figures, "file": key, "source": e.source},
                    allow_retries=False,
                ) from e
            stored.append(entry)
            if entry.rows_rejected:
                context.log.warning(
                    f"{key}: rejected {entry.rows_rejected:,} of {entry.rows_read:,} rows "
                    f"(see table {slices.REJECTS})"
                )
        columns, row_count = slices.source_shape(conn, schema, spec.name)
        reasons = slices.reject_reasons(conn, schema, spec.name, context.partition_keys)
    return dg.MaterializeResult(
        metadata={
            **table_metadata(schema, spec.name, columns, row_count),
            **verdicts[-1].figures,
            "files_this_run": md_table(
                pd.DataFrame(
                    [(e.file, e.rows_read, e.rows_rejected) for e in stored],
                    columns=["file", "rows_read", "rows_rejected_per_row"],
                )
            ),
            "top_reject_reasons": dg.MetadataValue.md(
                "\n".join(f"- {reason}: {n:,}" for reason, n in reasons) or "none"
            ),
        },
        check_results=[check_result(REJECT_CHECK, verdicts[-1])],
    )


customers = _source_asset(
    SOURCES["customers"], "Members from customers*.csv: one row per customer_id."
)
packages = _source_asset(SOURCES["packages"], "Membership packages and prices from packages*.csv.")
transactions = _source_asset(
    SOURCES["transactions"],
    "Purchases from transactions*.csv, each of a known customer and package.",
)
attendance = _source_asset(
    SOURCES["attendance"], "Club check-ins from attendance*.csv, of known customers."
)


@dg.asset(
    group_name="sources",
    kinds=TABLE_KINDS,
    deps=[customers, packages, transactions, attendance],
    retry_policy=DB_RETRY,
    check_specs=[
        check_spec(
            slices.MANIFEST,
            FOLDER_CHECK,
            "Every CSV drop in the data folder is loaded as it is now (none new, changed or "
            "failed): the analytics describe the folder.",
        )
    ],
)
@fail_fast
def loaded_files(config: SourceConfig, data_folder: DataFolder, database: PostgresResource):
    """Which drop files are loaded: one row per file with its size, modification time,
    rows read and rejected, and the run that loaded it. Materializing it also takes out the
    rows of files no longer in the data folder, so the analytics after it describe exactly
    the folder's files."""
    schema = database.db_schema
    folder = Path(data_folder.path)
    missing = [f"{name}.csv" for name in SOURCES if not source_files(folder, name)]
    if missing:  # the analytics would otherwise fail on a table that was never created
        raise dg.Failure(
            description=f"{', '.join(missing)}: missing file: no CSV for this source was found "
            f"in {folder} (every source needs NAME.csv or NAME_*.csv)",
            metadata={"missing_files": missing},
            allow_retries=False,
        )
    with database.connect() as conn:
        slices.ensure_summaries(conn, schema)
        plan = plan_drops(folder, slices.manifest(conn, schema))
        if plan.remove:
            before = slices.reject_counts_by_source(conn, schema)

            def accept(cur: Cursor) -> None:
                _refuse_pushed_past(cur, schema, before, config.max_reject_fraction)

            try:
                slices.remove_files(conn, schema, plan.remove, accept)
            except _TooManyRejects as e:
                removed = ", ".join(entry.file for entry in plan.remove)
                raise dg.Failure(
                    description=f"taking out {removed} would leave {e.outcome()}; nothing "
                    "was taken out (put the file back, or raise max_reject_fraction)",
                    metadata={**e.verdict.figures, "source": e.source},
                    allow_retries=False,
                ) from e
        loaded = sorted(slices.manifest(conn, schema).values(), key=lambda e: (e.source, e.file))
    pending = [f"{name}: {p.name}" for name, files in plan.load.items() for p in files]
    verdict = quality.Verdict(
        not pending,
        f"{len(pending)} file(s) not loaded as they are now: {', '.join(pending[:10])}"
        if pending
        else f"all {len(loaded)} files loaded",
        {"files_loaded": len(loaded), "files_pending": len(pending)},
    )
    files = pd.DataFrame(
        [(e.source, e.file, e.rows_read, e.rows_rejected) for e in loaded],
        columns=["source", "file", "rows_read", "rows_rejected"],
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(loaded),
            "dagster/table_name": f"{schema}.{slices.MANIFEST}",
            "removed_files": [e.file for e in plan.remove],
            "files": md_table(files),
        },
        check_results=[check_result(FOLDER_CHECK, verdict)],
    )
