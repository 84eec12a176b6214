"""Per-shopper profiles from the event log: the user vector, what they own, recency /
frequency / monetary value with quintile scores, interest tags, category and price-band
affinity; and item popularity.

Every shopper with any event gets a row, a one-event shopper included.

Weighted activity: each event weighs what it weighs in the user vector (event_weights:
purchases, good reviews 1; views, carts and searches ProfileConfig.view_weight; halved every
recency half-life before the shopper's last event). Category and price-band affinity and the
interest terms are shares of it. A shopper whose every event weighs nothing (only returns,
low-rated reviews) is described by all their events, unweighted, instead.

Everything is vectorised over the whole log (pandas + scipy.sparse), so the full UCI file
(~400k events) profiles in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse

from services.config import ProfileConfig
from services.insights.activity import shopper_activity
from services.insights.categories import ItemCategories, item_categories, term_matrix
from services.insights.history import baskets_of, positive_mask

# Events that say the user wants the item, and how much each counts in the user vector
# (views and carts are scaled by ProfileConfig.view_weight). Returns count against nothing:
# a returned item is still a sign of taste, but not one we weight.
POSITIVE_EVENTS = {"purchase": 1.0, "review": 1.0, "cart": 1.0, "view": 1.0, "search": 1.0}
WEAK_EVENTS = {"view", "cart", "search"}
# Events after which an item counts as owned: never recommend it again.
OWNED_EVENTS = ("purchase", "review")

# Price bands: the catalog's item prices cut at their terciles (items without a price are in none).
PRICE_BANDS = ("budget", "mid", "premium")
# The users table keeps each shopper's strongest categories, with their shares.
TOP_CATEGORIES = 3
# Interest tags: up to this many are category names (those with at least this share of the
# shopper's activity), the rest characteristic terms.
CATEGORY_TAGS = 2
CATEGORY_TAG_MIN_SHARE = 0.1
# A term must characterise at least this many shoppers to be a tag (InsightsConfig.tag_min_shoppers).
TAG_MIN_SHOPPERS = 3


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


class ProfileSummaries:
    """summarise() for any row of a users table, read from its columns as arrays: a pandas row
    costs most of a millisecond, which Recommend pays for every shopper it has not summarised yet."""

    def __init__(self, users: pd.DataFrame):
        self.purchase_count = users["purchase_count"].to_numpy()
        self.distinct_items = users["distinct_items"].to_numpy()
        self.interests = users["interests"].to_numpy()
        self.last_purchase = users["last_purchase"].to_numpy(dtype="datetime64[ns]")
        self.total_spend = users["total_spend"].to_numpy()
        # A handful of currencies for any number of shoppers: codes, not a string per row.
        self.currency_code, self.currencies = pd.factorize(users["currency"], use_na_sentinel=False)

    def of(self, row: int) -> ProfileSummary:
        last = self.last_purchase[row]
        return ProfileSummary(
            purchase_count=int(self.purchase_count[row]),
            distinct_items=int(self.distinct_items[row]),
            interests=tuple(self.interests[row]),
            last_purchase_date="" if np.isnat(last) else np.datetime_as_string(last, unit="D"),
            total_spend=float(self.total_spend[row]),
            currency=str(self.currencies[self.currency_code[row]]),
        )


@dataclass
class Profiles:
    # One row per user, row i ↔ vectors[i]: summarise_users' columns, activity.ACTIVITY_COLUMNS, PROFILE_COLUMNS.
    users: pd.DataFrame
    vectors: np.ndarray          # float32, L2-normalised (zero for a user with no positive event)
    purchases: pd.DataFrame      # user_id, item_id, times, last_at: what each user owns
    popularity: pd.DataFrame     # item_id, buyers, popularity in [0, 1]
    categories: pd.DataFrame = field(default_factory=pd.DataFrame)  # the category table the affinity refers to
    # users × categories (rows of `categories`): share of the shopper's weighted activity; a row sums to 1
    category_affinity: sparse.csr_matrix = field(default_factory=lambda: sparse.csr_matrix((0, 0)))
    price_edges: tuple[float, float] = (np.nan, np.nan)  # budget ≤ first < mid ≤ second < premium
    as_of: pd.Timestamp | None = None

    def report(self) -> dict:
        users = self.users
        buyers = users["frequency"] > 0 if "frequency" in users else pd.Series(dtype=bool)
        tagged = users["interests"].map(len) > 0 if len(users) else pd.Series(dtype=bool)
        return {
            "users": int(len(users)),
            "buyers": int(buyers.sum()),
            "non_buyers_scored_0": int((~buyers).sum()),
            "as_of": None if self.as_of is None else self.as_of.isoformat(),
            "with_tags": int(tagged.sum()),
            "mean_tags": round(float(users["interests"].map(len).mean()), 2) if len(users) else 0.0,
            "distinct_tags": int(users["interests"].explode().nunique()) if len(users) else 0,
            "categories": int(len(self.categories)),
            "price_edges": [None if np.isnan(e) else round(float(e), 2) for e in self.price_edges],
            "price_bands": {band: int((users["price_band"] == band).sum()) for band in PRICE_BANDS} if len(users) else {},
            "rfm_top": users.loc[buyers, "rfm"].value_counts().head(5).to_dict() if len(users) else {},
        }


# Columns the profile adds after the activity columns, what each holds.
PROFILE_COLUMNS: dict[str, str] = {
    "r_score": "recency quintile 1..5 over buyers (5 = most recent); 0 = never bought",
    "f_score": "frequency quintile 1..5 over buyers (5 = most baskets); 0 = never bought",
    "m_score": "monetary quintile 1..5 over buyers (5 = highest spend); 0 = never bought or no prices in the log",
    "rfm": 'the three scores as one code, e.g. "545"',
    "interests": "interest tags, strongest first: category names, then characteristic terms",
    "categories": f"the {TOP_CATEGORIES} strongest category ids",
    "category_names": "their names",
    "category_affinity": "their shares of the shopper's weighted activity",
    "price_band": 'where the shopper mostly buys: "budget", "mid", "premium" ("" when no item had a price)',
    "price_band_affinity": "shares of weighted activity in budget, mid, premium (zeros when no price)",
}


def event_weights(events: pd.DataFrame, config: ProfileConfig, user_rows: np.ndarray | None = None) -> np.ndarray:
    """The weight of each event in the user vector. `user_rows`: the events' user codes, when
    the caller has them (saves grouping by the user id strings again)."""
    kind = events["event_type"]
    weight = np.array(kind.map(POSITIVE_EVENTS).fillna(0.0), dtype=np.float64)  # writable copy
    weight[kind.isin(WEAK_EVENTS).to_numpy()] *= config.view_weight
    # Low-rated reviews say the user did not like it.
    rating = pd.to_numeric(events["rating"], errors="coerce").to_numpy()
    weight[(kind == "review").to_numpy() & (rating < 3)] = 0.0
    # Recency: halve the weight every half-life before the user's own last event. Only ratios
    # within a user matter (the vector is normalised), and measuring from the user's end keeps a
    # shopper whose activity is all years old from underflowing to a zero vector.
    seconds = events["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64) / 1e9
    if user_rows is None:
        user_rows = pd.factorize(events["user_id"])[0]
    user_end = np.full(int(user_rows.max()) + 1 if len(user_rows) else 0, -np.inf)
    np.maximum.at(user_end, user_rows, seconds)
    age_days = (user_end[user_rows] - seconds) / 86_400.0
    return weight * np.power(0.5, age_days / config.recency_half_life_days)


def user_vectors(
    user_ids: np.ndarray, items: pd.DataFrame, item_vectors: np.ndarray, events: pd.DataFrame, config: ProfileConfig
) -> np.ndarray:
    """Row i: the recency-weighted mean of the vectors of what user_ids[i] bought or viewed, L2-normalised."""
    rows = pd.Index(user_ids).get_indexer(events["user_id"])
    events, rows = events[rows >= 0], rows[rows >= 0]
    cols = pd.Index(items["item_id"]).get_indexer(events["item_id"])
    interactions = _user_item_matrix(rows, cols, event_weights(events, config, rows), len(user_ids), len(items))
    return _vectors_of(interactions, item_vectors)


def _user_item_matrix(rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, n_users: int, n_items: int) -> sparse.csr_matrix:
    """users × items, summing the weights of events on items of the catalog (cols ≥ 0)."""
    known = cols >= 0
    return sparse.csr_matrix((weights[known], (rows[known], cols[known])), shape=(n_users, n_items))


def _vectors_of(interactions: sparse.csr_matrix, item_vectors: np.ndarray) -> np.ndarray:
    summed = interactions @ np.asarray(item_vectors, dtype=np.float64)
    norms = np.linalg.norm(summed, axis=1, keepdims=True)
    return np.divide(summed, norms, out=np.zeros_like(summed), where=norms > 0).astype(np.float32)


def build_profiles(
    items: pd.DataFrame,
    item_vectors: np.ndarray,
    events: pd.DataFrame,
    config: ProfileConfig | None = None,
    categories: ItemCategories | None = None,
    as_of: pd.Timestamp | None = None,
    tag_min_shoppers: int = TAG_MIN_SHOPPERS,
    interest_tags: int | None = None,
) -> Profiles:
    """Profiles of every shopper in `events`. `categories`: the build's item categories
    (item_categories(items, item_vectors) when None); `as_of`: the moment recency is measured
    from (default: just after the last event); `interest_tags`: tags per shopper (default
    config.interest_tags)."""
    config = config or ProfileConfig()
    top_tags = interest_tags or config.interest_tags
    categories = categories if categories is not None else item_categories(items, item_vectors)
    as_of = pd.Timestamp(as_of) if as_of is not None else _end_of(events)
    rows, user_index = pd.factorize(events["user_id"], sort=True)
    user_ids = np.asarray(user_index, dtype=object)
    n_users, n_items = len(user_ids), len(items)
    cols = pd.Index(items["item_id"]).get_indexer(events["item_id"])

    weights = event_weights(events, config, rows)
    vectors = _vectors_of(_user_item_matrix(rows, cols, weights, n_users, n_items), item_vectors)
    # What describes the shopper: weighted activity, or all their events where that is nothing.
    weightless = np.bincount(rows, weights=weights, minlength=n_users) <= 0
    described = np.where(weightless[rows], 1.0, weights)
    activity = _user_item_matrix(rows, cols, described, n_users, n_items)

    owned = events[events["event_type"].isin(OWNED_EVENTS)]
    purchases = (
        owned.groupby(["user_id", "item_id"], sort=True)
        .agg(times=("timestamp", "size"), last_at=("timestamp", "max"))
        .reset_index()
    )
    users = summarise_users(user_ids, events, items, rows)
    scores = shopper_activity(events, as_of, user_ids)
    users = users.join(scores.drop(columns=[c for c in scores.columns if c in users.columns]), on="user_id")
    users = users.join(rfm_scores(scores), on="user_id")

    affinity, table = category_affinity(activity, categories)
    strongest = _top_per_row(affinity, TOP_CATEGORIES)
    names = table["name"].to_numpy(dtype=object)
    ids = table["category_id"].to_numpy(dtype=object)
    users["categories"] = [ids[c].tolist() for c, _ in strongest]
    users["category_names"] = [names[c].tolist() for c, _ in strongest]
    users["category_affinity"] = [np.round(s, 4).tolist() for _, s in strongest]
    # A derived cluster whose titles had no words is named "other": no tag.
    taggable = np.where((table["source"] == "shop") | (table["terms"].map(len) > 0), names, "")

    edges, band_shares = price_band_affinity(activity, items)
    band = np.array(PRICE_BANDS, dtype=object)[band_shares.argmax(axis=1)]
    users["price_band"] = np.where(band_shares.sum(axis=1) > 0, band, "")
    users["price_band_affinity"] = np.round(band_shares, 4).tolist()

    terms = interest_terms(events, rows, described, activity, items, tag_min_shoppers, top_tags)
    tag_names = [taggable[c].tolist() for c, _ in strongest]
    users["interests"] = interest_tags_of(tag_names, users["category_affinity"], terms, top_tags)
    return Profiles(
        users=users,
        vectors=vectors,
        purchases=purchases,
        popularity=item_popularity(items, events),
        categories=table,
        category_affinity=affinity,
        price_edges=edges,
        as_of=as_of,
    )


def _end_of(events: pd.DataFrame) -> pd.Timestamp:
    """Just after the last event, so that shopper_activity (strictly before as_of) sees it."""
    last = events["timestamp"].max() if len(events) else pd.NaT
    return (pd.Timestamp(last) if pd.notna(last) else pd.Timestamp("1970-01-01")) + pd.Timedelta(seconds=1)


def _l1_rows(matrix: sparse.spmatrix) -> sparse.csr_matrix:
    total = np.asarray(matrix.sum(axis=1)).ravel()
    scale = np.divide(1.0, total, out=np.zeros_like(total, dtype=np.float64), where=total > 0)
    return sparse.diags(scale) @ sparse.csr_matrix(matrix)


def rfm_scores(activity: pd.DataFrame) -> pd.DataFrame:
    """r_score, f_score, m_score in 1..5 and rfm ("545") for shoppers who bought; 0 and "000"
    for those who did not. A score is the quintile of the shopper's rank among buyers, ties
    sharing the lowest one (rank method "min"), so equal values always get equal scores (with
    many ties, e.g. 40% of buyers with one basket, the low quintiles merge). m_score is 0 for
    everyone when the log has no prices."""
    buyers = activity["frequency"] > 0
    n = int(buyers.sum())
    table = pd.DataFrame(0, index=activity.index, columns=["r_score", "f_score", "m_score"], dtype=np.int64)
    if n:
        bought = activity[buyers]
        for column, value in (
            ("r_score", -bought["recency_days"]),
            ("f_score", bought["frequency"]),
            ("m_score", bought["monetary"]),
        ):
            rank = value.rank(method="min").to_numpy()
            table.loc[buyers, column] = (np.floor(5 * (rank - 1) / n) + 1).astype(np.int64)
        if not (bought["monetary"] > 0).any():
            table["m_score"] = 0
    table["rfm"] = table["r_score"].astype(str) + table["f_score"].astype(str) + table["m_score"].astype(str)
    return table


def category_affinity(activity: sparse.csr_matrix, categories: ItemCategories) -> tuple[sparse.csr_matrix, pd.DataFrame]:
    """users × categories: each category's share of the shopper's activity (rows sum to 1, or
    to 0 for a shopper without an item event), and the category table it refers to."""
    table = categories.table.reset_index(drop=True)
    column = pd.Series(np.arange(len(table)), index=table["category_id"].to_numpy())
    item_column = column.reindex(categories.item_category).to_numpy()
    in_table = ~np.isnan(item_column)
    membership = sparse.csr_matrix(
        (np.ones(int(in_table.sum())), (np.flatnonzero(in_table), item_column[in_table].astype(np.int64))),
        shape=(activity.shape[1], len(table)),
    )
    return _l1_rows(activity @ membership), table


def price_band_affinity(activity: sparse.csr_matrix, items: pd.DataFrame) -> tuple[tuple[float, float], np.ndarray]:
    """The catalog's price terciles (over items with a price above 0) and users × PRICE_BANDS
    shares of activity on priced items (a row of zeros when none of them had a price)."""
    price = pd.to_numeric(items["price"], errors="coerce").to_numpy(dtype=np.float64) if "price" in items else np.full(len(items), np.nan)
    priced = np.isfinite(price) & (price > 0)
    if not priced.any():
        return (np.nan, np.nan), np.zeros((activity.shape[0], len(PRICE_BANDS)))
    low, high = np.quantile(price[priced], [1 / 3, 2 / 3])
    band = np.where(price <= low, 0, np.where(price <= high, 1, 2))
    membership = sparse.csr_matrix(
        (np.ones(int(priced.sum())), (np.flatnonzero(priced), band[priced])), shape=(activity.shape[1], len(PRICE_BANDS))
    )
    return (float(low), float(high)), np.asarray(_l1_rows(activity @ membership).todense())


def _top_per_row(matrix: sparse.csr_matrix, top: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per row, the columns of its `top` largest positive values and the values, largest first."""
    matrix = sparse.csr_matrix(matrix)
    row = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    keep = matrix.data > 0
    row, column, value = row[keep], matrix.indices[keep], matrix.data[keep]
    order = np.lexsort((column, -value, row))  # by row, largest first, ties by column
    row, column, value = row[order], column[order], value[order]
    start = np.searchsorted(row, np.arange(matrix.shape[0] + 1))
    position = np.arange(len(row)) - start[row]
    chosen = position < top
    row, column, value = row[chosen], column[chosen], value[chosen]
    bounds = np.searchsorted(row, np.arange(matrix.shape[0] + 1))
    return [(column[bounds[r]:bounds[r + 1]], value[bounds[r]:bounds[r + 1]]) for r in range(matrix.shape[0])]


