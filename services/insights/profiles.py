"""Per-user profiles from the event log: vector, purchase history, interests, popularity.

Everything is vectorised over the whole log (pandas + scipy.sparse), so the full UCI file
(~400k kept events) profiles in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer

from services.config import ProfileConfig

# Events that say the user wants the item, and how much each counts in the user vector
# (views and carts are scaled by ProfileConfig.view_weight). Returns count against nothing:
# a returned item is still a sign of taste, but not one we weight.
POSITIVE_EVENTS = {"purchase": 1.0, "review": 1.0, "cart": 1.0, "view": 1.0, "search": 1.0}
WEAK_EVENTS = {"view", "cart", "search"}
# Events after which an item counts as owned: never recommend it again.
OWNED_EVENTS = ("purchase", "review")

# Words that describe packaging or size, not taste.
NON_INTEREST_WORDS = frozenset(
    {"set", "pack", "box", "small", "large", "mini", "jumbo", "assorted", "design", "of", "and",
     "with", "gift", "card", "piece", "pcs", "size", "new", "vintage"}
)


@dataclass(frozen=True)
class ProfileSummary:
    purchase_count: int
    distinct_items: int
    interests: tuple[str, ...]
    last_purchase_date: str  # ISO date, "" if the user never bought
    total_spend: float
    currency: str


def summarise(user: pd.Series) -> ProfileSummary:
    """The short, human-readable profile of one row of the users table."""
    last = user["last_purchase"]
    return ProfileSummary(
        purchase_count=int(user["purchase_count"]),
        distinct_items=int(user["distinct_items"]),
        interests=tuple(user["interests"]),
        last_purchase_date="" if pd.isna(last) else pd.Timestamp(last).date().isoformat(),
        total_spend=float(user["total_spend"]),
        currency=str(user["currency"]),
    )


@dataclass
class Profiles:
    users: pd.DataFrame          # one row per user; row i ↔ vectors[i]
    vectors: np.ndarray          # float32, L2-normalised (zero for a user with no positive event)
    purchases: pd.DataFrame      # user_id, item_id, times, last_at: what each user owns
    popularity: pd.DataFrame     # item_id, buyers, popularity in [0, 1]


def event_weights(events: pd.DataFrame, config: ProfileConfig) -> np.ndarray:
    kind = events["event_type"]
    weight = np.array(kind.map(POSITIVE_EVENTS).fillna(0.0), dtype=np.float64)  # writable copy
    weight[kind.isin(WEAK_EVENTS).to_numpy()] *= config.view_weight
    # Low-rated reviews say the user did not like it.
    rating = pd.to_numeric(events["rating"], errors="coerce").to_numpy()
    weight[(kind == "review").to_numpy() & (rating < 3)] = 0.0
    # Recency: halve the weight every half-life before the user's own last event. Only ratios
    # within a user matter (the vector is normalised), and measuring from the user's end keeps a
    # shopper whose activity is all years old from underflowing to a zero vector.
    user_end = events.groupby("user_id")["timestamp"].transform("max")
    age_days = (user_end - events["timestamp"]).dt.total_seconds().to_numpy() / 86_400.0
    return weight * np.power(0.5, age_days / config.recency_half_life_days)


def build_profiles(
    items: pd.DataFrame, item_vectors: np.ndarray, events: pd.DataFrame, config: ProfileConfig
) -> Profiles:
    user_ids = np.sort(events["user_id"].unique())
    vectors = user_vectors(user_ids, items, item_vectors, events, config)

    owned = events[events["event_type"].isin(OWNED_EVENTS)]
    purchases = (
        owned.groupby(["user_id", "item_id"], sort=True)
        .agg(times=("timestamp", "size"), last_at=("timestamp", "max"))
        .reset_index()
    )
    users = summarise_users(user_ids, events, items)
    liked = events[events["event_type"].isin(POSITIVE_EVENTS)]
    users["interests"] = interest_tags(user_ids, liked, items, config.interest_tags)
    return Profiles(users=users, vectors=vectors, purchases=purchases, popularity=item_popularity(items, events))


def user_vectors(
    user_ids: np.ndarray, items: pd.DataFrame, item_vectors: np.ndarray, events: pd.DataFrame, config: ProfileConfig
) -> np.ndarray:
    """Row i: the recency-weighted mean of the vectors of what user_ids[i] bought or viewed, L2-normalised."""
    item_row = pd.Series(np.arange(len(items)), index=items["item_id"].to_numpy())
    user_row = pd.Series(np.arange(len(user_ids)), index=user_ids)
    events = events[events["user_id"].isin(user_row.index)]
    rows = user_row.loc[events["user_id"].to_numpy()].to_numpy()
    cols = item_row.loc[events["item_id"].to_numpy()].to_numpy()
    weights = event_weights(events, config)
    interactions = sparse.csr_matrix((weights, (rows, cols)), shape=(len(user_ids), len(items)))
    summed = interactions @ np.asarray(item_vectors, dtype=np.float64)
    norms = np.linalg.norm(summed, axis=1, keepdims=True)
    return np.divide(summed, norms, out=np.zeros_like(summed), where=norms > 0).astype(np.float32)


def summarise_users(user_ids: np.ndarray, events: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    bought = events[events["event_type"] == "purchase"]
    # An order is a session (invoice); events without a session count one each.
    orders = bought["session_id"].where(bought["session_id"].astype(bool), bought.index.astype(str))
    spend = bought["quantity"].fillna(1.0) * bought["price"].fillna(0.0)
    per_user = pd.DataFrame(
        {
            "user_id": bought["user_id"],
            "order": orders,
            "spend": spend,
            "item_id": bought["item_id"],
            "timestamp": bought["timestamp"],
        }
    ).groupby("user_id")
    summary = pd.DataFrame(index=pd.Index(user_ids, name="user_id"))
    summary["purchase_count"] = per_user["order"].nunique()
    summary["purchase_lines"] = per_user.size()
    summary["distinct_items"] = per_user["item_id"].nunique()
    summary["total_spend"] = per_user["spend"].sum().round(2)
    summary["last_purchase"] = per_user["timestamp"].max()
    by_user = events.groupby("user_id")["timestamp"]
    summary["first_event"] = by_user.min()
    summary["last_event"] = by_user.max()
    summary["events"] = by_user.size()
    currency = items["currency"].replace("", np.nan).dropna()
    summary["currency"] = currency.mode().iloc[0] if len(currency) else ""
    for column in ("purchase_count", "purchase_lines", "distinct_items", "events"):
        summary[column] = summary[column].fillna(0).astype(np.int64)
    summary["total_spend"] = summary["total_spend"].fillna(0.0)
    return summary.reset_index()


def interest_tags(user_ids: np.ndarray, owned: pd.DataFrame, items: pd.DataFrame, top: int) -> list[list[str]]:
    """The user's most distinctive words over the titles of what they bought, viewed or liked (TF-IDF)."""
    titles = items.set_index("item_id")["title"]
    documents = (
        owned.assign(title=titles.reindex(owned["item_id"]).fillna("").to_numpy())
        .groupby("user_id")["title"]
        .agg(" ".join)
        .reindex(user_ids, fill_value="")
    )
    vectorizer = TfidfVectorizer(
        lowercase=True,
        token_pattern=r"(?u)\b[^\W\d_]{3,}\b",
        stop_words=list(ENGLISH_STOP_WORDS | NON_INTEREST_WORDS),
        sublinear_tf=True,
    )
    try:
        matrix = vectorizer.fit_transform(documents.to_numpy()).tocsr()
    except ValueError:  # no words at all (e.g. titles that are only codes)
        return [[] for _ in user_ids]
    vocabulary = vectorizer.get_feature_names_out()
    tags: list[list[str]] = []
    for row in range(matrix.shape[0]):
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        scores, columns = matrix.data[start:end], matrix.indices[start:end]
        best = columns[np.argsort(-scores, kind="stable")[:top]]
        tags.append([str(vocabulary[c]) for c in best])
    return tags


def item_popularity(items: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Distinct buyers (or reviewers) per item, log-scaled to [0, 1]."""
    owned = events[events["event_type"].isin(OWNED_EVENTS)]
    buyers = owned.groupby("item_id")["user_id"].nunique().reindex(items["item_id"], fill_value=0)
    scaled = np.log1p(buyers.to_numpy(dtype=np.float64))
    peak = scaled.max() if len(scaled) else 0.0
    popularity = scaled / peak if peak > 0 else np.zeros_like(scaled)
    return pd.DataFrame({"item_id": items["item_id"].to_numpy(), "buyers": buyers.to_numpy(), "popularity": popularity})
