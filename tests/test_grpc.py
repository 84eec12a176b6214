"""Every implemented RPC over the real gRPC proxy of a live local Ray Serve application."""

from __future__ import annotations

import json
import re

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from datetime import date, timedelta

from services.copywriting import CHANNELS, Copy, Promotion, check_copy
from services.copywriting.channels import sms_segments
from services.copywriting.layouts import FAMILIES
from services.copywriting.text import display_width
from services.copywriting.writer import CopyWriter
from tailor.v1 import common_pb2, copy_pb2, embedding_pb2, marketing_pb2, ranking_pb2, retrieval_pb2

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def best_user(sample_artifacts) -> str:
    return str(sample_artifacts.users.sort_values(["purchase_count", "user_id"]).iloc[-1]["user_id"])


def status_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code(), raised.value.details()


# --- happy paths ---------------------------------------------------------------------------


def test_embed(live_tailor, sample_config):
    response = live_tailor.embed(["white hanging heart t-light holder", "regency cake stand"])
    assert response.dimension == 384 and len(response.vectors) == 2
    vectors = np.array([v.values for v in response.vectors])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    from services.recommend.embedding import TextEmbedder

    local = TextEmbedder(sample_config).embed(["regency cake stand"])[0]
    assert float(local @ vectors[1]) > 0.999  # the served model is the one the build used


def test_index_info(live_tailor, sample_artifacts):
    info = live_tailor.index_info()
    assert info.build_id == sample_artifacts.build_id
    assert (info.index_type, info.size, info.dimension) == ("flat", len(sample_artifacts.items), 384)
    assert info.metric == "inner_product" and info.embedding_model and info.built_at


def test_retrieve_by_user_text_and_vector(live_tailor, sample_artifacts, best_user):
    by_user = live_tailor.retrieve(k=10, user_id=best_user, exclude_purchased=True)
    assert len(by_user.candidates) == 10 and by_user.build_id == sample_artifacts.build_id
    assert not {c.item_id for c in by_user.candidates} & sample_artifacts.owned_by(best_user)
    assert all(c.sources and c.source == c.sources[0].source for c in by_user.candidates)
    with_history = live_tailor.retrieve(k=50, user_id=best_user)
    assert "history" in {s.source for c in with_history.candidates for s in c.sources}

    by_text = live_tailor.retrieve(k=3, text="cake stand")
    titles = sample_artifacts.items.set_index("item_id").loc[[c.item_id for c in by_text.candidates], "title"]
    assert any("CAKE" in t for t in titles)

    vector = sample_artifacts.item_vectors[7]
    by_vector = live_tailor.retrieve(k=1, vector=list(map(float, vector)))
    assert by_vector.candidates[0].item_id == sample_artifacts.items["item_id"].iloc[7]
    assert by_vector.candidates[0].score == pytest.approx(1.0, abs=1e-4)


def test_rank(live_tailor, sample_artifacts, best_user):
    owned = sorted(sample_artifacts.owned_by(best_user))[:5]
    others = [i for i in sample_artifacts.items["item_id"] if i not in sample_artifacts.owned_by(best_user)][:20]
    response = live_tailor.rank(best_user, owned + others, k=5, exclude_purchased=True)
    assert len(response.items) == 5 and response.ranker == sample_artifacts.ranker.name
    assert not {r.item.item_id for r in response.items} & set(owned)
    assert all(r.reasons and r.item.title for r in response.items)


def test_rank_takes_retrieved_candidates_with_their_sources(live_tailor, best_user):
    retrieved = live_tailor.retrieve(k=60, user_id=best_user)
    response = live_tailor.rank(best_user, candidates=retrieved.candidates, k=10)
    assert len(response.items) == 10
    given = {c.item_id: {s.source for s in c.sources} for c in retrieved.candidates}
    for ranked in response.items:
        assert set(ranked.sources) == given[ranked.item.item_id]