def interest_terms(
    events: pd.DataFrame,
    rows: np.ndarray,
    weights: np.ndarray,
    activity: sparse.csr_matrix,
    items: pd.DataFrame,
    min_shoppers: int,
    top: int,
) -> list[list[str]]:
    """Per shopper (rows of `activity`, users × items), the terms (categories.text_terms:
    jieba for Chinese) that characterise the titles of the items in their activity and the
    text of their events (searches, reviews), strongest first: the term's share of the
    shopper's weighted activity times its inverse document frequency over shoppers. A term
    used by fewer than `min_shoppers` shoppers is no tag. A few more than `top` come back, for
    interest_tags_of to skip those a category name already says."""
    n_users, n_items = activity.shape
    text = events["text"].fillna("").astype(str).to_numpy(dtype=object) if "text" in events else np.full(len(events), "", dtype=object)
    has_text = (text != "") & (weights > 0)
    unique_text, text_column = np.unique(text[has_text], return_inverse=True)
    titles = items["title"].fillna("").astype(str).to_numpy(dtype=object) if "title" in items else np.full(n_items, "", dtype=object)
    terms, vocabulary = term_matrix(np.concatenate([titles, unique_text]))
    if not len(vocabulary):
        return [[] for _ in range(n_users)]
    texts = sparse.csr_matrix(
        (weights[has_text], (rows[has_text], text_column.reshape(-1))), shape=(n_users, len(unique_text))
    )
    mass = (activity @ terms[:n_items] + texts @ terms[n_items:]).tocsr()
    total = np.asarray(activity.sum(axis=1)).ravel() + np.asarray(texts.sum(axis=1)).ravel()
    shoppers = np.bincount(mass.indices[mass.data > 0], minlength=len(vocabulary))
    idf = np.log((1.0 + n_users) / (1.0 + shoppers)) + 1.0
    idf[shoppers < min_shoppers] = 0.0  # one-off rare tokens never become tags
    share = sparse.diags(np.divide(1.0, total, out=np.zeros_like(total), where=total > 0)) @ mass
    score = (share @ sparse.diags(idf)).tocsr()
    return [[str(vocabulary[c]) for c in columns] for columns, _ in _top_per_row(score, top + 4)]


