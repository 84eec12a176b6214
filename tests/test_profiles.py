"""User profiles on crafted events: recency weighting, owned sets, interests, popularity."""

from __future__ import annotations

import numpy as np
import pandas as pd

from services.config import ProfileConfig
from services.insights.profiles import build_profiles


def frame(rows):
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "timestamp", "rating"])
    events["timestamp"] = pd.to_datetime(events["timestamp"])
    events["session_id"] = [f"s{i}" for i in range(len(events))]
    events["quantity"] = 1.0
    events["price"] = 2.0
    events["text"] = ""
    return events


ITEMS = pd.DataFrame(
    {
        "item_id": ["a", "b", "c"],
        "title": ["RED CERAMIC TEAPOT", "BLUE WOOLLEN SCARF", "GREEN GARDEN HOSE"],
        "currency": ["GBP"] * 3,
    }
)
VECTORS = np.eye(3, 8, dtype=np.float32)


def test_recent_purchases_weigh_more():
    events = frame(
        [
            ("u", "a", "purchase", "2011-01-01", np.nan),
            ("u", "b", "purchase", "2011-12-01", np.nan),
            ("v", "c", "view", "2011-12-01", np.nan),
        ]
    )
    profiles = build_profiles(ITEMS, VECTORS, events, ProfileConfig(recency_half_life_days=30))
    users = profiles.users.set_index("user_id")
    u = profiles.vectors[users.index.get_loc("u")]
    assert u[1] > u[0] > 0  # the December purchase dominates the January one
    assert np.linalg.norm(u) == np.float32(1.0) or abs(np.linalg.norm(u) - 1) < 1e-5
    # Views count for the vector but do not make an item owned.
    assert set(profiles.purchases["user_id"]) == {"u"}
    assert users.loc["v", "purchase_count"] == 0 and users.loc["u", "purchase_count"] == 2
    words = {"red", "ceramic", "teapot", "blue", "woollen", "scarf"}
    assert len(users.loc["u", "interests"]) == 5 and set(users.loc["u", "interests"]) <= words
    assert set(users.loc["v", "interests"]) == {"green", "garden", "hose"}


def test_low_rated_reviews_do_not_pull_the_vector():
    events = frame([("u", "a", "review", "2011-01-01", 1.0), ("u", "b", "review", "2011-01-02", 5.0)])
    profiles = build_profiles(ITEMS, VECTORS, events, ProfileConfig())
    u = profiles.vectors[0]
    assert u[0] == 0 and u[1] > 0.99


def test_popularity_counts_distinct_buyers():
    events = frame(
        [
            ("u", "a", "purchase", "2011-01-01", np.nan),
            ("u", "a", "purchase", "2011-02-01", np.nan),
            ("v", "a", "purchase", "2011-02-01", np.nan),
            ("v", "b", "purchase", "2011-02-01", np.nan),
        ]
    )
    popularity = build_profiles(ITEMS, VECTORS, events, ProfileConfig()).popularity.set_index("item_id")
    assert list(popularity["buyers"]) == [2, 1, 0]
    assert popularity.loc["a", "popularity"] == 1.0 and popularity.loc["c", "popularity"] == 0.0
    assert 0 < popularity.loc["b", "popularity"] < 1


def test_activity_decades_old_still_gives_a_vector():
    events = frame(
        [
            ("old", "a", "review", "1998-03-01", 5.0),
            ("new", "b", "purchase", "2018-06-01", np.nan),
        ]
    )
    profiles = build_profiles(ITEMS, VECTORS, events, ProfileConfig(recency_half_life_days=30))
    users = profiles.users.set_index("user_id")
    old = profiles.vectors[users.index.get_loc("old")]
    assert old[0] > 0.99  # not underflowed to zero by 20 years of half-lives