def test_recommend_for_a_shopper_the_build_does_not_know(live_tailor, sample_artifacts):
    response = live_tailor.recommend("walk-in-7", k=4, cold_start=True)
    assert len(response.items) == 4 and not response.HasField("profile")
    assert response.copy.item_id == response.items[0].item.item_id and response.copy.body
    viewed = sample_artifacts.items["item_id"].iloc[3]
    session = live_tailor.recommend("", k=5, cold_start=True, context_item_ids=[viewed], skip_copy=True)
    assert len(session.items) == 5
    assert any({"co_purchase", "ann"} & set(r.sources) for r in session.items)


FUTURE = (date.today() + timedelta(days=30)).isoformat()


@pytest.mark.parametrize("channel,language", [("push", "en"), ("sms", "zh"), ("email", "en"), ("banner", "zh")])
def test_generate_copy_is_checked_and_honest(live_tailor, sample_artifacts, sample_config, best_user, channel, language):
    """What the server says of each variant is re-checked here against the domain's own rules."""
    item_id = sample_artifacts.items["item_id"].iloc[0]
    response = live_tailor.generate(best_user, [item_id], channel=channel, language=language, n_variants=2)
    assert len(response.variants) == 2 and response.model
    facts = CopyWriter(sample_artifacts, None, None, sample_config).facts(best_user, item_id, channel, language, Promotion(), "")
    spec = CHANNELS[channel]
    for variant in response.variants:
        copy = Copy(variant.title, variant.body, variant.call_to_action)
        assert variant.item_id == item_id and variant.variant_id and variant.family in FAMILIES
        assert check_copy(copy, facts.__class__(**{**facts.__dict__, "tone": variant.tone})) == []
        assert variant.fallback == (variant.source == copy_pb2.COPY_SOURCE_TEMPLATE)
        if variant.source in (copy_pb2.COPY_SOURCE_MODEL, copy_pb2.COPY_SOURCE_REPAIRED):
            assert language == "en" and variant.model_words and variant.model_words in f"{copy.title} {copy.body}"
        else:
            assert not variant.model_words
        assert display_width(variant.title) <= spec.title_limit(language)
        if channel == "sms":
            assert variant.sms == variant.body and variant.body.endswith("回T退订") and variant.body.startswith("【")
            assert variant.sms_segments == sms_segments(variant.body) <= 3
        else:
            assert 0 < display_width(variant.body) <= spec.body_limit(language)
        if channel == "email":
            assert variant.email.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            assert variant.email.headers["List-Unsubscribe"].startswith("<https://")
            assert "<html" in variant.email.html and variant.email.text and variant.email.subject == variant.title


def test_generate_with_a_promotion_states_only_its_terms(live_tailor, sample_artifacts, best_user):
    item = sample_artifacts.items.iloc[3]
    promotion = common_pb2.Promotion(code="SPRING20", percent_off=20, ends=FUTURE, threshold_amount=50, threshold_reduction=5)
    for language in ("en", "zh"):
        response = live_tailor.generate(best_user, [item["item_id"]], channel="email", language=language, promotion=promotion)
        text = response.variants[0].title + " " + response.variants[0].body
        percentages = {float(p) for p in re.findall(r"(\d+(?:\.\d+)?)\s*%", text)}
        assert percentages == {20.0} and "SPRING20" in text and FUTURE in text, text


def test_generate_stream_streams_the_model_words_then_the_checked_variant(live_tailor, sample_artifacts, best_user):
    item_id = sample_artifacts.items["item_id"].iloc[0]
    chunks = live_tailor.generate_stream(best_user, [item_id], "push", "en")
    *pieces, last = chunks
    assert last.HasField("final") and last.final.variant_id and last.final.item_id == item_id
    streamed = "".join(c.text for c in pieces).strip()
    assert pieces and streamed
    if last.final.model_words:  # the streamed words passed the checks: the variant uses them (maybe shortened)
        assert " ".join(streamed.split()).startswith(last.final.model_words.rstrip("."))


