"""The canonical layout: items.* and events.* in the schema of services.shop_data.schema."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from services.errors import DataFileError
from services.shop_data.schema import (
    EVENT_COLUMNS,
    EVENT_TYPES,
    ITEM_COLUMNS,
    LoadReport,
    REQUIRED_EVENT_COLUMNS,
    REQUIRED_ITEM_COLUMNS,
    ShopData,
    TEXT_EVENT_COLUMNS,
    TEXT_ITEM_COLUMNS,
)
from services.shop_data.readers import read_table
from services.shop_data.values import (
    as_bool,
    as_text,
    as_timestamp,
    cell_text,
    json_dumps,
    json_text_bad,
    Problems,
)


def first_sentence(text: str, limit: int = 100) -> str:
    """First sentence of a text, cut at a word boundary to at most `limit` characters."""
    text = " ".join(text.split())
    if not text:
        return ""
    m = re.search(r"(?<=[.!?])\s", text)
    sent = text[: m.start()] if m else text
    if len(sent) > limit:
        cut = sent[:limit].rsplit(" ", 1)[0].rstrip(" ,;:-")
        sent = (cut or sent[:limit]) + "…"
    return sent.strip()


def load_canonical(items_path: Path, events_path: Path) -> ShopData:
    report = LoadReport(source="canonical", files=[str(items_path), str(events_path)])
    items = _canonical_items(items_path, report)
    events = _canonical_events(events_path, report, set(items["item_id"]))
    return ShopData(items=items, events=events, report=report)


def _canonical_items(path: Path, report: LoadReport) -> pd.DataFrame:
    raw, rownums = read_table(path)
    if len(raw.columns) == 0:  # an empty JSONL file: no rows, and so no keys to check
        raw = pd.DataFrame({c: pd.Series(dtype=str) for c in ITEM_COLUMNS})
    report.rows_read["items"] = len(raw)
    for col in REQUIRED_ITEM_COLUMNS:
        if col not in raw.columns:
            raise DataFileError(str(path), "required column missing", column=col)
    n = len(raw)
    idx = raw.index

    def text(col: str) -> pd.Series:
        return as_text(raw[col]) if col in raw.columns else pd.Series("", index=idx, dtype=str)

    out = pd.DataFrame(index=idx)
    for col in TEXT_ITEM_COLUMNS:
        if col == "attributes" and col in raw.columns and raw[col].dtype == object:
            # dicts/lists from JSONL or Parquet become JSON text; strings stay as they are
            out[col] = raw[col].map(
                lambda v: json_dumps(v) if isinstance(v, (dict, list, np.ndarray)) else cell_text(v)
            ).astype(str).str.strip()
        else:
            out[col] = text(col)

    probs = Problems(path, rownums)
    probs.check(out["item_id"] == "", "item_id", "blank required value")
    if "price" in raw.columns:
        price = probs.number_column(raw["price"], "price")
    else:
        price = pd.Series(np.nan, index=idx, dtype="float64")
    if "in_stock" in raw.columns:
        in_stock, bad = as_bool(raw["in_stock"], default=True)
        probs.check(bad, "in_stock", "not a boolean (true/false, 1/0, yes/no)")
    else:
        in_stock = pd.Series(True, index=idx, dtype=bool)
    if n:
        probs.check(json_text_bad(out["attributes"]), "attributes", "not valid JSON text")
    probs.raise_first()
    out["price"] = price.astype("float64")
    out["in_stock"] = in_stock.astype(bool)

    # Duplicate item_id: keep the first row.
    dup = out["item_id"].duplicated(keep="first")
    report.drop("items", "duplicate_item_id", int(dup.sum()))
    out = out[~dup]

    # Title: strongly expected; repair from description, else drop.
    no_title = out["title"] == ""
    from_desc = no_title & (out["description"] != "")
    if from_desc.any():
        out.loc[from_desc, "title"] = out.loc[from_desc, "description"].map(first_sentence)
    report.repair("items", "title_from_description", int(from_desc.sum()))
    still = out["title"] == ""
    report.drop("items", "no_title", int(still.sum()))
    out = out[~still]

    report.rows_kept["items"] = len(out)
    return finish_items(out)


_NEGATIVE_HINT = {"quantity": ' (a return is event_type "return" with a positive quantity)'}


def _canonical_events(path: Path, report: LoadReport, item_ids: set[str]) -> pd.DataFrame:
    raw, rownums = read_table(path)
    if len(raw.columns) == 0:
        raw = pd.DataFrame({c: pd.Series(dtype=str) for c in EVENT_COLUMNS})
    report.rows_read["events"] = len(raw)
    for col in REQUIRED_EVENT_COLUMNS:
        if col not in raw.columns:
            raise DataFileError(str(path), "required column missing", column=col)
    idx = raw.index
    out = pd.DataFrame(index=idx)
    for col in TEXT_EVENT_COLUMNS:
        out[col] = as_text(raw[col]) if col in raw.columns else pd.Series("", index=idx, dtype=str)
    out["event_type"] = out["event_type"].str.lower()

    probs = Problems(path, rownums)
    for col in ("user_id", "item_id", "event_type"):
        probs.check(out[col] == "", col, "blank required value")
    probs.check(
        (out["event_type"] != "") & ~out["event_type"].isin(EVENT_TYPES),
        "event_type",
        "unknown event_type (expected one of " + ", ".join(sorted(EVENT_TYPES)) + ")",
    )
    ts, bad_ts = as_timestamp(raw["timestamp"])
    probs.check(ts.isna() & ~bad_ts, "timestamp", "blank required value")
    probs.check(bad_ts, "timestamp", "cannot parse timestamp (ISO-8601 or epoch seconds expected)")
    out["timestamp"] = ts
    for col in ("quantity", "price", "rating"):
        if col in raw.columns:
            # ratings keep whatever scale the shop uses, but are never negative or infinite
            out[col] = probs.number_column(raw[col], col, _NEGATIVE_HINT.get(col, ""))
        else:
            out[col] = np.nan
    probs.raise_first()

    unknown = ~out["item_id"].isin(item_ids)
    report.drop("events", "unknown_item", int(unknown.sum()))
    out = out[~unknown]
    report.rows_kept["events"] = len(out)
    return finish_events(out)


def finish_items(df: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({c: df[c] for c in ITEM_COLUMNS}).reset_index(drop=True)
    for c in TEXT_ITEM_COLUMNS:
        out[c] = out[c].astype(str)
    out["price"] = out["price"].astype("float64")
    out["in_stock"] = out["in_stock"].astype(bool)
    return out


def finish_events(df: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({c: df[c] for c in EVENT_COLUMNS}).reset_index(drop=True)
    for c in TEXT_EVENT_COLUMNS:
        out[c] = out[c].astype(str)
    for c in ("quantity", "price", "rating"):
        out[c] = out[c].astype("float64")
    out["timestamp"] = out["timestamp"].astype("datetime64[ns]")
    return out


