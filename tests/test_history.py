"""Shop history and basket co-occurrence on crafted events, numbers checked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from services.insights.co_purchase import co_purchase
from services.insights.history import ShopHistory, shop_history

ITEMS = pd.DataFrame({"item_id": ["A", "B", "C", "D"], "title": ["a", "b", "c", "d"], "price": [1.0, 2.0, 4.0, 8.0]})


def events(rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "timestamp", "session_id"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    return frame.assign(quantity=2.0, price=frame["item_id"].map(ITEMS.set_index("item_id")["price"]), text="", rating=np.nan)


LOG = events(
    [
        ("u", "A", "purchase", "2024-01-01", "i1"),
        ("u", "B", "purchase", "2024-01-01", "i1"),
        ("u", "A", "purchase", "2024-01-11", "i2"),
        ("u", "A", "purchase", "2024-01-11", "i2"),  # the same basket twice: one basket
        ("u", "A", "purchase", "2024-01-21", "i3"),
        ("u", "C", "view", "2024-01-21", ""),
        ("v", "A", "purchase", "2024-01-15", "i4"),
        ("v", "B", "purchase", "2024-01-15", "i4"),
        ("v", "C", "purchase", "2024-01-15", "i4"),
        ("w", "D", "purchase", "2024-01-20", "i5"),  # a basket of one item: no pairs
        ("u", "D", "purchase", "2024-03-01", "i9"),  # after as_of: unseen
    ]
)
AS_OF = pd.Timestamp("2024-01-31")


def test_history_counts_baskets_intervals_and_recency():
    h = shop_history(LOG, ITEMS, AS_OF)
    assert list(h.user_ids) == ["u", "v", "w"]
    u = h.user_row("u")
    pairs = h.pairs_of(u)
    by_item = {int(i): p for i, p in zip(h.pair_item[pairs], range(pairs.start, pairs.stop))}
    a, c = by_item[0], by_item[2]
    assert h.pair_baskets[a] == 3 and h.pair_quantity[a] == 8.0  # i2 holds two lines of A
    assert h.pair_interval[a] == pytest.approx(10.0) and h.pair_days_since[a] == pytest.approx(10.0)
    assert h.pair_baskets[c] == 0 and h.pair_interest[c] == 1 and np.isnan(h.pair_days_since[c])
    assert 3 not in by_item, "events after as_of are unseen"
    assert h.acquired(u).tolist() == [0, 1]
    # Items: A bought by u (3 baskets) and v (1): half its buyers re-order it.
    assert h.item_buyers.tolist() == [2, 2, 1, 1]
    assert h.item_reorder_share[0] == pytest.approx(0.5) and h.item_repeat_buyers[0] == 1
    assert h.item_interval[0] == pytest.approx(10.0) and np.isnan(h.item_interval[1])
    assert h.reorderable(0.5, 1).tolist() == [True, False, False, False]
    # Users: u has 3 baskets, last 10 days ago, spent 2·(1+2) + 2·2·1 + 2·1.
    assert h.user_baskets[u] == 3 and h.user_days_since[u] == pytest.approx(10.0)
    assert h.user_spend[u] == pytest.approx(12.0) and h.user_items[u] == 2


def test_history_survives_its_tables():
    h = shop_history(LOG, ITEMS, AS_OF)
    tables = h.tables()
    again = ShopHistory.from_tables(tables["pairs"], tables["items"], tables["users"])
    assert again.as_of == h.as_of
    for name in ("pair_start", "pair_item", "pair_baskets", "item_buyers", "item_trend", "user_baskets"):
        np.testing.assert_array_equal(getattr(again, name), getattr(h, name))


def test_recent_window_and_trend():
    assert shop_history(LOG, ITEMS, AS_OF, recent_days=12).item_recent_buyers.tolist() == [1, 0, 0, 1]  # u's A, w's D
    h = shop_history(LOG, ITEMS, AS_OF, recent_days=17)
    assert h.item_recent_buyers.tolist() == [2, 1, 1, 1]  # v's basket of 2024-01-15 too
    assert (h.item_trend > 0).all()


def test_co_purchase_support_confidence_and_lift():
    co = co_purchase(LOG[LOG["timestamp"] < AS_OF], ITEMS)
    # Baskets with two or more items: i1 {A, B} and i4 {A, B, C}.
    assert co.baskets == 2
    table = co.table().set_index(["item_row", "neighbour_row"])
    ab = table.loc[(0, 1)]
    assert ab["co_baskets"] == 2 and ab["support"] == pytest.approx(1.0)
    assert ab["confidence"] == pytest.approx(1.0) and ab["lift"] == pytest.approx(1.0)
    ac = table.loc[(0, 2)]
    assert ac["co_baskets"] == 1 and ac["confidence"] == pytest.approx(0.5) and ac["lift"] == pytest.approx(1.0)
    assert (3, 0) not in table.index and (0, 3) not in table.index, "a one-item basket pairs nothing"
    summed = co.neighbours(np.array([1.0, 0, 0, 0]))
    assert summed[1] > summed[2] > 0 and summed[3] == 0
    assert co.strongest_links(np.array([0, 1]), np.array([1.0, 3.0]), np.array([2])) == [1]
