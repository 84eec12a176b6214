"""Item categories: the shop's own where it has them, else clusters of item vectors named by
their titles, with ids that survive a rebuild."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from services.errors import TailorError
from services.insights.categories import ItemCategories, item_categories, text_terms
from services.shop_data import load_shop_data

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "uci_online_retail_sample"


@pytest.fixture(scope="module")
def sample_items():
    """The shipped UCI sample's catalog (no categories), with stand-in item vectors: LSA of
    the titles, L2-normalised (the build's sentence vectors need a model download)."""
    items = load_shop_data(SAMPLE).items.reset_index(drop=True)
    tfidf = TfidfVectorizer(token_pattern=r"(?u)\b[^\W\d_]{3,}\b").fit_transform(items["title"])
    vectors = TruncatedSVD(48, random_state=0).fit_transform(tfidf)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
    return items, vectors.astype(np.float32)


AXES = ["christmas", "lunch", "mugs", "candles", "one"]


def grouped_catalog(groups: dict[str, list[str]], seed: int = 0, dimension: int = 16):
    """Items whose vectors sit in one tight cluster per group, around the group's own axis."""
    rng = np.random.default_rng(seed)
    titles, vectors = [], []
    for group, names in groups.items():
        centre = np.zeros(dimension)
        centre[AXES.index(group)] = 1.0
        for title in names:
            titles.append(title)
            vectors.append(centre + rng.normal(scale=0.05, size=dimension))
    vectors = np.array(vectors, dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(len(titles))], "title": titles, "category": ""})
    return items, vectors


GROUPS = {
    "christmas": ["CHRISTMAS TREE DECORATION", "GLASS CHRISTMAS TREE", "CHRISTMAS TREE STAR", "WOODEN CHRISTMAS TREE"],
    "lunch": ["LUNCH BAG RED RETROSPOT", "LUNCH BAG SPACEBOY", "LUNCH BAG DOLLY GIRL", "JUMBO LUNCH BAG"],
    "mugs": ["COFFEE MUG PEARS", "COFFEE MUG APPLES", "TEA COFFEE MUG", "BLUE COFFEE MUG"],
}


def test_a_shop_with_categories_keeps_its_own_with_readable_leaf_names():
    items = pd.DataFrame(
        {
            "item_id": list("abcdef"),
            "title": ["Gift card", "Gift card 50", "Vogue", "Road & Track", "Elle", "Mystery item"],
            "category": [
                "Gift Cards > Gift Cards", "Gift Cards > Gift Cards", "Magazines > Fashion > Women",
                "Magazines > Transportation", "Magazines > Lifestyle > Women", "",
            ],
        }
    )
    vectors = np.eye(6, 4, dtype=np.float32)
    vectors[5] = vectors[3]  # the uncategorised item looks like the transport magazine
    result = item_categories(items, vectors)
    table = result.table.set_index("category_id")
    names = dict(zip(result.item_category, table.loc[result.item_category, "name"]))
    assert result.source == "shop" and set(table["source"]) == {"shop"}
    assert set(table["name"]) == {"Gift Cards", "Transportation", "Fashion > Women", "Lifestyle > Women"}
    assert names[result.item_category[5]] == "Transportation" and result.filled_by_vector == 1
    assert table.loc[result.item_category[0], "items"] == 2
    # The id is the path's: the same in any order, in any build.
    again = item_categories(items.iloc[::-1].reset_index(drop=True), vectors[::-1].copy())
    assert list(again.item_category[::-1]) == list(result.item_category)
    assert (table["name_zh"] == "").all() and len(table["centroid"].iloc[0]) == 4


def test_a_shop_without_categories_gets_clusters_named_by_their_titles():
    items, vectors = grouped_catalog(GROUPS)
    result = item_categories(items, vectors, n_categories=3)
    assert result.source == "derived" and len(result.table) == 3
    by_group = {g: set(result.item_category[i * 4:(i + 1) * 4]) for i, g in enumerate(GROUPS)}
    assert all(len(ids) == 1 for ids in by_group.values())  # a group is one category
    names = result.names()
    assert names[by_group["christmas"].pop()] == "christmas tree"  # a phrase the titles use
    assert names[by_group["lunch"].pop()] == "lunch bag"
    assert names[by_group["mugs"].pop()] == "coffee mug"
    assert "jumbo" not in " ".join(result.table["terms"].sum())  # packaging words are no terms
    assert result.table["category_id"].is_unique and result.table["name"].is_unique
    assert result.report()["categories"] == 3