def test_record_feedback_over_grpc(live_tailor, sample_artifacts, best_user):
    item_id = sample_artifacts.items["item_id"].iloc[0]
    variant = live_tailor.generate(best_user, [item_id], channel="push").variants[0]
    for event in ("impression", "click", "click", "purchase"):  # a repeat is accepted and counted once
        live_tailor.record_feedback(best_user, variant.variant_id, event, item_id=item_id)
    forged = variant.variant_id[:-3] + ("AAA" if not variant.variant_id.endswith("AAA") else "BBB")
    other_user = str(sample_artifacts.users["user_id"].iloc[0])
    assert other_user != best_user
    cases = {
        "variant_id": (grpc.StatusCode.INVALID_ARGUMENT, lambda: live_tailor.record_feedback(best_user, forged, "click")),
        "event_type": (
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda: live_tailor._call(
                live_tailor.marketing.RecordFeedback,
                marketing_pb2.RecordFeedbackRequest(user_id=best_user, variant_id=variant.variant_id),
            ),
        ),
        "user_id": (grpc.StatusCode.NOT_FOUND, lambda: live_tailor.record_feedback(other_user, variant.variant_id, "click")),
        "item_id": (grpc.StatusCode.NOT_FOUND, lambda: live_tailor.record_feedback(best_user, variant.variant_id, "click", item_id="22423X")),
    }
    for field, (expected, call) in cases.items():
        code, details = status_of(call)
        assert code == expected and details.startswith(f"{field}:"), (field, code, details)


def test_recommend_composes_the_flow(live_tailor, sample_artifacts, best_user):
    response = live_tailor.recommend(best_user, k=5, channel="push")
    user = sample_artifacts.users.set_index("user_id").loc[best_user]
    assert response.profile.purchase_count == user["purchase_count"]
    assert list(response.profile.interests) == list(user["interests"])
    assert response.profile.last_purchase_date == str(user["last_purchase"].date())
    assert len(response.items) == 5
    assert all(r.reasons and r.sources for r in response.items)
    assert response.copy.item_id == response.items[0].item.item_id
    assert response.copy.body and response.build_id == sample_artifacts.build_id

    products_only = live_tailor.recommend(best_user, k=3, skip_copy=True)
    assert len(products_only.items) == 3 and not products_only.HasField("copy")

    discovery = live_tailor.recommend(best_user, k=10, skip_copy=True, exclude_purchased=True)
    assert len(discovery.items) == 10
    assert not {r.item.item_id for r in discovery.items} & sample_artifacts.owned_by(best_user)


def test_recommend_with_a_fixed_amount_off_picks_an_item_it_can_apply_to(live_tailor, sample_artifacts, best_user):
    response = live_tailor.recommend(best_user, k=5, promotion=common_pb2.Promotion(code="TAKE3", amount_off=3.0))
    prices = {r.item.item_id: r.item.price for r in response.items}
    if any(price > 3.0 for price in prices.values()):
        assert prices[response.copy.item_id] > 3.0
    else:
        assert any("promotion not applied" in p for p in response.copy.problems)
    huge = live_tailor.recommend(best_user, k=3, promotion=common_pb2.Promotion(amount_off=10_000))
    assert huge.copy.body and any("promotion not applied" in p for p in huge.copy.problems)


def test_health_check(live_tailor):
    stub = health_pb2_grpc.HealthStub(live_tailor.channel)
    response = stub.Check(health_pb2.HealthCheckRequest(), metadata=live_tailor.metadata, timeout=30)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


# --- bad input: a status code naming the field, and the server keeps serving ---------------


