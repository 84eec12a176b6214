"""What the shop knew at one moment: per shopper × item purchase history, per item demand and
re-order behaviour, per shopper frequency, recency and spend.

`shop_history(events, items, as_of)` is used twice with the same code: at the end of the log
(what serving reads) and at an earlier cut inside it (what the learned ranker trains on), so
the ranker's features mean the same thing in training and in serving.

A purchase (or, in review-only data, a review: you review what you bought) is an
*acquisition*. Its basket is its session id (the invoice), else its day.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

ACQUISITIONS = ("purchase", "review")
INTEREST_EVENTS = ("view", "cart", "search")
DAY = 86_400.0
# Smoothing for the short-term trend: an item needs a few baskets before its ratio moves.
TREND_PRIOR_BASKETS = 2.0


@dataclass
class ShopHistory:
    """Arrays aligned with the item table (item rows) and with `user_ids` (user rows).

    Shopper × item pairs are kept sorted by user row, with `pair_start[u]:pair_start[u+1]`
    the slice of user row u (a CSR layout: one shopper's history is a slice, no search)."""

    as_of: pd.Timestamp
    user_ids: np.ndarray             # str, sorted
    # --- pairs (user row, item row): acquisitions and interest events -----------------------
    pair_start: np.ndarray           # int64 [n_users + 1]
    pair_item: np.ndarray            # int64 item row
    pair_baskets: np.ndarray         # float: distinct baskets holding the item (0 = only viewed)
    pair_quantity: np.ndarray        # float: units bought
    pair_days_since: np.ndarray      # float: days from the last acquisition to as_of (NaN: never bought)
    pair_interval: np.ndarray        # float: mean days between this shopper's re-orders (NaN: bought once)
    pair_interest: np.ndarray        # float: views, carts and searches of the item
    # --- items ---------------------------------------------------------------------------
    item_buyers: np.ndarray          # distinct shoppers who acquired it
    item_recent_buyers: np.ndarray   # ... within the last `recent_days`
    item_reorder_share: np.ndarray   # share of its buyers who bought it in 2+ baskets
    item_repeat_buyers: np.ndarray   # shoppers who bought it in 2+ baskets
    item_interval: np.ndarray        # median re-order interval in days over shoppers (NaN: none)
    item_trend: np.ndarray           # weekly baskets of the last 4 weeks over those of the last 12
    # --- users ---------------------------------------------------------------------------
    user_baskets: np.ndarray         # distinct baskets
    user_days_since: np.ndarray      # days since the last acquisition (NaN: none)
    user_spend: np.ndarray           # total spend
    user_price: np.ndarray           # median unit price paid (NaN: unknown)
    user_items: np.ndarray           # distinct items acquired

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def user_row(self, user_id: str) -> int | None:
        position = int(np.searchsorted(self.user_ids, user_id))
        if position < len(self.user_ids) and self.user_ids[position] == user_id:
            return position
        return None

    def pairs_of(self, user_row: int) -> slice:
        return slice(int(self.pair_start[user_row]), int(self.pair_start[user_row + 1]))

    def acquired(self, user_row: int) -> np.ndarray:
        """Item rows the shopper bought (or reviewed)."""
        pairs = self.pairs_of(user_row)
        return self.pair_item[pairs][self.pair_baskets[pairs] > 0]

    def reorderable(self, min_share: float, min_repeat_buyers: int) -> np.ndarray:
        """Items the shop sees re-ordered by the same shoppers: these may be offered again."""
        return (self.item_reorder_share >= min_share) & (self.item_repeat_buyers >= min_repeat_buyers)

    # --- persistence: one parquet table per level, written and read here --------------------

    def tables(self) -> dict[str, pd.DataFrame]:
        pair_user = np.repeat(np.arange(self.n_users), np.diff(self.pair_start))
        return {
            "pairs": pd.DataFrame(
                {
                    "user_row": pair_user,
                    "item_row": self.pair_item,
                    "baskets": self.pair_baskets,
                    "quantity": self.pair_quantity,
                    "days_since": self.pair_days_since,
                    "interval": self.pair_interval,
                    "interest": self.pair_interest,
                }
            ),
            "items": pd.DataFrame(
                {
                    "buyers": self.item_buyers,
                    "recent_buyers": self.item_recent_buyers,
                    "reorder_share": self.item_reorder_share,
                    "repeat_buyers": self.item_repeat_buyers,
                    "interval": self.item_interval,
                    "trend": self.item_trend,
                }
            ),
            "users": pd.DataFrame(
                {
                    "user_id": self.user_ids,
                    "baskets": self.user_baskets,
                    "days_since": self.user_days_since,
                    "spend": self.user_spend,
                    "price": self.user_price,
                    "items": self.user_items,
                    "as_of": self.as_of,
                }
            ),
        }

    @classmethod
    def from_tables(cls, pairs: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame) -> "ShopHistory":
        counts = np.bincount(pairs["user_row"].to_numpy(), minlength=len(users))
        return cls(
            as_of=pd.Timestamp(users["as_of"].iloc[0]) if len(users) else pd.Timestamp(0),
            user_ids=users["user_id"].to_numpy(dtype=object),
            pair_start=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            pair_item=pairs["item_row"].to_numpy(np.int64),
            pair_baskets=pairs["baskets"].to_numpy(np.float64),
            pair_quantity=pairs["quantity"].to_numpy(np.float64),
            pair_days_since=pairs["days_since"].to_numpy(np.float64),
            pair_interval=pairs["interval"].to_numpy(np.float64),
            pair_interest=pairs["interest"].to_numpy(np.float64),
            item_buyers=items["buyers"].to_numpy(np.float64),
            item_recent_buyers=items["recent_buyers"].to_numpy(np.float64),
            item_reorder_share=items["reorder_share"].to_numpy(np.float64),
            item_repeat_buyers=items["repeat_buyers"].to_numpy(np.float64),
            item_interval=items["interval"].to_numpy(np.float64),
            item_trend=items["trend"].to_numpy(np.float64),
            user_baskets=users["baskets"].to_numpy(np.float64),
            user_days_since=users["days_since"].to_numpy(np.float64),
            user_spend=users["spend"].to_numpy(np.float64),
            user_price=users["price"].to_numpy(np.float64),
            user_items=users["items"].to_numpy(np.float64),
        )


POSITIVE_RATING = 4.0


def positive_events(events: pd.DataFrame) -> pd.DataFrame:
    """What a shopper "bought", for labels, co-purchase, ALS, profiles and the evaluation alike:
    purchases; in a log without purchases (review-only data), reviews rated ≥ POSITIVE_RATING.
    A low-rated review still makes the item owned (ACQUISITIONS), but it recommends nothing."""
    return events[positive_mask(events)]


def positive_mask(events: pd.DataFrame) -> np.ndarray:
    """positive_events as a boolean mask over the rows of `events`."""
    # Compared as the column's own strings: to_numpy() first made a Python string per event.
    bought = (events["event_type"] == "purchase").to_numpy(dtype=bool)
    reviewed = (events["event_type"] == "review").to_numpy(dtype=bool)
    if bought.any() or not reviewed.any():
        return bought
    rating = pd.to_numeric(events["rating"], errors="coerce").to_numpy()
    return reviewed & (rating >= POSITIVE_RATING)


def baskets_of(events: pd.DataFrame) -> pd.Series:
    """The basket of each event: its session id, else the shopper's day."""
    session = events["session_id"].fillna("").astype(str)
    blank = session == ""
    if not blank.any():  # the day is written only where needed: 20M strftimes took seconds and GBs
        return session
    day = events.loc[blank, "timestamp"].dt.strftime("%Y-%m-%d")
    return session.where(~blank, "day:" + day)


def shop_history(events: pd.DataFrame, items: pd.DataFrame, as_of: pd.Timestamp, recent_days: float = 30.0) -> ShopHistory:
    """Everything the ranker and the candidate sources read, from events strictly before `as_of`."""
    as_of = pd.Timestamp(as_of)
    events = events[events["timestamp"] < as_of]
    item_row = pd.Series(np.arange(len(items)), index=items["item_id"].to_numpy())
    user_ids = np.sort(events["user_id"].unique()).astype(object)
    n_users, n_items = len(user_ids), len(items)
    user_row = pd.Series(np.arange(n_users), index=user_ids)

    bought = events[events["event_type"].isin(ACQUISITIONS)]
    frame = pd.DataFrame(
        {
            "u": user_row.reindex(bought["user_id"].to_numpy()).to_numpy(),
            "i": item_row.reindex(bought["item_id"].to_numpy()).to_numpy(),
            "basket": baskets_of(bought).to_numpy(),
            "t": bought["timestamp"].to_numpy(),
            "quantity": bought["quantity"].fillna(1.0).to_numpy(),
            "price": bought["price"].to_numpy(dtype=np.float64, na_value=np.nan),
        }
    ).dropna(subset=["i"])
    frame["i"] = frame["i"].astype(np.int64)
    frame["spend"] = frame["quantity"] * frame["price"].fillna(0.0)

    # One row per (user, item, basket), then per (user, item).
    per_basket = frame.groupby(["u", "i", "basket"], sort=False).agg(t=("t", "min"), quantity=("quantity", "sum"))
    per_pair = per_basket.groupby(level=["u", "i"]).agg(
        baskets=("t", "size"), first=("t", "min"), last=("t", "max"), quantity=("quantity", "sum")
    )
    span_days = (per_pair["last"] - per_pair["first"]).dt.total_seconds() / DAY
    per_pair["interval"] = np.where(per_pair["baskets"] > 1, span_days / (per_pair["baskets"] - 1).clip(lower=1), np.nan)
    per_pair["days_since"] = (as_of - per_pair["last"]).dt.total_seconds() / DAY

    interest = events[events["event_type"].isin(INTEREST_EVENTS)]
    interest_pairs = pd.DataFrame(
        {
            "u": user_row.reindex(interest["user_id"].to_numpy()).to_numpy(),
            "i": item_row.reindex(interest["item_id"].to_numpy()).to_numpy(),
        }
    ).dropna()
    interest_counts = interest_pairs.astype(np.int64).groupby(["u", "i"]).size().rename("interest")

    pairs = per_pair[["baskets", "quantity", "days_since", "interval"]].join(interest_counts, how="outer")
    pairs = pairs.reset_index().sort_values(["u", "i"], kind="stable")
    pairs["baskets"] = pairs["baskets"].fillna(0.0)
    pairs["quantity"] = pairs["quantity"].fillna(0.0)
    pairs["interest"] = pairs["interest"].fillna(0.0)

    # Items: buyers, recent buyers, re-order behaviour, short-term trend.
    by_item = per_pair.reset_index().groupby("i")
    buyers = by_item.size().reindex(range(n_items), fill_value=0).to_numpy(np.float64)
    repeat = by_item["baskets"].apply(lambda b: float((b > 1).sum())).reindex(range(n_items), fill_value=0.0).to_numpy()
    interval = by_item["interval"].median().reindex(range(n_items)).to_numpy(np.float64)
    age_days = (as_of - per_basket["t"]).dt.total_seconds().to_numpy() / DAY
    basket_items = per_basket.index.get_level_values("i").to_numpy()
    basket_users = per_basket.index.get_level_values("u").to_numpy()
    recent = age_days <= recent_days
    recent_buyers = (
        pd.DataFrame({"i": basket_items[recent], "u": basket_users[recent]}).drop_duplicates().groupby("i").size()
    ).reindex(range(n_items), fill_value=0).to_numpy(np.float64)
    last_4w = np.bincount(basket_items[age_days <= 28], minlength=n_items).astype(np.float64)
    last_12w = np.bincount(basket_items[age_days <= 84], minlength=n_items).astype(np.float64)
    trend = ((last_4w + TREND_PRIOR_BASKETS) / 4.0) / ((last_12w + 3 * TREND_PRIOR_BASKETS) / 12.0)

    # Users: frequency, recency, monetary value, usual price.
    by_user = frame.groupby("u")
    user_baskets = by_user["basket"].nunique().reindex(range(n_users), fill_value=0).to_numpy(np.float64)
    last_t = by_user["t"].max().reindex(range(n_users))
    user_days = ((as_of - last_t).dt.total_seconds() / DAY).to_numpy(np.float64)
    spend = by_user["spend"].sum().reindex(range(n_users), fill_value=0.0).to_numpy(np.float64)
    price = by_user["price"].median().reindex(range(n_users)).to_numpy(np.float64)
    user_items = per_pair.reset_index().groupby("u").size().reindex(range(n_users), fill_value=0).to_numpy(np.float64)

    # Built through the same tables a published build stores, so a loaded history is this one.
    return ShopHistory.from_tables(
        pd.DataFrame(
            {
                "user_row": pairs["u"].to_numpy(np.int64),
                "item_row": pairs["i"].to_numpy(np.int64),
                "baskets": pairs["baskets"].to_numpy(np.float64),
                "quantity": pairs["quantity"].to_numpy(np.float64),
                "days_since": pairs["days_since"].to_numpy(np.float64),
                "interval": pairs["interval"].to_numpy(np.float64),
                "interest": pairs["interest"].to_numpy(np.float64),
            }
        ),
        pd.DataFrame(
            {
                "buyers": buyers,
                "recent_buyers": recent_buyers,
                "reorder_share": np.divide(repeat, buyers, out=np.zeros(n_items), where=buyers > 0),
                "repeat_buyers": repeat,
                "interval": interval,
                "trend": trend,
            }
        ),
        pd.DataFrame(
            {
                "user_id": user_ids,
                "baskets": user_baskets,
                "days_since": user_days,
                "spend": spend,
                "price": price,
                "items": user_items,
                "as_of": as_of,
            }
        ),
    )
