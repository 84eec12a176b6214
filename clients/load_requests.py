"""Request lists for load tests, made from a published build: Recommend for every shopper in
turn with a mix of k and filters, Rank of drawn items for every shopper in turn, Embed of
product titles (`tailor loadtest-requests`,
bench/bench_serving.py, bench/bench_flow.py). The run itself is clients/loadtest.py."""

from __future__ import annotations

from typing import Any

# Recommend request mix: which filter each request carries (weights sum to 1).
FILTER_MIX = {"none": 0.4, "category": 0.2, "max_price": 0.2, "exclude_purchased": 0.2}
K_RANGE = (5, 50)


class LoadTestError(Exception):
    """A setup problem, said in one line: unknown RPC, bad requests file or ramp, nothing listening."""




def recommend_requests(artifacts, n: int, seed: int = 0, skip_copy: bool = True) -> list[dict]:
    """n RecommendRequests (protobuf JSON) over the build's shoppers: each shopper in turn (one
    seeded shuffle, cycled), k from 5 to 50, and a filter mix: none, one category, a price cap,
    or exclude_purchased. ItemFilter has no lower price bound, so the price "range" is 0..max_price,
    the cap drawn between the catalogue's 25th and 90th price percentiles so lists stay full."""
    import numpy as np

    rng = np.random.default_rng(seed)
    user_ids = artifacts.users["user_id"].astype(str).to_numpy()
    if not len(user_ids):
        raise LoadTestError("the build has no shoppers")
    user_ids = user_ids[rng.permutation(len(user_ids))]
    items = artifacts.items
    # One draw per item, so a category comes up as often as it has items.
    categories = items["category"].fillna("").astype(str).str.strip()
    categories = categories[categories != ""].to_numpy()
    prices = items["price"].to_numpy(dtype=float)
    prices = prices[np.isfinite(prices) & (prices > 0)]
    kinds = [kind for kind in FILTER_MIX if (kind != "category" or len(categories)) and (kind != "max_price" or len(prices))]
    weights = np.array([FILTER_MIX[kind] for kind in kinds])
    price_low, price_high = np.percentile(prices, [25, 90]) if len(prices) else (0.0, 0.0)

    requests = []
    for i in range(n):
        request: dict[str, Any] = {"user_id": str(user_ids[i % len(user_ids)]), "k": int(rng.integers(K_RANGE[0], K_RANGE[1] + 1))}
        if skip_copy:
            request["skip_copy"] = True
        kind = kinds[rng.choice(len(kinds), p=weights / weights.sum())]
        if kind == "category":
            request["filter"] = {"categories": [str(categories[rng.integers(len(categories))])]}
        elif kind == "max_price":
            request["filter"] = {"max_price": round(float(rng.uniform(price_low, price_high)), 2)}
        elif kind == "exclude_purchased":
            request["exclude_purchased"] = True
        requests.append(request)
    return requests


def embed_requests(artifacts, texts_per_request: int, n: int, seed: int = 0) -> list[dict]:
    """n EmbedRequests of texts_per_request product titles each, titles in a seeded shuffle, cycled."""
    import numpy as np

    titles = artifacts.items["title"].fillna("").astype(str).str.strip()
    titles = titles[titles != ""].to_numpy()
    if not len(titles):
        raise LoadTestError("the build's catalogue has no titles")
    titles = titles[np.random.default_rng(seed).permutation(len(titles))]
    return [
        {"texts": [str(titles[(i * texts_per_request + j) % len(titles)]) for j in range(texts_per_request)]}
        for i in range(n)
    ]


def rank_requests(artifacts, n: int, candidates: int = 100, seed: int = 0) -> list[dict]:
    """n RankRequests: each shopper in turn (one seeded shuffle, cycled), `candidates` catalog
    items drawn without replacement for each, k from 5 to 50."""
    import numpy as np

    rng = np.random.default_rng(seed)
    user_ids = artifacts.users["user_id"].astype(str).to_numpy()
    item_ids = artifacts.items["item_id"].astype(str).to_numpy()
    if not len(user_ids) or not len(item_ids):
        raise LoadTestError("the build has no shoppers or no items")
    user_ids = user_ids[rng.permutation(len(user_ids))]
    size = min(candidates, len(item_ids))
    return [
        {
            "user_id": str(user_ids[i % len(user_ids)]),
            "item_ids": [str(x) for x in item_ids[rng.choice(len(item_ids), size, replace=False)]],
            "k": int(rng.integers(K_RANGE[0], K_RANGE[1] + 1)),
        }
        for i in range(n)
    ]
