"""Segment naming from centroids, and a fit that finds four planted groups."""

import datetime as dt
import pickle

import numpy as np
import pandas as pd
import pytest

from retention_assets.core.dates import date_column
from retention_assets.core.segmentation import fit_segments, name_clusters, segment_profile


def centroids(rows):
    return pd.DataFrame(rows, columns=["recency_days", "frequency", "monetary"])


def test_names_follow_the_centroid_rules():
    # cluster 0: most money -> High-Value even though it is also the most lapsed;
    # cluster 2: most lapsed of the rest -> At Risk; cluster 3: fewest visits -> New/Potential
    names = name_clusters(centroids([[300, 50, 5000], [10, 80, 400], [200, 10, 100], [20, 2, 50]]))
    assert names == {0: "High-Value", 1: "Loyalist", 2: "At Risk", 3: "New/Potential"}


def test_extra_clusters_become_loyalist_tiers_and_few_clusters_are_refused():
    names = name_clusters(
        centroids([[5, 90, 900], [150, 5, 80], [10, 1, 30], [8, 60, 300], [6, 70, 500]])
    )
    assert sorted(names.values()) == sorted(
        ["High-Value", "At Risk", "New/Potential", "Loyalist", "Loyalist 2"]
    )
    assert names[4] == "Loyalist" and names[3] == "Loyalist 2"
    with pytest.raises(ValueError, match="at least 4"):
        name_clusters(centroids([[1, 1, 1], [2, 2, 2], [3, 3, 3]]))


def planted(n_per_group=50, seed=0):
    rng = np.random.default_rng(seed)
    groups = {
        "Loyalist": (5, 120, 600),
        "At Risk": (250, 30, 400),
        "New/Potential": (20, 4, 60),
        "High-Value": (10, 100, 5000),
    }
    parts = []
    for name, (r, f, m) in groups.items():
        parts.append(
            pd.DataFrame(
                {
                    "truth": name,
                    "recency_days": rng.normal(r, r * 0.05 + 1, n_per_group).round().clip(0),
                    "frequency": rng.normal(f, f * 0.05 + 1, n_per_group).round().clip(0),
                    "monetary": rng.normal(m, m * 0.05, n_per_group).clip(0),
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    frame["customer_id"] = [f"C{i:04d}" for i in range(len(frame))]
    frame["as_of"] = date_column(dt.date(2026, 10, 31), frame.index)
    return frame


def test_fit_finds_planted_groups_and_is_reproducible():
    frame = planted()
    model = fit_segments(frame)
    assigned = model.assign(frame)
    assert (assigned["segment"] == frame["truth"]).all()
    again = fit_segments(frame).assign(frame)
    pd.testing.assert_frame_equal(assigned, again)
    assert model.n_training_rows == 200 and model.as_of == dt.date(2026, 10, 31)
    described = model.describe()
    assert described["n_clusters"] == 4 and described["as_of"] == "2026-10-31"


def test_model_survives_pickling_and_scores_new_rows():
    frame = planted()
    model = pickle.loads(pickle.dumps(fit_segments(frame, random_state=7, n_init=3)))
    new = pd.DataFrame({"recency_days": [240.0], "frequency": [25.0], "monetary": [380.0]})
    assert model.assign(new)["segment"].tolist() == ["At Risk"]


def test_too_few_customers_is_a_clear_error():
    with pytest.raises(ValueError, match="3 customers cannot form 4 segments"):
        fit_segments(planted().head(3))


def test_segment_profile_counts_and_means():
    frame = planted(n_per_group=10).assign(segment=lambda f: f["truth"])
    profile = segment_profile(frame).set_index("segment")
    assert profile["customers"].to_dict() == dict.fromkeys(
        ["At Risk", "High-Value", "Loyalist", "New/Potential"], 10
    )
    assert profile["share"].sum() == pytest.approx(1.0)
    loyal = frame[frame["truth"] == "Loyalist"]
    assert profile.loc["Loyalist", "mean_monetary"] == pytest.approx(loyal["monetary"].mean())
