"""User profiles on crafted events: recency weighting, owned sets, RFM scores, interest tags
(jieba for Chinese, no one-off tokens), category and price-band affinity, popularity."""

from __future__ import annotations

import numpy as np
import pytest
import pandas as pd

from services.config import ProfileConfig
from services.insights.profiles import ProfileSummaries, build_profiles, summarise


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


# --- RFM, tags, affinity ------------------------------------------------------------------

CATALOG = pd.DataFrame(
    {
        "item_id": ["tree", "bauble", "lunch", "tote", "mug", "rare"],
        "title": [
            "CHRISTMAS TREE DECORATION",
            "CHRISTMAS BAUBLE DECORATION",
            "LUNCH BAG RETROSPOT",
            "TOTE BAG RETROSPOT",
            "TEA MUG",
            "COLUMBIAN CANDLE",
        ],
        "price": [1.0, 1.5, 3.0, 3.5, 9.0, 12.0],
        "currency": ["GBP"] * 6,
        "category": ["christmas", "christmas", "bags", "bags", "kitchen", "kitchen"],
    }
)
CATALOG_VECTORS = np.eye(6, 8, dtype=np.float32)


def event(user, item, kind="purchase", day="2011-06-01", text="", rating=np.nan, price=None, quantity=1.0, session=None):
    return {
        "user_id": user, "item_id": item, "event_type": kind, "timestamp": pd.Timestamp(day),
        "text": text, "rating": rating, "quantity": quantity, "session_id": session if session is not None else f"{user}-{day}",
        "price": price if price is not None else float(CATALOG.set_index("item_id").loc[item, "price"]),
    }


def log(*events):
    return pd.DataFrame(list(events))


def profile(events, **options):
    options = {"tag_min_shoppers": 1, **options}
    profiles = build_profiles(CATALOG, CATALOG_VECTORS, events, ProfileConfig(), **options)
    return profiles, profiles.users.set_index("user_id")


def test_rfm_scores_are_quintiles_over_buyers_and_zero_for_the_rest():
    # Buyer bN: last bought N days before the end, in N baskets, spending N × 10.
    rows = []
    for n in range(1, 11):
        for basket in range(n):
            day = pd.Timestamp("2011-12-31") - pd.Timedelta(days=n + basket * 20)
            rows.append(event(f"b{n:02d}", "mug", day=day, price=10.0, session=f"b{n}-{basket}"))
    rows.append(event("b01", "mug", day="2011-12-30", price=0.0, session="late"))  # b01: the most recent
    rows.append(event("viewer", "mug", kind="view", day="2011-12-01"))
    events = log(*rows)
    _, users = profile(events, as_of=pd.Timestamp("2012-01-01"))
    buyers = users.drop(index="viewer")
    assert set(buyers["r_score"]) == set(buyers["f_score"]) == set(buyers["m_score"]) == {1, 2, 3, 4, 5}
    assert (buyers["r_score"].value_counts() == 2).all()  # ten buyers: two per quintile
    assert users.loc["b01", "r_score"] == 5 and users.loc["b10", "r_score"] == 1
    assert users.loc["b10", "f_score"] == 5 and users.loc["b10", "m_score"] == 5
    assert users.loc["b10", "rfm"] == "155" and users.loc["b01", "rfm"] == "511"
    assert users.loc["viewer", ["r_score", "f_score", "m_score"]].tolist() == [0, 0, 0]
    assert users.loc["viewer", "rfm"] == "000" and np.isnan(users.loc["viewer", "recency_days"])
    # Higher value, higher score: monotone over the buyers.
    order = buyers.sort_values("monetary")
    assert order["m_score"].is_monotonic_increasing


def test_tied_buyers_share_a_score_and_a_log_without_prices_scores_no_spend():
    events = log(*[event(f"u{i}", "mug", day="2011-06-01", price=np.nan) for i in range(6)])
    _, users = profile(events)
    assert users["f_score"].nunique() == 1 and users["r_score"].nunique() == 1  # all alike: one score
    assert (users["m_score"] == 0).all() and users["rfm"].str.endswith("0").all()


def test_a_shopper_with_one_event_gets_a_full_profile():
    events = log(event("once", "tree", kind="view"), event("buyer", "mug"), event("returner", "lunch", kind="return"))
    profiles, users = profile(events)
    assert set(users.index) == {"once", "buyer", "returner"}
    once = users.loc["once"]
    assert once["rfm"] == "000" and once["purchase_count"] == 0 and once["events"] == 1
    assert once["categories"] == [profiles.categories.set_index("name").loc["christmas", "category_id"]]
    assert once["category_affinity"] == [1.0] and once["price_band"] == "budget"
    assert "christmas" in once["interests"] and "tree" in once["interests"]
    assert users.loc["buyer", "rfm"] != "000" and users.loc["buyer", "price_band"] == "premium"
    # A shopper with only a return still gets described by it (nothing else says who they are).
    assert users.loc["returner", "category_names"] == ["bags"] and users.loc["returner", "interests"]


