"""`tailor copy-eval`: copy for N shoppers of a build over every channel and both languages, as
a campaign would send it, and what a reader would measure of it.

For each shopper: the Recommend flow's headline item and its reason, then one variant per
(channel, language) cell in the arm the feedback loop picks (its own state, beside the
output). Then: the checks' pass rate and fact accuracy on what was delivered, the source
shares, the share with at least 8 words the model wrote freely, distinct-n, near duplicates,
and personalization of the model's words: the share of shoppers whose words are closer to
their own interests than to a random other shopper's, beside the same figure with profiles
shuffled (each shopper given the words written for another shopper's profile: their item
and interests) and with only the interests shuffled (the same item, written with another
shopper's interests: what the interests in the prompt add).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.copywriting.checks import check_copy
from services.copywriting.facts import CopyFacts, CopyOutcome, Promotion
from services.copywriting.hooks import free_word_count
from services.copywriting.writer import CopyWriter
from services.feedback.assignment import choose_arms, issue_ids
from services.feedback.bandit import FeedbackLoop
from services.feedback.variant_ids import secret_from
from services.recommend.flow import RecommendationFlow, ShopperQuery

CHANNEL_ORDER = ("push", "sms", "email", "banner")
LANGUAGE_ORDER = ("en", "zh")
FREE_WORDS_MIN = 8
FACT_WORDS = ("price", "percentage", "promotion code", "number", "currency", "amount")


@dataclass
class Delivered:
    user_id: str
    facts: CopyFacts
    outcome: CopyOutcome
    variant_id: str


def campaign_promotion(today_iso: str) -> dict[str, Promotion]:
    """The promotion each channel's campaign carries: SMS and e-mail an offer with a code,
    push and banners none (so copy without a promotion is measured too)."""
    offer = Promotion(code="GIFT10", percent_off=10, ends=today_iso, event="christmas", free_shipping=True)
    return {"push": Promotion(), "banner": Promotion(), "sms": offer, "email": offer}


def _tokens(text: str) -> list[str]:
    """Words for Latin text, characters for Chinese (no segmentation needed for distinct-n)."""
    return re.findall(r"[A-Za-z][A-Za-z'-]*|\d+(?:\.\d+)?|[\u4e00-\u9fff]", text.casefold())


def distinct_n(texts: list[str], n: int) -> float:
    grams, total = set(), 0
    for text in texts:
        toks = _tokens(text)
        for i in range(len(toks) - n + 1):
            grams.add(tuple(toks[i : i + n]))
            total += 1
    return len(grams) / total if total else 0.0


def near_duplicate_rate(texts: list[str], threshold: float = 0.8) -> float:
    """Share of texts whose word-trigram Jaccard similarity to another text is at least `threshold`."""
    shingles = []
    for text in texts:
        toks = _tokens(text)
        shingles.append({tuple(toks[i : i + 3]) for i in range(max(1, len(toks) - 2))})
    dup = np.zeros(len(texts), dtype=bool)
    for i in range(len(texts)):
        if dup[i] or not shingles[i]:
            continue
        for j in range(i + 1, len(texts)):
            a, b = shingles[i], shingles[j]
            if b and len(a & b) / len(a | b) >= threshold:
                dup[i] = dup[j] = True
    return float(dup.mean()) if len(texts) else 0.0


def personalization(vectors: np.ndarray, own: np.ndarray, seed: int) -> float:
    """Share of shoppers whose words are closer to their own interests than to a random other
    shopper's (rows aligned: vectors[i] the words, own[i] the interests of shopper i)."""
    n = len(vectors)
    if n < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    others = (np.arange(n) + rng.integers(1, n, size=n)) % n
    mine = np.einsum("ij,ij->i", vectors, own)
    theirs = np.einsum("ij,ij->i", vectors, own[others])
    return float(np.mean(mine > theirs))


class CopyCampaign:
    def __init__(self, flow: RecommendationFlow, writer: CopyWriter, loop: FeedbackLoop, secret: bytes, today_iso: str):
        self.flow, self.writer, self.loop, self.secret = flow, writer, loop, secret
        self.promotions = campaign_promotion(today_iso)

    async def shopper(self, user_id: str, interests_of: str | None = None) -> list[Delivered]:
        """One variant per cell for `user_id`; with `interests_of`, the copy is written with that
        shopper's profile instead (the shuffled run)."""
        ranked = self.flow.recommend(ShopperQuery(user_id=user_id, k=10))
        if not ranked:
            return []
        head = ranked[0]
        reason = head.reasons[0] if head.reasons else ""
        profile = interests_of or user_id
        cells = []
        for channel in CHANNEL_ORDER:
            for language in LANGUAGE_ORDER:
                facts = self.writer.facts(profile, head.item_id, channel, language, self.promotions[channel], "", reason)
                cells.append(self.cell(user_id, facts))
        return list(await asyncio.gather(*cells))

    async def cell(self, user_id: str, facts: CopyFacts) -> Delivered:
        arms, held_out = choose_arms(self.loop, user_id, facts, 1, tone_requested=False)
        outcomes = await self.writer.write(facts, arms, user_id)
        ids = issue_ids(self.loop, self.secret, user_id, facts, outcomes, held_out, self.writer.artifacts.build_id)
        return Delivered(user_id, facts, outcomes[0], ids[0])

    async def hooks_only(self, user_id: str, interests_of: str) -> str:
        """The shuffled run: the model's best passing words for this shopper's item written with
        another shopper's profile ("" when none passed)."""
        ranked = self.flow.recommend(ShopperQuery(user_id=user_id, k=10))
        if not ranked:
            return ""
        facts = self.writer.facts(interests_of, ranked[0].item_id, "push", "en", Promotion(), "", "")
        passing = [h for h in await self.writer.hooks(facts) if not h.problems]
        return passing[0].text if passing else ""