def interest_tags_of(category_names: list[list[str]], category_shares: pd.Series, terms: list[list[str]], top: int) -> list[list[str]]:
    """Up to CATEGORY_TAGS category names (strongest first, "" for one that makes no tag) with
    at least CATEGORY_TAG_MIN_SHARE of the activity, then the strongest terms not already said
    by those names; `top` tags in all."""
    tags: list[list[str]] = []
    for names, shares, words in zip(category_names, category_shares, terms):
        # A shop category path's last level ("History", not "Humanities & ... > History").
        chosen = [n.split(" > ")[-1] for n, s in zip(names, shares) if n and s >= CATEGORY_TAG_MIN_SHARE]
        chosen = chosen[: min(CATEGORY_TAGS, top)]
        said = {w for n in chosen for w in n.lower().replace(" · ", " ").split()}
        said |= {w[:-1] for w in said if w.endswith("s")}  # "Gift Cards" says "card"
        chosen += [w for w in words if w not in said][: top - len(chosen)]
        tags.append(chosen)
    return tags


def summarise_users(user_ids: np.ndarray, events: pd.DataFrame, items: pd.DataFrame, rows: np.ndarray | None = None) -> pd.DataFrame:
    """Purchase counts, spend and first / last events per user. `rows`: each event's position
    in `user_ids`, when the caller has it."""
    if rows is None:
        rows = pd.Index(user_ids).get_indexer(events["user_id"])
    n_users = len(user_ids)
    # "Bought" and "an order" as everywhere else: positive events, and their baskets (the
    # session, else the shopper's day), so the profile agrees with RFM and the last basket.
    bought = positive_mask(events)
    buyer = rows[bought]
    order = pd.factorize(baskets_of(events[bought]))[0]
    spend = (events["quantity"].fillna(1.0) * events["price"].fillna(0.0)).to_numpy(np.float64)[bought]
    item = pd.factorize(events["item_id"])[0][bought]
    distinct = lambda codes: np.bincount(  # noqa: E731 - distinct (user, code) pairs per user
        pd.DataFrame({"u": buyer, "c": codes}).drop_duplicates()["u"].to_numpy(), minlength=n_users
    )
    time = events["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    summary = pd.DataFrame({"user_id": user_ids})
    summary["purchase_count"] = distinct(order).astype(np.int64)
    summary["purchase_lines"] = np.bincount(buyer, minlength=n_users).astype(np.int64)
    summary["distinct_items"] = distinct(item).astype(np.int64)
    summary["total_spend"] = np.bincount(buyer, weights=spend, minlength=n_users).round(2)
    summary["last_purchase"] = _per_user(np.maximum, buyer, time[bought], n_users)
    summary["first_event"] = _per_user(np.minimum, rows, time, n_users)
    summary["last_event"] = _per_user(np.maximum, rows, time, n_users)
    summary["events"] = np.bincount(rows, minlength=n_users).astype(np.int64)
    currency = items["currency"].replace("", np.nan).dropna() if "currency" in items else pd.Series(dtype=object)
    summary["currency"] = currency.mode().iloc[0] if len(currency) else ""
    return summary


def _per_user(reduce: np.ufunc, rows: np.ndarray, nanoseconds: np.ndarray, n_users: int) -> np.ndarray:
    """np.maximum / np.minimum of the timestamps of each user's events (NaT without one)."""
    empty = np.iinfo(np.int64).min if reduce is np.maximum else np.iinfo(np.int64).max
    out = np.full(n_users, empty, dtype=np.int64)
    reduce.at(out, rows, nanoseconds)
    result = out.astype("datetime64[ns]")
    result[out == empty] = np.datetime64("NaT")
    return result


def item_popularity(items: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Distinct buyers (or reviewers) per item, log-scaled to [0, 1]."""
    owned = events[events["event_type"].isin(OWNED_EVENTS)]
    buyers = owned.groupby("item_id")["user_id"].nunique().reindex(items["item_id"], fill_value=0)
    scaled = np.log1p(buyers.to_numpy(dtype=np.float64))
    peak = scaled.max() if len(scaled) else 0.0
    popularity = scaled / peak if peak > 0 else np.zeros_like(scaled)
    return pd.DataFrame({"item_id": items["item_id"].to_numpy(), "buyers": buyers.to_numpy(), "popularity": popularity})
