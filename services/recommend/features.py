"""Features of (shopper, candidate item) pairs: what the learned ranker reads.

One function computes them for training (at the internal cut) and for serving (at the end of
the log), so a feature means the same in both. Missing values are NaN (LightGBM treats them
as missing, not as zero): a shopper who never bought the item has no re-order interval.
"""

from __future__ import annotations

import numpy as np

from services.recommend.candidates import SOURCE_NAMES, CandidateSet, Shopper
from services.recommend.snapshot import Snapshot

FEATURES: tuple[str, ...] = (
    *(f"{name}_score" for name in SOURCE_NAMES),
    *(f"{name}_rank" for name in SOURCE_NAMES),
    "sources",                  # how many sources found the item
    "bought_baskets",           # baskets in which the shopper bought the item
    "bought_quantity",
    "basket_share",             # ... over the shopper's baskets
    "days_since_bought",
    "own_interval",             # the shopper's mean days between re-orders of the item
    "own_due",                  # days since bought / own interval (≈1: due again)
    "item_interval",            # the shop's median re-order interval of the item
    "item_due",                 # days since bought / item interval
    "item_reorder_share",       # share of the item's buyers who re-order it
    "interest_events",          # views, carts, searches of the item by the shopper
    "item_buyers",              # log1p distinct buyers
    "item_recent_buyers",       # log1p distinct buyers in the recent window
    "trending",                 # insights.trends: log(forecast / recent weekly baskets)
    "rule_lift",                # highest lift of a basket rule from the shopper's items to it
    "category_affinity",        # share of the shopper's bought (item, basket) lines in the item's category
    "als_affinity",             # ALS shopper factor · item factor
    "ann_similarity",           # cosine of the profile (or context) vector and the item vector
    "context_similarity",       # best cosine to one of the session's context items
    "price",                    # log1p price
    "price_vs_usual",           # log(price / the shopper's median price paid)
    "user_baskets",             # log1p
    "user_days_since",
    "user_spend",               # log1p
    "user_items",               # log1p distinct items
    # The shopper's segment archetype (insights.segments; a code stable across fits). A label,
    # but declared to LightGBM as categorical it measured lower on `tailor evaluate` (UCI
    # NDCG@10 0.3755 against 0.3781 as a number), so it stays a number.
    "segment",
    "propensity",               # the shopper's probability of buying within the horizon
)


def candidate_features(snapshot: Snapshot, shopper: Shopper, candidates: CandidateSet) -> np.ndarray:
    """[len(candidates), len(FEATURES)] float32."""
    rows = candidates.rows
    n = len(rows)
    h = snapshot.history
    nan = np.full(n, np.nan)

    signals = snapshot.signals
    bought, quantity, days_since, own_interval, interest = nan.copy(), nan.copy(), nan.copy(), nan.copy(), np.zeros(n)
    user = dict(baskets=np.nan, days=np.nan, spend=np.nan, items=np.nan, price=np.nan, segment=np.nan, propensity=np.nan)
    category_affinity = nan.copy()
    if shopper.user_row is not None:
        u = shopper.user_row
        pairs = h.pairs_of(u)
        pair_items = h.pair_item[pairs]  # sorted: pairs are kept in item order per shopper
        position = np.searchsorted(pair_items, rows)
        position = np.minimum(position, max(len(pair_items) - 1, 0))
        hit = (pair_items[position] == rows) if len(pair_items) else np.zeros(n, bool)
        where = pairs.start + position[hit]
        bought = np.zeros(n)  # a known shopper who never bought the item: 0, not missing
        bought[hit] = h.pair_baskets[where]
        quantity = np.zeros(n)
        quantity[hit] = h.pair_quantity[where]
        days_since[hit] = h.pair_days_since[where]
        own_interval[hit] = h.pair_interval[where]
        interest[hit] = h.pair_interest[where]
        user = dict(
            baskets=h.user_baskets[u],
            days=h.user_days_since[u],
            spend=h.user_spend[u],
            items=h.user_items[u],
            price=h.user_price[u],
            segment=signals.segment_archetype[u],
            propensity=signals.propensity[u],
        )
        baskets_by_category = np.bincount(
            signals.item_category[pair_items], weights=h.pair_baskets[pairs], minlength=int(signals.item_category.max(initial=0)) + 1
        )
        total = baskets_by_category.sum()
        if total > 0:
            category_affinity = baskets_by_category[signals.item_category[rows]] / total
    item_interval = h.item_interval[rows]
    with np.errstate(divide="ignore", invalid="ignore"):
        own_due = days_since / own_interval
        item_due = days_since / item_interval
        basket_share = bought / user["baskets"] if user["baskets"] and user["baskets"] > 0 else nan
        prices = snapshot.prices[rows]
        price_vs_usual = np.log(prices / user["price"]) if np.isfinite(user["price"]) and user["price"] > 0 else nan
    price_vs_usual = np.where(np.isfinite(price_vs_usual), price_vs_usual, np.nan)

    vectors = np.asarray(snapshot.item_vectors[rows], dtype=np.float32)
    ann_similarity = vectors @ shopper.vector if shopper.vector is not None else nan
    context_similarity = (
        (vectors @ np.asarray(snapshot.item_vectors[shopper.context], dtype=np.float32).T).max(axis=1)
        if len(shopper.context)
        else nan
    )
    # Written column by column into the float32 matrix (the cast is the one astype makes);
    # a shopper's own figures are the same on every row.
    sources = len(SOURCE_NAMES)
    out = np.empty((n, len(FEATURES)), dtype=np.float32)
    out[:, :sources] = candidates.scores
    out[:, sources : 2 * sources] = candidates.ranks
    columns = [
        (~np.isnan(candidates.ranks)).sum(axis=1),
        bought,
        quantity,
        basket_share,
        days_since,
        own_interval,
        own_due,
        item_interval,
        item_due,
        h.item_reorder_share[rows],
        interest,
        np.log1p(h.item_buyers[rows]),
        np.log1p(h.item_recent_buyers[rows]),
        signals.trending[rows],
        signals.rules.lift_to(np.concatenate([shopper.items[shopper.weights > 0], shopper.context]), rows),
        category_affinity,
        snapshot.factors.affinity(shopper.user_row, rows) if shopper.user_row is not None else nan,
        ann_similarity,
        context_similarity,
        np.log1p(np.where(prices >= 0, prices, np.nan)),
        price_vs_usual,
        np.log1p(user["baskets"]),
        user["days"],
        np.log1p(user["spend"]) if np.isfinite(user["spend"]) and user["spend"] >= 0 else np.nan,
        np.log1p(user["items"]),
        user["segment"],
        user["propensity"],
    ]
    for j, column in enumerate(columns, start=2 * sources):
        out[:, j] = column
    return out
