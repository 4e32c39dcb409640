"""KMeans segments over the RFM features, named from their centroids."""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass

import pandas as pd
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from .rfm import snapshot_date

FEATURES = ["recency_days", "frequency", "monetary"]
HIGH_VALUE, AT_RISK, NEW_POTENTIAL, LOYALIST = "High-Value", "At Risk", "New/Potential", "Loyalist"


@dataclass
class SegmentModel:
    """Everything another process needs to score customers the way the run did."""

    scaler: StandardScaler
    kmeans: KMeans
    feature_names: list[str]
    segment_names: dict[int, str]
    as_of: dt.date
    n_training_rows: int

    def centroids(self) -> pd.DataFrame:
        """Cluster centres in original units (days, visits, money), indexed by cluster."""
        return _centroids(self.scaler, self.kmeans, self.feature_names)

    def assign(self, features: pd.DataFrame) -> pd.DataFrame:
        """Cluster number and segment name for each row of `features`."""
        x = self.scaler.transform(features[self.feature_names].to_numpy(dtype="float64"))
        with _one_thread():
            labels = self.kmeans.predict(x)
        cluster = pd.Series(labels, index=features.index, dtype="int64")
        return pd.DataFrame({"cluster": cluster, "segment": cluster.map(self.segment_names)})

    def describe(self) -> dict[str, object]:
        return {
            "as_of": self.as_of.isoformat(),
            "n_training_rows": self.n_training_rows,
            "n_clusters": len(self.segment_names),
            "feature_names": self.feature_names,
            "segments": {str(k): v for k, v in sorted(self.segment_names.items())},
        }


def name_clusters(centroids: pd.DataFrame) -> dict[int, str]:
    """One name per cluster: High-Value, then At Risk, then New/Potential, the rest Loyalist.

    Beyond four clusters the extra ones are Loyalist tiers ("Loyalist 2", ...) by
    falling mean monetary, so every cluster keeps a distinct name.
    """
    if len(centroids) < 4:
        raise ValueError(f"segment naming needs at least 4 clusters, got {len(centroids)}")
    rest = centroids
    names: dict[int, str] = {}
    for name, column, pick in (
        (HIGH_VALUE, "monetary", "idxmax"),
        (AT_RISK, "recency_days", "idxmax"),
        (NEW_POTENTIAL, "frequency", "idxmin"),
    ):
        chosen = int(getattr(rest[column], pick)())
        names[chosen] = name
        rest = rest.drop(index=chosen)
    for tier, cluster in enumerate(rest.sort_values("monetary", ascending=False).index, start=1):
        names[int(cluster)] = LOYALIST if tier == 1 else f"{LOYALIST} {tier}"
    return names


def fit_segments(
    features: pd.DataFrame, n_clusters: int = 4, random_state: int = 42, n_init: int = 10
) -> SegmentModel:
    """StandardScaler + KMeans over the features, in the frame's (customer_id) order."""
    if len(features) < n_clusters:
        raise ValueError(f"{len(features)} customers cannot form {n_clusters} segments")
    x = features[FEATURES].to_numpy(dtype="float64")
    scaler = StandardScaler().fit(x)
    kmeans = KMeans(n_clusters=n_clusters, random_state=random_state, n_init=n_init)
    with _one_thread(), warnings.catch_warnings():
        # fewer distinct points than clusters: rfm's blocking segment_counts check says so
        warnings.simplefilter("ignore", ConvergenceWarning)
        kmeans.fit(scaler.transform(x))
    names = name_clusters(_centroids(scaler, kmeans, FEATURES))
    return SegmentModel(
        scaler, kmeans, list(FEATURES), names, snapshot_date(features), len(features)
    )


def _one_thread() -> threadpool_limits:
    """KMeans on three features is a few passes over memory per iteration: a second OpenMP
    thread costs more in hand-offs than it saves, by far when another process keeps a core
    busy (the README's benchmarks give the figures)."""
    return threadpool_limits(1)


def _centroids(scaler: StandardScaler, kmeans: KMeans, feature_names: list[str]) -> pd.DataFrame:
    centres = scaler.inverse_transform(kmeans.cluster_centers_)
    return pd.DataFrame(centres, columns=feature_names).rename_axis("cluster")


def segment_profile(segmented: pd.DataFrame) -> pd.DataFrame:
    """Customers, share and mean R/F/M per segment: what an analyst reads first."""
    grouped = segmented.groupby("segment", sort=True)
    profile = grouped[FEATURES].mean().add_prefix("mean_")
    profile.insert(0, "customers", grouped.size().astype("int64"))
    profile.insert(1, "share", profile["customers"] / max(len(segmented), 1))
    return profile.reset_index()
