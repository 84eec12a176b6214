"""A Node.js gRPC client built from protos/ ALONE calls every implemented RPC of the live Tailor.

tests/node_client/call_all.js loads the .proto files at run time with @grpc/proto-loader (no
generated code, nothing from the Python side) and prints one JSON object describing each call;
this test checks that what a non-Python client sees is what the contract promises."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_CLIENT = Path(__file__).resolve().parent / "node_client"
PER_CALL_DEADLINE_S = 120  # call_all.js's deadline for each call
CALLS = [
    "EmbeddingService.Embed",
    "RetrievalService.IndexInfo",
    "RetrievalService.Retrieve",
    "RetrievalService.Retrieve(text)",
    "RankingService.Rank",
    "CopyService.Generate",
    "MarketingService.Recommend",
    "MarketingService.Recommend(k=0)",
]
INVALID_ARGUMENT = 3


def node_tools() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        message = "node and npm must be on PATH for the Node.js client check (Node.js 20 or later)"
        if os.environ.get("CI"):
            pytest.fail(message)  # in CI the cross-language check must run, not vanish
        pytest.skip(message)
    return node, npm


def install_node_modules(npm: str) -> None:
    """`npm ci` from the committed package-lock.json when node_modules lacks the two packages."""
    modules = NODE_CLIENT / "node_modules" / "@grpc"
    if (modules / "grpc-js").is_dir() and (modules / "proto-loader").is_dir():
        return
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=NODE_CLIENT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        pytest.fail(f"npm ci failed in {NODE_CLIENT} (rc {done.returncode}):\n{done.stdout}\n{done.stderr}")


@pytest.fixture(scope="module")
def node() -> str:
    """Checked (and npm ci run) before the live fixture starts a cluster, so a missing tool costs nothing."""
    node, npm = node_tools()
    install_node_modules(npm)
    return node


@pytest.fixture(scope="module")
def node_run(node, live_tailor, sample_artifacts, sample_config) -> dict:
    users = sample_artifacts.users
    user = users.loc[users["purchase_count"].idxmax()]
    done = subprocess.run(
        [node, "call_all.js", live_tailor.address, sample_config.serving.app_name, str(user["user_id"])],
        cwd=NODE_CLIENT,
        capture_output=True,
        text=True,
        timeout=PER_CALL_DEADLINE_S * len(CALLS) + 60,
    )
    try:
        result = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"call_all.js printed no JSON (rc {done.returncode}):\n{done.stdout}\n{done.stderr}")
    assert done.returncode == 0 and result["ok"], (
        f"call_all.js reports problems (rc {done.returncode}): {result['errors']}\n{done.stderr}"
    )
    return {
        "user_id": str(user["user_id"]),
        "purchase_count": int(user["purchase_count"]),
        "calls": {call["name"]: call for call in result["calls"]},
        "order": [call["name"] for call in result["calls"]],
    }


def summary(node_run: dict, name: str) -> dict:
    call = node_run["calls"][name]
    assert call["code"] == 0, f"{name} answered status {call['code']}: {call.get('details')}"
    return call["summary"]


@pytest.mark.cluster
def test_every_call_made_in_order_and_happy_calls_succeed(node_run):
    assert node_run["order"] == CALLS
    for name in CALLS[:-1]:
        assert node_run["calls"][name]["code"] == 0, f"{name}: {node_run['calls'][name].get('details')}"


@pytest.mark.cluster
def test_embed_and_index_info(node_run):
    embed = summary(node_run, "EmbeddingService.Embed")
    assert embed["count"] == 2
    assert embed["dimension"] == 384
    assert embed["vector_lengths"] == [embed["dimension"]] * 2

    info = summary(node_run, "RetrievalService.IndexInfo")
    assert info["size"] > 0  # int64: a string on the wire to JS (longs: String), parsed back by call_all.js
    assert info["dimension"] == embed["dimension"]


@pytest.mark.cluster
def test_retrieve_leaves_out_what_the_user_owns(node_run, sample_artifacts):
    retrieved = summary(node_run, "RetrievalService.Retrieve")
    assert retrieved["count"] == 5
    assert len(set(retrieved["item_ids"])) == 5
    owned = sample_artifacts.owned_by(node_run["user_id"])
    assert not set(retrieved["item_ids"]) & owned

    by_text = summary(node_run, "RetrievalService.Retrieve(text)")
    assert 1 <= by_text["count"] <= 3


@pytest.mark.cluster
def test_rank_orders_the_retrieved_items(node_run):
    retrieved = summary(node_run, "RetrievalService.Retrieve")
    ranked = summary(node_run, "RankingService.Rank")
    assert 1 <= ranked["count"] <= 3
    assert {item["item_id"] for item in ranked["items"]} <= set(retrieved["item_ids"])
    assert len({item["item_id"] for item in ranked["items"]}) == ranked["count"]


@pytest.mark.cluster
def test_generate_writes_one_variant_about_the_top_item(node_run):
    ranked = summary(node_run, "RankingService.Rank")
    generated = summary(node_run, "CopyService.Generate")
    assert generated["count"] == 1
    (variant,) = generated["variants"]
    assert variant["item_id"] == ranked["items"][0]["item_id"]
    assert variant["source"] in {"COPY_SOURCE_MODEL", "COPY_SOURCE_REPAIRED", "COPY_SOURCE_TEMPLATE"}
    assert variant["fallback"] == (variant["source"] == "COPY_SOURCE_TEMPLATE")
    assert variant["body"].strip()


@pytest.mark.cluster
def test_recommend_returns_items_profile_and_copy(node_run):
    recommended = summary(node_run, "MarketingService.Recommend")
    assert recommended["count"] == 3
    assert recommended["profile"]["purchase_count"] == node_run["purchase_count"]
    assert recommended["copy"] is not None  # skip_copy false: copy about the first product
    assert recommended["copy"]["item_id"] == recommended["items"][0]["item_id"]


@pytest.mark.cluster
def test_recommend_with_k_zero_is_invalid_argument(node_run):
    failed = node_run["calls"]["MarketingService.Recommend(k=0)"]
    assert failed["code"] == INVALID_ARGUMENT
    assert re.search(r"\bk\b", failed["details"]), failed["details"]
