"""The job done the straightforward way: one pandas script, as the project started.

read_csv the four files, groupby for RFM, StandardScaler + KMeans(4), CLV and retention in
pandas, then DataFrame.to_sql(if_exists="replace") of rfm and clv. It validates nothing and
stores no source table. Prints its phase timings as JSON for benchmarks/run.py.
"""

import argparse
import json
import time

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.preprocessing import StandardScaler
from sqlalchemy import create_engine


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--url", required=True)
    args = parser.parse_args()
    timings = {}

    started = time.perf_counter()
    customers = pd.read_csv(f"{args.data}/customers.csv", parse_dates=["signup_date"])
    transactions = pd.read_csv(f"{args.data}/transactions.csv", parse_dates=["transaction_date"])
    attendance = pd.read_csv(f"{args.data}/attendance.csv", parse_dates=["check_in", "check_out"])
    timings["read"] = time.perf_counter() - started

    started = time.perf_counter()
    as_of = max(attendance["check_in"].max(), transactions["transaction_date"].max()).normalize()
    rfm = customers.loc[customers["signup_date"] <= as_of, ["customer_id", "signup_date"]]
    rfm = rfm.set_index("customer_id").sort_index()
    rfm["last_attendance"] = attendance.groupby("customer_id")["check_in"].max()
    rfm["frequency"] = attendance.groupby("customer_id").size()
    rfm["frequency"] = rfm["frequency"].fillna(0).astype(int)
    rfm["monetary"] = transactions.groupby("customer_id")["amount"].sum()
    rfm["monetary"] = rfm["monetary"].fillna(0.0)
    last_seen = rfm["last_attendance"].dt.normalize().fillna(rfm["signup_date"])
    rfm["recency_days"] = (as_of - last_seen).dt.days
    rfm["r_score"] = pd.qcut((-rfm["recency_days"]).rank(method="first"), 5, labels=[1, 2, 3, 4, 5])
    rfm["f_score"] = pd.qcut(rfm["frequency"].rank(method="first"), 5, labels=[1, 2, 3, 4, 5])
    rfm["m_score"] = pd.qcut(rfm["monetary"].rank(method="first"), 5, labels=[1, 2, 3, 4, 5])
    rfm["rfm_score"] = (
        rfm["r_score"].astype(str) + rfm["f_score"].astype(str) + rfm["m_score"].astype(str)
    )
    features = rfm[["recency_days", "frequency", "monetary"]]
    scaled = StandardScaler().fit_transform(features)
    kmeans = KMeans(n_clusters=4, random_state=42, n_init=10).fit(scaled)
    rfm["cluster"] = kmeans.labels_
    centroids = features.groupby(rfm["cluster"]).mean()
    names = {}
    rest = centroids
    for name, column, pick in (
        ("High-Value", "monetary", "idxmax"),
        ("At Risk", "recency_days", "idxmax"),
        ("New/Potential", "frequency", "idxmin"),
    ):
        chosen = getattr(rest[column], pick)()
        names[chosen] = name
        rest = rest.drop(index=chosen)
    names[rest.index[0]] = "Loyalist"
    rfm["segment"] = rfm["cluster"].map(names)

    orders = transactions[transactions["transaction_date"] < as_of + pd.Timedelta(days=1)]
    clv = pd.DataFrame(index=rfm.index)
    clv["n_orders"] = orders.groupby("customer_id").size()
    clv["total_spend"] = orders.groupby("customer_id")["amount"].sum()
    clv = clv.fillna(0)
    clv["average_order_value"] = np.where(
        clv["n_orders"] > 0, clv["total_spend"] / clv["n_orders"].replace(0, 1), 0.0
    )
    window = orders[orders["transaction_date"] >= as_of - pd.Timedelta(days=364)]
    clv["purchase_frequency"] = window.groupby("customer_id").size()
    clv["purchase_frequency"] = clv["purchase_frequency"].fillna(0)
    clv["clv_value"] = clv["average_order_value"] * clv["purchase_frequency"] * 1.0
    churned = rfm["recency_days"] > 90
    pct = clv.loc[~churned, "clv_value"].rank(pct=True)
    clv["predicted_customer_type"] = "Churned"
    clv.loc[~churned, "predicted_customer_type"] = np.where(
        pct > 0.8, "High Value", np.where(pct <= 0.4, "Low Value", "Medium Value")
    )
    retention_rate = (1 - churned.sum() / len(rfm)) * 100
    timings["compute"] = time.perf_counter() - started

    started = time.perf_counter()
    engine = create_engine(args.url)
    rfm.to_sql("rfm", engine, if_exists="replace")
    clv.to_sql("clv", engine, if_exists="replace")
    engine.dispose()
    timings["to_sql"] = time.perf_counter() - started
    print(json.dumps({"timings": timings, "retention_rate": float(retention_rate)}))


if __name__ == "__main__":
    main()
