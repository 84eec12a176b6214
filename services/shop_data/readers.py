"""Generic table readers (CSV via pyarrow, JSONL, Parquet), each returning rows and their
1-based row numbers, with errors that name the file, row and column."""

from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from services.errors import DataFileError
from services.shop_data.schema import UCI_COLUMNS


def _open_text(path: Path, errors: str = "strict"):
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", errors=errors, newline="")
    return open(path, "rt", encoding="utf-8-sig", errors=errors, newline="")


# Bytes that are not valid UTF-8 decode (errors="surrogateescape") to U+DC80..U+DCFF.
_UNDECODABLE = re.compile("[\udc80-\udcff]")


def _first_bad_utf8(fields: list[str]) -> tuple[int, str] | None:
    """(index of the field, 'byte 0xe9 at position 5') for the first field that holds a byte
    that is not valid UTF-8 (0-based byte offset in the field), else None."""
    for i, field in enumerate(fields):
        m = _UNDECODABLE.search(field)
        if m is not None:
            pos = len(field[: m.start()].encode("utf-8", "surrogateescape"))
            return i, f"byte 0x{ord(m.group()) - 0xDC00:02x} at position {pos}"
    return None


def _csv_header(path: Path) -> tuple[list[str], int]:
    """(column names, physical lines up to and including the header record).

    Blank lines before the header are skipped; the line count lets the data reader start right
    after the header. Only the header's lines are decoded here (a bad byte further on is found
    by `read_csv`), so the text is decoded leniently and the header alone checked for UTF-8.
    """
    try:
        with _open_text(path, errors="surrogateescape") as fh:
            reader = csv.reader(fh)
            for rec in reader:
                if rec:
                    if found := _first_bad_utf8(rec):
                        i, bad = found
                        raise DataFileError(str(path), f"the header row is not valid UTF-8 text ({bad} of column name {i + 1})")
                    return [c.strip() for c in rec], reader.line_num
    except (OSError, csv.Error, EOFError) as e:
        raise DataFileError(str(path), f"cannot read the CSV header: {e}") from None
    raise DataFileError(str(path), "empty file: no header row")


def csv_header_is_uci(path: Path) -> bool:
    try:
        header, _ = _csv_header(path)
    except DataFileError:
        return False
    return set(UCI_COLUMNS) <= set(header)


def read_csv(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
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
                if found := _first_bad_utf8(rec):
                    i, bad = found
                    raise DataFileError(str(path), f"not valid UTF-8 text ({bad} of the field)", row=row, column=header[i] if i < len(header) else None)
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


def read_jsonl(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
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


def read_table(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return read_csv(path)
    if name.endswith((".jsonl", ".jsonl.gz")):
        return read_jsonl(path)
    return _read_parquet(path)


