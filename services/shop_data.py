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

No Ray, no gRPC here: plain pandas (and pyarrow's CSV reader).
"""

from __future__ import annotations

import csv
import gzip
import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from services.errors import DataFileError

__all__ = [
    "ITEM_COLUMNS",
    "EVENT_COLUMNS",
    "EVENT_TYPES",
    "LoadReport",
    "ShopData",
    "load_shop_data",
]

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

_TEXT_ITEM_COLUMNS = ("item_id", "title", "description", "category", "brand", "currency", "attributes")
_TEXT_EVENT_COLUMNS = ("user_id", "item_id", "event_type", "session_id", "text")

# datetime64[ns] can hold 1677-09-21 .. 2262-04-11; anything outside is treated as unparseable.
_TS_MIN = pd.Timestamp("1678-01-01")
_TS_MAX = pd.Timestamp("2262-01-01")


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


# --------------------------------------------------------------------------------------------
# Entry point: layout detection
# --------------------------------------------------------------------------------------------

_UCI_NAMES = ("online_retail.csv", "online_retail.csv.gz")
_TABLE_SUFFIXES = (".csv", ".csv.gz", ".jsonl", ".jsonl.gz", ".parquet")
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


def load_shop_data(path: str | Path) -> ShopData:
    """Load a dataset folder (or a UCI CSV file) into the canonical schema; see the module doc."""
    p = Path(path)
    if not p.exists():
        raise DataFileError(str(p), "no such file or folder")
    if p.is_file():
        name = p.name.lower()
        if name.endswith((".csv", ".csv.gz")) and _csv_header_is_uci(p):
            return _load_uci(p)
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
        return _load_canonical(*arg)
    if kind == "uci_online_retail":
        return _load_uci(arg)
    return _load_amazon(p, arg)


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


# --------------------------------------------------------------------------------------------
# Generic readers (CSV via pyarrow, JSONL, Parquet), each returning rows and their numbers
# --------------------------------------------------------------------------------------------


def _open_text(path: Path, errors: str = "strict"):
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", errors=errors, newline="")
    return open(path, "rt", encoding="utf-8-sig", errors=errors, newline="")


# Bytes that are not valid UTF-8 decode (errors="surrogateescape") to U+DC80..U+DCFF.
_UNDECODABLE = re.compile("[\udc80-\udcff]")


def _bad_utf8(field: str) -> str | None:
    """'byte 0xe9 at position 5' (0-based byte offset in the field) if the field holds a byte
    that is not valid UTF-8, else None."""
    m = _UNDECODABLE.search(field)
    if m is None:
        return None
    pos = len(field[: m.start()].encode("utf-8", "surrogateescape"))
    return f"byte 0x{ord(m.group()) - 0xDC00:02x} at position {pos}"


def _csv_header(path: Path) -> tuple[list[str], int]:
    """(column names, physical lines up to and including the header record).

    Blank lines before the header are skipped; the line count lets the data reader start right
    after the header. Only the header's lines are decoded here (a bad byte further on is found
    by `_read_csv`), so the text is decoded leniently and the header alone checked for UTF-8.
    """
    try:
        with _open_text(path, errors="surrogateescape") as fh:
            reader = csv.reader(fh)
            for rec in reader:
                if rec:
                    for i, name in enumerate(rec):
                        bad = _bad_utf8(name)
                        if bad:
                            raise DataFileError(
                                str(path),
                                f"the header row is not valid UTF-8 text ({bad} of column name {i + 1})",
                            )
                    return [c.strip() for c in rec], reader.line_num
    except (OSError, csv.Error, EOFError) as e:
        raise DataFileError(str(path), f"cannot read the CSV header: {e}") from None
    raise DataFileError(str(path), "empty file: no header row")


def _csv_header_is_uci(path: Path) -> bool:
    try:
        header, _ = _csv_header(path)
    except DataFileError:
        return False
    return set(UCI_COLUMNS) <= set(header)


def _read_csv(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """All cells as str ("" when empty). Row numbers are 1..n (blank lines are not rows).

    pyarrow rejects any record whose field count differs from the header's, and any field that
    is not valid UTF-8; on that error path the file is scanned with the csv module to name the
    first such row (and column).
    """
    header, header_lines = _csv_header(path)
    if any(h == "" for h in header):
        raise DataFileError(str(path), "blank column name in the header row", row=None)
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise DataFileError(str(path), "column named twice in the header row", column=dupes[0])
    try:
        table = pa_csv.read_csv(
            path,
            # skip_rows counts physical lines (blank ones too, quotes ignored), as line_num does
            read_options=pa_csv.ReadOptions(column_names=header, skip_rows=header_lines, encoding="utf8"),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True, ignore_empty_lines=True),
            convert_options=pa_csv.ConvertOptions(
                column_types={h: pa.string() for h in header},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError, OSError, EOFError) as e:
        _raise_first_bad_csv_row(path, header, header_lines, e)
    df = table.to_pandas()
    # The header row was read by the csv module (which strips a BOM); names already match.
    return df, np.arange(1, len(df) + 1)


def _raise_first_bad_csv_row(path: Path, header: list[str], header_lines: int, err: Exception):
    try:
        with _open_text(path, errors="surrogateescape") as fh:
            reader = csv.reader(fh)
            row = 0
            for rec in reader:
                if not rec or reader.line_num <= header_lines:  # blank line, or header (and above)
                    continue
                row += 1
                for i, value in enumerate(rec):
                    bad = _bad_utf8(value)
                    if bad:
                        raise DataFileError(
                            str(path),
                            f"not valid UTF-8 text ({bad} of the field)",
                            row=row,
                            column=header[i] if i < len(header) else None,
                        )
                if len(rec) != len(header):
                    column = header[len(rec)] if len(rec) < len(header) else None
                    raise DataFileError(
                        str(path),
                        f"row has {len(rec)} fields, the header has {len(header)}",
                        row=row,
                        column=column,
                    )
    except csv.Error as e:
        raise DataFileError(str(path), f"malformed CSV: {e}") from None
    except (OSError, EOFError) as e:
        raise DataFileError(str(path), f"cannot read the file: {e}") from None
    raise DataFileError(str(path), f"malformed CSV: {err}")


def _read_jsonl(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """One JSON object per line; blank lines are skipped; row numbers are line numbers."""
    records: list[dict] = []
    linenos: list[int] = []
    try:
        with _open_text(path) as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError as e:
                    raise DataFileError(str(path), f"not valid JSON: {e}", row=lineno) from None
                if not isinstance(obj, dict):
                    raise DataFileError(
                        str(path), f"expected a JSON object, found {type(obj).__name__}", row=lineno
                    )
                records.append(obj)
                linenos.append(lineno)
    except UnicodeDecodeError:
        raise DataFileError(str(path), "not valid UTF-8 text") from None
    except (OSError, EOFError) as e:
        raise DataFileError(str(path), f"cannot read the file: {e}") from None
    df = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    return df, np.asarray(linenos, dtype=np.int64)


def _read_parquet(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises many types for a corrupt file
        raise DataFileError(str(path), f"not a readable Parquet file: {e}") from None
    df = df.reset_index(drop=True)
    return df, np.arange(1, len(df) + 1)


def _read_table(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return _read_csv(path)
    if name.endswith((".jsonl", ".jsonl.gz")):
        return _read_jsonl(path)
    return _read_parquet(path)


# --------------------------------------------------------------------------------------------
# Value normalisation (vectorised; per-cell Python only for odd mixed-type object columns)
# --------------------------------------------------------------------------------------------


def _cell_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return str(int(v)) if v.is_integer() else repr(v)
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (np.floating,)):
        return _cell_text(float(v))
    if isinstance(v, (dict, list, np.ndarray)):
        return _json_dumps(v)
    if v is pd.NA or v is pd.NaT:
        return ""
    return str(v)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (pd.Timestamp,)):
        return o.isoformat()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _json_dumps(v: Any) -> str:
    if isinstance(v, np.ndarray):
        v = v.tolist()
    return json.dumps(v, ensure_ascii=False, default=_json_default)


def _as_text(s: pd.Series) -> pd.Series:
    """Any column -> str, stripped; missing -> ""; integral floats lose their ".0"."""
    if pd.api.types.is_bool_dtype(s.dtype):
        out = s.map(lambda v: "" if pd.isna(v) else ("true" if v else "false"))
    elif pd.api.types.is_integer_dtype(s.dtype):
        out = s.astype("Int64").astype(str).where(s.notna(), "")
    elif pd.api.types.is_float_dtype(s.dtype):
        vals = s.astype("float64")
        whole = vals.notna() & (vals == np.floor(vals)) & (vals.abs() < 2**53)
        out = pd.Series("", index=s.index, dtype=str)
        out[whole] = vals[whole].astype("int64").astype(str)
        frac = vals.notna() & ~whole
        if frac.any():
            out[frac] = vals[frac].map(repr)
    elif pd.api.types.is_string_dtype(s.dtype) and pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty"):
        out = s.fillna("")
    else:
        out = s.map(_cell_text)
    return out.astype(str).str.strip()


def _as_number(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(float64 values, bad mask). Blank/missing -> NaN and not bad; non-numeric -> bad."""
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.astype(float), pd.Series(False, index=s.index)
    if pd.api.types.is_numeric_dtype(s.dtype):
        return s.astype("float64"), pd.Series(False, index=s.index)
    text = _as_text(s)
    blank = text == ""
    cells = text.where(~blank, None)
    try:  # fast path: every non-blank cell is a number
        vals = cells.astype("float64")
    except (ValueError, TypeError, pa.ArrowInvalid):
        vals = pd.to_numeric(cells, errors="coerce").astype("float64")
    bad = (vals.isna() | np.isinf(vals)) & ~blank
    return vals.where(~bad), bad


