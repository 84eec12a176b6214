"""Which items a request allows: the request's filter, applied as a mask over the item table."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class ItemFilter:
    categories: tuple[str, ...] = ()
    in_stock_only: bool = False
    exclude_item_ids: frozenset[str] = field(default_factory=frozenset)
    max_price: float = 0.0  # 0 = no limit

    def allowed(self, items: pd.DataFrame) -> np.ndarray:
        """Boolean mask over the item table."""
        mask = np.ones(len(items), dtype=bool)
        if self.categories:
            mask &= items["category"].isin(self.categories).to_numpy()
        if self.in_stock_only:
            mask &= items["in_stock"].fillna(False).astype(bool).to_numpy()
        if self.exclude_item_ids:
            mask &= ~items["item_id"].isin(self.exclude_item_ids).to_numpy()
        if self.max_price > 0:
            mask &= (items["price"].fillna(np.inf) <= self.max_price).to_numpy()
        return mask

    @property
    def is_empty(self) -> bool:
        return not (self.categories or self.in_stock_only or self.exclude_item_ids or self.max_price > 0)


REPURCHASE_POLICIES = ("reorderable", "never", "always")


def repurchase_allowed(allowed: np.ndarray, acquired: np.ndarray, reorderable: np.ndarray, policy: str) -> np.ndarray:
    """The owned-item rule, applied once for every path: what a shopper bought before may come
    back only if the policy allows it. "reorderable": items the shop sees re-ordered by the same
    shoppers (a one-off item the shopper owns never); "never": nothing owned (discovery);
    "always": ownership ignored."""
    if policy not in REPURCHASE_POLICIES:
        raise ValueError(f"unknown repurchase policy {policy!r}; expected one of {REPURCHASE_POLICIES}")
    if policy == "always" or len(acquired) == 0:
        return allowed
    allowed = allowed.copy()
    if policy == "never":
        allowed[acquired] = False
    else:
        allowed[acquired[~reorderable[acquired]]] = False
    return allowed
