"""The canonical shop schema (items + events) and the loaders that produce it.

Everything downstream (profiles, retrieval, ranking, copy, evaluation) reads a `ShopData`:

- ``items``: one row per product, columns exactly `ITEM_COLUMNS`.
- ``events``: one row per shopper action, columns exactly `EVENT_COLUMNS`; every event's
  ``item_id`` is in ``items``.
- ``report``: a `LoadReport` that accounts for every input row (kept, or dropped with one
  reason) and every value that was fixed on a kept row. It goes into the build manifest.

`load_shop_data(path)` recognises three layouts:

1. UCI Online Retail: ``online_retail.csv`` / ``online_retail.csv.gz`` in a folder, or a path
   straight to a CSV with that header (InvoiceNo, StockCode, Description, Quantity,
   InvoiceDate, UnitPrice, CustomerID, Country).
2. Amazon Review Data (2018): a folder with ``<Category>_5.json.gz`` review files and the
   matching ``meta_<Category>.json.gz`` metadata files.
3. Canonical: a folder with ``items.{csv,csv.gz,jsonl,jsonl.gz,parquet}`` and
   ``events.{...}`` in the schema below.

Malformed input (a file that cannot be read as it stands: missing column, bad JSON, wrong
number of CSV fields, bytes that are not UTF-8, unparseable value, blank required value, a
negative or infinite price, quantity or rating) raises
`services.errors.DataFileError` naming the file, the first bad data row (1-based, header not
counted; for JSONL the line number) and the column. Well-formed but unusable rows (an event
for an unknown item, a duplicate item id, a UCI postage line, ...) are dropped and counted in
the report instead.

Dtypes of the result: id and text columns are pandas ``str``; ``price``/``quantity``/
``rating`` float64 (NaN when unknown); ``in_stock`` bool; ``timestamp`` ``datetime64[ns]``,
naive (UTC, or shop-local time where the source gives only that, as UCI does).

One module per source (canonical, uci, amazon) over the shared schema, readers and value
conversions. No Ray, no gRPC here: plain pandas (and pyarrow's CSV reader).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.errors import DataFileError
from services.shop_data.schema import EVENT_COLUMNS, EVENT_TYPES, ITEM_COLUMNS, LoadReport, ShopData, UCI_COLUMNS
from services.shop_data.readers import csv_header_is_uci
from services.shop_data.canonical import load_canonical
from services.shop_data.uci import load_uci
from services.shop_data.amazon import load_amazon

__all__ = [
    "ITEM_COLUMNS",
    "EVENT_COLUMNS",
    "EVENT_TYPES",
    "LoadReport",
    "ShopData",
    "load_shop_data",
]

_UCI_NAMES = ("online_retail.csv", "online_retail.csv.gz")
_TABLE_SUFFIXES = (".csv", ".csv.gz", ".jsonl", ".jsonl.gz", ".parquet")


def load_shop_data(path: str | Path) -> ShopData:
    """Load a dataset folder (or a UCI CSV file) into the canonical schema; see the module doc."""
    p = Path(path)
    if not p.exists():
        raise DataFileError(str(p), "no such file or folder")
    if p.is_file():
        name = p.name.lower()
        if name.endswith((".csv", ".csv.gz")) and csv_header_is_uci(p):
            return load_uci(p)
        raise DataFileError(
            str(p),
            "not a UCI Online Retail CSV (header "
            + ", ".join(UCI_COLUMNS)
            + "); for the canonical or Amazon layouts pass the folder that holds the files",
        )
    if not p.is_dir():
        raise DataFileError(str(p), "neither a file nor a folder")

    layouts: list[tuple[str, Any]] = []
    items_f = _find_table(p, "items")
    events_f = _find_table(p, "events")
    if items_f is not None or events_f is not None:
        if items_f is None or events_f is None:
            missing = "items" if items_f is None else "events"
            raise DataFileError(
                str(p),
                f"canonical layout needs both items.* and events.*; no {missing}"
                f"{{{','.join(_TABLE_SUFFIXES)}}} found",
            )
        layouts.append(("canonical", (items_f, events_f)))
    uci = [p / n for n in _UCI_NAMES if (p / n).is_file()]
    if len(uci) > 1:
        raise DataFileError(str(p), "both online_retail.csv and online_retail.csv.gz present; keep one")
    if uci:
        layouts.append(("uci_online_retail", uci[0]))
    amazon = _amazon_pairs(p)
    if amazon:
        layouts.append(("amazon_reviews_2018", amazon))

    if not layouts:
        raise DataFileError(
            str(p),
            "unknown dataset layout: looked for items.{csv,csv.gz,jsonl,jsonl.gz,parquet} + "
            "events.{same} (canonical), online_retail.csv[.gz] (UCI Online Retail), "
            "<Category>_5.json.gz + meta_<Category>.json.gz (Amazon reviews 2018)",
        )
    if len(layouts) > 1:
        raise DataFileError(
            str(p), "folder matches several layouts (" + ", ".join(n for n, _ in layouts) + "); keep one per folder"
        )
    kind, arg = layouts[0]
    if kind == "canonical":
        return load_canonical(*arg)
    if kind == "uci_online_retail":
        return load_uci(arg)
    return load_amazon(p, arg)


def _find_table(folder: Path, name: str) -> Path | None:
    found = [folder / (name + s) for s in _TABLE_SUFFIXES if (folder / (name + s)).is_file()]
    if len(found) > 1:
        raise DataFileError(str(folder), f"several {name} files ({', '.join(f.name for f in found)}); keep one")
    return found[0] if found else None


def _amazon_pairs(folder: Path) -> list[tuple[str, Path | None, Path | None]]:
    """(category, reviews file, meta file) for every category with a 5-core or meta file."""
    reviews = {f.name[: -len("_5.json.gz")]: f for f in folder.glob("*_5.json.gz") if f.is_file()}
    metas = {f.name[len("meta_") : -len(".json.gz")]: f for f in folder.glob("meta_*.json.gz") if f.is_file()}
    if not reviews or not metas:
        return []
    return [(c, reviews.get(c), metas.get(c)) for c in sorted(set(reviews) | set(metas))]


