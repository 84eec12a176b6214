"""Who was shown what in a campaign: how much of it went to the long tail, and per segment the
messages, shoppers, items and discounts. Reported beside the price audit, never a violation:
a recommender that shows only best-sellers, or one segment that gets every discount, is for a
person to judge (Algorithmic Recommendation Provisions Art. 21 asks that it be visible)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from services.campaigns.outbox_rows import CampaignRows, shopper_count

# The head: the best-selling items that together make up this share of purchases.
HEAD_SHARE = 0.8
DISCOUNTED = 0.005 + 1e-9  # a discount under half a cent is float noise


def read_items(campaign: CampaignRows, artifacts: Path | None) -> tuple[pd.DataFrame | None, Path | None, list[str]]:
    """The campaign's build's items table (item_id and buyers or popularity), where it was
    found, and a note when it was not: exposure then goes without the long tail."""
    from services.artifacts import BUILDS, FILES  # imports the index libraries: only when auditing

    roots = [Path(root) for root in (artifacts, campaign.settings.get("artifacts")) if root]
    if not roots:
        return None, None, ["long tail: not available (campaign.json names no artifacts folder; give --artifacts)"]
    build_id = campaign.build_id
    # Each root may be an artifacts folder (builds/<build_id> under it) or the build itself.
    candidates = [path for root in roots for path in
                  ([root / BUILDS / build_id / FILES["items"]] if build_id else []) + [root / FILES["items"]]]
    for path in candidates:
        if path.is_file():
            columns = pq.read_schema(path).names
            wanted = [c for c in ("item_id", "buyers", "popularity") if c in columns]
            if "item_id" not in wanted or len(wanted) < 2:
                return None, path, [f"long tail: not available ({path} has no buyers or popularity column)"]
            items = pd.read_parquet(path, columns=wanted)
            items["item_id"] = items["item_id"].astype(str)
            return items, path, []
    looked = " or ".join(str(path) for path in candidates)
    return None, None, [f"long tail: not available (no items table of build {build_id or '?'} at {looked})"]


def long_tail_items(items: pd.DataFrame) -> frozenset[str] | None:
    """The items outside the head (the fewest best-sellers that make up HEAD_SHARE of
    purchases, counted as distinct buyers per item); None when the build records none.
    An item the build does not list is long tail too: it sold nothing there."""
    weight = "buyers" if "buyers" in items else "popularity"
    ordered = items.assign(w=items[weight].fillna(0).clip(lower=0)).sort_values(["w", "item_id"], ascending=[False, True])
    total = ordered["w"].sum()
    if total <= 0:
        return None
    before = (ordered["w"].cumsum() - ordered["w"]) / total  # the share sold by the items above this one
    return frozenset(ordered["item_id"][before >= HEAD_SHARE - 1e-12])


def campaign_exposure(rows: pd.DataFrame, ranked: pd.DataFrame, long_tail: frozenset[str] | None,
                      items: pd.DataFrame | None) -> dict:
    """Exposure of the whole campaign and of each segment (shares None without a long tail)."""
    known = None if items is None else set(items["item_id"])
    tail = (lambda ids: ids.isin(long_tail) | ~ids.isin(known)) if long_tail is not None else None
    headline_tail = tail(rows["item_id"]) if tail else None
    ranked_tail = tail(ranked["item_id"]) if tail else None
    discount = (rows["price"] - rows["offered_price"]).clip(lower=0).fillna(0)  # an unpriced item: no discount
    currencies = sorted(rows["currency"].unique()) if len(rows) else []
    catalog = len(items) if items is not None else None
    out = {
        "long_tail_defined_as": f"items outside the head: the best-selling items that together make up "
                                f"{HEAD_SHARE:.0%} of purchases (distinct buyers per item in the build)",
        "catalog_items": catalog,
        "long_tail_items": None if long_tail is None else len(long_tail),
        "catalog_long_tail_share": share(len(long_tail), catalog) if long_tail is not None and catalog else None,
        "messages": len(rows),
        "shoppers": shopper_count(rows["user_id"]),
        "headline_items": int(rows["item_id"].nunique()),
        "ranked_items": int(ranked["item_id"].nunique()),
        "items_not_in_build": None if known is None else len(set(ranked["item_id"].unique()).union(rows["item_id"].unique()) - known),
        "headline_long_tail_share": mean(headline_tail),
        "ranked_long_tail_share": mean(ranked_tail),
        "currency": currencies[0] if len(currencies) == 1 else ("mixed: " + ", ".join(currencies) if currencies else ""),
        "discounted_share": mean(discount > DISCOUNTED),
        "segments": [],
    }
    segment_of_ranked = rows["segment"].to_numpy()[ranked["message"].to_numpy(dtype=np.int64)] if len(ranked) else np.array([])
    for segment, group in rows.groupby("segment", sort=False):
        at = group.index
        in_ranked = segment_of_ranked == segment
        price = group["price"]
        out["segments"].append({
            "segment": segment or "(none)",
            "messages": len(group),
            "shoppers": shopper_count(group["user_id"]),
            "items": int(group["item_id"].nunique()),
            "long_tail_share": mean(headline_tail[at]) if tail else None,
            "ranked_long_tail_share": mean(ranked_tail[in_ranked]) if tail else None,
            "discounted_share": mean(discount[at] > DISCOUNTED),
            "mean_discount": mean(discount[at]),
            "mean_discount_percent": mean((discount[at] / price)[price > 0] * 100),
        })
    out["segments"].sort(key=lambda s: (-s["messages"], s["segment"]))
    return out


def mean(values) -> float | None:
    return None if values is None or len(values) == 0 else float(np.mean(values))


def share(part: int, whole: int) -> float | None:
    return part / whole if whole else None