async def run_campaign(
    campaign: CopyCampaign,
    user_ids: list[str],
    concurrency: int,
    progress: Callable[[int], None],
    shuffled: bool = True,
    seed: int = 0,
) -> tuple[list[Delivered], dict[str, str]]:
    """Every shopper's cells (`concurrency` shoppers in flight), then the shuffled run's words."""
    gate = asyncio.Semaphore(concurrency)

    async def one(user_id: str, job):
        async with gate:
            result = await job
            progress(1)
            return result

    delivered_lists = await asyncio.gather(*(one(u, campaign.shopper(u)) for u in user_ids))
    delivered = [d for lst in delivered_lists for d in lst]
    shuffled_words: dict[str, str] = {}
    if shuffled:
        perm = list(user_ids)
        random.Random(seed).shuffle(perm)
        # a derangement-ish pairing: shopper i is written with shopper perm[i]'s profile
        pairs = [(u, perm[i] if perm[i] != u else perm[(i + 1) % len(perm)]) for i, u in enumerate(user_ids)]
        words = await asyncio.gather(*(one(u, campaign.hooks_only(u, other)) for u, other in pairs))
        shuffled_words = dict(zip(user_ids, words))
    return delivered, shuffled_words


def variant_record(d: Delivered) -> dict:
    f, o = d.facts, d.outcome
    return {
        "user_id": d.user_id,
        "item_id": f.item_id,
        "item_title": f.title,
        "price": f.price,
        "promo_price": f.promotion.price_after(f.price),
        "code": f.promotion.code,
        "reason": f.reason,
        "channel": f.channel,
        "language": f.language,
        "title": o.copy.title,
        "body": o.copy.body,
        "cta": o.copy.call_to_action,
        "source": o.source,
        "variant_id": d.variant_id,
        "family": o.family,
        "tone": o.tone,
        "model_words": o.model_words,
        "currency": f.currency,
        "promotion": dataclasses.asdict(f.promotion),
        "sms": o.copy.body if f.channel == "sms" else "",
    }


def campaign_report(
    delivered: list[Delivered], shuffled_words: dict[str, str], writer: CopyWriter, interests: dict[str, str], seed: int = 0
) -> dict:
    n = len(delivered)
    problems = [check_copy(d.outcome.copy, d.facts) for d in delivered]
    others = [writer.catalog.named_in(f"{d.outcome.copy.title}\n{d.outcome.copy.body}", [d.facts.title, d.facts.reason]) for d in delivered]
    passed = [not p and not o for p, o in zip(problems, others)]
    fact_ok = [not any(w in q for q in p for w in FACT_WORDS) for p in problems]
    sources = Counter(d.outcome.source for d in delivered)
    free = []
    for d in delivered:
        f = d.facts
        fact_texts = [f.title, f.category, *f.interests, f.promotion.description, f.promotion.event, f.reason]
        free.append(bool(d.outcome.model_words) and free_word_count(d.outcome.model_words, fact_texts) >= FREE_WORDS_MIN)
    texts = [f"{d.outcome.copy.title} {d.outcome.copy.body}" for d in delivered]

    # Personalization over the model's words only: one text per shopper (their English push copy's words).
    own_words = {}
    for d in delivered:
        if d.outcome.model_words and d.user_id not in own_words:
            own_words[d.user_id] = d.outcome.model_words
    users = [u for u in own_words if interests.get(u)]
    pers = pers_shuffled = pers_interests = float("nan")
    if len(users) >= 2:
        vec = writer.embedder.embed([own_words[u] for u in users])
        own = writer.embedder.embed([interests[u] for u in users])
        pers = personalization(vec, own, seed)
        # Profiles shuffled: each shopper gets the words written for another shopper's profile
        # (their item and interests), scored against their own interests.
        perm = np.random.default_rng(seed + 1).permutation(len(users))
        pers_shuffled = personalization(vec[perm], own, seed)
    shuffled_users = [u for u in users if shuffled_words.get(u)]
    if len(shuffled_users) >= 2:  # the same item, written with another shopper's interests
        vec = writer.embedder.embed([shuffled_words[u] for u in shuffled_users])
        own = writer.embedder.embed([interests[u] for u in shuffled_users])
        pers_interests = personalization(vec, own, seed)
    return {
        "shoppers": len({d.user_id for d in delivered}),
        "variants": n,
        "pass_rate": float(np.mean(passed)) if n else float("nan"),
        "fact_accuracy": float(np.mean(fact_ok)) if n else float("nan"),
        "source_share": {s: sources.get(s, 0) / n if n else 0.0 for s in ("model", "repaired", "template")},
        "free_words_share": float(np.mean(free)) if n else float("nan"),
        "free_words_share_en": float(np.mean([x for x, d in zip(free, delivered) if d.facts.language == "en"] or [np.nan])),
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "near_duplicate_rate": near_duplicate_rate(texts),
        "personalization": pers,
        "personalization_shuffled": pers_shuffled,
        "personalization_interests_shuffled": pers_interests,
        "personalization_shoppers": len(users),
        "failures": Counter(p[0].split(" (")[0] for p in problems if p).most_common(10),
    }


def write_variants(delivered: list[Delivered], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for d in delivered:
            out.write(json.dumps(variant_record(d), ensure_ascii=False) + "\n")


def open_state(folder: Path) -> tuple[FeedbackLoop, bytes]:
    """The evaluation's own feedback state (never the serving one): it has one owner."""
    folder.mkdir(parents=True, exist_ok=True)
    return FeedbackLoop(folder / "feedback.sqlite"), secret_from(folder / "variant_secret")
