"""What sells together: item × item co-occurrence in baskets (invoices, sessions) of the
purchases (and well-rated reviews) of the log.

For every item its strongest neighbours are kept with support, confidence, lift and a cosine
score (co-baskets over the geometric mean of the two items' baskets), which the
co-purchase candidate source sums over a shopper's items. Baskets of one item say nothing
about pairs and are left out; very large baskets (a wholesaler's restock of the whole
catalogue) are left out so that they do not link everything with everything. Where events
carry no session (review-only data), a shopper's whole history counts as one basket.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import sparse

from services.insights.history import positive_events

NEIGHBOURS = 50
MAX_BASKET_ITEMS = 200


@dataclass
class CoPurchase:
    """Top neighbours per item as a sparse row-normalisable matrix over item rows."""

    scores: sparse.csr_matrix    # [n_items, n_items] cosine of co-baskets, top NEIGHBOURS per row
    counts: sparse.csr_matrix    # co-baskets of the same pairs
    baskets: int                 # baskets counted
    item_baskets: np.ndarray     # baskets holding each item

    def table(self) -> pd.DataFrame:
        """One row per (item, neighbour): support, confidence, lift and score."""
        scores, counts = self.scores.tocoo(), self.counts.tocoo()
        item_baskets = self.item_baskets
        frame = pd.DataFrame({"item_row": scores.row, "neighbour_row": scores.col, "score": scores.data})
        frame["co_baskets"] = counts.data
        frame["support"] = frame["co_baskets"] / max(self.baskets, 1)
        frame["confidence"] = frame["co_baskets"] / item_baskets[frame["item_row"]].clip(min=1)
        frame["lift"] = frame["confidence"] / (item_baskets[frame["neighbour_row"]].clip(min=1) / max(self.baskets, 1))
        return frame

    @classmethod
    def from_table(cls, table: pd.DataFrame, n_items: int, baskets: int, item_baskets: np.ndarray) -> "CoPurchase":
        shape = (n_items, n_items)
        rows, cols = table["item_row"].to_numpy(), table["neighbour_row"].to_numpy()
        scores = sparse.csr_matrix((table["score"].to_numpy(np.float32), (rows, cols)), shape=shape)
        counts = sparse.csr_matrix((table["co_baskets"].to_numpy(np.float32), (rows, cols)), shape=shape)
        return cls(scores, counts, baskets, np.asarray(item_baskets, dtype=np.float64))

    @cached_property
    def by_neighbour(self) -> sparse.csr_matrix:
        """The transpose, kept in CSR: summing neighbours is then one sparse × dense product."""
        return self.scores.T.tocsr()

    def neighbours(self, weights: np.ndarray) -> np.ndarray:
        """Σ over items (a weight per item row) of their neighbours' scores: [n_items]."""
        return self.by_neighbour @ np.asarray(weights, dtype=np.float64)

    def strongest_links(self, sources: np.ndarray, source_weights: np.ndarray, targets: np.ndarray) -> list[int | None]:
        """For each target, which of the given items contributes most to it (for a reason)."""
        if len(sources) == 0 or len(targets) == 0:
            return [None] * len(targets)
        # Row slices of a CSR matrix are cheap; column slices are not.
        block = self.scores[sources][:, targets].toarray() * source_weights[:, None]
        best = block.argmax(axis=0)
        return [int(sources[b]) if block[b, t] > 0 else None for t, b in enumerate(best)]


def co_purchase(events: pd.DataFrame, items: pd.DataFrame, neighbours: int = NEIGHBOURS) -> CoPurchase:
    item_row = pd.Series(np.arange(len(items)), index=items["item_id"].to_numpy())
    bought = positive_events(events)
    # Events without a session (e.g. reviews) have no basket to share: the shopper's whole
    # history stands in for one, which makes this item-to-item CF over shoppers.
    session = bought["session_id"].fillna("").astype(str)
    frame = pd.DataFrame(
        {
            "basket": (bought["user_id"].astype(str) + "\x1f" + session).to_numpy(),
            "i": item_row.reindex(bought["item_id"].to_numpy()).to_numpy(),
        }
    ).dropna().drop_duplicates()
    frame["i"] = frame["i"].astype(np.int64)
    sizes = frame.groupby("basket")["i"].transform("size")
    frame = frame[(sizes > 1) & (sizes <= MAX_BASKET_ITEMS)]
    n_items = len(items)
    basket_codes, _ = pd.factorize(frame["basket"])
    n_baskets = int(basket_codes.max()) + 1 if len(basket_codes) else 0
    matrix = sparse.csr_matrix(
        (np.ones(len(frame), dtype=np.float32), (basket_codes, frame["i"].to_numpy())), shape=(n_baskets, n_items)
    )
    item_baskets = np.asarray(matrix.sum(axis=0)).ravel().astype(np.float64)
    co = (matrix.T @ matrix).tocsr()
    co.setdiag(0)
    co.eliminate_zeros()
    co = co.tocoo()
    norm = np.sqrt(item_baskets[co.row] * item_baskets[co.col])
    cosine = co.data / np.maximum(norm, 1.0)
    table = pd.DataFrame({"item_row": co.row, "neighbour_row": co.col, "score": cosine, "co_baskets": co.data})
    table = table.sort_values(["item_row", "score", "neighbour_row"], ascending=[True, False, True], kind="stable")
    table = table.groupby("item_row", sort=False).head(neighbours)
    return CoPurchase.from_table(table, n_items, n_baskets, item_baskets)