def test_tags_lead_with_categories_then_the_terms_they_do_not_already_say():
    events = log(
        *[event(f"u{i}", item) for i in range(4) for item in ("tree", "bauble")],
        *[event("u0", "lunch", day="2011-06-02"), event("u1", "tote"), event("u2", "lunch"), event("u3", "tote")],
    )
    _, users = profile(events, tag_min_shoppers=3)
    tags = users.loc["u0", "interests"]
    assert tags[:2] == ["christmas", "bags"]  # its two categories, strongest first
    assert "decoration" in tags and "retrospot" in tags
    assert tags.count("christmas") == 1 and "bag" not in tags  # the category names said those
    assert all(len(t) <= 24 for t in users["interests"].explode().dropna())


def test_a_rare_one_off_token_does_not_become_a_tag():
    events = log(
        *[event(f"u{i}", "tree") for i in range(3)],
        event("u0", "rare"),  # "columbian", bought by one shopper only
    )
    _, users = profile(events, tag_min_shoppers=3)
    assert "columbian" not in users.loc["u0", "interests"] and "candle" not in users.loc["u0", "interests"]
    assert "decoration" in users.loc["u0", "interests"]  # shared by three shoppers: a tag
    _, lenient = profile(events, tag_min_shoppers=1)
    assert "columbian" in lenient.loc["u0", "interests"]  # the same log, the threshold is what drops it


def test_chinese_review_text_gives_jieba_terms_without_stop_words():
    review = "这款保温杯很好用，保温效果很好"
    events = log(
        *[event(f"r{i}", "mug", kind="review", text=review, rating=5.0, price=np.nan) for i in range(4)],
        event("r0", "mug", kind="search", text="保温杯 礼物", price=np.nan),
    )
    _, users = profile(events, tag_min_shoppers=3)
    for user in users.index:
        tags = users.loc[user, "interests"]
        assert "保温杯" in tags and "保温" in tags
        assert not {"这款", "很", "好用", "效果", "很好"} & set(tags)
    assert "礼物" not in users.loc["r0", "interests"]  # searched by one shopper only


def test_category_affinity_is_a_share_of_activity_that_sums_to_one():
    events = log(
        event("u", "tree"), event("u", "bauble"), event("u", "lunch"), event("u", "mug", kind="view"),
        event("v", "tote"),
    )
    profiles, users = profile(events)
    sums = np.asarray(profiles.category_affinity.sum(axis=1)).ravel()
    np.testing.assert_allclose(sums, 1.0)
    shares = users.loc["u", "category_affinity"]
    assert users.loc["u", "category_names"] == ["christmas", "bags", "kitchen"]
    assert shares == sorted(shares, reverse=True) and abs(sum(shares) - 1) < 1e-3
    assert shares[0] == pytest.approx(2 / 3.3, abs=1e-3)  # a view weighs view_weight (0.3)
    assert abs(sum(users.loc["u", "price_band_affinity"]) - 1) < 1e-3
    assert profiles.users["price_band"].isin(["budget", "mid", "premium"]).all()


def test_price_bands_cut_the_catalog_prices_at_terciles():
    events = log(event("cheap", "tree"), event("cheap", "bauble"), event("dear", "mug"), event("dear", "rare"))
    profiles, users = profile(events)
    low, high = profiles.price_edges
    assert low < 3.0 < high  # six prices: two per band
    assert users.loc["cheap", "price_band"] == "budget" and users.loc["dear", "price_band"] == "premium"
    assert users.loc["dear", "price_band_affinity"] == [0.0, 0.0, 1.0]


def test_an_empty_log_gives_empty_profiles():
    empty = log(event("x", "mug")).iloc[:0]
    profiles, users = profile(empty)
    assert len(users) == 0 and profiles.vectors.shape == (0, 8) and len(profiles.purchases) == 0
    assert profiles.report()["users"] == 0


def test_the_users_table_is_parquet_friendly(tmp_path):
    events = log(event("u", "tree"), event("v", "mug", kind="review", text="保温杯", rating=5.0))
    profiles, _ = profile(events)
    profiles.users.to_parquet(tmp_path / "users.parquet", index=False)
    back = pd.read_parquet(tmp_path / "users.parquet")
    assert list(back.columns) == list(profiles.users.columns)
    assert list(back.set_index("user_id").loc["u", "categories"]) == profiles.users.set_index("user_id").loc["u", "categories"]


def test_summaries_read_from_columns_equal_summarise_row_by_row(sample_artifacts):
    # Recommend reads a shopper's summary from the columns (ProfileSummaries); DescribeUser from
    # the row (summarise): both must say the same of every shopper, a never-bought one included.
    users = sample_artifacts.users
    summaries = ProfileSummaries(users)
    for row in range(len(users)):
        assert summaries.of(row) == summarise(users.iloc[row])


def test_summaries_of_a_shopper_who_never_bought():
    profiles, _ = profile(log(event("once", "tree", kind="view"), event("buyer", "mug")))
    users = profiles.users
    summaries = ProfileSummaries(users)
    for row in range(len(users)):
        assert summaries.of(row) == summarise(users.iloc[row])
    never = summaries.of(int(np.flatnonzero(users["user_id"] == "once")[0]))
    assert never.last_purchase_date == "" and never.purchase_count == 0
