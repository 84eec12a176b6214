"""Segments on the shipped UCI sample and on crafted shoppers: choice of k, names, edge cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from services.errors import InvalidArgument
from services.insights.activity import shopper_activity
from services.insights.segments import ARCHETYPES, PRICE_FEATURES, UNSEEN_SEGMENT, fit_segments, segment_features
from services.shop_data import load_shop_data

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "uci_online_retail_sample"
PRICE_NAMES = {a.name for a in ARCHETYPES if a.needs_prices}


@pytest.fixture(scope="module")
def sample_events() -> pd.DataFrame:
    return load_shop_data(SAMPLE).events


@pytest.fixture(scope="module")
def sample_activity(sample_events) -> pd.DataFrame:
    return shopper_activity(sample_events, sample_events["timestamp"].max() + pd.Timedelta(seconds=1))


def crafted_events(seed: int = 7) -> tuple[pd.DataFrame, pd.Timestamp, dict[str, str]]:
    """Four kinds of shoppers, 30 of each, with some noise: loyal big spenders, new one-time
    buyers, one-time buyers of long ago, and viewers who never bought."""
    rng = np.random.default_rng(seed)
    as_of = pd.Timestamp("2024-12-31")
    rows, kind = [], {}

    def basket(user, days_ago, items, session):
        t = as_of - pd.Timedelta(days=float(days_ago))
        for i in range(items):
            rows.append((user, f"item{rng.integers(200)}", "purchase", t, session, float(rng.integers(1, 6)), 3.0))

    for n in range(30):
        user = f"loyal{n}"
        kind[user] = "loyal"
        for b, days in enumerate(np.arange(rng.uniform(1, 6), 330, rng.uniform(10, 20))):
            basket(user, days, int(rng.integers(8, 15)), f"{user}-{b}")
        user = f"new{n}"
        kind[user] = "new"
        basket(user, rng.uniform(2, 20), int(rng.integers(1, 4)), f"{user}-0")
        user = f"gone{n}"
        kind[user] = "gone"
        basket(user, rng.uniform(250, 340), int(rng.integers(1, 4)), f"{user}-0")
        user = f"viewer{n}"
        kind[user] = "viewer"
        for days in rng.uniform(1, 300, size=int(rng.integers(3, 9))):
            rows.append((user, f"item{rng.integers(200)}", "view", as_of - pd.Timedelta(days=float(days)), "", np.nan, np.nan))
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "timestamp", "session_id", "quantity", "price"])
    return events.assign(text="", rating=np.nan), as_of, kind


def test_sample_shoppers_get_one_uniquely_named_segment_each(sample_activity):
    segments = fit_segments(sample_activity, currency="GBP")
    table = segments.table
    assert segments.segment_id.index.equals(sample_activity.index)
    assert set(segments.segment_id) == set(table["segment_id"]) == set(range(len(table)))
    assert table["name"].is_unique
    assert table["shoppers"].sum() == len(sample_activity)
    assert table["shoppers"].tolist() == segments.segment_id.value_counts().sort_index().tolist()
    assert table["share"].min() >= 0.02 and abs(table["share"].sum() - 1) < 1e-9
    assert 4 <= segments.chosen_k <= 8 and segments.silhouettes["k"].tolist() == [4, 5, 6, 7, 8]
    # The chosen k has the best silhouette among the eligible ones.
    eligible = segments.silhouettes[segments.silhouettes["eligible"]]
    assert segments.chosen_k == eligible.loc[eligible["silhouette"].idxmax(), "k"]
    for row in table.itertuples():
        archetype = ARCHETYPES[row.archetype_code]
        assert row.name == archetype.name and row.tone == archetype.tone
        assert row.description.startswith(archetype.blurb) and "£" in row.description
    # Centroids in original units: a segment's recency lies within its shoppers' range.
    for row in table.itertuples():
        members = sample_activity[segments.segment_id == row.segment_id]["recency_days"]
        assert members.min() - 1e-6 <= row.recency_days <= members.max() + 1e-6
    assert segments.map_2d.index.equals(sample_activity.index) and list(segments.map_2d.columns) == ["x", "y"]
    report = json.loads(json.dumps(segments.report(), allow_nan=False))
    assert report["segments"] == len(table) and report["chosen_k"] == segments.chosen_k
    assert [s["name"] for s in report["segments_table"]] == table["name"].tolist()


def test_a_fit_is_repeatable_with_its_seed_and_assign_agrees_with_it(sample_activity):
    first, second = fit_segments(sample_activity, seed=3), fit_segments(sample_activity, seed=3)
    assert first.segment_id.equals(second.segment_id)
    pd.testing.assert_frame_equal(first.table, second.table)
    assert first.assign(sample_activity).equals(first.segment_id)


def test_assign_places_shoppers_the_fit_never_saw(sample_activity):
    segments = fit_segments(sample_activity.iloc[:40])
    newcomers = sample_activity.iloc[40:]
    assigned = segments.assign(newcomers)
    assert assigned.index.equals(newcomers.index)
    assert set(assigned) <= set(segments.table["segment_id"])


def test_above_fit_max_shoppers_k_means_fits_a_sample_and_places_everyone(sample_activity):
    whole = fit_segments(sample_activity, seed=3)
    assert whole.sampling == {}
    assert fit_segments(sample_activity, seed=3, fit_max_shoppers=len(sample_activity)).segment_id.equals(whole.segment_id)
    sampled = fit_segments(sample_activity, seed=3, fit_max_shoppers=30)
    assert sampled.sampling == {"fitted_on_shoppers": 30, "of": len(sample_activity)}
    assert sampled.segment_id.index.equals(sample_activity.index)
    assert set(sampled.segment_id) <= set(sampled.table["segment_id"])
    assert sampled.assign(sample_activity).equals(sampled.segment_id)
    assert sampled.map_2d.notna().all().all()
    assert fit_segments(sample_activity, seed=3, fit_max_shoppers=30).segment_id.equals(sampled.segment_id)


def test_names_follow_what_the_shoppers_do():
    events, as_of, kind = crafted_events()
    activity = shopper_activity(events, as_of)
    segments = fit_segments(activity, segments_min=4, segments_max=4, currency="GBP")
    names = segments.table.set_index("segment_id")["name"]
    named = segments.segment_id.map(names).groupby(pd.Series(kind)).agg(lambda s: s.mode().iloc[0])
    assert named["loyal"] == "high-value loyal"
    assert named["new"] in {"new one-time", "promising new"}
    assert named["gone"] in {"lapsed", "dormant"}
    assert named["viewer"] == "window shoppers"
    viewers = segments.table.set_index("name").loc["window shoppers"]
    assert viewers["bought_share"] == 0 and "none has bought" in viewers["description"]


def test_shoppers_without_an_event_yet_stay_out_of_the_fit(sample_events, sample_activity):
    # The ranker's internal cut: every shopper of the log has a row, some with no event yet.
    cut = pd.Timestamp("2011-06-01")
    activity = shopper_activity(sample_events, cut, sample_activity.index.to_numpy())
    unseen = activity["events"] == 0
    assert unseen.any() and (~unseen).sum() >= 8
    segments = fit_segments(activity, segments_min=2, segments_max=4)
    assert segments.segment_id.index.equals(activity.index)
    assert (segments.segment_id[unseen] == UNSEEN_SEGMENT).all() and (segments.segment_id[~unseen] >= 0).all()
    assert segments.table["shoppers"].sum() == (~unseen).sum()
    assert segments.map_2d[unseen].isna().all().all() and segments.map_2d[~unseen].notna().all().all()
    assert segments.assign(activity).equals(segments.segment_id)
    assert "without an event yet" in segments.note


def test_never_bought_shoppers_count_as_silent_since_first_seen():
    events, as_of, _ = crafted_events()
    activity = shopper_activity(events, as_of)
    features = segment_features(activity, fill_unit_price=2.5)
    viewer = features.loc["viewer0"]
    assert viewer["recency_days"] == activity.loc["viewer0", "tenure_days"]
    assert viewer["avg_basket_value"] == 0 and viewer["frequency"] == 0 and viewer["mean_unit_price"] == 2.5
    assert viewer["browsing"] == activity.loc["viewer0", "views"] > 0
    assert not features.isna().any().any()


def test_no_k_eligible_merges_the_small_clusters(sample_activity):
    segments = fit_segments(sample_activity, segment_min_share=0.2)
    assert not segments.silhouettes["eligible"].any()
    assert "merged" in segments.note
    assert segments.table["share"].min() >= 0.2 and len(segments.table) < segments.chosen_k
    assert segments.table["name"].is_unique
    assert segments.assign(sample_activity).equals(segments.segment_id)


def test_shoppers_all_alike_make_one_middling_segment(sample_activity):
    alike = pd.concat([sample_activity.iloc[[5]]] * 12)
    alike.index = pd.Index([f"u{i}" for i in range(12)], name="user_id")
    segments = fit_segments(alike)
    assert len(segments.table) == 1 and segments.features == ()
    assert segments.table.loc[0, "name"] == "everyday shoppers" and segments.table.loc[0, "shoppers"] == 12
    assert "one segment" in segments.note
    assert (segments.assign(sample_activity) == 0).all()
    json.dumps(segments.report(), allow_nan=False)


def test_one_shopper_and_a_few_shoppers(sample_activity):
    one = fit_segments(sample_activity.iloc[[0]])
    assert one.segment_id.tolist() == [0] and len(one.table) == 1
    few = fit_segments(sample_activity.iloc[:3])  # fewer shoppers than segments_min
    assert len(few.table) <= 3 and few.table["name"].is_unique
    json.dumps(few.report(), allow_nan=False)


def test_a_shop_without_prices_gets_no_price_names():
    events, as_of, _ = crafted_events()
    events = events.assign(price=np.nan)
    segments = fit_segments(shopper_activity(events, as_of), segments_min=4, segments_max=4)
    assert not set(PRICE_FEATURES) & set(segments.features)
    assert not set(segments.table["name"]) & PRICE_NAMES
    assert not segments.table["description"].str.contains("spent").any()


def test_bad_input_is_refused_with_the_field_named(sample_activity):
    with pytest.raises(InvalidArgument, match="no shoppers"):
        fit_segments(sample_activity.iloc[:0])
    with pytest.raises(InvalidArgument, match="segments_max"):
        fit_segments(sample_activity, segments_min=6, segments_max=4)


def test_archetype_names_are_unique_and_fit_the_copy_limits():
    names = [a.name for a in ARCHETYPES]
    assert len(set(names)) == len(names)
    assert all(len(a.name) <= 24 and len(a.tone) <= 20 for a in ARCHETYPES)
