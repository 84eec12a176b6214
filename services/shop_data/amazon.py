"""Amazon Review Data (2018): 5-core reviews and their metadata turned into items and
review/purchase events."""

from __future__ import annotations

import gzip
import html
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from services.errors import DataFileError
from services.shop_data.schema import LoadReport, ShopData
from services.shop_data.readers import read_jsonl
from services.shop_data.values import as_number, as_text, as_timestamp, cell_text
from services.shop_data.canonical import finish_events, finish_items, first_sentence

_TAG_RE = re.compile(r"<[^>]*>")
_WS_RE = re.compile(r"\s+")
# "$12.34", "$1,250.00"; anything else non-blank in `price` (CSS/HTML junk) is not a price.
_PRICE_RE = r"\$\s*((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)"
_GENERIC_SUMMARY_RE = re.compile(r"(one|two|three|four|five) stars?", re.IGNORECASE)


def _strip_html(text: Any) -> str:
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    text = _TAG_RE.sub(" ", text)
    text = html.unescape(text)
    return _WS_RE.sub(" ", text).strip()


def _looks_like_markup(text: str) -> bool:
    """A scraped HTML/CSS fragment rather than text (e.g. '<span class="a-size-medium …')."""
    return bool(re.search(r"<\s*/?\s*[a-zA-Z]|/>|=\"|\{[^}]*:[^}]*\}", text))


def load_amazon(folder: Path, pairs: list[tuple[str, Path | None, Path | None]]) -> ShopData:
    report = LoadReport(source="amazon_reviews_2018")
    item_frames = []
    review_frames = []
    for _category, reviews_f, meta_f in pairs:
        if meta_f is not None:
            report.files.append(str(meta_f))
            item_frames.append(_read_jsonl_records(meta_f))
        if reviews_f is not None:
            report.files.append(str(reviews_f))
            review_frames.append(_read_jsonl_records(reviews_f))

    items = _amazon_items(item_frames, report)
    events = _amazon_reviews(review_frames, report, set(items["item_id"]))

    # The ratings-only CSVs (<Category>.csv.gz: asin,user,rating,time; no header, no text) are
    # NOT loaded: they are not k-core (Magazine: 72,098 users, most with one rating), carry no
    # review text, and would swamp the 5-core reviews that evaluation and copy rely on. They are
    # counted so the manifest shows what was left out.
    ratings = sorted(f for f in folder.glob("*.csv.gz") if f.is_file())
    if ratings:
        total = 0
        for f in ratings:
            report.files.append(str(f))
            total += _count_lines(f)
        report.rows_read["ratings_only"] = total
        report.rows_kept["ratings_only"] = 0
        report.drop("ratings_only", "ratings_only_not_loaded", total)
        report.notes.append("ratings-only CSV files are counted but not loaded (no text, not k-core)")
    return ShopData(items=items, events=events, report=report)


def _count_lines(path: Path) -> int:
    try:
        with gzip.open(path, "rb") as fh:
            n = 0
            last = b"\n"
            while chunk := fh.read(1 << 20):
                n += chunk.count(b"\n")
                last = chunk[-1:]
            return n + (last != b"\n")
    except (OSError, EOFError) as e:
        raise DataFileError(str(path), f"cannot read the file: {e}") from None


def _read_jsonl_records(path: Path) -> pd.DataFrame:
    df, rownums = read_jsonl(path)
    df["_file"] = str(path)
    df["_row"] = rownums
    return df


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    return df[name] if name in df.columns else pd.Series([None] * len(df), index=df.index, dtype=object)


def _as_list(v: Any) -> list:
    if isinstance(v, list):
        return v
    if isinstance(v, np.ndarray):
        return list(v)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return []
    return [v]


def _clean_category(parts: Any) -> tuple[str, bool]:
    """Category path root first, joined ' > '; cut at the first element that is not a category
    name (Gift Cards paths carry feature bullets and stray </span> after the real levels)."""
    names: list[str] = []
    cut = False
    for p in _as_list(parts):
        raw = str(p)
        name = _strip_html(raw)
        if not name or "<" in raw or name.endswith(".") or len(name) > 60 or "$" in name:
            cut = True
            break
        names.append(name)
    return " > ".join(names), cut


def _clean_details(d: Any) -> dict:
    if not isinstance(d, dict):
        return {}
    out = {}
    for k, v in d.items():
        key = _WS_RE.sub(" ", str(k)).strip().rstrip(":").strip()
        val = _strip_html(v) if isinstance(v, str) else v
        if key and key.upper() != "ASIN" and val not in ("", None):
            out[key] = val
    return out


