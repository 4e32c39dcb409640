"""One asset per CSV source: read every drop, keep the valid rows, store the rejects."""

from collections.abc import Mapping

import dagster as dg
import pandas as pd
from pydantic import Field

from .. import ingest
from ..core import quality
from ..core.loading import LoadedSource, SourceError
from ..core.sources import ATTENDANCE, CUSTOMERS, PACKAGES, TRANSACTIONS, SourceSpec
from ..data_folder import DataFolder
from ..io_managers import table_metadata
from ..resources import PostgresResource
from ..storage.tables import replace_rows
from .policies import DB_RETRY, TABLE_KINDS, check_result, check_spec, fail_fast
from .reads import handed_on, source_ins

REJECTS_TABLE = "rejected_rows"
REJECT_CHECK = "reject_fraction"


class SourceConfig(dg.Config):
    max_reject_fraction: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Above this share of rejected rows the blocking check fails.",
    )


def _money(spec: SourceSpec) -> list[str]:
    return [c.name for c in spec.columns if c.kind == "money"]


def _source_asset_args(spec: SourceSpec, description: str) -> dict:
    return {
        "name": spec.name,
        "group_name": "sources",
        "kinds": TABLE_KINDS | {"csv"},
        "retry_policy": DB_RETRY,
        "io_manager_key": "source_io_manager",
        "ins": source_ins(spec.name),
        "description": description,
        "metadata": {"money_columns": _money(spec)},
        "check_specs": [
            check_spec(
                spec.name,
                REJECT_CHECK,
                "Rejected rows stay at or below max_reject_fraction of the rows read.",
            )
        ],
    }


def _materialize_source(
    context: dg.AssetExecutionContext,
    config: SourceConfig,
    spec: SourceSpec,
    data_folder: DataFolder,
    database: PostgresResource,
    known_ids: Mapping[str, pd.Series],
) -> dg.MaterializeResult:
    """Validate the source while storing its table; its rejects then replace this source's
    slice of `rejected_rows`. The IO manager only hands on the columns downstream assets read."""
    with database.connect() as conn:
        try:
            loaded, columns = ingest.load_and_store(
                conn,
                database.db_schema,
                spec,
                data_folder.files(spec.name),
                known_ids,
                _money(spec),
                keep=handed_on(spec.name),
            )
        except SourceError as e:  # say where: file, column, line
            raise dg.Failure(
                description=str(e),
                metadata={"file": e.file, "column": e.column or "", "line": e.line or 0},
                allow_retries=False,
            ) from e
        rejects = loaded.rejects.assign(run_id=context.run.run_id)
        replace_rows(conn, database.db_schema, REJECTS_TABLE, rejects, where={"source": spec.name})
    if len(rejects):
        context.log.warning(
            f"{spec.name}: rejected {len(rejects):,} of {loaded.rows_read:,} rows "
            f"(see table {REJECTS_TABLE})"
        )
    verdict = quality.reject_fraction(
        loaded.rows_read, len(loaded.rejects), config.max_reject_fraction
    )
    return dg.MaterializeResult(
        value=loaded.frame,
        metadata={
            **table_metadata(database.db_schema, spec.name, columns, len(loaded.frame)),
            **_load_metadata(loaded, verdict),
        },
        check_results=[check_result(REJECT_CHECK, verdict)],
    )


def _load_metadata(loaded: LoadedSource, verdict: quality.Verdict) -> dict:
    reasons = loaded.rejects["reason"].str.split(" '").str[0].value_counts().head(10)
    return {
        "files": [p.name for p in loaded.files],
        **verdict.figures,
        "top_reject_reasons": dg.MetadataValue.md(
            "\n".join(f"- {reason}: {n:,}" for reason, n in reasons.items()) or "none"
        ),
    }


@dg.asset(**_source_asset_args(CUSTOMERS, "Members from customers*.csv: one row per customer_id."))
@fail_fast
def customers(
    context: dg.AssetExecutionContext,
    config: SourceConfig,
    data_folder: DataFolder,
    database: PostgresResource,
):
    return _materialize_source(context, config, CUSTOMERS, data_folder, database, {})


@dg.asset(**_source_asset_args(PACKAGES, "Membership packages and prices from packages*.csv."))
@fail_fast
def packages(
    context: dg.AssetExecutionContext,
    config: SourceConfig,
    data_folder: DataFolder,
    database: PostgresResource,
):
    return _materialize_source(context, config, PACKAGES, data_folder, database, {})


@dg.asset(
    **_source_asset_args(
        TRANSACTIONS, "Purchases from transactions*.csv, each of a known customer and package."
    )
)
@fail_fast
def transactions(
    context: dg.AssetExecutionContext,
    config: SourceConfig,
    data_folder: DataFolder,
    database: PostgresResource,
    customers: pd.DataFrame,
    packages: pd.DataFrame,
):
    known = {"customers": customers["customer_id"], "packages": packages["package_id"]}
    return _materialize_source(context, config, TRANSACTIONS, data_folder, database, known)


@dg.asset(
    **_source_asset_args(ATTENDANCE, "Club check-ins from attendance*.csv, of known customers.")
)
@fail_fast
def attendance(
    context: dg.AssetExecutionContext,
    config: SourceConfig,
    data_folder: DataFolder,
    database: PostgresResource,
    customers: pd.DataFrame,
):
    known = {"customers": customers["customer_id"]}
    return _materialize_source(context, config, ATTENDANCE, data_folder, database, known)
