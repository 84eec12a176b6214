"""Shopper segments: K-means over a few profile figures a marketer understands, each segment
named from its centroid.

Features (SEGMENT_FEATURES, from insights.activity.shopper_activity): recency, frequency,
spend, basket value, distinct items, tenure, unit price and browsing events. A shopper who never
bought has recency = tenure (silent since first seen), basket value 0, and the shop's median
unit price (no sign either way). Features that are the same for every shopper (a shop without
prices, or without views) are left out. Each is log1p'd (all are counts, days or money with
long right tails), then standardised.

k runs over [segments_min, segments_max]; each k is fitted on all shoppers (seeded K-means)
and scored by silhouette on one seeded sample of at most `segment_sample` shoppers (the same
sample for every k, so the scores compare). A k whose smallest segment holds under
`segment_min_share` of the shoppers is not eligible; the eligible k with the best silhouette
wins. When no k is eligible the best k is kept and its small clusters are merged, smallest
first, into the nearest other cluster (`Segments.note` says so). Fewer distinct shoppers than
segments_min: one cluster each; all alike: one segment.

Names: every centroid, in original units, is placed in the shop's distribution of each
feature (its percentile; among the buyers for what buyers do). Each archetype of the fixed
ARCHETYPES list is a typical shopper in those percentiles, with bounds on what its name
promises ("new" needs a short tenure); every archetype scores every centroid by closeness, and
the names are assigned one to one (scipy's linear_sum_assignment), so no two segments share a
name. `archetype_code` is the archetype's index in ARCHETYPES: stable across fits (the ranker
uses it at its internal cut and at the end of the log, where the K-means fits differ);
segment ids are not (they follow the archetype order within one fit).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score
from threadpoolctl import threadpool_limits

from services.errors import InvalidArgument

# Feature -> what it says, in the order the table shows the centroids.
SEGMENT_FEATURES: dict[str, str] = {
    "recency_days": "days since the last purchase (never bought: since first seen)",
    "frequency": "baskets bought",
    "monetary": "total spend",
    "avg_basket_value": "spend per basket (never bought: 0)",
    "distinct_items": "distinct items bought",
    "tenure_days": "days since first seen",
    "mean_unit_price": "mean unit price paid (unknown: the shop's median)",
    "browsing": "views, carts and searches",
}
PRICE_FEATURES = ("monetary", "avg_basket_value", "mean_unit_price")
PURCHASE_FEATURES = ("recency_days", "frequency", "distinct_items") + PRICE_FEATURES
KMEANS_RESTARTS = 4
# The segment of a row of the activity table whose shopper had no event before as_of.
UNSEEN_SEGMENT = -1


@dataclass(frozen=True)
class Archetype:
    name: str
    tone: str           # for the copy (CopyFacts.tone)
    blurb: str          # starts the description
    needs_prices: bool  # meaningless in a shop without prices
    # The archetype's typical shopper: a percentile of the shop (0 lowest, 1 highest) per
    # feature, "bought" the share who ever bought; a feature not named sits at the middle.
    profile: dict[str, float]
    # What the name promises, as percentile bounds (lowest, highest): "new" is not said of a
    # segment first seen long ago, however well the rest fits.
    bounds: dict[str, tuple[float, float]]

    def fit(self, percentiles: dict[str, float], bought_share: float) -> float:
        """1 − the mean distance of a centroid from this profile, in percentiles;
        −inf where the centroid breaks a bound or a bound's feature is not used (a shop without
        prices has no "bargain hunters")."""
        placed = {**percentiles, "bought": bought_share}
        bounds = {"bought": (0.5, 1.0), **self.bounds}  # buyers' archetypes unless said otherwise
        if any(f not in placed or not low <= placed[f] <= high for f, (low, high) in bounds.items()):
            return -np.inf
        return 1.0 - float(np.mean([abs(p - self.profile.get(f, 0.5)) for f, p in placed.items()]))


def _profile(recency, frequency, monetary, basket, items, tenure, price=0.5, browsing=0.5, bought=1.0):
    return {
        "recency_days": recency, "frequency": frequency, "monetary": monetary, "avg_basket_value": basket,
        "distinct_items": items, "tenure_days": tenure, "mean_unit_price": price, "browsing": browsing, "bought": bought,
    }


# The index of an archetype is its archetype_code: append only, never reorder.
ARCHETYPES: tuple[Archetype, ...] = (
    Archetype("high-value loyal", "grateful", "The most frequent, most recent buyers", False,
              _profile(recency=0.15, frequency=0.9, monetary=0.9, basket=0.7, items=0.85, tenure=0.75),
              {"frequency": (0.6, 1), "recency_days": (0, 0.5)}),
    Archetype("loyal regulars", "friendly", "Come back often, with everyday baskets", False,
              _profile(recency=0.25, frequency=0.75, monetary=0.6, basket=0.45, items=0.65, tenure=0.7),
              {"frequency": (0.5, 1), "recency_days": (0, 0.5)}),
    Archetype("promising new", "welcoming", "Joined lately and already buy well", False,
              _profile(recency=0.2, frequency=0.45, monetary=0.6, basket=0.75, items=0.5, tenure=0.15),
              {"tenure_days": (0, 0.3)}),
    Archetype("new one-time", "welcoming", "Joined lately and bought once", False,
              _profile(recency=0.25, frequency=0.25, monetary=0.3, basket=0.45, items=0.3, tenure=0.1),
              {"tenure_days": (0, 0.3)}),
    Archetype("at risk", "win-back", "Used to buy often, quiet for a while", False,
              _profile(recency=0.7, frequency=0.65, monetary=0.65, basket=0.55, items=0.6, tenure=0.8),
              {"recency_days": (0.5, 1), "frequency": (0.5, 1)}),
    Archetype("lapsed", "win-back", "Bought once or twice, long ago", False,
              _profile(recency=0.85, frequency=0.2, monetary=0.25, basket=0.4, items=0.25, tenure=0.65),
              {"recency_days": (0.6, 1)}),
    Archetype("big-basket occasional", "inspiring", "Buy rarely but fill big baskets", True,
              _profile(recency=0.5, frequency=0.3, monetary=0.6, basket=0.9, items=0.5, tenure=0.5),
              {"avg_basket_value": (0.7, 1), "frequency": (0, 0.5)}),
    Archetype("bargain hunters", "value", "Go for low-priced items", True,
              _profile(recency=0.5, frequency=0.5, monetary=0.5, basket=0.5, items=0.6, tenure=0.5, price=0.1),
              {"mean_unit_price": (0, 0.35)}),
    Archetype("premium pickers", "exclusive", "Go for higher-priced items", True,
              _profile(recency=0.5, frequency=0.5, monetary=0.5, basket=0.5, items=0.3, tenure=0.5, price=0.9),
              {"mean_unit_price": (0.65, 1)}),
    Archetype("window shoppers", "inspiring", "Visit without buying", False,
              _profile(recency=0.5, frequency=0.0, monetary=0.0, basket=0.0, items=0.0, tenure=0.5, browsing=0.8, bought=0.0),
              {"bought": (0, 0.5)}),
    Archetype("everyday shoppers", "friendly", "No single trait stands out", False,
              _profile(recency=0.5, frequency=0.5, monetary=0.5, basket=0.5, items=0.5, tenure=0.5),
              {}),
    Archetype("dormant", "win-back", "Silent for a long time", False,
              _profile(recency=0.95, frequency=0.3, monetary=0.3, basket=0.45, items=0.3, tenure=0.85),
              {"recency_days": (0.8, 1)}),
    Archetype("occasional buyers", "friendly", "Drop by now and then", False,
              _profile(recency=0.5, frequency=0.35, monetary=0.4, basket=0.5, items=0.4, tenure=0.55),
              {"frequency": (0, 0.5), "recency_days": (0.2, 0.8)}),
)


@dataclass
class Segments:
    """A segmentation of the shoppers of one activity table.

    `table` columns: segment_id, name, description, tone, archetype_code, shoppers, share,
    bought_share (share of its shoppers who ever bought), then the centroid of every feature
    in `features`, in original units (expm1 of the mean log1p value: a geometric-style mean)."""

    segment_id: pd.Series          # int per shopper, index = the activity's (UNSEEN_SEGMENT: no event yet)
    table: pd.DataFrame
    silhouettes: pd.DataFrame      # k, silhouette (on the sample; NaN: undefined), smallest_share, eligible
    chosen_k: int                  # K-means clusters of the kept fit (before any merge)
    map_2d: pd.DataFrame           # index user_id: x, y (PCA of the standardised features; NaN: no event yet)
    features: tuple[str, ...]      # the features used (constant ones left out)
    note: str                      # how k was chosen, merges, a single segment
    # --- learned state, enough to place a new shopper ------------------------------------
    fill_unit_price: float         # the shop's median unit price, for shoppers without one
    log_mean: np.ndarray           # per feature, of log1p
    log_scale: np.ndarray
    cluster_centers: np.ndarray    # [clusters, features], standardised
    cluster_segment: np.ndarray    # K-means cluster -> segment_id (merges map several to one)
    # Set when K-means and the map were fitted on a sample: {"fitted_on_shoppers": n, "of": all}.
    sampling: dict = field(default_factory=dict)

    def assign(self, activity: pd.DataFrame) -> pd.Series:
        """Segment ids of the shoppers of an activity table (new shoppers included): the
        segment of their nearest K-means cluster; UNSEEN_SEGMENT for a row without events."""
        standard = self._standardise(activity)
        distances = ((standard[:, None, :] - self.cluster_centers[None, :, :]) ** 2).sum(axis=2)
        segment = self.cluster_segment[distances.argmin(axis=1)].astype(np.int64)
        segment[activity["events"].to_numpy() <= 0] = UNSEEN_SEGMENT
        return pd.Series(segment, index=activity.index, name="segment_id")

    def _standardise(self, activity: pd.DataFrame) -> np.ndarray:
        features = segment_features(activity, self.fill_unit_price)[list(self.features)]
        return (np.log1p(features.to_numpy(np.float64)) - self.log_mean) / self.log_scale

    def report(self) -> dict:
        return {
            "segments": int(len(self.table)),
            "chosen_k": int(self.chosen_k),
            "features": list(self.features),
            "note": self.note,
            "silhouette_by_k": {
                int(row.k): (None if np.isnan(row.silhouette) else round(float(row.silhouette), 4))
                for row in self.silhouettes.itertuples()
            },
            "k_tried": [
                {
                    "k": int(row.k),
                    "silhouette": None if np.isnan(row.silhouette) else round(float(row.silhouette), 4),
                    "smallest_share": round(float(row.smallest_share), 4),
                    "eligible": bool(row.eligible),
                }
                for row in self.silhouettes.itertuples()
            ],
            "segments_table": [
                {
                    "segment_id": int(row.segment_id),
                    "name": row.name,
                    "archetype_code": int(row.archetype_code),
                    "tone": row.tone,
                    "shoppers": int(row.shoppers),
                    "share": round(float(row.share), 4),
                    "description": row.description,
                }
                for row in self.table.itertuples()
            ],
        }


def segment_features(activity: pd.DataFrame, fill_unit_price: float) -> pd.DataFrame:
    """SEGMENT_FEATURES from shopper_activity columns, NaN filled as the module doc says."""
    features = pd.DataFrame(index=activity.index)
    features["recency_days"] = activity["recency_days"].fillna(activity["tenure_days"])
    features["frequency"] = activity["frequency"]
    features["monetary"] = activity["monetary"]
    features["avg_basket_value"] = activity["avg_basket_value"].fillna(0.0)
    features["distinct_items"] = activity["distinct_items"]
    features["tenure_days"] = activity["tenure_days"]
    features["mean_unit_price"] = activity["mean_unit_price"].fillna(fill_unit_price)
    features["browsing"] = activity["views"] + activity["carts"] + activity["searches"]
    # Never negative in a clean log; clip so that log1p is defined whatever comes in.
    return features.astype(np.float64).fillna(0.0).clip(lower=0.0)


def fit_segments(
    activity: pd.DataFrame,
    segments_min: int = 4,
    segments_max: int = 8,
    segment_sample: int = 10_000,
    segment_min_share: float = 0.02,
    seed: int = 0,
    currency: str = "",
    fit_max_shoppers: int | None = None,
) -> Segments:
    """Segment the shoppers of `activity` (insights.activity.shopper_activity, one row per shopper).

    The settings are InsightsConfig's fields of the same names; `currency` (ISO code, e.g.
    "GBP") only formats the descriptions. Above `fit_max_shoppers` shoppers, K-means and the
    2-D map are fitted on a seeded sample of that many and every shopper is then assigned."""
    k_min, k_max, min_share = segments_min, segments_max, segment_min_share
    if k_min < 1 or k_max < k_min:
        raise InvalidArgument("segments_max", f"need 1 <= segments_min <= segments_max, got {k_min} and {k_max}")
    # Rows of shoppers without any event yet (shopper_activity's user_ids at an early cut) are
    # not shoppers at that moment: they take no part in the fit and get UNSEEN_SEGMENT.
    all_shoppers = activity.index
    activity = activity[activity["events"].to_numpy() > 0]
    if len(activity) == 0:
        raise InvalidArgument("activity", "no shoppers to segment (no shopper has an event before as_of)")
    unit_prices = activity["mean_unit_price"].dropna()
    fill_unit_price = float(unit_prices.median()) if len(unit_prices) else 0.0
    all_features = segment_features(activity, fill_unit_price)
    logged = np.log1p(all_features.to_numpy(np.float64))
    varying = logged.std(axis=0) > 1e-9
    features = tuple(np.array(all_features.columns)[varying])
    logged = logged[:, varying]
    log_mean, log_scale = logged.mean(axis=0), logged.std(axis=0)
    standard = (logged - log_mean) / np.where(log_scale > 0, log_scale, 1.0)

    n = len(activity)
    distinct = len(np.unique(standard, axis=0)) if len(features) else 1
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(n, segment_sample), replace=False))
    # Drawn after the silhouette sample, so a shop under the limit draws exactly what it did.
    fit_rows = None
    if fit_max_shoppers is not None and n > fit_max_shoppers:
        fit_rows = np.sort(rng.choice(n, size=fit_max_shoppers, replace=False))
    candidates = [k for k in range(k_min, k_max + 1) if k <= distinct]
    if not candidates and distinct >= 2:
        candidates = [distinct]  # fewer distinct shoppers than k_min: one cluster each

    trials = []
    for k in candidates:
        # One thread: a few features × thousands of shoppers is quick on one core, while
        # OpenMP's spinning threads ran 20-40× slower on a shared, busy 2-core machine.
        with threadpool_limits(limits=1):
            if fit_rows is None:
                kmeans = KMeans(n_clusters=k, n_init=KMEANS_RESTARTS, random_state=seed).fit(standard)
                labels = kmeans.labels_
            else:
                kmeans = KMeans(n_clusters=k, n_init=KMEANS_RESTARTS, random_state=seed).fit(standard[fit_rows])
                labels = kmeans.predict(standard)
            sample_labels = labels[sample]
            defined = 2 <= len(np.unique(sample_labels)) <= len(sample) - 1
            silhouette = float(silhouette_score(standard[sample], sample_labels)) if defined else np.nan
        smallest = np.bincount(labels, minlength=k).min() / n
        trials.append((k, silhouette, smallest, smallest >= min_share, kmeans, labels))
    silhouettes = pd.DataFrame(
        [(k, s, m, e) for k, s, m, e, _, _ in trials], columns=["k", "silhouette", "smallest_share", "eligible"]
    )

    if not trials:
        chosen_k, centers, labels = 1, standard.mean(axis=0, keepdims=True), np.zeros(n, np.int64)
        note = "all shoppers alike on every feature: one segment"
    else:
        eligible = [t for t in trials if t[3]] or trials
        # Best silhouette; an undefined one ranks last; ties go to the smaller k.
        best = max(eligible, key=lambda t: (-np.inf if np.isnan(t[1]) else t[1], -t[0]))
        chosen_k, centers, labels = best[0], best[4].cluster_centers_, best[5].astype(np.int64)
        note = f"k={chosen_k} by silhouette among eligible k"
        if not best[3]:
            note = f"no k in [{k_min}, {k_max}] keeps every segment at {min_share:.0%} or more: k={chosen_k} by silhouette"
    cluster_segment = merge_small_clusters(standard, labels, len(centers), min_share)
    if len(np.unique(cluster_segment)) < len(centers):
        note += f", small clusters merged into their nearest: {len(np.unique(cluster_segment))} segments"
    if len(all_shoppers) > n:
        note += f"; {len(all_shoppers) - n} shoppers without an event yet: segment {UNSEEN_SEGMENT}"

    # Segment ids: the archetype order (high-value loyal first), renumbered 0..n-1 below.
    merged_labels = cluster_segment[labels]
    table = describe_segments(all_features, merged_labels, list(features), activity["frequency"].to_numpy(), currency)
    renumber = np.zeros(merged_labels.max() + 1, np.int64)
    order = table.sort_values(["archetype_code", "shoppers"], ascending=[True, False])["segment_id"].to_numpy()
    renumber[order] = np.arange(len(order))
    table["segment_id"] = renumber[table["segment_id"].to_numpy()]
    table = table.sort_values("segment_id").reset_index(drop=True)

    components = min(2, standard.shape[1], n)
    projected = np.zeros((n, 2))
    if components:
        pca = PCA(n_components=components, random_state=seed)
        projected[:, :components] = (
            pca.fit_transform(standard) if fit_rows is None else pca.fit(standard[fit_rows]).transform(standard)
        )
    return Segments(
        segment_id=pd.Series(renumber[merged_labels], index=activity.index, name="segment_id").reindex(
            all_shoppers, fill_value=UNSEEN_SEGMENT
        ),
        table=table,
        silhouettes=silhouettes,
        chosen_k=int(chosen_k),
        map_2d=pd.DataFrame({"x": projected[:, 0], "y": projected[:, 1]}, index=activity.index).reindex(all_shoppers),
        features=features,
        note=note,
        fill_unit_price=fill_unit_price,
        log_mean=log_mean,
        log_scale=np.where(log_scale > 0, log_scale, 1.0),
        cluster_centers=np.asarray(centers, dtype=np.float64),
        cluster_segment=renumber[cluster_segment],
        sampling={} if fit_rows is None else {"fitted_on_shoppers": len(fit_rows), "of": n},
    )


def merge_small_clusters(standard: np.ndarray, labels: np.ndarray, clusters: int, min_share: float) -> np.ndarray:
    """Cluster -> segment, after folding every cluster under min_share (smallest first) into
    the nearest other one (by the distance of their member means)."""
    owner = np.arange(clusters)
    n = len(labels)
    while True:
        segments = np.unique(owner)
        sizes = np.array([np.isin(labels, np.flatnonzero(owner == s)).sum() for s in segments])
        if len(segments) < 2 or sizes.min() >= min_share * n:
            return owner
        small = segments[sizes.argmin()]
        means = np.array([standard[np.isin(labels, np.flatnonzero(owner == s))].mean(axis=0) for s in segments])
        distances = ((means - means[segments == small]) ** 2).sum(axis=1)
        distances[segments == small] = np.inf
        owner[owner == small] = segments[distances.argmin()]


def describe_segments(
    features: pd.DataFrame, labels: np.ndarray, used: list[str], frequency: np.ndarray, currency: str
) -> pd.DataFrame:
    """One row per segment (segment_id = its label for now): centroid, archetype, description."""
    logged = pd.DataFrame(np.log1p(features.to_numpy(np.float64)), columns=features.columns)
    ids = np.unique(labels)
    centroids = np.expm1(logged.groupby(labels).mean()).loc[ids]
    bought_share = pd.Series(frequency > 0).groupby(labels).mean().loc[ids].to_numpy()

    # Each centroid's percentile in the shop (mid-rank, so ties count half) on the features
    # used; those left out (the same for everyone) decide nothing.
    percentiles = []
    buyers = frequency > 0
    for segment in ids:
        # No feature varies (one shopper, or all alike): the segment is the shop's middle.
        p = {} if used else dict.fromkeys(SEGMENT_FEATURES, 0.5)
        for column in used:
            # What buyers did is placed among the buyers: a shop with many viewers who never
            # bought does not make "bought once" a high frequency.
            among = buyers if column in PURCHASE_FEATURES and buyers.any() else slice(None)
            values = np.sort(features[column].to_numpy()[among])
            c = centroids.loc[segment, column]
            rank = (np.searchsorted(values, c, "left") + np.searchsorted(values, c, "right")) / 2
            p[column] = float(rank / len(values))
        percentiles.append(p)
    has_prices = "monetary" in used
    scores = np.array(
        [
            [a.fit(p, b) if has_prices or not a.needs_prices else -np.inf for a in ARCHETYPES]
            for p, b in zip(percentiles, bought_share)
        ]
    )
    codes = assign_archetypes(scores)

    shoppers = np.bincount(np.searchsorted(ids, labels), minlength=len(ids))
    rows = []
    for i, segment in enumerate(ids):
        code = codes[i]
        repeat = int((codes[:i] == code).sum())  # only when there are more segments than archetypes
        name = ARCHETYPES[code].name + (f" {repeat + 1}" if repeat else "")
        centroid = centroids.loc[segment]
        rows.append(
            {
                "segment_id": int(segment),
                "name": name,
                "description": describe(ARCHETYPES[code], centroid, shoppers[i] / len(labels), bought_share[i], has_prices, currency),
                "tone": ARCHETYPES[code].tone,
                "archetype_code": int(code),
                "shoppers": int(shoppers[i]),
                "share": shoppers[i] / len(labels),
                "bought_share": float(bought_share[i]),
                **{column: float(centroid[column]) for column in used},
            }
        )
    return pd.DataFrame(rows)


def assign_archetypes(scores: np.ndarray) -> np.ndarray:
    """Archetype code per segment, one to one where the bounds allow (maximum total score); a
    segment left without an archetype it fits takes its best one again (named "… 2")."""
    finite = np.where(np.isfinite(scores), scores, -1e6)
    rows, cols = linear_sum_assignment(-finite)
    codes = finite.argmax(axis=1)
    codes[rows] = cols
    unfit = ~np.isfinite(scores[np.arange(len(codes)), codes])
    codes[unfit] = finite[unfit].argmax(axis=1)
    return codes


CURRENCY_SYMBOLS = {"GBP": "£", "USD": "$", "EUR": "€", "CNY": "¥", "JPY": "¥"}


def describe(archetype: Archetype, centroid: pd.Series, share: float, bought_share: float, has_prices: bool, currency: str) -> str:
    """E.g. "The most frequent, most recent buyers: 25% of shoppers; bought 8 times, last 10
    days ago; £3,098 spent (£379 a basket); first seen 285 days ago." """
    symbol = CURRENCY_SYMBOLS.get(currency, f"{currency} " if currency else "")
    parts = [f"{share:.0%} of shoppers"]
    if bought_share < 0.5:
        parts.append("none has bought yet" if bought_share == 0 else f"only {bought_share:.0%} have bought")
    else:
        times = round(centroid["frequency"])
        bought = {0: "bought less than once", 1: "bought once", 2: "bought twice"}.get(times, f"bought {times} times")
        parts.append(f"{bought}, last {centroid['recency_days']:.0f} days ago")
        if has_prices:
            parts.append(f"{symbol}{centroid['monetary']:,.0f} spent ({symbol}{centroid['avg_basket_value']:,.0f} a basket)")
        if bought_share < 0.95:
            parts.append(f"{bought_share:.0%} have bought")
    parts.append(f"first seen {centroid['tenure_days']:.0f} days ago")
    return f"{archetype.blurb}: " + "; ".join(parts) + "."
