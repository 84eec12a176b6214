"""What `tailor build` learns about the shoppers, end to end on the shipped sample: every
analysis in the build, lined up with the profiles, read back the way serving reads it, and used
by the ranker, the candidate sources and the copy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from services.copywriting import Promotion
from services.copywriting.writer import CopyWriter
from services.insights.description import describe_shopper, last_basket
from services.recommend.candidates import RulesSource, gather, shopper_for
from services.recommend.features import FEATURES, candidate_features
from services.recommend.flow import RecommendationFlow


@pytest.fixture(scope="module")
def flow(sample_artifacts, sample_config) -> RecommendationFlow:
    return RecommendationFlow(sample_artifacts, sample_config)


def test_the_manifest_holds_every_analysis_and_the_time_of_each_stage(sample_build):
    manifest = sample_build.manifest
    for section in ("categories", "segments", "propensity", "trends", "rules", "stages"):
        assert manifest[section], section
    stages = manifest["stages"]
    for stage in ("load data", "embed items", "categories", "profile shoppers", "segment shoppers",
                  "purchase propensity", "market trends", "basket rules", "train ranker"):
        assert stages[stage] >= 0, stage
    assert sum(stages.values()) <= manifest["seconds"] + 1


def test_segments_cover_every_shopper_with_unique_names(sample_artifacts, sample_config):
    users, segments = sample_artifacts.users, sample_artifacts.segments
    assert set(users["segment_id"]) <= set(segments["segment_id"])
    assert segments["name"].is_unique and segments["description"].str.len().gt(20).all()
    assert segments["shoppers"].sum() == len(users)
    counts = users["segment_id"].value_counts()
    assert (segments.set_index("segment_id")["shoppers"] == counts.reindex(segments["segment_id"]).to_numpy()).all()
    insights = sample_config.insights
    assert insights.segments_min <= len(segments) <= insights.segments_max
    assert (segments["share"] >= insights.segment_min_share).all()
    assert (users["segment"] == segments.set_index("segment_id")["name"].reindex(users["segment_id"]).to_numpy()).all()
    assert users[["map_x", "map_y"]].notna().all().all()


def test_every_shopper_has_a_profile_a_propensity_and_its_reasons(sample_artifacts):
    users = sample_artifacts.users
    assert users["propensity"].between(0, 1).all()
    assert set(users["r_score"]) <= set(range(6)) and users["rfm"].str.fullmatch(r"[0-5]{3}").all()
    assert users["interests"].map(len).gt(0).all()
    reasons = sample_artifacts.propensity_reasons
    assert set(reasons) == set(users["user_id"])
    assert all(len(r) >= 1 and r["phrase"].str.len().gt(0).all() for r in reasons.values())


def test_a_shop_without_categories_gets_derived_ones_everywhere_a_category_is(sample_artifacts):
    items, categories = sample_artifacts.items, sample_artifacts.categories
    assert (categories["source"] == "derived").all() and categories["category_id"].is_unique
    assert set(items["category_id"]) == set(categories["category_id"])
    names = categories.set_index("category_id")["name"]
    # The UCI sample has no categories of its own: each item now carries its derived one's name.
    assert (items["category"] == names.reindex(items["category_id"]).to_numpy()).all()
    assert categories["items"].sum() == len(items)


def test_serving_reads_the_signals_the_build_computed(sample_artifacts, flow):
    signals = flow.snapshot.signals
    n_items, n_users = len(sample_artifacts.items), len(sample_artifacts.users)
    assert len(signals.trending) == len(signals.selling_fast) == len(signals.item_category) == n_items
    assert len(signals.segment_archetype) == len(signals.propensity) == n_users
    assert np.isfinite(signals.trending).all() and np.isfinite(signals.propensity).all()
    assert not np.isnan(signals.segment_archetype).any()
    trend_items = pd.read_parquet(sample_artifacts.file("trend_items"))
    np.testing.assert_allclose(signals.trending, trend_items["trending"].to_numpy())
    assert signals.rules.lift_matrix.nnz > 0


def test_the_ranker_reads_segment_propensity_trend_lift_and_category(sample_artifacts, flow):
    snapshot = flow.snapshot
    for name in ("segment", "propensity", "trending", "rule_lift", "category_affinity", "rules_score", "rules_rank"):
        assert name in FEATURES, name
    user_id = sample_artifacts.users.sort_values("purchase_count").iloc[-1]["user_id"]
    row = snapshot.history.user_row(user_id)
    shopper = shopper_for(snapshot, row)
    candidates = gather(snapshot, shopper, np.ones(len(snapshot.items), dtype=bool))
    features = candidate_features(snapshot, shopper, candidates)
    column = {name: i for i, name in enumerate(FEATURES)}
    assert (features[:, column["propensity"]] == np.float32(snapshot.signals.propensity[row])).all()
    assert (features[:, column["segment"]] == np.float32(snapshot.signals.segment_archetype[row])).all()
    affinity = features[:, column["category_affinity"]]
    assert np.nanmax(affinity) <= 1 and np.nanmax(affinity) > 0
    lift = features[:, column["rule_lift"]]
    assert (lift >= 0).all() and lift.max() > 1, "some candidate follows one of the shopper's items by a rule"


def test_the_rules_source_finds_what_follows_the_shoppers_items(sample_artifacts, flow):
    snapshot = flow.snapshot
    rules = snapshot.signals.rules
    # A shopper owning the antecedent of the strongest one-item rule gets its consequent.
    single = rules.rules[rules.rules["antecedent2_row"] < 0].sort_values("lift", ascending=False)
    for rule in single.itertuples():
        owners = [
            u for u in range(snapshot.history.n_users)
            if rule.antecedent_row in set(snapshot.history.acquired(u).tolist())
            and rule.consequent_row not in set(snapshot.history.acquired(u).tolist())
        ]
        if owners:
            break
    shopper = shopper_for(snapshot, owners[0])
    found = RulesSource().find(snapshot, shopper, 200, np.ones(len(snapshot.items), dtype=bool))
    assert rule.consequent_row in set(found.rows.tolist())


def test_describe_names_the_rules_of_the_last_basket(sample_artifacts):
    for user_id in sample_artifacts.users["user_id"]:
        description = describe_shopper(sample_artifacts, user_id)
        basket, date = last_basket(sample_artifacts.history, sample_artifacts.user_index(user_id))
        assert description.last_basket_date == date and len(description.last_basket_item_ids) == len(basket)
        held = set(description.last_basket_item_ids)
        for rule in description.rules:
            assert set(rule.antecedent_item_ids) <= held and rule.consequent_item_id not in held


def test_the_copy_takes_the_segments_tone(sample_artifacts, sample_config):
    # (No cross-sell line: copy names no other catalog product but the reason's.)
    writer = CopyWriter(sample_artifacts, engine=None, embedder=None, config=sample_config)
    users = sample_artifacts.users
    user = users.iloc[0]
    rules = sample_artifacts.rules
    item_row = int(rules.rules["antecedent_row"].iloc[0])
    item_id = str(sample_artifacts.items["item_id"].iat[item_row])
    facts = writer.facts(user["user_id"], item_id, "push", "en", Promotion(), tone="")
    assert facts.tone == user["segment_tone"] and facts.segment == user["segment"]
    asked = writer.facts(user["user_id"], item_id, "push", "en", Promotion(), tone="urgent")
    assert asked.tone == "urgent"
