"""What each shopper did before a moment: recency, frequency, monetary value and activity counts.

One function, used wherever a shopper is described by numbers: the profile (RFM and its
quintile scores), the segments (K-means over these columns) and the purchase propensity
(features at a cut, labels after it). It reads only events strictly before `as_of`, so the
same call at an earlier cut sees what the shop knew then.

"Bought" is insights.history.positive_events (purchases; reviews rated 4+ in review-only
data); a basket is its session id, else the shopper's day.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from services.insights.history import DAY, baskets_of, positive_events

# Columns of the activity table, one row per shopper (index user_id), what each means.
ACTIVITY_COLUMNS: dict[str, str] = {
    "recency_days": "days from the last purchase to as_of (NaN: never bought)",
    "frequency": "distinct baskets bought",
    "monetary": "total spend (quantity × price; 0 where prices are unknown)",
    "distinct_items": "distinct items bought",
    "avg_basket_value": "monetary / frequency (NaN: never bought)",
    "tenure_days": "days from the first event of any kind to as_of",
    "inactive_days": "days from the last event of any kind to as_of",
    "mean_interval_days": "mean days between consecutive baskets (NaN: under two baskets)",
    "baskets_30d": "baskets in the 30 days before as_of",
    "baskets_90d": "baskets in the 90 days before as_of",
    "units": "units bought",
    "mean_unit_price": "mean unit price paid (NaN: unknown)",
    "views": "view events",
    "carts": "cart events",
    "searches": "search events",
    "reviews": "review events",
    "returns": "return events",
    "mean_rating": "mean rating given in reviews (NaN: none)",
    "events": "events of any kind",
}


def shopper_activity(events: pd.DataFrame, as_of: pd.Timestamp, user_ids: np.ndarray | None = None) -> pd.DataFrame:
    """One row per shopper with an event before `as_of` (or per id of `user_ids`, in that
    order, zeros and NaN for shoppers without one), the ACTIVITY_COLUMNS."""
    as_of = pd.Timestamp(as_of)
    events = events[events["timestamp"] < as_of]
    if user_ids is None:
        user_ids = np.sort(events["user_id"].unique()).astype(object)
    index = pd.Index(user_ids, name="user_id")
    table = pd.DataFrame(index=index)

    bought = positive_events(events)
    # The id columns go in as they are (.array): to_numpy() made a Python string per event and
    # the frame then turned them back into strings, most of this function's time on 20M events.
    lines = pd.DataFrame(
        {
            "user_id": bought["user_id"].array,
            "basket": baskets_of(bought).array,
            "t": bought["timestamp"].to_numpy(),
            "item_id": bought["item_id"].array,
            "units": bought["quantity"].fillna(1.0).to_numpy(),
            "price": bought["price"].to_numpy(dtype=np.float64, na_value=np.nan),
        }
    )
    lines["spend"] = lines["units"] * lines["price"].fillna(0.0)
    baskets = lines.groupby(["user_id", "basket"], sort=False).agg(t=("t", "min"), spend=("spend", "sum"))
    baskets = baskets.reset_index()
    basket_age = (as_of - baskets["t"]).dt.total_seconds() / DAY
    per_user_basket = baskets.groupby("user_id")

    last = per_user_basket["t"].max().reindex(index)
    first = per_user_basket["t"].min().reindex(index)
    frequency = per_user_basket.size().reindex(index, fill_value=0).astype(np.float64)
    table["recency_days"] = ((as_of - last).dt.total_seconds() / DAY).to_numpy(np.float64)
    table["frequency"] = frequency
    table["monetary"] = lines.groupby("user_id")["spend"].sum().reindex(index, fill_value=0.0).round(2)
    table["distinct_items"] = lines.groupby("user_id")["item_id"].nunique().reindex(index, fill_value=0).astype(np.float64)
    table["avg_basket_value"] = (table["monetary"] / frequency).where(frequency > 0)
    span = ((last - first).dt.total_seconds() / DAY).to_numpy(np.float64)
    table["mean_interval_days"] = np.where(frequency > 1, span / (frequency - 1).clip(lower=1), np.nan)
    for days in (30, 90):
        recent = baskets[basket_age.to_numpy() <= days]
        table[f"baskets_{days}d"] = recent.groupby("user_id").size().reindex(index, fill_value=0).astype(np.float64)
    table["units"] = lines.groupby("user_id")["units"].sum().reindex(index, fill_value=0.0)
    table["mean_unit_price"] = lines.groupby("user_id")["price"].mean().reindex(index)

    by_user = events.groupby("user_id")["timestamp"]
    table["tenure_days"] = ((as_of - by_user.min().reindex(index)).dt.total_seconds() / DAY).to_numpy(np.float64)
    table["inactive_days"] = ((as_of - by_user.max().reindex(index)).dt.total_seconds() / DAY).to_numpy(np.float64)
    kinds = events.groupby(["user_id", "event_type"]).size().unstack(fill_value=0)
    for column, kind in (("views", "view"), ("carts", "cart"), ("searches", "search"), ("reviews", "review"), ("returns", "return")):
        counts = kinds[kind] if kind in kinds.columns else pd.Series(dtype=np.float64)
        table[column] = counts.reindex(index, fill_value=0).astype(np.float64)
    reviews = events[events["event_type"] == "review"]
    rating = pd.to_numeric(reviews["rating"], errors="coerce")
    table["mean_rating"] = rating.groupby(reviews["user_id"]).mean().reindex(index)
    table["events"] = by_user.size().reindex(index, fill_value=0).astype(np.float64)
    return table[list(ACTIVITY_COLUMNS)]
