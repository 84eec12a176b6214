"""Cell conversions shared by the loaders: text, numbers, timestamps and booleans, each with
the rows it could not read, and the collector of bad values that names the first one."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa

from services.errors import DataFileError
from services.shop_data.schema import TS_MAX, TS_MIN


def cell_text(v: Any) -> str:
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
        return cell_text(float(v))
    if isinstance(v, (dict, list, np.ndarray)):
        return json_dumps(v)
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


def json_dumps(v: Any) -> str:
    if isinstance(v, np.ndarray):
        v = v.tolist()
    return json.dumps(v, ensure_ascii=False, default=_json_default)


def as_text(s: pd.Series) -> pd.Series:
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
        out = s.map(cell_text)
    return out.astype(str).str.strip()


def as_number(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(float64 values, bad mask). Blank/missing -> NaN and not bad; non-numeric -> bad."""
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.astype(float), pd.Series(False, index=s.index)
    if pd.api.types.is_numeric_dtype(s.dtype):
        return s.astype("float64"), pd.Series(False, index=s.index)
    text = as_text(s)
    blank = text == ""
    cells = text.where(~blank, None)
    try:  # fast path: every non-blank cell is a number
        vals = cells.astype("float64")
    except (ValueError, TypeError, pa.ArrowInvalid):
        vals = pd.to_numeric(cells, errors="coerce").astype("float64")
    bad = (vals.isna() | np.isinf(vals)) & ~blank
    return vals.where(~bad), bad


_EPOCH_RE = r"[+-]?\d+(?:\.\d+)?"


def as_timestamp(s: pd.Series) -> tuple[pd.Series, pd.Series]:
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
        ok = vals.between(TS_MIN.timestamp(), TS_MAX.timestamp())
        ts = pd.to_datetime(vals.where(ok), unit="s", errors="coerce")
    else:
        text = as_text(s)
        blank = text == ""
        is_epoch = text.str.fullmatch(_EPOCH_RE)
        ts = pd.Series(pd.NaT, index=idx, dtype="datetime64[ns]")
        if is_epoch.any():
            vals = pd.to_numeric(text[is_epoch], errors="coerce")
            ok = vals.between(TS_MIN.timestamp(), TS_MAX.timestamp())
            ts.loc[is_epoch] = pd.to_datetime(vals.where(ok), unit="s", errors="coerce").astype("datetime64[ns]")
        iso = ~is_epoch & ~blank
        if iso.any():
            parsed = pd.to_datetime(text[iso], format="ISO8601", utc=True, errors="coerce")
            parsed = parsed.dt.tz_localize(None)
            ok = (parsed >= TS_MIN) & (parsed < TS_MAX)
            ts.loc[iso] = parsed.where(ok).astype("datetime64[ns]")
    ts = pd.Series(ts, index=idx)
    ts = ts.where((ts >= TS_MIN) & (ts < TS_MAX))
    ts = ts.astype("datetime64[ns]")
    bad = ts.isna() & ~blank
    return ts, bad


_TRUE = {"true", "1", "yes", "y", "t", "1.0"}
_FALSE = {"false", "0", "no", "n", "f", "0.0"}


def as_bool(s: pd.Series, default: bool) -> tuple[pd.Series, pd.Series]:
    if pd.api.types.is_bool_dtype(s.dtype) and not s.isna().any():
        return s.astype(bool), pd.Series(False, index=s.index)
    text = as_text(s).str.lower()
    t = text.isin(_TRUE)
    f = text.isin(_FALSE)
    blank = text == ""
    out = pd.Series(default, index=s.index, dtype=bool)
    out[t] = True
    out[f] = False
    return out, ~(t | f | blank)


def json_text_bad(s: pd.Series) -> pd.Series:
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


class Problems:
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
        vals, bad = as_number(s)
        arr = vals.to_numpy(dtype="float64", copy=True)
        if bad.any():  # as_number calls "inf" text bad; report it as infinite, not as junk
            text = pd.to_numeric(as_text(s).where(bad, None), errors="coerce").to_numpy(dtype="float64")
            text_inf = np.isinf(text)
            arr[text_inf] = text[text_inf]
            bad = bad & ~text_inf
        self.check(bad, column, "not a number")
        inf = np.isinf(arr)

        def got(pos: int) -> str:
            return cell_text(float(arr[pos]))

        self.check(inf, column, lambda pos: f"must be a finite number, got {got(pos)}")
        self.check(arr < 0, column, lambda pos: f"must be 0 or more, got {got(pos)}{hint}")
        return vals

    def raise_first(self) -> None:
        if self.found:
            row, _, column, message = min(self.found)
            raise DataFileError(str(self.file), message, row=row, column=column)


