"""Tests of services/shop_data.py: the canonical schema and its three loaders.

Expected figures are computed here from the raw files with plain pandas (not through the
loader), or taken from the datasets' SOURCE.md files.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from services.errors import DataFileError
from services.shop_data import (
    EVENT_COLUMNS,
    EVENT_TYPES,
    ITEM_COLUMNS,
    LoadReport,
    ShopData,
    load_shop_data,
)

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO / "data" / "uci_online_retail_sample"
SAMPLE = SAMPLE_DIR / "online_retail.csv.gz"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
UCI_FULL = SHARED / "uci_online_retail" / "online_retail.csv.gz"
AMAZON = SHARED / "amazon_reviews_2018_small"

needs_full_uci = pytest.mark.skipif(
    not UCI_FULL.is_file(), reason=f"full UCI Online Retail file not present at {UCI_FULL}"
)
needs_amazon = pytest.mark.skipif(
    not (AMAZON / "meta_Gift_Cards.json.gz").is_file(),
    reason=f"Amazon reviews 2018 files not present in {AMAZON}",
)

# Non-product codes as SOURCE.md and a look at the file name them, written out independently
# of the loader's rule (which is "5 digits + letters, or DCGS…, minus two 5-digit fees").
NON_PRODUCT = {"POST", "DOT", "M", "C2", "D", "S", "BANK CHARGES", "AMAZONFEE", "CRUK", "PADS", "B"}
FEE_5DIGIT = {"23444", "23702"}  # Next Day Carriage, High Resolution Image


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def read_uci_raw(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df["code"] = df["StockCode"].str.strip().str.upper()
    df["q"] = df["Quantity"].astype(int)
    df["p"] = df["UnitPrice"].astype(float)
    df["has_cust"] = df["CustomerID"] != ""
    df["is_c"] = df["InvoiceNo"].str.startswith("C")
    df["non_product"] = df["code"].isin(NON_PRODUCT | FEE_5DIGIT) | df["StockCode"].str.startswith("gift_")
    return df


def expected_uci_counts(raw: pd.DataFrame) -> dict[str, int]:
    cust, nonprod = raw["has_cust"], raw["non_product"]
    good = cust & ~nonprod & (raw["p"] > 0)
    return {
        "blank_customer": int((~cust).sum()),
        "non_product_code": int((cust & nonprod).sum()),
        "nonpositive_price": int((cust & ~nonprod & (raw["p"] <= 0)).sum()),
        "purchase": int((good & ~raw["is_c"] & (raw["q"] > 0)).sum()),
        "return": int((good & raw["is_c"] & (raw["q"] < 0)).sum()),
    }


def check_shape(data: ShopData) -> None:
    items, events = data.items, data.events
    assert tuple(items.columns) == ITEM_COLUMNS
    assert tuple(events.columns) == EVENT_COLUMNS
    assert items["item_id"].is_unique
    assert (items["title"].str.len() > 0).all()
    assert items["price"].dtype == np.float64
    assert items["in_stock"].dtype == bool
    for c in ("item_id", "title", "description", "category", "brand", "currency", "attributes"):
        assert items[c].map(type).eq(str).all(), c
    for c in ("user_id", "item_id", "event_type", "session_id", "text"):
        assert events[c].map(type).eq(str).all(), c
    for c in ("quantity", "price", "rating"):
        assert events[c].dtype == np.float64, c
    assert events["timestamp"].dtype == np.dtype("datetime64[ns]")
    assert events["timestamp"].notna().all()
    assert events["event_type"].isin(EVENT_TYPES).all()
    assert events["item_id"].isin(set(items["item_id"])).all(), "an event references an unknown item"
    assert data.report.balanced()
    json.dumps(data.report.to_dict())  # JSON-serialisable


# ------------------------------------------------------------------------------------------
# UCI sample shipped in the repo
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample() -> ShopData:
    return load_shop_data(SAMPLE_DIR)


def test_sample_loads_balanced_and_consistent(sample):
    check_shape(sample)
    r = sample.report
    assert r.source == "uci_online_retail"
    assert r.files == [str(SAMPLE)]
    raw = read_uci_raw(SAMPLE)
    assert r.rows_read == {"invoice_lines": len(raw)}
    assert 3000 <= len(raw) <= 6000
    assert r.rows_kept["invoice_lines"] == len(sample.events)


def test_sample_drop_counts_match_plain_pandas(sample):
    raw = read_uci_raw(SAMPLE)
    exp = expected_uci_counts(raw)
    dropped = sample.report.dropped["invoice_lines"]
    for reason in ("blank_customer", "non_product_code", "nonpositive_price"):
        assert dropped[reason] == exp[reason], reason
        assert exp[reason] > 0, f"the sample should show {reason}"
    assert sum(dropped.values()) == exp["blank_customer"] + exp["non_product_code"] + exp["nonpositive_price"]
    counts = sample.events["event_type"].value_counts()
    assert counts["purchase"] == exp["purchase"]
    assert counts["return"] == exp["return"]
    assert (sample.events["quantity"] > 0).all()
    assert (sample.events["price"] > 0).all()
    # the dirt the demo is meant to show is really in the file
    assert {"POST", "DOT", "M"} <= set(raw["code"])
    assert raw["is_c"].sum() > 0 and (~raw["has_cust"]).sum() > 0


def test_sample_mapping_of_fields(sample):
    raw = read_uci_raw(SAMPLE)
    ev = sample.events
    assert not ev["user_id"].str.contains(r"\.").any()
    assert set(ev["user_id"]) <= set(raw.loc[raw["has_cust"], "CustomerID"])
    assert set(ev["session_id"]) <= set(raw["InvoiceNo"])
    assert ev.loc[ev["event_type"] == "return", "session_id"].str.startswith("C").all()
    assert not ev.loc[ev["event_type"] == "purchase", "session_id"].str.startswith("C").any()
    assert (sample.items["currency"] == "GBP").all()
    assert sample.items["in_stock"].all()
    # rich and thin histories both present
    inv = ev.groupby("user_id")["session_id"].nunique()
    assert (inv >= 20).sum() >= 5 and (inv <= 3).sum() >= 10
    span = ev.groupby("user_id")["timestamp"].agg(lambda t: (t.max() - t.min()).days)
    assert (span[inv >= 20] >= 180).all()
    # first line of a kept purchase maps field by field
    row = raw[raw["has_cust"] & ~raw["non_product"] & (raw["p"] > 0) & ~raw["is_c"]].iloc[0]
    first = ev[ev["event_type"] == "purchase"].iloc[0]
    assert first["user_id"] == row["CustomerID"]
    assert first["item_id"] == row["code"]
    assert first["session_id"] == row["InvoiceNo"]
    assert first["quantity"] == float(row["Quantity"])
    assert first["price"] == pytest.approx(float(row["UnitPrice"]))
    assert first["timestamp"] == pd.Timestamp(row["InvoiceDate"])


def test_sample_item_title_and_price_are_modal(sample):
    raw = read_uci_raw(SAMPLE)
    kept = raw[raw["has_cust"] & ~raw["non_product"] & (raw["p"] > 0)]
    items = sample.items.set_index("item_id")
    assert set(items.index) == set(kept["code"])
    for code, grp in list(kept.groupby("code"))[:200]:
        desc_counts = grp.loc[grp["Description"] != "", "Description"].value_counts()
        assert desc_counts[items.at[code, "title"]] == desc_counts.max()
        price_counts = grp["p"].value_counts()
        assert price_counts[items.at[code, "price"]] == price_counts.max()


def test_sample_file_is_small_and_described():
    assert SAMPLE.stat().st_size < 1_000_000
    source_md = (SAMPLE_DIR / "SOURCE.md").read_text()
    digest = hashlib.sha256(SAMPLE.read_bytes()).hexdigest()
    assert digest in source_md
    rows = len(gzip.decompress(SAMPLE.read_bytes()).splitlines()) - 1
    assert f"{rows:,}" in source_md or str(rows) in source_md
    assert "doi:10.1057/dbm.2012.17" in source_md


@needs_full_uci
def test_sample_lines_are_verbatim_lines_of_the_full_file_in_order():
    full = gzip.decompress(UCI_FULL.read_bytes()).splitlines()
    part = gzip.decompress(SAMPLE.read_bytes()).splitlines()
    assert part[0] == full[0]
    it = iter(full[1:])
    assert all(any(line == f for f in it) for line in part[1:]), "sample lines out of order or altered"


# ------------------------------------------------------------------------------------------
# the full UCI file
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_uci() -> tuple[ShopData, pd.DataFrame]:
    if not UCI_FULL.is_file():
        pytest.skip(f"full UCI Online Retail file not present at {UCI_FULL}")
    return load_shop_data(UCI_FULL), read_uci_raw(UCI_FULL)


@needs_full_uci
def test_full_uci_counts(full_uci):
    data, raw = full_uci
    check_shape(data)
    r = data.report
    assert r.rows_read == {"invoice_lines": 541_909}
    assert r.balanced()
    dropped = r.dropped["invoice_lines"]
    # SOURCE.md: CustomerID empty in 135,080 rows; blank_customer is the first rule applied
    assert dropped["blank_customer"] == 135_080
    exp = expected_uci_counts(raw)
    for reason in ("non_product_code", "nonpositive_price"):
        assert dropped[reason] == exp[reason]
    assert dropped["nonpositive_quantity"] == 0  # every such line lacks a CustomerID
    # SOURCE.md: the "clean purchase" subset (Quantity > 0, UnitPrice > 0, CustomerID, not C)
    # has 397,884 lines; the loader keeps those minus postage/fee lines.
    clean = raw["has_cust"] & (raw["q"] > 0) & (raw["p"] > 0) & ~raw["is_c"]
    assert clean.sum() == 397_884
    purchases = (data.events["event_type"] == "purchase").sum()
    assert purchases == 397_884 - (clean & raw["non_product"]).sum() == exp["purchase"]
    assert (data.events["event_type"] == "return").sum() == exp["return"]
    # SOURCE.md: 4,338 customers in the clean subset; a few buy nothing but postage
    assert data.events.loc[data.events["event_type"] == "purchase", "user_id"].nunique() <= 4_338
    assert data.events["timestamp"].min() >= pd.Timestamp("2010-12-01 08:26")
    assert data.events["timestamp"].max() <= pd.Timestamp("2011-12-09 12:50")


@needs_full_uci
def test_full_uci_known_rows(full_uci):
    data, _ = full_uci
    ev, items = data.events, data.items.set_index("item_id")
    first = ev.iloc[0]  # SOURCE.md: invoice 536365, customer 17850, 6 x £2.55 at 2010-12-01 08:26
    assert (first["session_id"], first["user_id"], first["item_id"]) == ("536365", "17850", "85123A")
    assert (first["quantity"], first["price"]) == (6.0, 2.55)
    assert first["timestamp"] == pd.Timestamp("2010-12-01 08:26:00")
    assert items.at["85123A", "title"] == "WHITE HANGING HEART T-LIGHT HOLDER"
    last = ev.iloc[-1]  # SOURCE.md: last rows are invoice 581587, customer 12680
    assert (last["session_id"], last["user_id"]) == ("581587", "12680")
    for code in ("POST", "DOT", "M", "C2", "BANK CHARGES", "AMAZONFEE", "23444"):
        assert code not in items.index
    # lower-case variant codes fold into their upper-case product
    assert not items.index.str.contains("[a-z]").any()


# ------------------------------------------------------------------------------------------
# Amazon reviews 2018
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def amazon() -> ShopData:
    if not (AMAZON / "meta_Gift_Cards.json.gz").is_file():
        pytest.skip(f"Amazon reviews 2018 files not present in {AMAZON}")
    return load_shop_data(AMAZON)


def _jsonl(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@needs_amazon
def test_amazon_reviews_become_review_events(amazon):
    check_shape(amazon)
    ev = amazon.events
    r = amazon.report
    assert r.source == "amazon_reviews_2018"
    assert r.rows_read["reviews"] == 2_972 + 2_375  # SOURCE.md
    assert (ev["event_type"] == "review").all()
    assert ev["rating"].between(1, 5).all()
    assert ev["quantity"].isna().all() and ev["price"].isna().all()
    # Magazine 5-core asins without metadata (SOURCE.md: 151 of 157 have it) -> unknown_item
    metas = {o["asin"] for o in _jsonl(AMAZON / "meta_Magazine_Subscriptions.json.gz")}
    mag = _jsonl(AMAZON / "Magazine_Subscriptions_5.json.gz")
    assert r.dropped["reviews"]["unknown_item"] == sum(o["asin"] not in metas for o in mag)
    # SOURCE.md's sample row: asin B004LLIKVU, 5 stars, "Another great gift.", 2018-06-17
    row = ev[(ev["item_id"] == "B004LLIKVU") & (ev["user_id"] == "A31UBHTUUIFJUT")].iloc[0]
    assert row["rating"] == 5.0 and row["text"] == "Another great gift."
    assert row["timestamp"].date() == pd.Timestamp("2018-06-17").date()
    # the ratings-only CSV is counted, not loaded
    assert r.rows_read["ratings_only"] == 89_689
    assert r.dropped["ratings_only"] == {"ratings_only_not_loaded": 89_689}


@needs_amazon
def test_amazon_items_titles_and_prices(amazon):
    items = amazon.items
    assert not items["title"].str.contains("<span", regex=False).any()
    assert not items["title"].str.contains(r"<\s*/?\s*[a-zA-Z]|/>|class=").any()  # no markup left
    gift = _jsonl(AMAZON / "meta_Gift_Cards.json.gz")
    mag = _jsonl(AMAZON / "meta_Magazine_Subscriptions.json.gz")
    # duplicate asin lines: keep the first (SOURCE.md: 3,385 lines, 2,320 distinct asin)
    assert amazon.report.dropped["metadata"]["duplicate_asin"] == 3_385 - 2_320
    assert amazon.report.rows_read["metadata"] == len(gift) + len(mag)
    # prices: every "$12.34" parses (SOURCE.md: 358 Gift Cards rows); junk -> NaN, counted
    dollar = {o["asin"]: float(o["price"][1:].replace(",", "")) for o in gift if o["price"].startswith("$")}
    assert len(dollar) == 358
    got = items.set_index("item_id")["price"]
    assert got.notna().sum() == 358
    for asin, price in dollar.items():
        assert got[asin] == pytest.approx(price)
    first_mag = {}
    for o in mag:
        first_mag.setdefault(o["asin"], o)
    junk = sum(1 for o in gift + list(first_mag.values()) if o["price"].strip() and not o["price"].startswith("$"))
    assert amazon.report.repaired["metadata"]["junk_price"] == junk
    # Magazine titles were HTML fragments: repaired, not kept
    repaired = amazon.report.repaired["metadata"]
    assert repaired["title_from_description"] + repaired["title_from_brand"] >= 2_000
    by_id = items.set_index("item_id")
    assert by_id.at["B00005N7OD", "title"] == "Allure is the beauty expert."
    assert by_id.at["B00005N7OD", "brand"] == "Conde Nast Publications"
    assert by_id.at["B00005N7OD", "category"] == "Magazine Subscriptions > Fashion & Style > Women"
    assert by_id.at["B001GXRQW0", "title"] == "Amazon.com Gift Cards"
    assert "'" in by_id.at["B001GXRQW0", "description"]  # HTML entities decoded
    assert (items["currency"] == "USD").all()
    json.loads(by_id.at["B001GXRQW0", "attributes"])


# ------------------------------------------------------------------------------------------
# canonical layout: round trip through CSV, CSV.gz, JSONL and Parquet
# ------------------------------------------------------------------------------------------


def _canonical_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    items = pd.DataFrame(
        {
            "item_id": ["A1", "B2", "C3", "A1", "D4", "E5"],
            "title": ["Red mug", "Blue plate", "", "dup of A1", "", "Teapot, 1 l"],
            "description": ["Ceramic, 300 ml.", "", "Green bowl. Dishwasher safe.", "", "", 'Says "hi"\nline 2'],
            "category": ["Kitchen > Mugs", "Kitchen", "Kitchen", "", "", "Kitchen"],
            "brand": ["Acme", "", "Acme", "", "", "Tè"],
            "price": [4.5, np.nan, 12.0, 1.0, 3.0, 25.25],
            "currency": ["GBP", "GBP", "GBP", "GBP", "GBP", "GBP"],
            "in_stock": [True, False, True, True, True, True],
            "attributes": ['{"colour": "red"}', "", '{"size": [1, 2]}', "", "", ""],
        }
    )
    events = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u3", "u3", "u4"],
            "item_id": ["A1", "B2", "C3", "D4", "ZZ", "E5"],
            "event_type": ["view", "purchase", "review", "cart", "view", "return"],
            "session_id": ["s1", "s1", "", "s9", "s9", "s10"],
            "quantity": [np.nan, 2.0, np.nan, 1.0, np.nan, 1.0],
            "price": [np.nan, 9.0, np.nan, 3.0, np.nan, 25.25],
            "timestamp": ["2024-01-02T10:00:00", "2024-01-02T11:30:00+01:00", "1704200400", "2024-01-03 08:00:00Z",
                          "2024-01-03T09:00:00", "2024-01-04"],
            "text": ["", "", "Lovely bowl, 5 stars", "", "", ""],
            "rating": [np.nan, np.nan, 5.0, np.nan, np.nan, np.nan],
        }
    )
    return items, events


EXPECTED_TS = [
    "2024-01-02 10:00:00",
    "2024-01-02 10:30:00",  # +01:00 -> UTC
    "2024-01-02 13:00:00",  # epoch seconds
    "2024-01-03 08:00:00",
    "2024-01-04 00:00:00",
]


def _write(folder: Path, items: pd.DataFrame, events: pd.DataFrame, fmt: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, df in (("items", items), ("events", events)):
        if fmt in ("csv", "csv.gz"):
            df.to_csv(folder / f"{name}.{fmt}", index=False)
        elif fmt == "jsonl":
            df.to_json(folder / f"{name}.jsonl", orient="records", lines=True, force_ascii=False, date_format="iso")
        else:
            df.to_parquet(folder / f"{name}.parquet", index=False)
    return folder


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "jsonl", "parquet"])
def test_canonical_formats_load_the_same_data(tmp_path, fmt):
    items, events = _canonical_frames()
    data = load_shop_data(_write(tmp_path / fmt, items, events, fmt))
    check_shape(data)
    r = data.report
    assert r.source == "canonical"
    assert r.rows_read == {"items": 6, "events": 6}
    assert r.dropped["items"] == {"duplicate_item_id": 1, "no_title": 1}
    assert r.repaired["items"] == {"title_from_description": 1}
    assert r.dropped["events"] == {"unknown_item": 2}  # ZZ, and D4 whose item had no title
    assert r.rows_kept == {"items": 4, "events": 4}
    it = data.items.set_index("item_id")
    assert list(it.index) == ["A1", "B2", "C3", "E5"]
    assert it.at["A1", "title"] == "Red mug"  # first of the duplicates
    assert it.at["C3", "title"] == "Green bowl."  # from the description's first sentence
    assert np.isnan(it.at["B2", "price"]) and not it.at["B2", "in_stock"]
    assert json.loads(it.at["C3", "attributes"]) == {"size": [1, 2]}
    assert it.at["E5", "description"] == 'Says "hi"\nline 2' and it.at["E5", "brand"] == "Tè"
    ev = data.events
    assert list(ev["item_id"]) == ["A1", "B2", "C3", "E5"]
    assert list(ev["timestamp"]) == [pd.Timestamp(t) for t in EXPECTED_TS[:3] + EXPECTED_TS[4:]]
    assert list(ev["session_id"]) == ["s1", "s1", "", "s10"]
    assert ev["rating"].iloc[2] == 5.0 and ev["quantity"].iloc[1] == 2.0


def test_canonical_formats_agree_with_each_other(tmp_path):
    items, events = _canonical_frames()
    loaded = [load_shop_data(_write(tmp_path / f, items, events, f)) for f in ("csv", "jsonl", "parquet")]
    for other in loaded[1:]:
        pd.testing.assert_frame_equal(loaded[0].items, other.items)
        pd.testing.assert_frame_equal(loaded[0].events, other.events)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_canonical_round_trip_of_real_sample(tmp_path, sample, fmt):
    """ShopData written out in the canonical layout reads back identical."""
    data = load_shop_data(_write(tmp_path / fmt, sample.items, sample.events, fmt))
    pd.testing.assert_frame_equal(data.items, sample.items)
    pd.testing.assert_frame_equal(data.events, sample.events)
    assert data.report.dropped == {"items": {"duplicate_item_id": 0, "no_title": 0}, "events": {"unknown_item": 0}}


def test_canonical_minimal_columns_and_typed_values(tmp_path):
    """Only the required columns; numeric ids; epoch numbers; tz-aware Parquet timestamps."""
    folder = tmp_path / "min"
    folder.mkdir()
    pd.DataFrame({"item_id": [10, 11], "title": ["Ten", "Eleven"]}).to_parquet(folder / "items.parquet")
    ts = pd.to_datetime(["2024-05-01T12:00:00+02:00", "2024-05-02T00:00:00+00:00"], utc=True)
    pd.DataFrame(
        {"user_id": [17850.0, 17851.0], "item_id": [10, 11], "event_type": ["VIEW", "purchase"], "timestamp": ts}
    ).to_parquet(folder / "events.parquet")
    data = load_shop_data(folder)
    check_shape(data)
    assert list(data.events["user_id"]) == ["17850", "17851"]
    assert list(data.events["item_id"]) == ["10", "11"]
    assert list(data.events["event_type"]) == ["view", "purchase"]
    assert list(data.events["timestamp"]) == [pd.Timestamp("2024-05-01 10:00"), pd.Timestamp("2024-05-02")]
    assert data.items["in_stock"].all() and data.items["price"].isna().all()
    assert (data.events["session_id"] == "").all() and data.events["rating"].isna().all()


# ------------------------------------------------------------------------------------------
# malformed files -> DataFileError naming file, row and column
# ------------------------------------------------------------------------------------------

GOOD_ITEMS = "item_id,title\nA,Mug\nB,Plate\n"
EVENTS_HEADER = "user_id,item_id,event_type,session_id,quantity,price,timestamp,text,rating\n"
GOOD_EVENT = "u1,A,view,s1,,,2024-01-01T10:00:00,,\n"


def _folder(tmp_path: Path, events: str, items: str = GOOD_ITEMS, ext: str = "csv") -> tuple[Path, Path]:
    folder = tmp_path / "shop"
    folder.mkdir(exist_ok=True)
    (folder / "items.csv").write_text(items, encoding="utf-8")
    (folder / f"events.{ext}").write_text(events, encoding="utf-8")
    return folder, folder / f"events.{ext}"


def _expect_error(folder: Path, file: Path, row: int | None, column: str | None) -> DataFileError:
    with pytest.raises(DataFileError) as exc:
        load_shop_data(folder)
    err = exc.value
    assert err.file == str(file)
    assert str(file) in str(err)
    assert err.row == row, str(err)
    assert err.column == column, str(err)
    if row is not None:
        assert f"row {row}" in str(err)
    if column is not None:
        assert repr(column) in str(err)
    return err


CSV_CASES = {
    # name: (events body after header, row, column)
    "unknown_event_type": (GOOD_EVENT * 2 + "u1,A,like,s1,,,2024-01-01,,\n", 3, "event_type"),
    "bad_timestamp": (GOOD_EVENT + "u1,A,view,s1,,,yesterday,,\n", 2, "timestamp"),
    "bad_timestamp_month_13": (GOOD_EVENT * 3 + "u1,A,view,s1,,,2024-13-01,,\n", 4, "timestamp"),
    "price_not_number": (GOOD_EVENT + "u1,A,purchase,s1,1,£3,2024-01-01,,\n", 2, "price"),
    "quantity_not_number": ("u1,A,purchase,s1,two,3,2024-01-01,,\n", 1, "quantity"),
    "rating_not_number": (GOOD_EVENT * 4 + "u1,A,review,,,,2024-01-01,ok,five\n", 5, "rating"),
    "blank_user_id": (GOOD_EVENT + ",A,view,s1,,,2024-01-01,,\n", 2, "user_id"),
    "blank_item_id": (GOOD_EVENT * 2 + "u1,,view,s1,,,2024-01-01,,\n", 3, "item_id"),
    "blank_event_type": (GOOD_EVENT + "u1,A, ,s1,,,2024-01-01,,\n", 2, "event_type"),
    "blank_timestamp": (GOOD_EVENT + "u1,A,view,s1,,,,,\n", 2, "timestamp"),
    "too_few_fields": (GOOD_EVENT + "u1,A,view,s1,,,2024-01-01\n", 2, "text"),
    "too_many_fields": (GOOD_EVENT * 2 + "u1,A,view,s1,,,2024-01-01,,,extra\n", 3, None),
    # the first bad row wins, whatever the column
    "first_of_several": (GOOD_EVENT + "u1,A,view,s1,,,2024-01-01,,bad\n" + "u1,A,nope,s1,,,x,,\n", 2, "rating"),
    "lowest_row_across_columns": (
        GOOD_EVENT * 2 + "u1,A,view,s1,,,2024-01-01,,\n" + "u1,A,nope,s1,,,2024-01-01,,\n" + "u1,A,view,s1,,,x,,\n",
        4,
        "event_type",
    ),
    # a quoted newline inside a field is one row, not two
    "quoted_newline_counts_as_one_row": ('u1,A,view,s1,,,2024-01-01,"two\nlines",\n' + "u1,A,view,s1,x,,2024-01-01,,\n", 2, "quantity"),
    "blank_lines_are_not_rows": (GOOD_EVENT + "\n" + "u1,A,view,s1,,,2024-01-01,,oops\n", 2, "rating"),
}


@pytest.mark.parametrize("case", sorted(CSV_CASES))
def test_csv_errors_name_file_row_and_column(tmp_path, case):
    body, row, column = CSV_CASES[case]
    folder, file = _folder(tmp_path, EVENTS_HEADER + body)
    _expect_error(folder, file, row, column)


def test_csv_missing_required_column(tmp_path):
    header = "user_id,item_id,event_type,session_id\n"
    folder, file = _folder(tmp_path, header + "u1,A,view,s1\n")
    err = _expect_error(folder, file, None, "timestamp")
    assert "missing" in str(err)


def test_items_missing_item_id_column(tmp_path):
    folder, _ = _folder(tmp_path, EVENTS_HEADER + GOOD_EVENT, items="sku,title\nA,Mug\n")
    _expect_error(folder, folder / "items.csv", None, "item_id")


@pytest.mark.parametrize(
    "items,row,column",
    [
        ("item_id,title\nA,Mug\n,Plate\n", 2, "item_id"),
        ("item_id,title,price\nA,Mug,1.5\nB,Plate,cheap\n", 2, "price"),
        ("item_id,title,in_stock\nA,Mug,yes\nB,Plate,maybe\n", 2, "in_stock"),
        ('item_id,title,attributes\nA,Mug,"{""a"": 1}"\nB,Plate,{not json\n', 2, "attributes"),
    ],
)
def test_items_errors(tmp_path, items, row, column):
    folder, _ = _folder(tmp_path, EVENTS_HEADER + GOOD_EVENT, items=items)
    _expect_error(folder, folder / "items.csv", row, column)


def _jsonl_line(**kw) -> str:
    base = {"user_id": "u1", "item_id": "A", "event_type": "view", "timestamp": "2024-01-01T10:00:00Z"}
    base.update(kw)
    return json.dumps(base) + "\n"


def test_jsonl_invalid_json_names_the_line(tmp_path):
    body = _jsonl_line() + _jsonl_line() + '{"user_id": "u1", "item_id": "A",\n' + _jsonl_line()
    folder, file = _folder(tmp_path, body, ext="jsonl")
    err = _expect_error(folder, file, 3, None)
    assert "JSON" in str(err)


def test_jsonl_not_an_object(tmp_path):
    folder, file = _folder(tmp_path, _jsonl_line() + "[1, 2]\n", ext="jsonl")
    _expect_error(folder, file, 2, None)


def test_jsonl_row_numbers_are_line_numbers(tmp_path):
    # blank line 2 is skipped, but line numbers still count it
    body = _jsonl_line() + "\n" + _jsonl_line() + _jsonl_line(event_type="teleport")
    folder, file = _folder(tmp_path, body, ext="jsonl")
    _expect_error(folder, file, 4, "event_type")


@pytest.mark.parametrize(
    "bad,column",
    [
        ({"timestamp": "not a date"}, "timestamp"),
        ({"price": "1,50"}, "price"),
        ({"quantity": [1]}, "quantity"),
        ({"user_id": None}, "user_id"),
        ({"user_id": "  "}, "user_id"),
    ],
)
def test_jsonl_value_errors(tmp_path, bad, column):
    body = _jsonl_line(price=1.0, quantity=1) * 2 + _jsonl_line(**{"price": 1.0, "quantity": 1, **bad})
    folder, file = _folder(tmp_path, body, ext="jsonl")
    _expect_error(folder, file, 3, column)


def test_jsonl_missing_required_key_everywhere(tmp_path):
    line = json.dumps({"user_id": "u1", "item_id": "A", "event_type": "view"}) + "\n"
    folder, file = _folder(tmp_path, line * 2, ext="jsonl")
    _expect_error(folder, file, None, "timestamp")


def test_parquet_errors(tmp_path):
    folder = tmp_path / "pq"
    folder.mkdir()
    pd.DataFrame({"item_id": ["A"], "title": ["Mug"]}).to_parquet(folder / "items.parquet")
    events = pd.DataFrame(
        {"user_id": ["u1", "u2"], "item_id": ["A", "A"], "event_type": ["view", "buy"], "timestamp": ["2024-01-01"] * 2}
    )
    events.to_parquet(folder / "events.parquet")
    _expect_error(folder, folder / "events.parquet", 2, "event_type")
    events.drop(columns="event_type").to_parquet(folder / "events.parquet")
    _expect_error(folder, folder / "events.parquet", None, "event_type")
    (folder / "events.parquet").write_bytes(b"not parquet at all")
    _expect_error(folder, folder / "events.parquet", None, None)


# ------------------------------------------------------------------------------------------
# out-of-range numbers: negative or infinite prices/quantities/ratings are errors
# ------------------------------------------------------------------------------------------


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


@pytest.mark.parametrize(
    "items,row,message",
    [
        ("item_id,title,price\nA,Mug,1.5\nB,Plate,-2\nC,Bowl,-3\n", 2, "must be 0 or more, got -2"),
        ("item_id,title,price\nA,Mug,-0.25\n", 1, "must be 0 or more, got -0.25"),
        ("item_id,title,price\nA,Mug,1\nB,Plate,inf\n", 2, "must be a finite number, got inf"),
        ("item_id,title,price\nA,Mug,1\nB,Plate,2\nC,Bowl,-Infinity\n", 3, "must be a finite number, got -inf"),
    ],
)
def test_items_price_out_of_range(tmp_path, items, row, message):
    folder, _ = _folder(tmp_path, EVENTS_HEADER + GOOD_EVENT, items=items)
    err = _expect_error(folder, folder / "items.csv", row, "price")
    assert message in str(err)


NUMERIC_CASES = {
    # name: (events body after header, row, column, text in the message)
    "negative_quantity": (GOOD_EVENT + "u1,A,purchase,s1,-5,3,2024-01-01,,\n", 2, "quantity", "got -5"),
    "negative_price": (GOOD_EVENT * 2 + "u1,A,purchase,s1,1,-1,2024-01-01,,\n", 3, "price", "must be 0 or more, got -1"),
    "negative_rating": ("u1,A,review,,,,2024-01-01,meh,-3\n", 1, "rating", "must be 0 or more, got -3"),
    "infinite_quantity": (GOOD_EVENT + "u1,A,cart,s1,inf,,2024-01-01,,\n", 2, "quantity", "must be a finite number, got inf"),
    "infinite_price": ("u1,A,cart,s1,1,-inf,2024-01-01,,\n", 1, "price", "must be a finite number, got -inf"),
    "infinite_rating": (GOOD_EVENT + "u1,A,review,,,,2024-01-01,ok,Infinity\n", 2, "rating", "must be a finite number"),
    "first_bad_row_wins": (
        GOOD_EVENT + "u1,A,purchase,s1,1,-1,2024-01-01,,\n" + "u1,A,purchase,s1,-1,1,2024-01-01,,\n", 2, "price", "got -1"
    ),
}


@pytest.mark.parametrize("case", sorted(NUMERIC_CASES))
def test_events_numbers_out_of_range(tmp_path, case):
    body, row, column, message = NUMERIC_CASES[case]
    folder, file = _folder(tmp_path, EVENTS_HEADER + body)
    err = _expect_error(folder, file, row, column)
    assert message in str(err)


def test_negative_quantity_message_explains_returns(tmp_path):
    folder, file = _folder(tmp_path, EVENTS_HEADER + "u1,A,return,s1,-1,3,2024-01-01,,\n")
    err = _expect_error(folder, file, 1, "quantity")
    assert '"return"' in str(err) and "positive quantity" in str(err)


def test_zero_values_returns_and_any_rating_scale_load(tmp_path):
    body = (
        "u1,A,return,s1,2,3.5,2024-01-01,,\n"
        "u1,A,purchase,s1,0,0,2024-01-02,,\n"
        "u1,B,review,,,,2024-01-03,great,10\n"
        "u2,B,review,,,,2024-01-03,awful,0\n"
    )
    folder, _ = _folder(tmp_path, EVENTS_HEADER + body, items="item_id,title,price\nA,Mug,0\nB,Plate,\n")
    data = load_shop_data(folder)
    check_shape(data)
    assert list(data.events["quantity"].fillna(-1)) == [2.0, 0.0, -1, -1]
    assert list(data.events["rating"].fillna(-1)) == [-1, -1, 10.0, 0.0]
    assert data.items["price"].iloc[0] == 0.0 and np.isnan(data.items["price"].iloc[1])


def test_jsonl_and_parquet_infinite_and_negative_numbers(tmp_path):
    # JSON text may say Infinity (Python's json reads it); Parquet holds real float infinities
    body = _jsonl_line(price=1.0) + _jsonl_line(price=float("inf"))
    folder, file = _folder(tmp_path, body, ext="jsonl")
    assert "Infinity" in file.read_text()
    err = _expect_error(folder, file, 2, "price")
    assert "must be a finite number, got inf" in str(err)
    pq = tmp_path / "pq"
    pq.mkdir()
    pd.DataFrame({"item_id": ["A", "B"], "title": ["Mug", "Plate"], "price": [1.0, -np.inf]}).to_parquet(
        pq / "items.parquet"
    )
    (pq / "events.csv").write_text(EVENTS_HEADER + GOOD_EVENT)
    err = _expect_error(pq, pq / "items.parquet", 2, "price")
    assert "got -inf" in str(err)
    pd.DataFrame({"item_id": ["A", "B"], "title": ["Mug", "Plate"], "price": [1.0, -2.0]}).to_parquet(
        pq / "items.parquet"
    )
    err = _expect_error(pq, pq / "items.parquet", 2, "price")
    assert "must be 0 or more, got -2" in str(err)


# ------------------------------------------------------------------------------------------
# CSV header after blank lines: data starts right after the header; rows count from 1
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["csv", "csv.gz"])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_csv_blank_lines_before_header(tmp_path, ext, newline):
    folder = tmp_path / "shop"
    folder.mkdir()
    items = "\n\n\nitem_id,title,price\nA,Mug,2.5\n\nB,Plate,3\n".replace("\n", newline)
    events = ("\n" + EVENTS_HEADER + GOOD_EVENT).replace("\n", newline)
    _write_bytes(folder / f"items.{ext}", items.encode())
    _write_bytes(folder / f"events.{ext}", events.encode())
    data = load_shop_data(folder)
    check_shape(data)
    assert list(data.items["item_id"]) == ["A", "B"]  # the header is not read as an item
    assert list(data.items["price"]) == [2.5, 3.0]
    assert data.report.rows_read == {"items": 2, "events": 1}
    # row numbers still count data rows from 1 (blank lines are not rows)
    items = "\n\nitem_id,title,price\nA,Mug,2.5\n\nB,Plate,cheap\n".replace("\n", newline)
    _write_bytes(folder / f"items.{ext}", items.encode())
    _expect_error(folder, folder / f"items.{ext}", 2, "price")


def test_csv_blank_lines_before_an_all_text_header(tmp_path):
    folder, _ = _folder(tmp_path, "\n\n" + EVENTS_HEADER + GOOD_EVENT, items="\n\n" + GOOD_ITEMS)
    data = load_shop_data(folder)
    assert list(data.items["item_id"]) == ["A", "B"]
    assert data.report.rows_read == {"items": 2, "events": 1}


def test_csv_blank_lines_before_header_field_count_error(tmp_path):
    # the error-path scan (wrong field count) must skip the blank lines and the header too
    folder, file = _folder(tmp_path, "\n\n\n" + EVENTS_HEADER + GOOD_EVENT + "u1,A,view\n")
    _expect_error(folder, file, 2, "session_id")


def test_csv_quoted_newline_in_header_after_blank_line(tmp_path):
    folder, _ = _folder(tmp_path, EVENTS_HEADER + GOOD_EVENT, items='\n"item_id",title,"the\nnote"\nA,Mug,x\nB,Plate,y\n')
    data = load_shop_data(folder)
    assert list(data.items["item_id"]) == ["A", "B"]


def test_uci_blank_lines_before_header(tmp_path):
    header = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
    good = "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850,United Kingdom\n"
    f = tmp_path / "online_retail.csv"
    f.write_text("\n\n" + header + good)
    data = load_shop_data(f)
    assert data.report.rows_read == {"invoice_lines": 1}
    assert list(data.items["item_id"]) == ["85123A"]
    f.write_text("\n" + header + good + good.replace(",6,", ",six,"))
    _expect_error(tmp_path, f, 2, "Quantity")


# ------------------------------------------------------------------------------------------
# CSV that is not valid UTF-8: name the row and the column holding the bad byte
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["csv", "csv.gz"])
def test_csv_bad_utf8_names_row_and_column(tmp_path, ext):
    folder, _ = _folder(tmp_path, EVENTS_HEADER + GOOD_EVENT)
    f = _write_bytes(folder / f"items.{ext}", b"item_id,title\nA,Mug\nB,Caf\xe9 au lait\n")
    if ext == "csv.gz":
        (folder / "items.csv").unlink()
    err = _expect_error(folder, f, 2, "title")
    assert "not valid UTF-8 text (byte 0xe9 at position 3 of the field)" in str(err)


@pytest.mark.parametrize("ext", ["csv", "csv.gz"])
def test_csv_bad_utf8_far_into_the_file(tmp_path, ext):
    # past the first read buffer, after blank lines, a BOM and a quoted newline
    rows = b"".join(b"I%d,Item %d,\"multi\nline\"\n" % (i, i) for i in range(3000))
    body = b"\xef\xbb\xbf\n\nitem_id,title,description\n" + rows + b"\nX,Cr\xc3\xa8me,d\xe8s\n"
    folder, _ = _folder(tmp_path, EVENTS_HEADER + GOOD_EVENT)
    (folder / "items.csv").unlink()
    f = _write_bytes(folder / f"items.{ext}", body)
    err = _expect_error(folder, f, 3001, "description")
    assert "byte 0xe8 at position 1 of the field" in str(err)


def test_csv_bad_utf8_in_an_extra_field(tmp_path):
    folder, file = _folder(tmp_path, EVENTS_HEADER + GOOD_EVENT)
    file.write_bytes((EVENTS_HEADER + GOOD_EVENT).encode() + b"u1,A,view,s1,,,2024-01-01,,,\xff\n")
    err = _expect_error(folder, file, 2, None)
    assert "byte 0xff at position 0" in str(err)


@pytest.mark.parametrize("ext", ["csv", "csv.gz"])
def test_csv_bad_utf8_in_the_header(tmp_path, ext):
    folder, _ = _folder(tmp_path, EVENTS_HEADER + GOOD_EVENT)
    (folder / "items.csv").unlink()
    f = _write_bytes(folder / f"items.{ext}", b"\nitem_id,titl\xe9\nA,Mug\n")
    err = _expect_error(folder, f, None, None)
    assert "header" in str(err) and "not valid UTF-8" in str(err)
    assert "byte 0xe9 at position 4 of column name 2" in str(err)


def test_uci_bad_utf8(tmp_path):
    header = b"InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
    good = b"536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850,United Kingdom\n"
    f = _write_bytes(tmp_path / "online_retail.csv.gz", header + good + good.replace(b"United Kingdom", b"Espa\xf1a"))
    err = _expect_error(tmp_path, f, 2, "Country")
    assert "byte 0xf1" in str(err)


def test_uci_file_errors(tmp_path):
    header = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
    good = "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850,United Kingdom\n"
    f = tmp_path / "online_retail.csv"
    f.write_text(header + good * 2 + good.replace(",6,", ",six,"))
    _expect_error(tmp_path, f, 3, "Quantity")
    f.write_text(header + good + good.replace("2010-12-01 08:26:00", "someday"))
    _expect_error(tmp_path, f, 2, "InvoiceDate")
    f.write_text(header.replace(",CustomerID,", ",Customer,") + good)
    _expect_error(tmp_path, f, None, "CustomerID")


def test_uci_small_crafted_file_rules(tmp_path):
    """One line per rule, plus the repairs, on a hand-made file in the UCI layout."""
    header = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
    lines = [
        "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom",
        "536366,85123a,,2,2010-12-01 09:00:00,2.55,17850,United Kingdom",  # lower case, blank desc
        "C536367,85123A,WHITE HANGING HEART T-LIGHT HOLDER,-1,2010-12-02 10:00:00,2.95,17850,United Kingdom",
        "536368,POST,POSTAGE,1,2010-12-02 10:00:00,18,12680,France",
        "536369,gift_0001_20,Dotcomgiftshop Gift Voucher £20.00,1,2010-12-02 10:00:00,16.67,12680,France",
        "536370,22423,REGENCY CAKESTAND 3 TIER,1,2010-12-02 10:00:00,0,12680,France",
        "536371,22423,REGENCY CAKESTAND 3 TIER,2,2010-12-02 10:00:00,12.75,,United Kingdom",
        "536372,22424,,2,2010-12-02 10:00:00,12.75,12680,France",  # no description anywhere
        "A563185,B,Adjust bad debt,1,2011-08-12 14:50:00,11062.06,,United Kingdom",
        "536373,23444,Next Day Carriage,1,2010-12-02 10:00:00,15,12680,France",
        "536374,22423,REGENCY CAKESTAND 3 TIER,-3,2010-12-02 10:00:00,12.75,12680,France",
        "12/1/2010 8:26",
    ]
    lines[-1] = "536375,22423,REGENCY CAKESTAND 3 TIER,1,12/1/2010 8:26,12.75,12680,France"
    f = tmp_path / "mine.csv"
    f.write_text(header + "\n".join(lines) + "\n")
    data = load_shop_data(f)  # a path straight to a file with the UCI header
    check_shape(data)
    r = data.report
    assert r.dropped["invoice_lines"] == {
        "blank_customer": 2,
        "non_product_code": 3,
        "non_sale_invoice": 0,
        "nonpositive_price": 1,
        "nonpositive_quantity": 1,
        "cancellation_nonnegative_quantity": 0,
        "no_description": 1,
    }
    assert r.repaired["invoice_lines"] == {
        "stock_code_uppercased": 1,
        "customer_id_float_suffix_removed": 1,
        "blank_description_from_stock_code": 1,
    }
    ev = data.events
    assert list(ev["event_type"]) == ["purchase", "purchase", "return", "purchase"]
    assert list(ev["user_id"]) == ["17850", "17850", "17850", "12680"]
    assert list(ev["quantity"]) == [6.0, 2.0, 1.0, 1.0]
    assert ev["timestamp"].iloc[-1] == pd.Timestamp("2010-12-01 08:26")
    items = data.items.set_index("item_id")
    assert list(items.index) == ["22423", "85123A"]
    assert items.at["85123A", "price"] == 2.55  # modal: 2.55 twice, 2.95 once


# ------------------------------------------------------------------------------------------
# layout detection and the report
# ------------------------------------------------------------------------------------------


def test_missing_path(tmp_path):
    with pytest.raises(DataFileError) as exc:
        load_shop_data(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(exc.value)


def test_unknown_layout_says_what_it_looked_for(tmp_path):
    (tmp_path / "catalog.xlsx").write_bytes(b"")
    with pytest.raises(DataFileError) as exc:
        load_shop_data(tmp_path)
    msg = str(exc.value)
    for expected in ("items.", "events.", "online_retail.csv", "_5.json.gz", "meta_"):
        assert expected in msg


def test_half_a_canonical_layout(tmp_path):
    (tmp_path / "items.csv").write_text(GOOD_ITEMS)
    with pytest.raises(DataFileError, match="events"):
        load_shop_data(tmp_path)


def test_file_that_is_not_uci(tmp_path):
    f = tmp_path / "items.csv"
    f.write_text(GOOD_ITEMS)
    with pytest.raises(DataFileError) as exc:
        load_shop_data(f)
    assert exc.value.file == str(f)


def test_report_balance_and_dict():
    r = LoadReport(source="canonical", files=["x"], rows_read={"items": 5}, rows_kept={"items": 3})
    assert not r.balanced()
    r.drop("items", "duplicate_item_id", 2)
    assert r.balanced()
    d = r.to_dict()
    assert json.loads(json.dumps(d))["dropped"] == {"items": {"duplicate_item_id": 2}}
    assert d["balanced"] is True
    assert re.fullmatch(r"[a-z_]+", next(iter(d["dropped"]["items"])))
