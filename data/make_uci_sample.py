"""Cut the demo sample data/uci_online_retail_sample/online_retail.csv.gz from the full UCI file.

    .venv/bin/python data/make_uci_sample.py [FULL_CSV_GZ] [OUT_CSV_GZ]

Defaults: ../shared/datasets/uci_online_retail/online_retail.csv.gz (next to the repo) and
data/uci_online_retail_sample/online_retail.csv.gz. Deterministic: the same input gives the
same bytes (fixed seed, gzip mtime 0); it prints the row count and sha256 for SOURCE.md.

What is kept (whole lines, byte for byte, in the original order, under the original header):

- the complete invoice history (sales, cancellations, postage and fee lines) of
  * 10 "rich" customers: >= 20 invoices spanning >= 180 days, 80..300 lines;
  * 16 "mid" customers: 5..12 invoices, 20..100 lines;
  * 20 "few" customers: 1..3 invoices, <= 40 lines;
  * 4 customers picked for their dirt: a non-UK customer with POST lines, and the smallest
    histories holding a £0.00 line, an M (manual) line and a C2 (carriage) line;
- lines without a CustomerID, as they are: the 2 smallest blank-customer invoices (>= 10
  lines) that carry DOT (dotcom postage) lines, 12 stock adjustments (negative quantity on a
  sale invoice), 6 blank-customer cancellation lines, and the 3 "Adjust bad debt" lines
  (invoices A563185..A563187).

Customers are drawn with numpy's default_rng(352) (352 = the UCI dataset id) from the
candidates sorted by CustomerID, so the cut is stable across pandas versions.
"""

from __future__ import annotations

import gzip
import hashlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FULL = REPO.parent / "shared" / "datasets" / "uci_online_retail" / "online_retail.csv.gz"
DEFAULT_OUT = REPO / "data" / "uci_online_retail_sample" / "online_retail.csv.gz"
SEED = 352


def _pick(rng: np.random.Generator, ids: pd.Index, n: int, taken: set[str]) -> list[str]:
    pool = sorted(i for i in ids if i not in taken)
    if len(pool) < n:
        raise SystemExit(f"only {len(pool)} candidates, need {n}")
    chosen = sorted(rng.choice(pool, size=n, replace=False).tolist())
    taken.update(chosen)
    return chosen


def select_rows(df: pd.DataFrame) -> np.ndarray:
    """Boolean mask over the rows of the full file (read with dtype=str, no NA conversion)."""
    rng = np.random.default_rng(SEED)
    ts = pd.to_datetime(df["InvoiceDate"], format="%Y-%m-%d %H:%M:%S")
    price = df["UnitPrice"].astype(float)
    qty = df["Quantity"].astype(int)
    has_cust = df["CustomerID"] != ""
    c = df[has_cust].assign(ts=ts[has_cust], price=price[has_cust])
    per = c.groupby("CustomerID").agg(
        lines=("ts", "size"),
        invoices=("InvoiceNo", "nunique"),
        first=("ts", "min"),
        last=("ts", "max"),
        country=("Country", "first"),
        post=("StockCode", lambda s: int((s == "POST").sum())),
        manual=("StockCode", lambda s: int((s == "M").sum())),
        carriage=("StockCode", lambda s: int((s == "C2").sum())),
        zero_price=("price", lambda s: int((s <= 0).sum())),
    )
    per["span_days"] = (per["last"] - per["first"]).dt.days

    taken: set[str] = set()
    rich = per[(per.invoices >= 20) & (per.span_days >= 180) & per.lines.between(80, 300)]
    mid = per[per.invoices.between(5, 12) & per.lines.between(20, 100)]
    few = per[per.invoices.between(1, 3) & (per.lines <= 40)]
    chosen = _pick(rng, rich.index, 10, taken) + _pick(rng, mid.index, 16, taken) + _pick(rng, few.index, 20, taken)

    def smallest(frame: pd.DataFrame) -> str:
        frame = frame[~frame.index.isin(taken)].sort_values(["lines"], kind="stable")
        frame = frame.loc[sorted(frame.index[frame.lines == frame.lines.iloc[0]])]
        cid = frame.index[0]
        taken.add(cid)
        return cid

    chosen.append(smallest(per[(per.country != "United Kingdom") & (per.post > 0) & (per.lines >= 40)]))
    chosen.append(smallest(per[(per.zero_price > 0) & (per.lines >= 20)]))
    chosen.append(smallest(per[(per.manual > 0) & (per.lines >= 20)]))
    chosen.append(smallest(per[(per.carriage > 0) & (per.lines >= 20)]))
    mask = df["CustomerID"].isin(chosen).to_numpy().copy()

    blank = ~has_cust
    inv_sizes = df[blank].groupby("InvoiceNo").size()
    dot_invoices = set(df.loc[blank & (df["StockCode"] == "DOT"), "InvoiceNo"])
    dot_sizes = inv_sizes[inv_sizes.index.isin(dot_invoices) & (inv_sizes >= 10)].sort_index()
    dot_pick = dot_sizes.sort_values(kind="stable").index[:2]
    mask |= (blank & df["InvoiceNo"].isin(dot_pick)).to_numpy()

    is_cancel = df["InvoiceNo"].str.startswith("C")
    adjust = np.flatnonzero((blank & ~is_cancel & (qty <= 0)).to_numpy())
    mask[np.sort(rng.choice(adjust, size=12, replace=False))] = True
    blank_cancel = np.flatnonzero((blank & is_cancel).to_numpy())
    mask[np.sort(rng.choice(blank_cancel, size=6, replace=False))] = True
    mask |= df["InvoiceNo"].str.startswith("A").to_numpy()
    return mask


def main(argv: list[str]) -> None:
    full = Path(argv[1]) if len(argv) > 1 else DEFAULT_FULL
    out = Path(argv[2]) if len(argv) > 2 else DEFAULT_OUT
    raw = gzip.decompress(full.read_bytes()).split(b"\n")
    if raw and raw[-1] == b"":
        raw = raw[:-1]
    header, lines = raw[0], raw[1:]
    df = pd.read_csv(full, dtype=str, keep_default_na=False, na_filter=False)
    if len(df) != len(lines):  # one record per physical line is what makes a byte-exact cut possible
        raise SystemExit(f"{full}: {len(df)} records but {len(lines)} lines; cannot cut by line")
    mask = select_rows(df)
    body = b"\n".join([header] + [lines[i] for i in np.flatnonzero(mask)]) + b"\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, compresslevel=9, mtime=0) as gz:
        gz.write(body)
    data = out.read_bytes()
    sub = df[mask]
    print(f"wrote {out}: {int(mask.sum())} rows (+ header), {len(data):,} bytes")
    print(f"sha256 {hashlib.sha256(data).hexdigest()}")
    print(
        f"customers {sub.loc[sub.CustomerID != '', 'CustomerID'].nunique()}, "
        f"invoices {sub.InvoiceNo.nunique()}, blank-customer lines {(sub.CustomerID == '').sum()}, "
        f"C lines {sub.InvoiceNo.str.startswith('C').sum()}, dates {sub.InvoiceDate.min()} .. {sub.InvoiceDate.max()}"
    )


if __name__ == "__main__":
    main(sys.argv)
