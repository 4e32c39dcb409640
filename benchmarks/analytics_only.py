"""Our analytics path without Dagster: CSV drops -> source tables (parsed and COPYed per file,
duplicates and references decided in PostgreSQL) -> per-customer aggregates in SQL -> rfm,
clv, retention frames -> rfm + clv written through the storage layer (COPY, atomic replace).

The counterpart of the naive script's read_csv + pandas + to_sql. Needs --url (the sources
live in PostgreSQL); everything goes to schema bench_analytics, rebuilt from the files each
run. Prints phase timings as JSON: load, compute, write_rfm_clv.
"""

import argparse
import json
import time
from pathlib import Path

from retention_assets.core.clv import clv_frame
from retention_assets.core.retention import retention_summary
from retention_assets.core.rfm import default_as_of, rfm_features, rfm_scores
from retention_assets.core.segmentation import fit_segments
from retention_assets.core.sources import SOURCES
from retention_assets.ingest.loading import source_files
from retention_assets.ingest.store import store_file
from retention_assets.storage import slices
from retention_assets.storage.activity import customer_activity, feed_ends, order_summary
from retention_assets.storage.database import connect
from retention_assets.storage.tables import write_table

SCHEMA = "bench_analytics"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--url", required=True)
    args = parser.parse_args()
    timings = {}

    conn = connect(args.url)
    try:
        slices.drop_sources(conn, SCHEMA)  # a full load from the files, as a first run
        started = time.perf_counter()
        for name, spec in SOURCES.items():
            for path in source_files(args.data, name):
                store_file(conn, SCHEMA, spec, path, "analytics_only")
        timings["load"] = time.perf_counter() - started

        started = time.perf_counter()
        as_of = default_as_of(*feed_ends(conn, SCHEMA))
        features = rfm_features(customer_activity(conn, SCHEMA, as_of), as_of)
        model = fit_segments(features)
        rfm = rfm_scores(features).join(model.assign(features))
        clv = clv_frame(features, order_summary(conn, SCHEMA, as_of, 365))
        summary = retention_summary(features, as_of)
        timings["compute"] = time.perf_counter() - started

        started = time.perf_counter()
        write_table(conn, SCHEMA, "rfm", rfm, ["monetary"])
        write_table(conn, SCHEMA, "clv", clv, ["total_spend", "average_order_value", "clv_value"])
        timings["write_rfm_clv"] = time.perf_counter() - started
    finally:
        conn.close()
    print(json.dumps({"timings": timings, "retention_rate": summary.retention_rate}))


if __name__ == "__main__":
    main()