def test_the_sample_catalog_gets_between_8_and_40_unique_categories(sample_items):
    items, vectors = sample_items
    result = item_categories(items, vectors)
    expected = int(np.clip(round(np.sqrt(len(items) / 2)), 8, 40))
    assert len(result.table) == expected and result.table["items"].sum() == len(items)
    assert result.table["name"].is_unique and result.table["category_id"].is_unique
    assert len(result.item_category) == len(items) and set(result.item_category) == set(result.table["category_id"])
    # Names are made of title words, never of stop or packaging words.
    words = {w for n in result.table["name"] for w in n.replace(" · ", " ").split()}
    assert words and not words & {"set", "of", "pack", "small", "large", "the"}


def test_ids_are_deterministic_and_survive_a_small_change_with_the_previous_table(sample_items):
    items, vectors = sample_items
    first = item_categories(items, vectors)
    assert list(item_categories(items, vectors).item_category) == list(first.item_category)
    keep = np.random.default_rng(3).random(len(items)) > 0.05
    second = item_categories(items[keep].reset_index(drop=True), vectors[keep], previous=first.table)
    assert second.persisted >= 0.8 * len(first.table)
    same = (first.item_category[keep] == second.item_category).mean()
    assert same > 0.8  # most items keep their category id
    assert second.table["category_id"].is_unique


def test_a_new_cluster_gets_a_fresh_id_and_a_retired_id_is_never_reused():
    items, vectors = grouped_catalog(GROUPS)
    first = item_categories(items, vectors, n_categories=3)
    more = {**GROUPS, "candles": ["SCENTED CANDLE VANILLA", "SCENTED CANDLE ROSE", "PILLAR CANDLE", "SCENTED CANDLE"]}
    items2, vectors2 = grouped_catalog(more)
    second = item_categories(items2, vectors2, n_categories=4, previous=first.table)
    assert second.persisted == 3
    assert list(second.item_category[:12]) == list(first.item_category)  # the old groups keep their ids
    fresh = set(second.table["category_id"]) - set(first.table["category_id"])
    assert len(fresh) == 1 and second.table.set_index("category_id").loc[fresh.pop(), "name"].startswith("scented")
    # The christmas items are gone; a previous id whose cluster left is not handed to another.
    gone = {g: n for g, n in more.items() if g != "christmas"}
    items3, vectors3 = grouped_catalog(gone, seed=1)
    third = item_categories(items3, vectors3, n_categories=3, previous=second.table)
    christmas_id = first.item_category[0]
    assert christmas_id not in set(third.table["category_id"]) and third.retired == 1


def test_a_fresh_id_that_would_clash_with_a_previous_one_takes_a_suffix():
    items, vectors = grouped_catalog(GROUPS)
    first = item_categories(items, vectors, n_categories=3)
    # The previous build had a different cluster under the id the christmas cluster would take.
    previous = first.table.copy()
    elsewhere = [0.0] * 15 + [1.0]
    previous["centroid"] = [elsewhere if n == "christmas tree" else c for n, c in zip(previous["name"], previous["centroid"])]
    second = item_categories(items, vectors, n_categories=3, previous=previous)
    new_id = second.item_category[0]
    assert new_id != first.item_category[0] and new_id.startswith(first.item_category[0])
    assert second.persisted == 2 and second.retired == 1


def test_tiny_and_empty_catalogs_do_not_crash():
    items, vectors = grouped_catalog({"one": ["LONELY TEAPOT"]})
    result = item_categories(items, vectors)
    assert len(result.table) == 1 and result.item_category.tolist() == [result.table["category_id"].iloc[0]]
    empty = item_categories(items.iloc[:0], vectors[:0])
    assert isinstance(empty, ItemCategories) and len(empty.table) == 0 and len(empty.item_category) == 0
    with pytest.raises(TailorError, match="item vectors"):
        item_categories(items, np.zeros((2, 4), dtype=np.float32))


def test_text_terms_use_jieba_for_chinese_and_drop_stop_words():
    assert text_terms("这款保温杯很好用，保温效果很好") == ["保温杯", "保温"]
    assert text_terms("SET OF 3 Christmas Decorations 保温杯") == ["保温杯", "christmas", "decorations"]
    assert text_terms("") == [] and text_terms("12 x 4cm") == []