def test_unknown_user_is_not_found(live_tailor, best_user):
    for call in (
        lambda: live_tailor.recommend("no-such-customer", k=3),
        lambda: live_tailor.retrieve(k=3, user_id="no-such-customer"),
        lambda: live_tailor.rank("no-such-customer", ["22423"], k=3),
        lambda: live_tailor.generate("no-such-customer", ["22423"]),
    ):
        code, details = status_of(call)
        assert code == grpc.StatusCode.NOT_FOUND and "user_id" in details and "no-such-customer" in details
        assert "Traceback" not in details


def test_unknown_item_is_not_found(live_tailor, best_user):
    code, details = status_of(lambda: live_tailor.rank(best_user, ["22423", "NOPE"], k=3))
    assert code == grpc.StatusCode.NOT_FOUND and "item_ids[1]" in details
    code, details = status_of(lambda: live_tailor.recommend(best_user, k=3, context_item_ids=["NOPE"]))
    assert code == grpc.StatusCode.NOT_FOUND and details.startswith("context_item_ids[0]")
    # An id longer than any id can be is refused before it is looked up, and never quoted whole.
    code, details = status_of(lambda: live_tailor.recommend(best_user, k=3, context_item_ids=["N" * 10_000]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("context_item_ids[0]") and len(details) < 300


@pytest.mark.parametrize("k", [0, -1, 101])
def test_k_out_of_range_is_invalid(live_tailor, best_user, k):
    for call in (
        lambda: live_tailor.recommend(best_user, k=k),
        lambda: live_tailor.retrieve(k=k, user_id=best_user),
        lambda: live_tailor.rank(best_user, ["22423"], k=k),
    ):
        code, details = status_of(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("k:") and "100" in details


def test_bad_requests_name_their_field(live_tailor, best_user):
    cases = {
        "texts": lambda: live_tailor.embed([]),
        "texts[1]": lambda: live_tailor.embed(["fine", "  "]),
        "query": lambda: live_tailor._call(live_tailor.retrieval.Retrieve, retrieval_pb2.RetrieveRequest(k=3)),
        "vector.values": lambda: live_tailor.retrieve(k=3, vector=[0.1, 0.2]),
        "item_ids": lambda: live_tailor.rank(best_user, [], k=3),
        "user_id": lambda: live_tailor.recommend("", k=3),
        "n_variants": lambda: live_tailor.generate(best_user, ["22423"], n_variants=50),
        "promotion.percent_off": lambda: live_tailor.recommend(
            best_user, k=3, promotion=common_pb2.Promotion(percent_off=150)
        ),
        "filter.max_price": lambda: live_tailor._call(
            live_tailor.marketing.Recommend,
            marketing_pb2.RecommendRequest(user_id=best_user, k=3, filter=common_pb2.ItemFilter(max_price=-1)),
        ),
        "text": lambda: live_tailor.retrieve(k=3, text="   "),
        "candidates": lambda: live_tailor._call(
            live_tailor.ranking.Rank,
            ranking_pb2.RankRequest(
                user_id=best_user, k=3, item_ids=["22423"], candidates=[retrieval_pb2.Candidate(item_id="22423")]
            ),
        ),
        "candidates[0].sources": lambda: live_tailor.rank(
            best_user,
            k=3,
            candidates=[retrieval_pb2.Candidate(item_id="22423", sources=[retrieval_pb2.SourceScore(source="x" * 5000)])],
        ),
        "context_item_ids": lambda: live_tailor.recommend(best_user, k=3, context_item_ids=["22423"] * 51),
        "promotion.ends": lambda: live_tailor.recommend(best_user, k=3, promotion=common_pb2.Promotion(ends="next week")),
        "promotion.code": lambda: live_tailor.recommend(best_user, k=3, promotion=common_pb2.Promotion(code="DROP TABLE;")),
        "reason": lambda: live_tailor._call(
            live_tailor.copy.Generate, copy_pb2.GenerateRequest(user_id=best_user, item_ids=["22423"], reason="x" * 500)
        ),
        "channel": lambda: live_tailor._call(
            live_tailor.copy.Generate, copy_pb2.GenerateRequest(user_id=best_user, item_ids=["22423"], channel=42)
        ),
        "language": lambda: live_tailor._call(
            live_tailor.copy.Generate, copy_pb2.GenerateRequest(user_id=best_user, item_ids=["22423"], language=7)
        ),
        "tone": lambda: live_tailor.generate(best_user, ["22423"], tone="sarcastic"),
        "promotion.percent_off ": lambda: live_tailor.generate(best_user, ["22423"], promotion=common_pb2.Promotion(percent_off=120)),
        "promotion.ends ": lambda: live_tailor.generate(best_user, ["22423"], promotion=common_pb2.Promotion(ends="2020-01-01")),
        "promotion.threshold_reduction": lambda: live_tailor.generate(
            best_user, ["22423"], promotion=common_pb2.Promotion(threshold_amount=10, threshold_reduction=20)
        ),
        "promotion.amount_off": lambda: live_tailor.generate(best_user, ["22423"], promotion=common_pb2.Promotion(amount_off=-1)),
        "context_item_ids ": lambda: live_tailor.generate("", ["22423"], context_item_ids=["22423"] * 51),
    }
    for field, call in cases.items():
        code, details = status_of(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (field, code, details)
        assert details.startswith(f"{field.strip()}:"), (field, details)
    # Still serving after all that.
    assert len(live_tailor.recommend(best_user, k=2, skip_copy=True).items) == 2


def test_missing_application_metadata_still_reaches_the_only_app(live_tailor):
    stub_response = live_tailor.embedding.Embed(embedding_pb2.EmbedRequest(texts=["tea"]), timeout=30)
    assert stub_response.dimension == 384


def test_rank_messages_carry_item_facts(live_tailor, sample_artifacts, best_user):
    owned = sample_artifacts.owned_by(best_user)
    item = sample_artifacts.items[~sample_artifacts.items["item_id"].isin(owned)].iloc[10]
    response = live_tailor._call(
        live_tailor.ranking.Rank, ranking_pb2.RankRequest(user_id=best_user, item_ids=[item["item_id"]], k=1)
    )
    got = response.items[0].item
    assert (got.item_id, got.title, got.currency, got.has_price) == (item["item_id"], item["title"], item["currency"], True)
    assert got.price == pytest.approx(item["price"])


# --- DescribeUser ---------------------------------------------------------------------------


def test_describe_user_answers_for_every_shopper_of_the_build(live_tailor, sample_artifacts):
    users = sample_artifacts.users
    segments = sample_artifacts.segments.set_index("segment_id")
    for row in users.itertuples():
        response = live_tailor.describe_user(row.user_id)
        assert response.user_id == row.user_id and response.build_id == sample_artifacts.build_id
        assert response.segment.name == segments.loc[row.segment_id, "name"] and response.segment.description
        assert response.rfm.rfm == row.rfm and 0 <= response.rfm.r_score <= 5
        assert 0.0 <= response.propensity.probability <= 1.0 and response.propensity.top_features
        assert all(f.phrase for f in response.propensity.top_features)
        assert list(response.tags) == list(row.interests)
        assert len(response.rules) <= 3
        basket = set(response.last_basket_item_ids)
        for rule in response.rules:
            # Relevant to the last basket: what it holds leads to what it lacks.
            assert set(rule.antecedent_item_ids) <= basket and rule.consequent_item_id not in basket
            assert rule.lift > 1 and 0 < rule.confidence <= 1


def test_describe_user_errors(live_tailor, sample_artifacts):
    code, details = status_of(lambda: live_tailor.describe_user("no-such-shopper"))
    assert code == grpc.StatusCode.NOT_FOUND and "user_id" in details
    for bad in ("", "   ", "x" * 5_000, "12569\x00"):
        code, details = status_of(lambda: live_tailor.describe_user(bad))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("user_id") and len(details) < 200
