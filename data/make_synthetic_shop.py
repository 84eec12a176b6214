"""Write a synthetic shop of many shoppers, drawn from UCI Online Retail's real distributions.

    .venv/bin/python data/make_synthetic_shop.py --out /tmp/scale/shop            # 1M shoppers
    .venv/bin/python data/make_synthetic_shop.py --shoppers 2000 --out /tmp/small

The output is the canonical layout `tailor build --data DIR` reads: ``items.parquet`` (UCI's
cleaned catalog as it is: item ids, titles, prices) and ``events.parquet`` (one row per invoice
line: user_id, item_id, event_type, session_id, quantity, price, timestamp), plus
``synthetic.json`` saying how it was made and what came out.

How a shopper is drawn (every distribution is UCI's, read from the cleaned file):

- each synthetic shopper follows one UCI shopper's rhythm: that shopper's number of invoices
  (median 3, mean 5, tail to 242), first invoice time, and gaps between consecutive invoices
  (drawn from that shopper's own gaps, so frequent buyers keep their short gaps). A history
  that would run past UCI's last day is moved earlier, one longer than UCI's span squeezed in;
- each order copies a real UCI invoice (so basket sizes, which items go together, quantities
  and prices are UCI's): a contiguous run of its lines, each line kept with the probability
  that gives `events_per_shopper` lines per shopper on average (UCI's shoppers have 93, so at
  the default 20 a basket keeps about a fifth of its invoice's lines, at least one);
- re-orders: in every order after the first, a line is, with UCI's re-order share, an item
  the shopper bought in an earlier order instead of the invoice's own;
- returns: an order after the first is, with UCI's share of cancellation invoices, a return of
  items the shopper bought earlier (the loader reads UCI's cancellations as returns too).

Deterministic by seed: shoppers are made in fixed chunks of CHUNK_SHOPPERS, chunk i from
SeedSequence(seed).spawn, so the same arguments give the same rows. Memory stays bounded by the
chunk (a row group each); numpy throughout, no Python loop per shopper or line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere: the loader is the project's own

from services.shop_data import ITEM_COLUMNS, load_shop_data  # noqa: E402

DEFAULT_SOURCE = REPO.parent / "shared" / "datasets" / "uci_online_retail"
CHUNK_SHOPPERS = 50_000


@dataclass
class UciShape:
    """What is drawn from: UCI's invoices as line arrays, and its per-shopper distributions."""

    items: pd.DataFrame
    # Invoices (purchase ones, then return ones) as [start, start + size) runs of the line arrays.
    line_item: np.ndarray  # int32 index into items
    line_quantity: np.ndarray
    line_price: np.ndarray
    purchase_start: np.ndarray
    purchase_size: np.ndarray
    return_start: np.ndarray
    return_size: np.ndarray
    # Per UCI shopper: invoices, first invoice (seconds since `start`), and where its gaps lie in gap_s.
    orders_per_shopper: np.ndarray
    first_order_s: np.ndarray
    gap_start: np.ndarray
    gap_s: np.ndarray  # seconds between a shopper's consecutive invoices, shopper by shopper
    reorder_share: float
    return_share: float
    start: np.datetime64
    span_s: float
    lines_per_shopper: float


def uci_shape(source: Path) -> UciShape:
    shop = load_shop_data(source)
    events = shop.events
    items = shop.items.reset_index(drop=True)
    item_index = pd.Index(items["item_id"])
    events = events.sort_values(["session_id", "timestamp"], kind="stable").reset_index(drop=True)
    events["item"] = item_index.get_indexer(events["item_id"]).astype(np.int32)
    events["line"] = np.arange(len(events))
    events["is_return"] = events["event_type"] == "return"

    invoices = events.groupby("session_id", sort=False).agg(
        user_id=("user_id", "first"),
        start=("line", "min"),
        size=("line", "size"),
        is_return=("is_return", "first"),
        at=("timestamp", "min"),
    )
    purchases, returns = invoices[~invoices["is_return"]], invoices[invoices["is_return"]]

    start = events["timestamp"].min()
    ordered = invoices.sort_values(["user_id", "at"])
    first = ordered.groupby("user_id")["at"].min()
    orders_per_shopper = ordered.groupby("user_id").size().to_numpy(np.int64)
    gaps = ordered.groupby("user_id")["at"].diff().dropna().dt.total_seconds().to_numpy()
    gap_count = orders_per_shopper - 1

    # Re-order share: of the purchase lines in a shopper's second and later invoices, how many
    # are items that shopper bought in an earlier invoice.
    bought = events[events["event_type"] == "purchase"].merge(
        ordered[["at"]].rename(columns={"at": "invoice_at"}), left_on="session_id", right_index=True
    )
    first_bought = bought.groupby(["user_id", "item"])["invoice_at"].transform("min")
    later = bought["invoice_at"] > first.reindex(bought["user_id"]).to_numpy()
    reorder_share = float((later & (first_bought < bought["invoice_at"])).sum() / max(int(later.sum()), 1))

    return UciShape(
        items=items,
        line_item=events["item"].to_numpy(np.int32),
        line_quantity=events["quantity"].to_numpy(np.float64),
        line_price=events["price"].to_numpy(np.float64),
        purchase_start=purchases["start"].to_numpy(np.int64),
        purchase_size=purchases["size"].to_numpy(np.int64),
        return_start=returns["start"].to_numpy(np.int64),
        return_size=returns["size"].to_numpy(np.int64),
        orders_per_shopper=orders_per_shopper,
        first_order_s=(first - start).dt.total_seconds().to_numpy(),
        gap_start=np.cumsum(gap_count) - gap_count,
        gap_s=gaps,
        reorder_share=reorder_share,
        return_share=len(returns) / len(invoices),
        start=np.datetime64(start.to_datetime64(), "s"),
        span_s=(events["timestamp"].max() - start).total_seconds(),
        lines_per_shopper=len(events) / events["user_id"].nunique(),
    )


