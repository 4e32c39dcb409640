"""Publishing a run's results together: the last asset of the analytics job."""

import datetime as dt

import dagster as dg

from ..resources import PostgresResource
from ..storage import staging
from .analytics import GROUP, clv, retention, rfm, rfm_features, rfm_model
from .forecast import FORECAST_ASSETS
from .history import HISTORY_ASSETS
from .metadata import FOR_PIPELINE, OWNERS
from .policies import DB_RETRY, fail_fast

# A run's staged tables left by a run this instance does not know (an ephemeral instance's
# earlier command-line run) are dropped once they are this old: it cannot still be running.
_ABANDONED_AFTER = dt.timedelta(hours=6)
_FINISHED = {
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELED,
}


@dg.asset(
    group_name=GROUP,
    kinds={"postgres"},
    deps=[rfm_features, rfm_model, rfm, clv, retention, *FORECAST_ASSETS, *HISTORY_ASSETS],
    retry_policy=DB_RETRY,
    owners=OWNERS,
    tags=FOR_PIPELINE,
)
@fail_fast
def snapshot(context: dg.AssetExecutionContext, database: PostgresResource):
    """The run's results, published together: every table and model of the run (rfm, clv,
    clv_forecast, the retention row, ...) is written under a staging name of the run and
    swapped in here, in one transaction, once every asset and blocking check before it has
    passed. A run that fails anywhere leaves every table as it was: readers never see one
    snapshot's rfm next to another's clv."""
    schema, run_id = database.db_schema, context.run.run_id
    now = dt.datetime.now(dt.UTC)
    with database.connect() as conn:
        published = staging.publish(conn, schema, run_id)
        leftover = [
            other
            for other, staged_at in staging.other_runs(conn, schema, run_id)
            if _will_not_publish(context.instance, other, now - staged_at)
        ]
        staging.discard(conn, schema, leftover)
    context.log.info(f"Published {', '.join(published)}")
    return dg.MaterializeResult(metadata={"published": published, "discarded_runs": len(leftover)})


def _will_not_publish(instance: dg.DagsterInstance, run_id: str, age: dt.timedelta) -> bool:
    run = instance.get_run_by_id(run_id)
    return run.status in _FINISHED if run is not None else age > _ABANDONED_AFTER
