"""First ranker: owned items never come back, order follows score, reasons are real."""

from __future__ import annotations

import pytest

from services.config import RankingConfig
from services.errors import NotFound
from services.recommend.ranking import Ranker
from services.recommend.filters import ItemFilter


def test_purchased_items_are_never_returned(sample_artifacts):
    ranker = Ranker(sample_artifacts, RankingConfig())
    all_items = list(sample_artifacts.items["item_id"])
    for user_id in sample_artifacts.users["user_id"]:
        owned = sample_artifacts.owned_by(user_id)
        # Hand the ranker candidates that are mostly owned items: none may survive.
        candidates = sorted(owned)[:50] + all_items[:50]
        ranked = ranker.rank(user_id, candidates, k=100)
        assert not {r.item_id for r in ranked} & owned
        assert len(ranked) == len(set(all_items[:50]) - owned)


def test_order_scores_and_reasons(sample_artifacts):
    ranker = Ranker(sample_artifacts, RankingConfig(similarity_weight=0.8, popularity_weight=0.2))
    user_id = sample_artifacts.users.sort_values("purchase_count").iloc[-1]["user_id"]
    candidates = list(sample_artifacts.items["item_id"])
    ranked = ranker.rank(user_id, candidates, k=10)
    assert len(ranked) == 10
    assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)
    for r in ranked:
        assert r.score == pytest.approx(0.8 * r.similarity + 0.2 * r.popularity, abs=1e-5)
        assert r.reasons and all(reason for reason in r.reasons)
    titles = set(sample_artifacts.items["title"])
    similar = [reason for r in ranked for reason in r.reasons if reason.startswith("similar to ")]
    assert similar, "a customer with a long history should get 'similar to … you bought' reasons"
    for reason in similar:
        title = reason.removeprefix("similar to ").removesuffix(" you bought")
        assert title in titles
        owned_titles = set(sample_artifacts.items.set_index("item_id").loc[sorted(sample_artifacts.owned_by(user_id)), "title"])
        assert title in owned_titles


def test_popularity_weight_alone_orders_by_popularity(sample_artifacts):
    ranker = Ranker(sample_artifacts, RankingConfig(similarity_weight=0.0, popularity_weight=1.0))
    user_id = sample_artifacts.users["user_id"].iloc[0]
    ranked = ranker.rank(user_id, list(sample_artifacts.items["item_id"]), k=5)
    expected = (
        sample_artifacts.items[~sample_artifacts.items["item_id"].isin(sample_artifacts.owned_by(user_id))]
        .sort_values("popularity", ascending=False, kind="stable")["popularity"].head(5)
    )
    assert [r.popularity for r in ranked] == pytest.approx(list(expected))


def test_filter_and_unknown_ids(sample_artifacts):
    ranker = Ranker(sample_artifacts, RankingConfig())
    user_id = sample_artifacts.users["user_id"].iloc[0]
    items = list(sample_artifacts.items["item_id"])
    ranked = ranker.rank(user_id, items, k=20, item_filter=ItemFilter(exclude_item_ids=frozenset(items[:500])))
    assert not {r.item_id for r in ranked} & set(items[:500])
    with pytest.raises(NotFound, match=r"item_ids\[1\]"):
        ranker.rank(user_id, [items[0], "NO-SUCH-ITEM"], k=5)
    with pytest.raises(NotFound, match="user_id"):
        ranker.rank("no-such-user", items[:3], k=5)