def keep_probability(shape: UciShape, events_per_shopper: float) -> float:
    """The per-line keep probability p with orders × E[max(1, Binomial(size, p))] = events_per_shopper.

    E[max(1, X)] = E[X] + P(X = 0) = size·p + (1 − p)^size, averaged over UCI's invoices; it
    rises with p, so bisection finds it. Clipped to [0, 1]: below one line per order every
    order keeps one line, above UCI's own size every line is kept."""
    orders = shape.orders_per_shopper.mean()
    sizes = np.concatenate([shape.purchase_size, shape.return_size]).astype(np.float64)

    def lines(p: float) -> float:
        return orders * float(np.mean(sizes * p + (1 - p) ** sizes))

    lo, hi = 0.0, 1.0
    if events_per_shopper <= lines(lo):
        return lo
    if events_per_shopper >= lines(hi):
        return hi
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if lines(mid) < events_per_shopper else (lo, mid)
    return (lo + hi) / 2


def shopper_chunk(shape: UciShape, first_id: int, n: int, keep: float, rng: np.random.Generator, first_order_no: int) -> pa.Table:
    """Invoice lines of shoppers first_id .. first_id + n − 1 (see the module doc)."""
    persona = rng.integers(0, len(shape.orders_per_shopper), n)
    orders = shape.orders_per_shopper[persona]
    n_orders = int(orders.sum())
    order_shopper = np.repeat(np.arange(n), orders)
    shopper_first_order = np.cumsum(orders) - orders
    rank = np.arange(n_orders) - shopper_first_order[order_shopper]

    is_return = (rank > 0) & (rng.random(n_orders) < shape.return_share)
    template_start = np.empty(n_orders, np.int64)
    template_size = np.empty(n_orders, np.int64)
    pick = rng.integers(0, len(shape.purchase_start), n_orders)
    template_start[:] = shape.purchase_start[pick]
    template_size[:] = shape.purchase_size[pick]
    if len(shape.return_start):
        pick = rng.integers(0, len(shape.return_start), int(is_return.sum()))
        template_start[is_return] = shape.return_start[pick]
        template_size[is_return] = shape.return_size[pick]
    else:
        is_return[:] = False

    # A contiguous run (wrapping round) of the invoice's lines: lines entered together stay together.
    kept = np.maximum(1, rng.binomial(template_size, keep))
    offset = rng.integers(0, template_size)
    line_order = np.repeat(np.arange(n_orders), kept)
    order_first_line = np.cumsum(kept) - kept
    within = np.arange(len(line_order)) - order_first_line[line_order]
    template_line = template_start[line_order] + (offset[line_order] + within) % template_size[line_order]
    item = shape.line_item[template_line]
    quantity = shape.line_quantity[template_line]
    price = shape.line_price[template_line]

    # Re-orders and returns point at a line of an earlier order of the same shopper. That line may
    # itself point further back; pointer jumping resolves every chain in O(log length) passes.
    line_shopper = order_shopper[line_order]
    shopper_lines = np.bincount(line_shopper, minlength=n)
    shopper_first_line = np.cumsum(shopper_lines) - shopper_lines
    earlier = order_first_line[line_order] - shopper_first_line[line_shopper]
    line_return = is_return[line_order]
    repeat = (earlier > 0) & (line_return | (rng.random(len(line_order)) < shape.reorder_share))
    source = np.arange(len(line_order))
    source[repeat] = shopper_first_line[line_shopper[repeat]] + (rng.random(int(repeat.sum())) * earlier[repeat]).astype(np.int64)
    while True:
        jumped = source[source]
        if np.array_equal(jumped, source):
            break
        source = jumped
    item = item[source]
    price = price[source]
    quantity = np.where(line_return, quantity[source], quantity)

    # Order times: a first time, then UCI's gaps; moved or squeezed to lie inside UCI's span.
    own_gaps = np.maximum(orders - 1, 1)[order_shopper]
    gap_pick = shape.gap_start[persona][order_shopper] + (rng.random(n_orders) * own_gaps).astype(np.int64)
    gap = np.where(rank > 0, shape.gap_s[np.minimum(gap_pick, len(shape.gap_s) - 1)], 0.0)
    total = np.cumsum(gap)
    relative = total - total[shopper_first_order][order_shopper]
    length = relative[shopper_first_order + orders - 1]
    squeeze = np.minimum(1.0, shape.span_s / np.maximum(length, 1.0))
    relative *= squeeze[order_shopper]
    first = np.minimum(shape.first_order_s[persona], shape.span_s - length * squeeze)
    seconds = (first[order_shopper] + relative).astype(np.int64)
    timestamp = shape.start + seconds[line_order].astype("timedelta64[s]")

    user = pc.utf8_lpad(pc.cast(pa.array(first_id + line_shopper), pa.string()), 7, "0")
    session = pc.cast(pa.array(first_order_no + line_order), pa.string())
    return pa.table(
        {
            "user_id": pc.binary_join_element_wise("u", user, ""),
            "item_id": pc.take(pa.array(shape.items["item_id"].to_numpy(str)), pa.array(item)),
            "event_type": pc.take(pa.array(["purchase", "return"]), pa.array(line_return.astype(np.int8))),
            "session_id": pc.binary_join_element_wise("o", session, ""),
            "quantity": quantity,
            "price": price,
            "timestamp": pa.array(timestamp, pa.timestamp("s")),
        }
    )


