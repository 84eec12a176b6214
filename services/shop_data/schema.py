"""The canonical shop schema: the columns of items and events, and what a load reports."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

ITEM_COLUMNS: tuple[str, ...] = (
    "item_id",
    "title",
    "description",
    "category",
    "brand",
    "price",
    "currency",
    "in_stock",
    "attributes",
)
EVENT_COLUMNS: tuple[str, ...] = (
    "user_id",
    "item_id",
    "event_type",
    "session_id",
    "quantity",
    "price",
    "timestamp",
    "text",
    "rating",
)
EVENT_TYPES: frozenset[str] = frozenset({"view", "search", "cart", "purchase", "return", "review"})

REQUIRED_ITEM_COLUMNS: tuple[str, ...] = ("item_id",)
REQUIRED_EVENT_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "event_type", "timestamp")

TEXT_ITEM_COLUMNS = ("item_id", "title", "description", "category", "brand", "currency", "attributes")
TEXT_EVENT_COLUMNS = ("user_id", "item_id", "event_type", "session_id", "text")

# datetime64[ns] can hold 1677-09-21 .. 2262-04-11; anything outside is treated as unparseable.
TS_MIN = pd.Timestamp("1678-01-01")
TS_MAX = pd.Timestamp("2262-01-01")


# --------------------------------------------------------------------------------------------
# Report and result
# --------------------------------------------------------------------------------------------


@dataclass
class LoadReport:
    """What a loader read, kept, dropped (one reason per dropped row) and repaired.

    Tables are the *input* tables: ``invoice_lines`` for UCI; ``reviews``, ``metadata`` and
    ``ratings_only`` for Amazon; ``items`` and ``events`` for the canonical layout. Each rule
    a loader applies appears under its reason even when its count is 0, so the manifest shows
    which rules ran.
    """

    source: str  # "uci_online_retail" | "amazon_reviews_2018" | "canonical"
    files: list[str] = field(default_factory=list)
    rows_read: dict[str, int] = field(default_factory=dict)
    rows_kept: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)
    repaired: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # decisions worth reading in a manifest

    def drop(self, table: str, reason: str, count: int) -> None:
        d = self.dropped.setdefault(table, {})
        d[reason] = d.get(reason, 0) + int(count)

    def repair(self, table: str, reason: str, count: int) -> None:
        d = self.repaired.setdefault(table, {})
        d[reason] = d.get(reason, 0) + int(count)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "files": [str(f) for f in self.files],
            "rows_read": {k: int(v) for k, v in self.rows_read.items()},
            "rows_kept": {k: int(v) for k, v in self.rows_kept.items()},
            "dropped": {t: {r: int(n) for r, n in d.items()} for t, d in self.dropped.items()},
            "repaired": {t: {r: int(n) for r, n in d.items()} for t, d in self.repaired.items()},
            "notes": list(self.notes),
            "balanced": self.balanced(),
        }

    def balanced(self) -> bool:
        tables = set(self.rows_read) | set(self.rows_kept) | set(self.dropped)
        return all(
            self.rows_read.get(t, 0)
            == self.rows_kept.get(t, 0) + sum(self.dropped.get(t, {}).values())
            for t in tables
        )


@dataclass
class ShopData:
    items: pd.DataFrame
    events: pd.DataFrame
    report: LoadReport

# The header of a UCI Online Retail CSV.
UCI_COLUMNS: tuple[str, ...] = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)