def _amazon_items(frames: list[pd.DataFrame], report: LoadReport) -> pd.DataFrame:
    t = "metadata"
    meta = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["asin", "_file", "_row"])
    report.rows_read[t] = len(meta)
    asin = as_text(_col(meta, "asin"))
    keep = asin != ""
    report.drop(t, "missing_asin", int((~keep).sum()))
    dup = keep & asin.duplicated(keep="first") & (asin != "")
    report.drop(t, "duplicate_asin", int(dup.sum()))
    keep &= ~dup
    meta = meta[keep]
    asin = asin[keep]

    raw_title = _col(meta, "title").map(lambda v: v if isinstance(v, str) else "")
    markup = raw_title.map(_looks_like_markup)
    title = raw_title.map(_strip_html).where(~markup, "")
    report.repair(t, "title_html_unescaped", int(((title != "") & (title != raw_title.str.strip())).sum()))

    descriptions = _col(meta, "description").map(
        lambda v: " ".join(s for s in (_strip_html(x) for x in _as_list(v)) if s)
    )
    brand = _col(meta, "brand").map(_strip_html)
    brand = brand.where(~brand.map(_looks_like_markup), "")

    missing_title = title == ""
    from_desc = missing_title & (descriptions != "")
    title[from_desc] = descriptions[from_desc].map(first_sentence)
    from_brand = missing_title & ~from_desc & (brand != "")
    title[from_brand] = brand[from_brand]
    report.repair(t, "title_from_description", int(from_desc.sum()))
    report.repair(t, "title_from_brand", int(from_brand.sum()))
    no_title = title == ""
    report.drop(t, "no_usable_title", int(no_title.sum()))

    cats = _col(meta, "category").map(_clean_category)
    category = cats.map(lambda c: c[0])
    report.repair(t, "category_junk_removed", int(cats.map(lambda c: c[1]).sum()))

    price_raw = _col(meta, "price").map(lambda v: v.strip() if isinstance(v, str) else cell_text(v))
    number = price_raw.str.extract("^" + _PRICE_RE + "$", expand=False)
    price = pd.to_numeric(number.str.replace(",", "", regex=False), errors="coerce")
    junk = (price_raw != "") & price.isna()
    report.repair(t, "junk_price", int((junk & ~no_title).sum()))

    def attrs(row) -> str:
        a = {}
        if isinstance(row.get("main_cat"), str) and row.get("main_cat"):
            a["main_cat"] = _strip_html(row["main_cat"])
        feats = [s for s in (_strip_html(x) for x in _as_list(row.get("feature"))) if s]
        if feats:
            a["feature"] = feats
        details = _clean_details(row.get("details"))
        if details:
            a["details"] = details
        for k in ("also_buy", "also_view"):
            ids = [str(x) for x in _as_list(row.get(k)) if x]
            if ids:
                a[k] = ids
        return json.dumps(a, ensure_ascii=False) if a else ""

    fields = [c for c in ("main_cat", "feature", "details", "also_buy", "also_view") if c in meta.columns]
    attributes = meta[fields].apply(lambda r: attrs(r.to_dict()), axis=1) if fields and len(meta) else ""

    items = pd.DataFrame(
        {
            "item_id": asin,
            "title": title,
            "description": descriptions,
            "category": category,
            "brand": brand,
            "price": price.astype("float64"),
            "currency": "USD",
            "in_stock": True,
            "attributes": attributes,
        },
        index=meta.index,
    )
    items = items[~no_title]
    report.rows_kept[t] = len(items)
    report.notes.append(
        "Amazon metadata titles that are scraped HTML fragments are replaced by the description's "
        "first sentence or the brand; Magazine titles/prices are not reliable copy facts"
    )
    return finish_items(items)


def _amazon_reviews(frames: list[pd.DataFrame], report: LoadReport, item_ids: set[str]) -> pd.DataFrame:
    t = "reviews"
    rv = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["_file", "_row"])
    report.rows_read[t] = len(rv)
    user = as_text(_col(rv, "reviewerID"))
    asin = as_text(_col(rv, "asin"))
    rating, bad_rating = as_number(_col(rv, "overall"))
    ts, bad_ts = as_timestamp(_col(rv, "unixReviewTime"))
    body = as_text(_col(rv, "reviewText"))
    summary = as_text(_col(rv, "summary"))

    # Prepend the summary when it adds something: not a bare "Five Stars", not already the start.
    repeats = pd.Series(
        [b.lower().startswith(s.lower()) for s, b in zip(summary, body)], index=rv.index, dtype=bool
    )
    useful = (summary != "") & ~summary.str.fullmatch(_GENERIC_SUMMARY_RE) & ~repeats
    sep = np.where(summary.str.contains(r"[.!?]$"), " ", ". ")
    text = body.copy()
    both = useful & (body != "")
    text[both] = summary[both] + pd.Series(sep, index=rv.index)[both] + body[both]
    only_summary = (body == "") & (summary != "")
    text[only_summary] = summary[only_summary]

    rules = {
        "missing_id": (user == "") | (asin == ""),
        "bad_rating": bad_rating | ~rating.between(1, 5),
        "bad_timestamp": bad_ts | ts.isna(),
        "unknown_item": ~asin.isin(item_ids),
    }
    keep = pd.Series(True, index=rv.index)
    for reason, mask in rules.items():
        hit = keep & mask
        report.drop(t, reason, int(hit.sum()))
        keep &= ~hit
    # Exact repeats (same user, item, time, rating and text) are one review scraped twice.
    key = pd.DataFrame({"u": user, "a": asin, "t": ts, "r": rating, "x": text})
    dup = keep & key[keep].duplicated(keep="first").reindex(rv.index, fill_value=False)
    report.drop(t, "duplicate_review", int(dup.sum()))
    keep &= ~dup
    report.repair(t, "text_from_summary", int((keep & only_summary).sum()))
    report.rows_kept[t] = int(keep.sum())

    events = pd.DataFrame(
        {
            "user_id": user[keep],
            "item_id": asin[keep],
            "event_type": "review",
            "session_id": "",
            "quantity": np.nan,
            "price": np.nan,
            "timestamp": ts[keep],
            "text": text[keep],
            "rating": rating[keep],
        }
    )
    return finish_events(events)
