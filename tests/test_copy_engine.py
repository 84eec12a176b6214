"""The copy writer with the real vLLM engine and embedder, in this process: instructions hidden
in product text change nothing, and what is delivered passes the checks in every channel."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path

import pytest

from services.copywriting.checks import check_copy
from services.copywriting.facts import Promotion

INJECTIONS = Path(__file__).parent / "data" / "injection_descriptions.txt"
# Words an obeyed injection would put in the copy.
PAYLOAD = re.compile(r"\b(?:iphone|ignore|instructions?|system|prompt|http|www|free|best|winner|password)\b|免费|忽略", re.IGNORECASE)


@pytest.fixture(scope="module")
def run():
    """One event loop for the module: vLLM's AsyncLLM binds its output handler to the loop of
    its first request, and a closed loop leaves the engine dead for the next."""
    loop = asyncio.new_event_loop()
    yield loop.run_until_complete
    loop.close()


@pytest.fixture(scope="module")
def writer(sample_artifacts, sample_config):
    from services.copywriting.engine import LLMEngine
    from services.copywriting.writer import CopyWriter
    from services.recommend.embedding import TextEmbedder

    # All of a test's requests go in at once, on a CPU shared with the rest of the suite: a
    # request may wait minutes, which serving's 60 s limit would turn into copy without words.
    config = sample_config.model_copy(update={"llm": sample_config.llm.model_copy(update={"timeout_s": 900.0})})
    engine = LLMEngine(config)
    yield CopyWriter(sample_artifacts, engine, TextEmbedder(config), config)
    engine.shutdown()


def injected_descriptions() -> list[str]:
    lines = [line.strip() for line in INJECTIONS.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_hidden_instructions_in_product_text_change_nothing(writer, run, sample_artifacts):
    """The description is not in the prompt: whatever it says, the model is asked the same
    thing, and what it writes for the item passes the checks with none of the payload."""
    user_id = str(sample_artifacts.users.sort_values("purchase_count").iloc[-1]["user_id"])
    item_id = str(sample_artifacts.items["item_id"].iloc[0])
    base = writer.facts(user_id, item_id, "push", "en", Promotion(), "")
    corpus = injected_descriptions()
    assert len(corpus) >= 10
    _, clean = writer.hook_prompt(base)

    items = sample_artifacts.items
    row = int(sample_artifacts.item_indices([item_id])[0])
    saved = items["description"].copy() if "description" in items else None
    try:
        for description in corpus:  # the catalog's own text says it, as a seller would write it
            items["description"] = None
            items.iat[row, items.columns.get_loc("description")] = description
            assert writer.hook_prompt(base)[1] == clean, description
    finally:
        if saved is None:
            del items["description"]
        else:
            items["description"] = saved
    hooks = run(writer.hooks(base))
    for hook in hooks:
        if not hook.problems:
            assert not PAYLOAD.search(hook.text), hook.text


@pytest.mark.parametrize("language", ["en", "zh"])
def test_every_channel_delivers_checked_copy_with_the_real_engine(writer, run, sample_artifacts, language):
    user_id = str(sample_artifacts.users.sort_values("purchase_count").iloc[-1]["user_id"])
    items = sample_artifacts.items["item_id"].astype(str).tolist()[:3]
    promo = Promotion(code="GIFT10", percent_off=10, free_shipping=True, event="christmas")

    cells = [
        writer.facts(user_id, item_id, channel, language, promo if channel in ("sms", "email") else Promotion(), "")
        for item_id in items
        for channel in ("push", "sms", "email", "banner")
    ]

    async def write_all():
        return await asyncio.gather(*(writer.write(f, [("spotlight", f.tone), ("story", "friendly")], user_id) for f in cells))

    delivered = [(f, o) for f, group in zip(cells, run(write_all())) for o in group]
    assert len(delivered) == len(cells) * 2
    for facts, outcome in delivered:
        assert outcome.family in ("spotlight", "story")
        assert check_copy(outcome.copy, dataclasses.replace(facts, tone=outcome.tone)) == [], outcome
        if language == "zh":
            assert outcome.source == "template" and not outcome.model_words
        if outcome.model_words:
            assert outcome.model_words in f"{outcome.copy.title} {outcome.copy.body}"
        if promo.code and facts.channel in ("sms", "email"):
            assert promo.code in outcome.copy.body
    if language == "en":
        assert any(o.source in ("model", "repaired") for _, o in delivered), "the model's words reach some copy"
