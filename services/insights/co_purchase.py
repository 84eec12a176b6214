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

    def neighbours(self, weights: np.ndarray) -> np.ndarray:
        """Σ over items (a weight per item row) of their neighbours' scores: [n_items]."""
        weights = np.asarray(weights, dtype=np.float64)
        # Only the rows of the items that weigh something: a shopper has tens of items, the
        # shop thousands. bincount adds each target's terms in ascending source order, as a
        # product with the transposed matrix did, so the sums are the same to the bit.
        sources = np.flatnonzero(weights)
        which, targets, scores = row_entries(self.scores, sources)
        return np.bincount(targets, weights=scores.astype(np.float64) * weights[sources][which], minlength=self.scores.shape[1])

    def strongest_links(self, sources: np.ndarray, source_weights: np.ndarray, targets: np.ndarray) -> list[int | None]:
        """For each target, which of the given items contributes most to it (for a reason)."""
        if len(sources) == 0 or len(targets) == 0:
            return [None] * len(targets)
        block = csr_block(self.scores, sources, targets) * source_weights[:, None]
        best = block.argmax(axis=0)
        linked = (block[best, np.arange(len(best))] > 0).tolist()
        return [int(source) if link else None for source, link in zip(np.asarray(sources)[best].tolist(), linked)]


# Serving reads a few rows of the item × item matrices per request. scipy's fancy indexing
# (matrix[rows][:, columns]) builds and validates two intermediate matrices, ~0.5 ms a call
# whatever their size; these read the rows' stored entries straight from the CSR arrays.


def row_entries(matrix: sparse.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stored entries of these rows (repeats allowed), row after row in stored order:
    (position in `rows`, column, value)."""
    rows = np.asarray(rows, dtype=np.int64)
    starts = matrix.indptr[rows].astype(np.int64)
    lengths = matrix.indptr[rows + 1] - starts
    # Entry e of the output is stored at its row's start plus e's offset within the row.
    at = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()))
    return np.repeat(np.arange(len(rows)), lengths), matrix.indices[at], matrix.data[at]


def csr_block(matrix: sparse.csr_matrix, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """matrix[rows][:, columns] as a dense array (repeats allowed in both), for a matrix in
    scipy's canonical form (no entry stored twice)."""
    columns = np.asarray(columns, dtype=np.int64)
    which, column, value = row_entries(matrix, rows)
    # Where each wanted column goes; of a column asked for twice, one copy is filled and read twice.
    position = np.full(matrix.shape[1], -1, dtype=np.int64)
    position[columns] = np.arange(len(columns))
    column = position[column]
    kept = column >= 0
    block = np.zeros((len(rows), len(columns)), dtype=matrix.dtype)
    block[which[kept], column[kept]] = value[kept]
    return block[:, position[columns]]


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
