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
