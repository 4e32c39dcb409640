"""Our analytics path without Dagster: CSV -> validated frames -> rfm, clv, retention frames.

With --url it also times writing rfm + clv through the storage layer (COPY, atomic replace),
the counterpart of the naive script's to_sql. Prints phase timings as JSON.
"""

import argparse
import json
import time
from pathlib import Path

from retention_assets.assets.reads import READS, handed_on
from retention_assets.core.clv import clv_frame
from retention_assets.core.loading import load_source, source_files
from retention_assets.core.retention import retention_summary
from retention_assets.core.rfm import default_as_of, rfm_features, rfm_scores
from retention_assets.core.segmentation import fit_segments
from retention_assets.core.sources import SOURCES
from retention_assets.storage.database import connect
from retention_assets.storage.tables import write_table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--url")
    args = parser.parse_args()
    timings = {}

    started = time.perf_counter()
    loaded = {}
    for name in ("customers", "packages", "transactions", "attendance"):
        known = {ref: loaded[ref].frame[ids[0]] for ref, ids in READS[name].items()}
        files = source_files(args.data, name)
        loaded[name] = load_source(SOURCES[name], files, known, keep=handed_on(name))
    timings["load"] = time.perf_counter() - started

    started = time.perf_counter()
    customers, transactions, attendance = (
        loaded[n].frame for n in ("customers", "transactions", "attendance")
    )
    as_of = default_as_of(transactions, attendance)
    features = rfm_features(customers, transactions, attendance, as_of)
    model = fit_segments(features)
    rfm = rfm_scores(features).join(model.assign(features))
    clv = clv_frame(features, transactions, as_of)
    summary = retention_summary(features, as_of)
    timings["compute"] = time.perf_counter() - started

    if args.url:
        started = time.perf_counter()
        with connect(args.url) as conn:
            write_table(conn, "bench_analytics", "rfm", rfm, ["monetary"])
            write_table(
                conn,
                "bench_analytics",
                "clv",
                clv,
                ["total_spend", "average_order_value", "clv_value"],
            )
        timings["write_rfm_clv"] = time.perf_counter() - started
    print(json.dumps({"timings": timings, "retention_rate": summary.retention_rate}))


if __name__ == "__main__":
    main()
