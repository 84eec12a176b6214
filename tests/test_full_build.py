"""`tailor build` on the whole real data sets in ../shared (skipped where they are absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from clients.cli import app
from services.artifacts import Artifacts

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"

UCI = SHARED / "uci_online_retail"
AMAZON = SHARED / "amazon_reviews_2018_small"

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not UCI.is_dir(), reason=f"{UCI} is not here")
def test_whole_uci_file_builds_and_its_counts_add_up(tmp_path, sample_config):
    result = CliRunner().invoke(app, ["build", "--data", str(UCI), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    build = Artifacts.open(tmp_path, sample_config.index)
    data = build.manifest["data"]
    assert data["rows_read"]["invoice_lines"] == 541_909
    assert data["rows_read"]["invoice_lines"] == data["rows_kept"]["invoice_lines"] + sum(
        data["dropped"]["invoice_lines"].values()
    )
    assert data["dropped"]["invoice_lines"]["blank_customer"] == 135_080  # SOURCE.md's figure
    assert build.manifest["counts"]["events"] == data["rows_kept"]["invoice_lines"]
    assert len(build.users) > 4_000 and len(build.items) > 3_500
    assert build.index.size == len(build.items)
    # Every user with a purchase has a usable vector.
    buyers = build.users["purchase_count"].to_numpy() > 0
    assert (abs(build.user_vectors[buyers]).sum(axis=1) > 0).all()
    # Every analysis ran on the whole file and meets its bar (the printed figures, kept).
    manifest = build.manifest
    assert "Segments" in result.output and "Basket rules" in result.output and "Build stages" in result.output
    segments = manifest["segments"]["segments_table"]
    assert 4 <= len(segments) <= 8 and all(s["share"] >= 0.02 for s in segments)
    assert len({s["name"] for s in segments}) == len(segments)
    held = manifest["propensity"]["held_out"]
    assert manifest["propensity"]["method"] == "lightgbm" and held["model"]["auc"] > held["recency_baseline"]["auc"]
    for kind in ("category", "item"):
        backtest = manifest["trends"]["backtest"][kind]
        assert backtest["series"] > 0 and backtest["wape"]["chosen"] < min(backtest["wape"]["naive"], backtest["wape"]["mean4"])
    assert manifest["rules"]["rules"] > 1_000 and manifest["rules"]["top_rules_by_lift"]
    assert manifest["categories"]["source"] == "derived" and manifest["categories"]["categories"] >= 8
    assert manifest["ranker"]["kind"] == "lightgbm"


@pytest.mark.skipif(not AMAZON.is_dir(), reason=f"{AMAZON} is not here")
def test_amazon_reviews_build(tmp_path, sample_config):
    result = CliRunner().invoke(app, ["build", "--data", str(AMAZON), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    build = Artifacts.open(tmp_path, sample_config.index)
    assert set(build.manifest["counts"]["events_by_type"]) == {"review"}
    # Review-only data: the shop's own categories; every reviewer gets a segment and tags.
    assert build.manifest["categories"]["source"] == "shop"
    assert build.users["segment"].notna().all() and build.users["interests"].map(len).gt(0).all()
    assert not build.items["title"].str.contains("<span").any()
    for table, read in build.manifest["data"]["rows_read"].items():
        assert read == build.manifest["data"]["rows_kept"][table] + sum(build.manifest["data"]["dropped"][table].values())
