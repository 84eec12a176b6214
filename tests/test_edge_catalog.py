"""A tiny canonical shop with the awkward cases the UCI sample lacks: a shopper with only a
return, an item without a price, a view-only shopper."""

from __future__ import annotations

import pandas as pd
import pytest

from serving.messages import item_message
from services.artifacts import Artifacts
from services.build import build_artifacts
from services.copywriting import Promotion
from services.copywriting.writer import VOCABULARY_FILE
from services.copywriting.layouts import lay_out
from services.copywriting.vocabulary import Vocabulary
from services.copywriting.writer import CopyWriter
from services.recommend.flow import RecommendationFlow, ShopperQuery

SENTINEL = "U-SENTINEL-4711"


@pytest.fixture(scope="module")
def edge(tmp_path_factory, sample_config):
    folder = tmp_path_factory.mktemp("edge_shop")
    pd.DataFrame(
        {
            "item_id": ["T1", "T2", "S1", "S2", "H1"],
            "title": ["Red Ceramic Teapot", "Blue Teapot Warmer", "Wool Scarf", "Silk Scarf", "Garden Hose"],
            "price": [12.5, 6.0, None, 20.0, 15.0],
            "currency": ["EUR"] * 5,
            "category": ["kitchen", "kitchen", "fashion", "fashion", "garden"],
        }
    ).to_csv(folder / "items.csv", index=False)
    pd.DataFrame(
        {
            "user_id": [SENTINEL, SENTINEL, "buyer2", "buyer2", "returner", "viewer"],
            "item_id": ["T1", "S1", "T1", "H1", "S2", "T2"],
            "event_type": ["purchase", "purchase", "purchase", "purchase", "return", "view"],
            "timestamp": ["2024-01-01", "2024-02-01", "2024-01-05", "2024-03-01", "2024-03-02", "2024-03-03"],
        }
    ).to_csv(folder / "events.csv", index=False)
    config = sample_config.model_copy(update={"artifacts_dir": tmp_path_factory.mktemp("edge_artifacts")})
    build_artifacts(folder, config.artifacts_dir, config)
    return Artifacts.open(config.artifacts_dir, config.index), config


def test_a_shopper_with_only_a_return_gets_popular_items(edge):
    artifacts, config = edge
    ranked = RecommendationFlow(artifacts, config).recommend(ShopperQuery(user_id="returner", k=3))
    assert ranked and all(set(r.sources) <= {"popular", "recent", "co_purchase"} for r in ranked)
    assert {"T1", "H1"} <= {r.item_id for r in ranked}  # the most bought, the most recently bought
    assert all(r.reasons for r in ranked)
    assert artifacts.manifest["ranker"]["kind"] == "blend" and "need" in artifacts.manifest["ranker"]["why"]


def test_a_view_only_shopper_is_a_known_user_with_a_vector(edge):
    artifacts, config = edge
    ranked = RecommendationFlow(artifacts, config).recommend(ShopperQuery(user_id="viewer", k=2))
    assert ranked[0].item_id == "T2" and "history" in ranked[0].sources  # what it looked at
    assert ranked[0].reasons[0] == "you looked at this recently"
    users = artifacts.users.set_index("user_id")
    assert users.loc["viewer", "purchase_count"] == 0 and "teapot" in users.loc["viewer", "interests"]


def test_an_unpriced_item_says_so_everywhere(edge):
    artifacts, config = edge
    row = artifacts.items.set_index("item_id", drop=False).loc["S1"]
    message = item_message(row)
    assert (message.has_price, message.price) == (False, 0.0)
    writer = CopyWriter(artifacts, None, None, config)
    for channel in ("push", "sms", "email", "banner"):
        for language in ("en", "zh"):
            facts = writer.facts("buyer2", "S1", channel, language, Promotion(), "")
            assert facts.price is None
            links = writer.links(facts, "buyer2")
            copy = lay_out(facts, "", "spotlight", Vocabulary.load(VOCABULARY_FILE), "Shop", links).copy
            assert "€" not in copy.body and "EUR" not in copy.body and "Wool Scarf" in copy.title + copy.body


def test_the_prompt_carries_no_user_id(edge):
    artifacts, config = edge
    writer = CopyWriter(artifacts, None, None, config)
    facts = writer.facts(SENTINEL, "T2", "push", "en", Promotion(), "", "similar to Red Ceramic Teapot you bought")
    _, prompt = writer.hook_prompt(facts)
    assert SENTINEL not in prompt and "4711" not in prompt
    assert "Blue Teapot Warmer" in prompt and "kitchen" in prompt.lower()
    assert "6.00" not in prompt  # prices are the layout's, never the model's
    assert facts.recent_titles[0] == "Wool Scarf"  # the most recent purchase first
