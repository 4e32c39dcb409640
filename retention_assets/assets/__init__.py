"""The asset graph: four CSV sources partitioned by drop file, what is loaded, then the RFM /
CLV / retention analytics."""

from .analytics import clv, retention, rfm, rfm_features, rfm_model
from .forecast import clv_forecast, clv_holdout, clv_model
from .history import cohort_retention, rfm_history, segment_migration
from .publish import snapshot
from .sources import attendance, customers, loaded_files, packages, transactions

SOURCE_ASSETS = [customers, packages, transactions, attendance]
ANALYTICS_ASSETS = [
    loaded_files,
    rfm_features,
    rfm_model,
    rfm,
    clv,
    retention,
    clv_model,
    clv_forecast,
    clv_holdout,
    cohort_retention,
    rfm_history,
    segment_migration,
    snapshot,
]
ALL_ASSETS = SOURCE_ASSETS + ANALYTICS_ASSETS
