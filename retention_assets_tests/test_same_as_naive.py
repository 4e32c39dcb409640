"""Our graph and the naive one-script baseline (benchmarks/naive_baseline.py) agree on a
generated dataset: same universe, R/F/M, scores, segments and CLV, to the cent."""

import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from retention_assets.assets import ALL_ASSETS
from retention_assets.definitions import build_resources
from retention_assets.generate import generate_dataset
from retention_assets.settings import Settings
from retention_assets.storage.database import connect
from retention_assets.storage.tables import read_table

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def both(database_url, tmp_path_factory):
    data = tmp_path_factory.mktemp("tier_s")
    generate_dataset(data, customers=2000, seed=11)
    schema = "same_as_naive"
    settings = Settings(data_dir=str(data), db_schema=schema, pgdata="unused")
    assert dg.materialize(ALL_ASSETS, resources=build_resources(settings, database_url)).success
    subprocess.run(
        [
            sys.executable,
            ROOT / "benchmarks" / "naive_baseline.py",
            "--data",
            data,
            "--url",
            database_url,
        ],
        check=True,
        capture_output=True,
    )
    conn = connect(database_url)
    try:
        ours = {t: read_table(conn, schema, t).set_index("customer_id") for t in ("rfm", "clv")}
        naive = {t: read_table(conn, "public", t).set_index("customer_id") for t in ("rfm", "clv")}
    finally:
        conn.close()
    return ours, naive


def test_same_universe_features_and_scores(both):
    ours, naive = both
    rfm, base = ours["rfm"], naive["rfm"].loc[ours["rfm"].index]
    assert len(rfm) == len(naive["rfm"]) == 2000
    for column in ("recency_days", "frequency", "r_score", "f_score", "m_score", "rfm_score"):
        assert rfm[column].astype(str).tolist() == base[column].astype(str).tolist(), column
    np.testing.assert_allclose(rfm["monetary"], base["monetary"], atol=0.005)


def test_same_segments(both):
    ours, naive = both
    pd.testing.assert_series_equal(
        ours["rfm"]["segment"], naive["rfm"]["segment"].loc[ours["rfm"].index], check_dtype=False
    )


def test_same_clv(both):
    ours, naive = both
    clv, base = ours["clv"], naive["clv"].loc[ours["clv"].index]
    for column in ("total_spend", "average_order_value", "purchase_frequency", "clv_value"):
        np.testing.assert_allclose(clv[column], base[column], atol=0.005, err_msg=column)
    assert clv["predicted_customer_type"].tolist() == base["predicted_customer_type"].tolist()
