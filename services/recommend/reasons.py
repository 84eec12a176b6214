"""Why an item is on a shopper's list, in words a shopper understands, from the sources that
found it and its strongest features."""

from __future__ import annotations

import numpy as np
import pandas as pd

from services.recommend.candidates import CandidateSet, Shopper
from services.recommend.features import FEATURES
from services.recommend.snapshot import Snapshot

# Below this cosine similarity, "similar to X you bought" is not a believable reason.
SIMILAR_REASON_MIN = 0.45
POPULAR_THIS_MONTH_RANK = 20
MAX_REASONS = 2

_F = {name: position for position, name in enumerate(FEATURES)}


def every(days: float) -> str:
    if days < 10:
        n = max(1, round(days))
        return f"{n} day" if n == 1 else f"{n} days"
    if days < 60:
        n = round(days / 7)
        return "week" if n == 1 else f"{n} weeks"
    n = round(days / 30.4)
    return "month" if n == 1 else f"{n} months"


def co_purchase_links(snapshot: Snapshot, shopper: Shopper, rows: np.ndarray) -> list[int | None]:
    """For each row, the shopper's (or the session's) item it is most often bought with: by
    co-baskets, else by the basket rule of highest lift."""
    own = np.concatenate([shopper.items, shopper.context])
    weights = np.concatenate([shopper.weights, np.full(len(shopper.context), max(1.0, float(shopper.weights.max(initial=0))))])
    links = snapshot.co_purchase.strongest_links(own, weights, rows)
    lifts = snapshot.signals.rules.lift_matrix
    missing = [position for position, link in enumerate(links) if link is None]
    if missing and len(own) and lifts.nnz:
        block = lifts[own][:, np.asarray(rows)[missing]].toarray()
        for column, position in enumerate(missing):
            if block[:, column].max() > 1.0:
                links[position] = int(own[block[:, column].argmax()])
    return links


def explain(
    snapshot: Snapshot, shopper: Shopper, candidates: CandidateSet, position: int, features: np.ndarray, link: int | None
) -> tuple[str, ...]:
    """`link`: the item co_purchase_links found for this candidate."""
    row = int(candidates.rows[position])
    sources = candidates.sources_of(position)
    titles, h = snapshot.titles, snapshot.history
    reasons: list[str] = []
    baskets = features[_F["bought_baskets"]]
    if baskets >= 2 and np.isfinite(features[_F["own_interval"]]) and features[_F["own_interval"]] >= 1:
        reasons.append(f"you order this about every {every(float(features[_F['own_interval']]))}")
    elif baskets >= 1:
        when = (h.as_of - pd.Timedelta(days=float(features[_F["days_since_bought"]]))).date().isoformat()
        reasons.append(f"you bought this on {when}")
    elif features[_F["interest_events"]] > 0:
        reasons.append("you looked at this recently")
    if "co_purchase" in sources or "rules" in sources:
        if link is not None and link != row:
            reasons.append(f"often bought with {titles[link]}")
    if baskets == 0 or np.isnan(baskets):
        similar = _closest(snapshot, shopper, row)
        if similar:
            reasons.append(similar)
    if snapshot.signals.selling_fast[row]:
        reasons.append("selling fast")
    recent_rank = features[_F["recent_rank"]]
    if np.isfinite(recent_rank) and recent_rank <= POPULAR_THIS_MONTH_RANK:
        days = snapshot.config.ranking.recent_days
        reasons.append("popular this month" if 28 <= days <= 31 else f"popular in the last {days:g} days")
    if not reasons and h.item_buyers[row] > 0:
        reasons.append(f"popular: bought by {int(h.item_buyers[row])} shoppers")
    return tuple(reasons[:MAX_REASONS]) or ("picked for you",)


def _closest(snapshot: Snapshot, shopper: Shopper, row: int) -> str | None:
    """'similar to X you bought' (or 'you viewed' for a session's context item)."""
    bought = snapshot.history.acquired(shopper.user_row) if shopper.user_row is not None else np.empty(0, np.int64)
    for rows, verb in ((bought, "bought"), (shopper.context, "viewed")):
        rows = rows[rows != row]
        if not len(rows):
            continue
        similarity = np.asarray(snapshot.item_vectors[rows]) @ np.asarray(snapshot.item_vectors[row])
        best = int(np.argmax(similarity))
        if similarity[best] >= SIMILAR_REASON_MIN:
            return f"similar to {snapshot.titles[rows[best]]} you {verb}"
    return None
