"""Association rules over baskets: hand-computed metrics, mlxtend as the oracle on a real slice,
the lookups serving reads (lift_to, for_items, relevant), persistence, and the logs that hold
no rule (review-only data, one basket, nothing bought)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlxtend.frequent_patterns import association_rules, fpgrowth

from services.errors import InvalidArgument
from services.insights.basket_rules import RULE_COLUMNS, BasketRules, basket_rules
from services.shop_data import load_shop_data

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "uci_online_retail_sample"
ITEMS = pd.DataFrame(
    {
        "item_id": ["a", "b", "c", "d", "e", "never"],
        "title": ["APPLE", "BREAD", "CHEESE", "DATES", "EGGS", "NEVER SOLD"],
    }
)
ROW = {item_id: row for row, item_id in enumerate(ITEMS["item_id"])}
# Seven baskets, each bought three times (a rule needs 3 baskets), plus a one-item basket that
# holds no pair and must not count: n = 21; a, b, c in 12 baskets each, d in 9, e in 3;
# ab and ac in 9, bc in 6, abc in 6, bd, cd and de in 3.
TINY_BASKETS = [["a", "b", "c"], ["a", "b", "c"], ["a", "b"], ["a", "c"], ["b", "d"], ["c", "d"], ["d", "e"]]


def purchases(baskets: list[list[str]], user: str = "u", day: str = "2011-03-01") -> pd.DataFrame:
    rows = [
        (user, item_id, "purchase", f"{user}-s{number}", pd.Timestamp(day))
        for number, basket in enumerate(baskets)
        for item_id in basket
    ]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "session_id", "timestamp"])
    events["quantity"] = 1.0
    events["price"] = 1.0
    events["text"] = ""
    events["rating"] = np.nan
    return events


@pytest.fixture(scope="module")
def tiny() -> BasketRules:
    return basket_rules(purchases(TINY_BASKETS * 3 + [["a"]]), ITEMS, min_support=0.25, min_confidence=0.1)


@pytest.fixture(scope="module")
def sample():
    return load_shop_data(SAMPLE)


def rule(rules: BasketRules, antecedent: tuple[str, ...], consequent: str) -> pd.Series:
    table = rules.rules
    second = ROW[antecedent[1]] if len(antecedent) > 1 else -1
    found = table[
        (table["antecedent_row"] == ROW[antecedent[0]])
        & (table["antecedent2_row"] == second)
        & (table["consequent_row"] == ROW[consequent])
    ]
    assert len(found) == 1, f"{antecedent} → {consequent}: {len(found)} rules"
    return found.iloc[0]


def test_metrics_equal_the_hand_computation(tiny):
    assert tiny.baskets == 21 and tiny.min_count == 6  # ⌈0.25 × 21⌉
    assert tiny.itemsets == {1: 4, 2: 3, 3: 1}  # a b c d; ab ac bc; abc
    a_to_b = rule(tiny, ("a",), "b")
    assert a_to_b["baskets"] == 9
    assert a_to_b["support"] == pytest.approx(9 / 21)
    assert a_to_b["confidence"] == pytest.approx(9 / 12)
    assert a_to_b["lift"] == pytest.approx((9 / 12) / (12 / 21))
    assert a_to_b["leverage"] == pytest.approx(9 / 21 - (12 / 21) ** 2)
    assert a_to_b["conviction"] == pytest.approx((1 - 12 / 21) / (1 - 9 / 12))
    b_to_c = rule(tiny, ("b",), "c")
    assert b_to_c["confidence"] == pytest.approx(6 / 12) and b_to_c["lift"] == pytest.approx(0.875)
    # Two-item antecedents: bc is in 6 baskets, all of which hold a.
    bc_to_a = rule(tiny, ("b", "c"), "a")
    assert bc_to_a["antecedent_support"] == pytest.approx(6 / 21)
    assert bc_to_a["confidence"] == 1.0 and bc_to_a["conviction"] == np.inf
    assert bc_to_a["lift"] == pytest.approx(1 / (12 / 21))
    ab_to_c = rule(tiny, ("a", "b"), "c")
    assert ab_to_c["confidence"] == pytest.approx(6 / 9) and ab_to_c["antecedent2_id"] == "b"
    # 3 × ab, 3 × ac, 3 × bc, 3 × abc; b → d (3 baskets) is under the 6-basket support.
    assert len(tiny.rules) == 9
    assert not (tiny.rules["consequent_row"] == ROW["d"]).any()


def test_rules_below_min_confidence_are_dropped(tiny):
    strict = basket_rules(purchases(TINY_BASKETS * 3), ITEMS, min_support=0.25, min_confidence=0.7)
    assert (strict.rules["confidence"] >= 0.7).all()
    kept = set(map(tuple, strict.rules[["antecedent_row", "antecedent2_row", "consequent_row"]].to_numpy()))
    assert kept == set(map(tuple, tiny.rules.loc[tiny.rules["confidence"] >= 0.7, ["antecedent_row", "antecedent2_row", "consequent_row"]].to_numpy()))


def test_lift_to_takes_the_best_rule_from_any_source(tiny):
    a, b, c, d, e, never = (ROW[x] for x in "a b c d e never".split())
    lifts = tiny.lift_to(np.array([b, c]), np.array([a, b, c, d, e, never]))
    # b → a and c → a: (9/12) / (12/21). b → c and c → b have lift 0.875: together less often
    # than by chance, so they lead nowhere, as nothing reaches d or e.
    assert lifts == pytest.approx([(9 / 12) / (12 / 21), 0, 0, 0, 0, 0])
    assert tiny.lift_to(np.array([], dtype=int), np.array([a, b])).tolist() == [0.0, 0.0]
    assert tiny.lift_to(np.array([never]), np.arange(len(ITEMS))).tolist() == [0.0] * len(ITEMS)


def test_for_items_lists_the_top_rules_per_item_with_lift_above_one(tiny):
    table = tiny.for_items(np.array([ROW["a"], ROW["b"], ROW["never"]]))
    # b → c has lift 0.875 < 1: bread does not go "often" with cheese.
    assert set(zip(table["antecedent_id"], table["consequent_id"])) == {("a", "b"), ("a", "c"), ("b", "a")}
    assert (table["antecedent2_row"] == -1).all()
    one = BasketRules.from_table(tiny.tables(), len(ITEMS), rules_per_item=1)
    assert one.for_items(np.array([ROW["a"]]))["consequent_id"].tolist() == ["b"]  # tie on lift: lower row


def test_relevant_rules_need_the_whole_antecedent_in_the_basket_and_a_new_consequent(tiny):
    best = tiny.relevant(np.array([ROW["b"], ROW["c"]]))
    # b → a and c → a score (9/12)·1.3125; bc → a scores 1 · 1.75: one rule per consequent.
    assert len(best) == 1
    assert (best.loc[0, "antecedent_id"], best.loc[0, "antecedent2_id"], best.loc[0, "consequent_id"]) == ("b", "c", "a")
    assert best.loc[0, "relevance"] == pytest.approx(1.75)
    only_a = tiny.relevant(np.array([ROW["a"]]), top=3)
    assert only_a["consequent_id"].tolist() == ["b", "c"]  # equal scores: lower item row first
    assert (only_a["antecedent2_row"] == -1).all()  # ab → c needs b in the basket
    assert tiny.relevant(np.array([ROW["a"], ROW["b"], ROW["c"]])).empty  # nothing left to add
    assert tiny.relevant(np.array([], dtype=int)).empty
    with pytest.raises(InvalidArgument, match="top"):
        tiny.relevant(np.array([ROW["a"]]), top=0)


def test_item_rows_outside_the_table_are_refused(tiny):
    with pytest.raises(InvalidArgument, match=r"targets\[1\]"):
        tiny.lift_to(np.array([0]), np.array([0, len(ITEMS)]))
    with pytest.raises(InvalidArgument, match="basket_item_rows"):
        tiny.relevant(np.array([-1]))


def test_the_table_round_trips_through_parquet(tiny, tmp_path):
    tiny.tables().to_parquet(tmp_path / "rules.parquet")
    loaded = BasketRules.from_table(pd.read_parquet(tmp_path / "rules.parquet"), len(ITEMS), rules_per_item=10)
    pd.testing.assert_frame_equal(loaded.tables(), tiny.tables())
    assert list(loaded.tables().columns) == list(RULE_COLUMNS)
    everything = np.arange(len(ITEMS))
    assert loaded.lift_to(np.array([ROW["a"]]), everything).tolist() == tiny.lift_to(np.array([ROW["a"]]), everything).tolist()
    pd.testing.assert_frame_equal(loaded.relevant(np.array([ROW["b"], ROW["c"]])), tiny.relevant(np.array([ROW["b"], ROW["c"]])))
    with pytest.raises(InvalidArgument, match="n_items"):
        BasketRules.from_table(tiny.tables(), 2)  # the rules reach item row 2 (c)


def test_huge_baskets_are_left_out():
    events = purchases(TINY_BASKETS * 3 + [["a", "b", "c", "d", "e"]] * 6)
    assert basket_rules(events, ITEMS, min_support=0.25, max_basket_items=4).baskets == 21
    assert basket_rules(events, ITEMS, min_support=0.25).baskets == 27


def test_logs_without_rules_give_empty_rules_that_still_answer():
    day_reviews = pd.DataFrame(
        {
            "user_id": ["u", "u", "v", "v", "w"],
            "item_id": ["a", "b", "a", "b", "a"],
            "event_type": "review",
            "session_id": "",
            # Each review on its own day: its own basket of one, no pair anywhere.
            "timestamp": pd.to_datetime(["2011-01-01", "2011-01-02", "2011-01-03", "2011-01-04", "2011-01-05"]),
            "quantity": 1.0,
            "price": np.nan,
            "text": ["很好用", "good", "ok", "fine", "不错"],
            "rating": 5.0,
        }
    )
    one_basket = purchases([["a", "b", "c"]])
    nothing = one_basket.iloc[:0]
    for events in (day_reviews, one_basket, nothing):
        rules = basket_rules(events, ITEMS)
        assert rules.rules.empty and list(rules.rules.columns) == list(RULE_COLUMNS)
        assert rules.lift_to(np.array([0, 1]), np.arange(len(ITEMS))).tolist() == [0.0] * len(ITEMS)
        assert rules.for_items(np.array([0])).empty and rules.relevant(np.array([0, 1])).empty
        report = json.loads(json.dumps(rules.report()))
        assert report["rules"] == 0 and report["top_rules_by_lift"] == []
        loaded = BasketRules.from_table(rules.tables(), len(ITEMS))
        assert loaded.rules.empty and loaded.lift_to(np.array([0]), np.array([1])).tolist() == [0.0]
    assert basket_rules(one_basket, ITEMS).baskets == 1


def test_review_only_data_forms_day_baskets_of_well_rated_reviews():
    bought = purchases(TINY_BASKETS * 3)
    # One shopper, no sessions: each original basket becomes one day of reviews.
    day = bought.groupby("session_id", sort=False).ngroup()
    reviews = bought.assign(
        event_type="review", session_id="", rating=5.0, timestamp=pd.Timestamp("2011-03-01") + pd.to_timedelta(day, unit="D")
    )
    # A low-rated review recommends nothing: these three on one more day make no basket.
    low = reviews.iloc[:3].assign(rating=1.0, timestamp=pd.Timestamp("2012-01-01"))
    rules = basket_rules(pd.concat([reviews, low]), ITEMS, min_support=0.25)
    assert rules.baskets == 21 and len(rules.rules) == 9


def test_bad_settings_are_refused():
    events = purchases(TINY_BASKETS)
    for name, value in (("min_support", 0.0), ("min_confidence", 1.5), ("rules_per_item", 0), ("max_basket_items", 1)):
        with pytest.raises(InvalidArgument, match=name):
            basket_rules(events, ITEMS, **{name: value})


def sample_baskets(events: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """The baskets (invoices) of the sample built independently of the module, as a 0/1 frame."""
    bought = events[events["event_type"] == "purchase"]
    lines = bought[bought["item_id"].isin(items["item_id"])][["session_id", "item_id"]].drop_duplicates()
    sizes = lines.groupby("session_id")["item_id"].transform("size")
    lines = lines[(sizes > 1) & (sizes <= 200)]
    return pd.crosstab(lines["session_id"], lines["item_id"]).astype(bool)


def test_rules_of_the_sample_equal_mlxtend_fpgrowth(sample):
    events, items = sample.events, sample.items
    rules = basket_rules(events, items, min_support=0.02, min_confidence=0.2)
    onehot = sample_baskets(events, items)
    assert rules.baskets == len(onehot)
    frequent = fpgrowth(onehot, min_support=0.02, use_colnames=True, max_len=3)
    expected = association_rules(frequent, num_itemsets=len(onehot), metric="confidence", min_threshold=0.2)
    expected = expected[(expected["consequents"].map(len) == 1) & (expected["antecedents"].map(len) <= 2)]
    assert len(expected) > 20
    expected = expected.assign(
        key=[(tuple(sorted(a)), next(iter(c))) for a, c in zip(expected["antecedents"], expected["consequents"])]
    ).set_index("key")
    ours = rules.rules.assign(
        key=[
            (tuple(sorted(x for x in (a, b) if x)), c)
            for a, b, c in zip(rules.rules["antecedent_id"], rules.rules["antecedent2_id"], rules.rules["consequent_id"])
        ]
    ).set_index("key")
    assert set(ours.index) == set(expected.index)
    for column in ("support", "confidence", "lift", "leverage", "conviction"):
        np.testing.assert_allclose(ours[column].to_numpy(), expected.loc[ours.index, column].to_numpy(), rtol=1e-9)


def test_the_sample_report_lists_strong_rules_once_with_titles(sample):
    events, items = sample.events, sample.items
    rules = basket_rules(events, items, min_support=0.01)
    ids = items["item_id"].astype(str).to_numpy()
    table = rules.rules
    assert (ids[table["antecedent_row"]] == table["antecedent_id"]).all()
    assert (ids[table["consequent_row"]] == table["consequent_id"]).all()
    assert (table["consequent_row"] != table["antecedent_row"]).all() and (table["consequent_row"] != table["antecedent2_row"]).all()
    assert (table["baskets"] >= rules.min_count).all() and rules.min_count >= 3
    np.testing.assert_allclose(table["support"], table["baskets"] / rules.baskets)
    report = json.loads(json.dumps(rules.report()))
    assert report["rules"] == len(table) > 0
    assert report["rules_one_item_antecedent"] + report["rules_two_item_antecedent"] == report["rules"]
    top = report["top_rules_by_lift"]
    assert 0 < len(top) <= 10
    assert all(entry["support"] >= report["top_rules_min_support"] - 1e-5 for entry in top)
    assert [entry["lift"] for entry in top] == sorted((entry["lift"] for entry in top), reverse=True)
    titles = set(items["title"])
    assert all(entry["consequent"] in titles and set(entry["antecedent"]) <= titles for entry in top)
    itemsets = [frozenset(entry["antecedent"] + [entry["consequent"]]) for entry in top]
    assert len(set(itemsets)) == len(itemsets)  # A → B and B → A listed once
    # A shopper's last invoice: the relevant rules add items the invoice lacks.
    invoice = events[events["session_id"] == events["session_id"].iloc[0]]
    rows = pd.Series(np.arange(len(items)), index=items["item_id"]).loc[invoice["item_id"].unique()].to_numpy()
    for _, found in rules.relevant(rows).iterrows():
        assert found["consequent_row"] not in rows and found["antecedent_row"] in rows
