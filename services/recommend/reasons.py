"""Why an item is on a shopper's list, in words a shopper understands, from the sources that
found it and its strongest features."""

from __future__ import annotations

import math
from datetime import date

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
    rules = snapshot.signals.rules
    missing = [position for position, link in enumerate(links) if link is None]
    if missing and len(own) and rules.lift_matrix.nnz:
        block = rules.lifts_between(own, np.asarray(rows)[missing])
        best, highest = block.argmax(axis=0).tolist(), block.max(axis=0).tolist()
        for column, position in enumerate(missing):
            if highest[column] > 1.0:
                links[position] = int(own[best[column]])
    return links


def explain(
    snapshot: Snapshot,
    shopper: Shopper,
    candidates: CandidateSet,
    positions: np.ndarray,
    features: np.ndarray,
    links: list[int | None],
) -> list[tuple[str, ...]]:
    """The reasons for each candidate at `positions`. `features`: every candidate's features;
    `links`: what co_purchase_links found for each of those candidates."""
    titles, h = snapshot.titles, snapshot.history
    rows = candidates.rows[positions].tolist()
    # The features as Python floats (exact copies of the float32 values): a list's items cost
    # less to read than numpy scalars, item after item.
    chosen = features[positions]
    baskets, interval, days_since, interest, recent_rank = (
        chosen[:, _F[name]].tolist() for name in ("bought_baskets", "own_interval", "days_since_bought", "interest_events", "recent_rank")
    )
    selling_fast = snapshot.signals.selling_fast[rows].tolist()
    buyers = h.item_buyers[rows].tolist()
    never_bought = [b == 0 or math.isnan(b) for b in baskets]
    similar = _closest(snapshot, shopper, [row for row, never in zip(rows, never_bought) if never])
    recent_days = snapshot.config.ranking.recent_days
    popular = "popular this month" if 28 <= recent_days <= 31 else f"popular in the last {recent_days:g} days"
    explained = []
    for i, (position, row, link) in enumerate(zip(positions.tolist(), rows, links)):
        reasons: list[str] = []
        if baskets[i] >= 2 and math.isfinite(interval[i]) and interval[i] >= 1:
            reasons.append(f"you order this about every {every(interval[i])}")
        elif baskets[i] >= 1:
            reasons.append(f"you bought this on {_day_before(h.as_of, days_since[i])}")
        elif interest[i] > 0:
            reasons.append("you looked at this recently")
        sources = candidates.sources_of(position)
        if "co_purchase" in sources or "rules" in sources:
            if link is not None and link != row:
                reasons.append(f"often bought with {titles[link]}")
        if never_bought[i] and similar[row]:
            reasons.append(similar[row])
        if selling_fast[i]:
            reasons.append("selling fast")
        if math.isfinite(recent_rank[i]) and recent_rank[i] <= POPULAR_THIS_MONTH_RANK:
            reasons.append(popular)
        if not reasons and buyers[i] > 0:
            reasons.append(f"popular: bought by {int(buyers[i])} shoppers")
        explained.append(tuple(reasons[:MAX_REASONS]) or ("picked for you",))
    return explained


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DAY_NS = 86_400 * 1_000_000_000


def _day_before(as_of: pd.Timestamp, days: float) -> str:
    """(as_of − pd.Timedelta(days=days)).date().isoformat(), without making the two pandas
    objects (~20 µs an item): that Timedelta is int(days × 24 × 3600 × 10⁹) ns, truncated, and
    the day of a naive Timestamp is its nanoseconds since the epoch (.value) floored to days."""
    if as_of.tzinfo is not None:  # a day in a time zone: pandas's calendar
        return (as_of - pd.Timedelta(days=days)).date().isoformat()
    ns = int(days * 24 * 3600 * 1_000_000_000)
    return date.fromordinal(_EPOCH_ORDINAL + (as_of.value - ns) // _DAY_NS).isoformat()


def _closest(snapshot: Snapshot, shopper: Shopper, rows: list[int]) -> dict[int, str | None]:
    """For each row: 'similar to X you bought' (or 'you viewed' for a session's context item),
    or None."""
    similar: dict[int, str | None] = dict.fromkeys(rows)
    if not rows:
        return similar
    vectors, titles = snapshot.item_vectors, snapshot.titles
    bought = snapshot.history.acquired(shopper.user_row) if shopper.user_row is not None else np.empty(0, np.int64)
    settled = np.zeros(len(rows), dtype=bool)
    if len(bought):
        # Every row against every bought item in one product, where one product per row was
        # taken before. The sums round differently, but a float32 dot product of unit vectors
        # of d dimensions is within γ = d·2⁻²⁴/(1 − d·2⁻²⁴) of the exact value in any order of
        # summing, so the two ways differ by at most 2γ: a winner ahead of the runner-up by
        # more than 4γ, and more than 2γ from the threshold, is the same either way (8·d·2⁻²⁴
        # leaves room for vectors a little off unit length). The other rows (near ties, near
        # the threshold) are computed one by one, as before.
        similarity = np.asarray(vectors[rows]) @ np.asarray(vectors[bought]).T
        best = similarity.argmax(axis=1)
        top = similarity[np.arange(len(rows)), best]
        second = np.partition(similarity, -2, axis=1)[:, -2] if len(bought) > 1 else np.full(len(rows), -np.inf)
        margin = 8 * vectors.shape[1] * 2.0**-24
        settled = (np.abs(top - SIMILAR_REASON_MIN) > margin) & ((top < SIMILAR_REASON_MIN) | (top - second > margin))
        # A row is never its own "similar" item: the one-by-one way leaves it out.
        bought_set = set(bought.tolist())
        settled &= np.array([row not in bought_set for row in rows])
        for row, b, high, done in zip(rows, best.tolist(), (top >= SIMILAR_REASON_MIN).tolist(), settled.tolist()):
            if done and high:
                similar[row] = f"similar to {titles[bought[b]]} you bought"
    for i, row in enumerate(rows):
        if similar[row] is not None:
            continue
        for others, verb in ((bought, "bought"), (shopper.context, "viewed")):
            if not len(others) or (verb == "bought" and settled[i]):  # settled: below the threshold
                continue
            others = others[others != row]
            if not len(others):
                continue
            similarity = np.asarray(vectors[others]) @ np.asarray(vectors[row])
            best = int(similarity.argmax())
            if similarity[best] >= SIMILAR_REASON_MIN:
                similar[row] = f"similar to {titles[others[best]]} you {verb}"
                break
    return similar
