"""The offline build on the shipped sample: files, counts, publishing."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from services.artifacts import Artifacts, current_build_dir
from services.build import build_artifacts
from services.errors import DataFileError, Unavailable


def test_manifest_counts_add_up(sample_build):
    data = sample_build.manifest["data"]
    for table, read in data["rows_read"].items():
        assert read == data["rows_kept"][table] + sum(data["dropped"][table].values())
    assert sample_build.manifest["counts"]["events"] == data["rows_kept"]["invoice_lines"]


def test_build_files_line_up(sample_build, sample_artifacts):
    manifest = json.loads((sample_build.path / "manifest.json").read_text())
    items, users = sample_artifacts.items, sample_artifacts.users
    assert manifest["counts"]["items"] == len(items) == sample_artifacts.item_vectors.shape[0] == sample_artifacts.index.size
    assert manifest["counts"]["users"] == len(users) == sample_artifacts.user_vectors.shape[0]
    assert sample_artifacts.index.kind == "flat"  # a sample is far below the exact-search limit
    norms = np.linalg.norm(sample_artifacts.item_vectors, axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-4)
    assert items["item_id"].is_unique and users["user_id"].is_unique
    assert items["popularity"].between(0, 1).all() and items["popularity"].max() == pytest.approx(1.0)


def test_profiles_match_the_raw_sample(sample_config, sample_artifacts):
    """Purchase counts recomputed from the raw CSV with plain pandas agree with the build."""
    raw = pd.read_csv(
        sample_config.data / "online_retail.csv.gz", dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": "Int64"}
    )
    users = sample_artifacts.users.set_index("user_id")
    top = users["purchase_count"].idxmax()
    mine = raw[(raw["CustomerID"] == int(top)) & ~raw["InvoiceNo"].str.startswith("C") & (raw["Quantity"] > 0)]
    # Invoices of real products only: the build leaves out postage and other non-product lines.
    assert users.loc[top, "purchase_count"] <= mine["InvoiceNo"].nunique()
    assert users.loc[top, "purchase_count"] >= mine["InvoiceNo"].nunique() - 2
    last = pd.Timestamp(mine["InvoiceDate"].max()).date()
    assert pd.Timestamp(users.loc[top, "last_purchase"]).date() == last
    assert len(users.loc[top, "interests"]) > 0


def test_rebuild_publishes_atomically_and_keeps_the_old_build(sample_config, sample_build, tmp_path):
    config = sample_config.model_copy(update={"artifacts_dir": tmp_path, "keep_builds": 2})
    first = build_artifacts(config.data, tmp_path, config)
    assert current_build_dir(tmp_path) == first.path and not first.reused
    opened = Artifacts.open(tmp_path, config.index)
    # Same data, same settings: the published build stands, nothing is rebuilt.
    again = build_artifacts(config.data, tmp_path, config)
    assert again.reused and again.path == first.path
    second = build_artifacts(config.data, tmp_path, config, force=True)
    assert current_build_dir(tmp_path) == second.path != first.path
    assert second.manifest["fingerprint"] == first.manifest["fingerprint"]
    assert first.path.is_dir() and opened.path == first.path  # readers of the old build keep it
    assert os.path.islink(tmp_path / "current")
    assert not list((tmp_path / "builds").glob(".*partial"))
    # Older builds beyond keep_builds go; the current one never does.
    third = build_artifacts(config.data, tmp_path, config, force=True)
    assert sorted((tmp_path / "builds").iterdir()) == sorted([second.path, third.path])
    # A change of settings is a different build.
    changed = config.model_copy(update={"profile": config.profile.model_copy(update={"interest_tags": 3})})
    assert not build_artifacts(config.data, tmp_path, changed).reused


def test_no_published_build_is_a_clear_error(tmp_path):
    with pytest.raises(Unavailable, match="tailor build"):
        current_build_dir(tmp_path)


def test_missing_data_is_a_clear_error(sample_config, tmp_path):
    with pytest.raises(DataFileError, match="does-not-exist"):
        build_artifacts(tmp_path / "does-not-exist", tmp_path / "out", sample_config)
    assert not (tmp_path / "out" / "current").exists()


def test_a_build_holds_every_file_of_the_table_and_says_which_ranker(sample_build):
    from services.artifacts import FILES

    manifest = sample_build.manifest
    ranker = manifest["ranker"]
    assert ranker["kind"] in {"blend", "lightgbm"}
    expected = set(FILES) - ({"ranker"} if ranker["kind"] == "blend" else set())
    assert all((sample_build.path / FILES[name]).is_file() for name in expected)
    if ranker["kind"] == "blend":
        assert ranker["why"]  # the manifest says why the learned ranker did not train
    assert manifest["repurchase"]["policy"] == "reorderable" and manifest["repurchase"]["reorderable_items"] > 0
    assert manifest["co_purchase"]["baskets"] > 0


def test_a_build_of_another_format_is_refused_clearly(sample_build, tmp_path):
    import shutil

    from services.artifacts import BUILD_FORMAT, Artifacts
    from services.config import IndexConfig

    assert sample_build.manifest["format"] == BUILD_FORMAT
    old = tmp_path / "old"
    shutil.copytree(sample_build.path, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["format"]  # what a build of an older Tailor looks like
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(Unavailable, match="format 1.*tailor build --force"):
        Artifacts(old, IndexConfig())