_EPOCH_RE = r"[+-]?\d+(?:\.\d+)?"


def _as_timestamp(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(datetime64[ns] naive, bad mask). ISO-8601 with or without offset (offsets -> UTC) or
    epoch seconds (number or numeric string). Blank -> NaT and not bad."""
    idx = s.index
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        ts = s.dt.tz_convert("UTC").dt.tz_localize(None)
        blank = ts.isna()
    elif pd.api.types.is_datetime64_dtype(s.dtype):
        ts = s
        blank = ts.isna()
    elif pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        blank = s.isna()
        vals = s.astype("float64")
        ok = vals.between(_TS_MIN.timestamp(), _TS_MAX.timestamp())
        ts = pd.to_datetime(vals.where(ok), unit="s", errors="coerce")
    else:
        text = _as_text(s)
        blank = text == ""
        is_epoch = text.str.fullmatch(_EPOCH_RE)
        ts = pd.Series(pd.NaT, index=idx, dtype="datetime64[ns]")
        if is_epoch.any():
            vals = pd.to_numeric(text[is_epoch], errors="coerce")
            ok = vals.between(_TS_MIN.timestamp(), _TS_MAX.timestamp())
            ts.loc[is_epoch] = pd.to_datetime(vals.where(ok), unit="s", errors="coerce").astype("datetime64[ns]")
        iso = ~is_epoch & ~blank
        if iso.any():
            parsed = pd.to_datetime(text[iso], format="ISO8601", utc=True, errors="coerce")
            parsed = parsed.dt.tz_localize(None)
            ok = (parsed >= _TS_MIN) & (parsed < _TS_MAX)
            ts.loc[iso] = parsed.where(ok).astype("datetime64[ns]")
    ts = pd.Series(ts, index=idx)
    ts = ts.where((ts >= _TS_MIN) & (ts < _TS_MAX))
    ts = ts.astype("datetime64[ns]")
    bad = ts.isna() & ~blank
    return ts, bad


_TRUE = {"true", "1", "yes", "y", "t", "1.0"}
_FALSE = {"false", "0", "no", "n", "f", "0.0"}


def _as_bool(s: pd.Series, default: bool) -> tuple[pd.Series, pd.Series]:
    if pd.api.types.is_bool_dtype(s.dtype) and not s.isna().any():
        return s.astype(bool), pd.Series(False, index=s.index)
    text = _as_text(s).str.lower()
    t = text.isin(_TRUE)
    f = text.isin(_FALSE)
    blank = text == ""
    out = pd.Series(default, index=s.index, dtype=bool)
    out[t] = True
    out[f] = False
    return out, ~(t | f | blank)


def _json_text_bad(s: pd.Series) -> pd.Series:
    """Mask of non-blank cells that are not valid JSON text (per cell; items tables are small)."""

    def bad(v: str) -> bool:
        if not v:
            return False
        try:
            json.loads(v)
        except ValueError:
            return True
        return False

    return s.map(bad).astype(bool)


class _Problems:
    """Collects (row, column, message) candidates and raises the one with the lowest row."""

    def __init__(self, file: Path, rownums: np.ndarray):
        self.file = file
        self.rownums = rownums
        self.found: list[tuple[int, int, str, str]] = []

    def check(self, mask: pd.Series, column: str, message: str | Callable[[int], str]) -> None:
        """`message` may be a function of the first bad row's position (to quote its value)."""
        m = np.asarray(mask, dtype=bool)
        if m.any():
            pos = int(np.argmax(m))
            text = message(pos) if callable(message) else message
            self.found.append((int(self.rownums[pos]), len(self.found), column, text))

    def number_column(self, s: pd.Series, column: str, hint: str = "") -> pd.Series:
        """`s` as float64 (blank -> NaN); checks that every value is a number, finite and not
        negative. `hint` is added to the message for a negative value."""
        vals, bad = _as_number(s)
        arr = vals.to_numpy(dtype="float64", copy=True)
        if bad.any():  # _as_number calls "inf" text bad; report it as infinite, not as junk
            text = pd.to_numeric(_as_text(s).where(bad, None), errors="coerce").to_numpy(dtype="float64")
            text_inf = np.isinf(text)
            arr[text_inf] = text[text_inf]
            bad = bad & ~text_inf
        self.check(bad, column, "not a number")
        inf = np.isinf(arr)

        def got(pos: int) -> str:
            return _cell_text(float(arr[pos]))

        self.check(inf, column, lambda pos: f"must be a finite number, got {got(pos)}")
        self.check(arr < 0, column, lambda pos: f"must be 0 or more, got {got(pos)}{hint}")
        return vals

    def raise_first(self) -> None:
        if self.found:
            row, _, column, message = min(self.found)
            raise DataFileError(str(self.file), message, row=row, column=column)


# --------------------------------------------------------------------------------------------
# Canonical layout
# --------------------------------------------------------------------------------------------


def _first_sentence(text: str, limit: int = 100) -> str:
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


def _load_canonical(items_path: Path, events_path: Path) -> ShopData:
    report = LoadReport(source="canonical", files=[str(items_path), str(events_path)])
    items = _canonical_items(items_path, report)
    events = _canonical_events(events_path, report, set(items["item_id"]))
    return ShopData(items=items, events=events, report=report)


def _canonical_items(path: Path, report: LoadReport) -> pd.DataFrame:
    raw, rownums = _read_table(path)
    if len(raw.columns) == 0:  # an empty JSONL file: no rows, and so no keys to check
        raw = pd.DataFrame({c: pd.Series(dtype=str) for c in ITEM_COLUMNS})
    report.rows_read["items"] = len(raw)
    for col in REQUIRED_ITEM_COLUMNS:
        if col not in raw.columns:
            raise DataFileError(str(path), "required column missing", column=col)
    n = len(raw)
    idx = raw.index

    def text(col: str) -> pd.Series:
        return _as_text(raw[col]) if col in raw.columns else pd.Series("", index=idx, dtype=str)

    out = pd.DataFrame(index=idx)
    for col in _TEXT_ITEM_COLUMNS:
        if col == "attributes" and col in raw.columns and raw[col].dtype == object:
            # dicts/lists from JSONL or Parquet become JSON text; strings stay as they are
            out[col] = raw[col].map(
                lambda v: _json_dumps(v) if isinstance(v, (dict, list, np.ndarray)) else _cell_text(v)
            ).astype(str).str.strip()
        else:
            out[col] = text(col)

    probs = _Problems(path, rownums)
    probs.check(out["item_id"] == "", "item_id", "blank required value")
    if "price" in raw.columns:
        price = probs.number_column(raw["price"], "price")
    else:
        price = pd.Series(np.nan, index=idx, dtype="float64")
    if "in_stock" in raw.columns:
        in_stock, bad = _as_bool(raw["in_stock"], default=True)
        probs.check(bad, "in_stock", "not a boolean (true/false, 1/0, yes/no)")
    else:
        in_stock = pd.Series(True, index=idx, dtype=bool)
    if n:
        probs.check(_json_text_bad(out["attributes"]), "attributes", "not valid JSON text")
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
        out.loc[from_desc, "title"] = out.loc[from_desc, "description"].map(_first_sentence)
    report.repair("items", "title_from_description", int(from_desc.sum()))
    still = out["title"] == ""
    report.drop("items", "no_title", int(still.sum()))
    out = out[~still]

    report.rows_kept["items"] = len(out)
    return _finish_items(out)


_NEGATIVE_HINT = {"quantity": ' (a return is event_type "return" with a positive quantity)'}


def _canonical_events(path: Path, report: LoadReport, item_ids: set[str]) -> pd.DataFrame:
    raw, rownums = _read_table(path)
    if len(raw.columns) == 0:
        raw = pd.DataFrame({c: pd.Series(dtype=str) for c in EVENT_COLUMNS})
    report.rows_read["events"] = len(raw)
    for col in REQUIRED_EVENT_COLUMNS:
        if col not in raw.columns:
            raise DataFileError(str(path), "required column missing", column=col)
    idx = raw.index
    out = pd.DataFrame(index=idx)
    for col in _TEXT_EVENT_COLUMNS:
        out[col] = _as_text(raw[col]) if col in raw.columns else pd.Series("", index=idx, dtype=str)
    out["event_type"] = out["event_type"].str.lower()

    probs = _Problems(path, rownums)
    for col in ("user_id", "item_id", "event_type"):
        probs.check(out[col] == "", col, "blank required value")
    probs.check(
        (out["event_type"] != "") & ~out["event_type"].isin(EVENT_TYPES),
        "event_type",
        "unknown event_type (expected one of " + ", ".join(sorted(EVENT_TYPES)) + ")",
    )
    ts, bad_ts = _as_timestamp(raw["timestamp"])
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
    return _finish_events(out)


def _finish_items(df: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({c: df[c] for c in ITEM_COLUMNS}).reset_index(drop=True)
    for c in _TEXT_ITEM_COLUMNS:
        out[c] = out[c].astype(str)
    out["price"] = out["price"].astype("float64")
    out["in_stock"] = out["in_stock"].astype(bool)
    return out


def _finish_events(df: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({c: df[c] for c in EVENT_COLUMNS}).reset_index(drop=True)
    for c in _TEXT_EVENT_COLUMNS:
        out[c] = out[c].astype(str)
    for c in ("quantity", "price", "rating"):
        out[c] = out[c].astype("float64")
    out["timestamp"] = out["timestamp"].astype("datetime64[ns]")
    return out


# --------------------------------------------------------------------------------------------
# UCI Online Retail
# --------------------------------------------------------------------------------------------

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


def _load_uci(path: Path) -> ShopData:
    report = LoadReport(source="uci_online_retail", files=[str(path)])
    raw, rownums = _read_csv(path)
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

    probs = _Problems(path, rownums)
    probs.check(inv == "", "InvoiceNo", "blank required value")
    probs.check(code == "", "StockCode", "blank required value")
    qty, bad_q = _as_number(raw["Quantity"])
    probs.check(bad_q | qty.isna(), "Quantity", "not a number")
    price, bad_p = _as_number(raw["UnitPrice"])
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
    return ShopData(items=_finish_items(items), events=_finish_events(events), report=report)


def _uci_dates(s: pd.Series) -> pd.Series:
    ts = pd.to_datetime(s, format="%Y-%m-%d %H:%M:%S", errors="coerce")
    miss = ts.isna()
    if miss.any():  # the original UCI export writes 12/1/2010 8:26
        ts[miss] = pd.to_datetime(s[miss], format="%m/%d/%Y %H:%M", errors="coerce")
        miss = ts.isna()
    if miss.any():
        alt = pd.to_datetime(s[miss], format="ISO8601", utc=True, errors="coerce").dt.tz_localize(None)
        ts[miss] = alt
    ts = ts.where((ts >= _TS_MIN) & (ts < _TS_MAX))
    return ts.astype("datetime64[ns]")


def _mode_by(df: pd.DataFrame, key: str, value: str) -> pd.Series:
    """Most frequent `value` per `key`; ties go to the value seen last (highest `pos`)."""
    if df.empty:
        return pd.Series(dtype=df[value].dtype, index=pd.Index([], name=key))
    g = df.groupby([key, value], sort=False).agg(n=("pos", "size"), last=("pos", "max")).reset_index()
    g = g.sort_values(["n", "last"], ascending=False, kind="stable").drop_duplicates(key)
    return g.set_index(key)[value]


# --------------------------------------------------------------------------------------------
# Amazon Review Data (2018)
# --------------------------------------------------------------------------------------------

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


def _load_amazon(folder: Path, pairs: list[tuple[str, Path | None, Path | None]]) -> ShopData:
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
    df, rownums = _read_jsonl(path)
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
    asin = _as_text(_col(meta, "asin"))
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
    title[from_desc] = descriptions[from_desc].map(_first_sentence)
    from_brand = missing_title & ~from_desc & (brand != "")
    title[from_brand] = brand[from_brand]
    report.repair(t, "title_from_description", int(from_desc.sum()))
    report.repair(t, "title_from_brand", int(from_brand.sum()))
    no_title = title == ""
    report.drop(t, "no_usable_title", int(no_title.sum()))

    cats = _col(meta, "category").map(_clean_category)
    category = cats.map(lambda c: c[0])
    report.repair(t, "category_junk_removed", int(cats.map(lambda c: c[1]).sum()))

    price_raw = _col(meta, "price").map(lambda v: v.strip() if isinstance(v, str) else _cell_text(v))
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
    return _finish_items(items)


def _amazon_reviews(frames: list[pd.DataFrame], report: LoadReport, item_ids: set[str]) -> pd.DataFrame:
    t = "reviews"
    rv = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["_file", "_row"])
    report.rows_read[t] = len(rv)
    user = _as_text(_col(rv, "reviewerID"))
    asin = _as_text(_col(rv, "asin"))
    rating, bad_rating = _as_number(_col(rv, "overall"))
    ts, bad_ts = _as_timestamp(_col(rv, "unixReviewTime"))
    body = _as_text(_col(rv, "reviewText"))
    summary = _as_text(_col(rv, "summary"))

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
    return _finish_events(events)