def make_shop(source: Path, out: Path, shoppers: int, events_per_shopper: float, seed: int, echo=print) -> dict:
    started = time.perf_counter()
    shape = uci_shape(source)
    keep = keep_probability(shape, events_per_shopper)
    echo(
        f"UCI: {len(shape.items):,} items, {len(shape.purchase_start):,} invoices, "
        f"re-order share {shape.reorder_share:.3f}, return share {shape.return_share:.3f}; "
        f"keeping {keep:.3f} of an invoice's lines"
    )
    out.mkdir(parents=True, exist_ok=True)
    shape.items[list(ITEM_COLUMNS)].to_parquet(out / "items.parquet", index=False)

    chunks = np.random.SeedSequence(seed).spawn((shoppers + CHUNK_SHOPPERS - 1) // CHUNK_SHOPPERS)
    partial = out / "events.parquet.partial"
    rows = orders = 0
    writer = None
    try:
        for i, seq in enumerate(chunks):
            first_id = i * CHUNK_SHOPPERS
            n = min(CHUNK_SHOPPERS, shoppers - first_id)
            table = shopper_chunk(shape, first_id, n, keep, np.random.default_rng(seq), orders)
            orders += len(pc.unique(table["session_id"]))
            if writer is None:
                writer = pq.ParquetWriter(partial, table.schema, compression="zstd")
            writer.write_table(table)
            rows += table.num_rows
            echo(f"  {first_id + n:,}/{shoppers:,} shoppers, {rows:,} events ({time.perf_counter() - started:.0f} s)")
    finally:
        if writer is not None:
            writer.close()
    partial.rename(out / "events.parquet")

    summary = {
        "generator": "data/make_synthetic_shop.py",
        "source": str(Path(source).resolve()),
        "shoppers": shoppers,
        "events_per_shopper": events_per_shopper,
        "seed": seed,
        "chunk_shoppers": CHUNK_SHOPPERS,
        "events": rows,
        "orders": orders,
        "items": len(shape.items),
        "line_keep_probability": round(keep, 4),
        "uci": {
            "lines_per_shopper": round(shape.lines_per_shopper, 2),
            "orders_per_shopper": round(float(shape.orders_per_shopper.mean()), 3),
            "reorder_share": round(shape.reorder_share, 4),
            "return_share": round(shape.return_share, 4),
        },
        "bytes": sum(p.stat().st_size for p in (out / "items.parquet", out / "events.parquet")),
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / "synthetic.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shoppers", type=int, default=1_000_000)
    parser.add_argument("--events-per-shopper", type=float, default=20.0, help="mean invoice lines per shopper")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="folder to write items.parquet and events.parquet to")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="UCI Online Retail (folder or CSV)")
    args = parser.parse_args(argv)
    if args.shoppers < 1 or args.events_per_shopper <= 0:
        parser.error("--shoppers and --events-per-shopper must be positive")
    summary = make_shop(args.source, args.out, args.shoppers, args.events_per_shopper, args.seed)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
