"""data/make_synthetic_shop.py: a small synthetic shop follows UCI's distributions and loads as a shop."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from services.shop_data import load_shop_data

ROOT = Path(__file__).resolve().parents[1]
UCI = ROOT.parent / "shared" / "datasets" / "uci_online_retail"

pytestmark = pytest.mark.skipif(not (UCI / "online_retail.csv.gz").is_file(), reason=f"full UCI Online Retail not at {UCI}")


def generator():
    spec = importlib.util.spec_from_file_location("make_synthetic_shop", ROOT / "data" / "make_synthetic_shop.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up while being made
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    make = generator()
    out = tmp_path_factory.mktemp("synthetic")
    summary = make.make_shop(UCI, out, shoppers=2_000, events_per_shopper=20, seed=7, echo=lambda *_: None)
    return out, summary, load_shop_data(out), load_shop_data(UCI)


def orders_of(events: pd.DataFrame) -> pd.DataFrame:
    return events.groupby("session_id").agg(user_id=("user_id", "first"), at=("timestamp", "min"), lines=("item_id", "size"))


def test_the_loader_reads_every_row_of_it_as_a_canonical_shop(made):
    out, summary, shop, _ = made
    assert shop.report.source == "canonical"
    assert shop.report.balanced()
    assert shop.report.rows_kept == {"items": summary["items"], "events": summary["events"]}
    assert shop.events["user_id"].nunique() == 2_000
    assert set(shop.events["event_type"]) == {"purchase", "return"}
    assert json.loads((out / "synthetic.json").read_text())["events"] == len(shop.events)


def test_shoppers_have_about_the_asked_lines_and_ucis_number_of_orders(made):
    _, _, shop, uci = made
    lines = shop.events.groupby("user_id").size()
    assert 16 <= lines.mean() <= 24
    synthetic_orders = orders_of(shop.events).groupby("user_id").size()
    uci_orders = orders_of(uci.events).groupby("user_id").size()
    assert abs(synthetic_orders.mean() - uci_orders.mean()) < 0.15 * uci_orders.mean()
    assert abs(synthetic_orders.median() - uci_orders.median()) <= 1


def test_items_and_their_popularity_follow_uci(made):
    _, _, shop, uci = made
    assert set(shop.events["item_id"]) <= set(uci.items["item_id"])
    top = uci.events["item_id"].value_counts()
    synthetic = shop.events["item_id"].value_counts().reindex(top.index, fill_value=0)
    # Popular UCI items are popular here too (rank correlation over UCI's 500 best sellers).
    assert synthetic.head(500).rank().corr(top.head(500).rank(), method="spearman") > 0.3
    assert synthetic.head(100).sum() > 5 * synthetic.tail(100).sum()


def test_later_orders_re_order_about_as_often_as_ucis_shoppers_do(made):
    _, summary, shop, _ = made
    bought = shop.events[shop.events["event_type"] == "purchase"].sort_values("timestamp", kind="stable")
    orders = orders_of(bought)
    first_order = orders.groupby("user_id")["at"].min()
    later = bought["timestamp"].to_numpy() > first_order.reindex(bought["user_id"]).to_numpy()
    seen_before = bought.groupby(["user_id", "item_id"])["timestamp"].transform("min") < bought["timestamp"]
    share = (later & seen_before).sum() / later.sum()
    assert abs(share - summary["uci"]["reorder_share"]) < 0.12


def test_times_lie_inside_ucis_span_and_orders_are_apart_by_ucis_gaps(made):
    _, _, shop, uci = made
    assert shop.events["timestamp"].min() >= uci.events["timestamp"].min()
    assert shop.events["timestamp"].max() <= uci.events["timestamp"].max()

    def median_gap_days(events):
        at = orders_of(events).sort_values(["user_id", "at"])
        return at.groupby("user_id")["at"].diff().dropna().dt.total_seconds().median() / 86_400

    assert median_gap_days(shop.events) == pytest.approx(median_gap_days(uci.events), rel=0.35)


def test_the_same_seed_writes_the_same_rows(tmp_path):
    make = generator()
    frames = []
    for name in ("a", "b"):
        make.make_shop(UCI, tmp_path / name, shoppers=300, events_per_shopper=10, seed=3, echo=lambda *_: None)
        frames.append(pd.read_parquet(tmp_path / name / "events.parquet"))
    pd.testing.assert_frame_equal(frames[0], frames[1])
    assert np.isclose(frames[0].groupby("user_id").size().mean(), 10, rtol=0.3)
