"""UCI Online Retail: invoice lines turned into purchases and returns of products."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from services.errors import DataFileError
from services.shop_data.schema import LoadReport, ShopData, TS_MAX, TS_MIN, UCI_COLUMNS
from services.shop_data.readers import read_csv
from services.shop_data.values import as_number, Problems
from services.shop_data.canonical import finish_events, finish_items

# Which StockCodes are products. Derived from the full file (541,909 lines):
# - 538,914 lines carry 5 digits + optional letters (85123A, 22423, 15056bl, ...): products.
#   The letter suffix is a variant (colour/size); it appears in both cases for the same product
#   (15056BL and 15056bl are both "EDWARDIAN PARASOL BLACK"), so codes are upper-cased.
# - "DCGS…" codes (DCGSSGIRL "GIRLS PARTY BAG", DCGS0003 "BOXED GLASS ASHTRAY", ...) are real
#   goods sold through the dotcom shop: products. (Every one of their lines has no CustomerID,
#   so they are dropped as blank_customer anyway.)
# - Everything else is a fee, charge or bookkeeping line, not something a shopper picks:
#   POST/DOT/C2 (postage, carriage), M/m (manual adjustment), D (discount), S (samples),
#   BANK CHARGES, AMAZONFEE, CRUK (charity commission), B (adjust bad debt), PADS (cushion pads
#   given away at £0.001), gift_0001_* (gift vouchers: money, not merchandise).
# - Two 5-digit codes are services too and are listed explicitly: 23444 "Next Day Carriage"
#   (80 lines, £15) and 23702 "High Resolution Image".
_UCI_PRODUCT_CODE = r"\d{5}[A-Z]*|DCGS[A-Z0-9]+"
_UCI_SERVICE_CODES_5DIGIT = frozenset({"23444", "23702"})
_UCI_TABLE = "invoice_lines"
# Drop reasons in the order they are applied; a line gets the first that matches.
_UCI_DROP_REASONS = (
    "blank_customer",  # no CustomerID: cannot be tied to a shopper
    "non_product_code",  # postage, fees, adjustments, vouchers (see above)
    "non_sale_invoice",  # invoice number neither digits nor C+digits (the A… bad-debt lines)
    "nonpositive_price",  # UnitPrice <= 0: free goods, write-offs
    "nonpositive_quantity",  # Quantity <= 0 on a sale invoice (stock adjustments)
    "cancellation_nonnegative_quantity",  # C invoice line with Quantity >= 0 (none in the file)
    "no_description",  # the StockCode has no non-blank Description on any kept line
)
# Exact duplicate lines are KEPT. The shop records each addition of a product to an order as
# its own line: invoice 536412 holds "12 DAISY PEGS IN WOOD BOX" three times (qty 1, 2, 2),
# so two identical lines are indistinguishable from a shopper adding the same quantity twice.
# Dropping them would undercount real quantities; within one basket they do not change
# co-occurrence. (5,268 extra copies in the full file, 5,225 with a CustomerID.)


def load_uci(path: Path) -> ShopData:
    report = LoadReport(source="uci_online_retail", files=[str(path)])
    raw, rownums = read_csv(path)
    for col in UCI_COLUMNS:
        if col not in raw.columns:
            raise DataFileError(str(path), "required column missing", column=col)
    n = len(raw)
    report.rows_read[_UCI_TABLE] = n

    inv = raw["InvoiceNo"].str.strip()
    code_raw = raw["StockCode"].str.strip()
    code = code_raw.str.upper()
    desc = raw["Description"].str.strip()
    cust_raw = raw["CustomerID"].str.strip()
    cust = cust_raw.str.replace(r"\.0+$", "", regex=True)

    probs = Problems(path, rownums)
    probs.check(inv == "", "InvoiceNo", "blank required value")
    probs.check(code == "", "StockCode", "blank required value")
    qty, bad_q = as_number(raw["Quantity"])
    probs.check(bad_q | qty.isna(), "Quantity", "not a number")
    price, bad_p = as_number(raw["UnitPrice"])
    probs.check(bad_p | price.isna(), "UnitPrice", "not a number")
    ts = _uci_dates(raw["InvoiceDate"].str.strip())
    probs.check(ts.isna(), "InvoiceDate", "cannot parse date (YYYY-MM-DD HH:MM:SS or M/D/YYYY H:MM expected)")
    probs.raise_first()

    is_cancel = inv.str.startswith("C")
    is_product = code.str.fullmatch(_UCI_PRODUCT_CODE) & ~code.isin(_UCI_SERVICE_CODES_5DIGIT)
    rules = {
        "blank_customer": cust == "",
        "non_product_code": ~is_product,
        "non_sale_invoice": ~inv.str.fullmatch(r"C?\d+"),
        "nonpositive_price": price <= 0,
        "nonpositive_quantity": ~is_cancel & (qty <= 0),
        "cancellation_nonnegative_quantity": is_cancel & (qty >= 0),
    }
    keep = pd.Series(True, index=raw.index)
    for reason, mask in rules.items():
        hit = keep & mask
        report.drop(_UCI_TABLE, reason, int(hit.sum()))
        keep &= ~hit

    # Titles: the most frequent non-blank Description of the code over kept lines (ties: the one
    # used most recently). A code with none at all cannot be shown to anyone: drop its lines.
    kept = pd.DataFrame({"code": code[keep], "desc": desc[keep], "price": price[keep]})
    kept["pos"] = np.arange(len(kept))
    titles = _mode_by(kept[kept["desc"] != ""], "code", "desc")
    no_desc = keep & ~code.isin(titles.index)
    report.drop(_UCI_TABLE, "no_description", int(no_desc.sum()))
    keep &= ~no_desc
    assert tuple(report.dropped[_UCI_TABLE]) == _UCI_DROP_REASONS

    kept = kept[kept["code"].isin(titles.index)]
    prices = _mode_by(kept, "code", "price")

    report.repair(_UCI_TABLE, "stock_code_uppercased", int((keep & (code != code_raw)).sum()))
    report.repair(_UCI_TABLE, "customer_id_float_suffix_removed", int((keep & (cust != cust_raw)).sum()))
    report.repair(_UCI_TABLE, "blank_description_from_stock_code", int((keep & (desc == "")).sum()))
    report.rows_kept[_UCI_TABLE] = int(keep.sum())

    events = pd.DataFrame(
        {
            "user_id": cust[keep],
            "item_id": code[keep],
            "event_type": np.where(is_cancel[keep], "return", "purchase"),
            "session_id": inv[keep],
            "quantity": qty[keep].abs(),
            "price": price[keep],
            "timestamp": ts[keep],
            "text": "",
            "rating": np.nan,
        }
    )
    item_ids = titles.index.sort_values()
    items = pd.DataFrame(
        {
            "item_id": item_ids,
            "title": titles.reindex(item_ids).to_numpy(),
            "description": "",
            "category": "",
            "brand": "",
            "price": prices.reindex(item_ids).to_numpy(dtype="float64"),
            "currency": "GBP",
            "in_stock": True,
            "attributes": "",
        }
    )
    report.notes.append(
        "exact duplicate invoice lines are kept (the shop records repeated additions as separate lines)"
    )
    report.notes.append("timestamps are shop-local UK time, as the source gives them")
    return ShopData(items=finish_items(items), events=finish_events(events), report=report)


def _uci_dates(s: pd.Series) -> pd.Series:
    ts = pd.to_datetime(s, format="%Y-%m-%d %H:%M:%S", errors="coerce")
    miss = ts.isna()
    if miss.any():  # the original UCI export writes 12/1/2010 8:26
        ts[miss] = pd.to_datetime(s[miss], format="%m/%d/%Y %H:%M", errors="coerce")
        miss = ts.isna()
    if miss.any():
        alt = pd.to_datetime(s[miss], format="ISO8601", utc=True, errors="coerce").dt.tz_localize(None)
        ts[miss] = alt
    ts = ts.where((ts >= TS_MIN) & (ts < TS_MAX))
    return ts.astype("datetime64[ns]")


def _mode_by(df: pd.DataFrame, key: str, value: str) -> pd.Series:
    """Most frequent `value` per `key`; ties go to the value seen last (highest `pos`)."""
    if df.empty:
        return pd.Series(dtype=df[value].dtype, index=pd.Index([], name=key))
    g = df.groupby([key, value], sort=False).agg(n=("pos", "size"), last=("pos", "max")).reset_index()
    g = g.sort_values(["n", "last"], ascending=False, kind="stable").drop_duplicates(key)
    return g.set_index(key)[value]


