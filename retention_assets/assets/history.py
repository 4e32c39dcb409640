"""Change over time: signup-month cohorts, the segments of every snapshot, and who moved
between segments since the previous one."""

import dagster as dg
import pandas as pd
from pydantic import Field

from ..core import quality
from ..core.dates import DATE_DTYPE
from ..core.migration import NEW, moved_into, segment_growth
from ..core.migration import segment_migration as migration_counts
from ..core.rfm import snapshot_date
from ..core.segmentation import AT_RISK
from ..plots import cohort_curve_figure, cohort_heatmap_figure, migration_figure, to_png
from ..resources import PostgresResource
from ..storage.cohorts import cohort_retention as cohort_table
from ..storage.history import previous_snapshot
from .analytics import TABLE_ASSET
from .metadata import (
    COHORT_COLUMNS,
    FOR_ANALYSTS,
    MIGRATION_COLUMNS,
    RFM_COLUMNS,
    image,
    ui_table,
)
from .policies import check_result, check_spec, fail_fast

WATCHED = AT_RISK


class MigrationConfig(dg.Config):
    max_at_risk_growth: float = Field(
        default=0.2,
        ge=0,
        description="Warn when At Risk grew by more than this share since the previous snapshot.",
    )
    top: int = Field(default=20, ge=1, description="Customers listed as moved into At Risk.")


@dg.asset(**TABLE_ASSET, tags=FOR_ANALYSTS, metadata={"dagster/column_schema": COHORT_COLUMNS})
@fail_fast
def cohort_retention(rfm_features: pd.DataFrame, database: PostgresResource):
    """Are newer members staying longer? For each signup-month cohort and each month since
    signing up, the share of the cohort with a check-in in that month; the as_of month is
    `partial`, months before the first check-in on record are empty (not observed). Counted
    in PostgreSQL.

    Metadata: the cohort heatmap and the average retention curve across cohorts."""
    as_of = snapshot_date(rfm_features)
    with database.connect() as conn:
        cohorts = cohort_table(conn, database.db_schema, as_of)
    return dg.MaterializeResult(
        value=cohorts,
        metadata={
            "as_of": as_of.isoformat(),
            "cohorts": int(cohorts["cohort_month"].nunique()),
            "cohort_heatmap": image(to_png(cohort_heatmap_figure(cohorts)), "cohort retention"),
            "retention_curve": image(to_png(cohort_curve_figure(cohorts)), "average curve"),
        },
    )


@dg.asset(
    **TABLE_ASSET,
    tags=FOR_ANALYSTS,
    metadata={
        "upsert_key": ["as_of"],
        "money_columns": ["monetary"],
        "dagster/column_schema": RFM_COLUMNS,
    },
)
def rfm_history(rfm: pd.DataFrame) -> pd.DataFrame:
    """Every snapshot's rfm rows, kept by as_of (the same as_of again replaces its rows): what
    segment_migration compares with."""
    return rfm


@dg.asset(
    **TABLE_ASSET,
    tags=FOR_ANALYSTS,
    deps=[rfm_history],
    metadata={"dagster/column_schema": MIGRATION_COLUMNS},
    check_specs=[
        check_spec(
            "segment_migration",
            "at_risk_growth",
            "Warns when At Risk grew by more than max_at_risk_growth since the previous snapshot.",
            blocking=False,
        )
    ],
)
@fail_fast
def segment_migration(
    context: dg.AssetExecutionContext,
    config: MigrationConfig,
    rfm: pd.DataFrame,
    database: PostgresResource,
):
    """Who moved where since the previous snapshot: customers counted by (segment at the
    previous stored as_of, segment now); "(new)" for customers absent before, "(gone)" for
    those absent now; `share` of the previous segment.

    Metadata: the transition matrix, and the customers who moved into At Risk, by spend."""
    as_of = snapshot_date(rfm)
    with database.connect() as conn:
        previous = previous_snapshot(conn, database.db_schema, "rfm_history", as_of)
    since = previous["as_of"].iloc[0] if previous is not None else None
    migration = migration_counts(previous, rfm)
    for column, day in (("as_of", as_of), ("previous_as_of", since)):
        migration[column] = pd.array([day] * len(migration), dtype=DATE_DTYPE)
    movers = moved_into(previous, rfm, WATCHED, config.top)
    moved_in = int(
        migration.loc[
            (migration["to_segment"] == WATCHED) & ~migration["from_segment"].isin([WATCHED, NEW]),
            "customers",
        ].sum()
    )
    verdict = quality.segment_growth(
        segment_growth(previous, rfm, WATCHED), moved_in, config.max_at_risk_growth
    )
    context.log.info(
        f"{moved_in:,} customers moved into {WATCHED} since {since or 'no earlier snapshot'}"
    )
    return dg.MaterializeResult(
        value=migration,
        metadata={
            "as_of": as_of.isoformat(),
            "previous_as_of": since.isoformat() if since else "none",
            "migration_matrix": image(to_png(migration_figure(migration)), "segment migration"),
            "moved_into_at_risk_count": moved_in,
            "moved_into_at_risk": ui_table(movers),
        },
        check_results=[check_result("at_risk_growth", verdict, dg.AssetCheckSeverity.WARN)],
    )


HISTORY_ASSETS = [cohort_retention, rfm_history, segment_migration]
