"""CopyWriter: the facts for (shopper, item) from the published build, the model's free words
(sampled, checked, scored), and checked copy variants in the chosen families and tones.

    facts ─ hook_prompt ─▶ engine.sample (n in one call) ─▶ hook_problems + similarity ─▶ hooks
    facts + hook + family ─ lay_out ─▶ copy that passes check_copy and names no other product
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cachetools import TTLCache

from services.artifacts import Artifacts
from services.config import TailorConfig
from services.copywriting.facts import CopyFacts, CopyOutcome, Promotion
from services.copywriting.hook_checks import CatalogNames, hook_problems
from services.copywriting.hooks import HOOK_REGEX, HookInput, hook_input, hook_key, hook_prompt
from services.copywriting.layouts import DEFAULT_FAMILY, LaidOut, lay_out
from services.copywriting.vocabulary import Vocabulary
from services.errors import InvalidArgument

RECENT_TITLES = 3
VOCABULARY_FILE = Path(__file__).with_name("vocabulary.yaml")


@dataclass(frozen=True)
class Hook:
    """One sample of the model's free words, with what a reader would reject in it."""

    text: str
    sense: float  # similarity to the item's facts
    personal: float  # similarity to the shopper's interests
    problems: tuple[str, ...]

    @property
    def score(self) -> float:
        return self.sense + 0.5 * self.personal


def _shorter(hook: str) -> str:
    """The hook without its last clause ("…, and more." → "…."), or ""."""
    head = hook.rstrip(".!").rsplit(",", 1)
    return head[0].rstrip() + "." if len(head) == 2 and len(head[0].split()) >= 6 else ""


class CopyWriter:
    """Writes checked copy about an item of the published build for a shopper (or nobody)."""

    def __init__(self, artifacts: Artifacts, engine, embedder, config: TailorConfig):
        self.artifacts = artifacts
        self.engine = engine  # LLMEngine, or None: layouts without the model's words
        self.embedder = embedder  # TextEmbedder (sentence-transformers), for the sense check
        self.config = config
        self.settings = config.copywriting
        # The shop's terms (its categories, the build's derived category names, tags, events).
        self.vocabulary = Vocabulary.load(self.settings.vocabulary or VOCABULARY_FILE)
        self.catalog = CatalogNames(artifacts.items["title"])
        self.known_words = embedder.known_words() if embedder is not None else None
        self.hook_cache: TTLCache = TTLCache(self.settings.cache_size or 1, self.settings.cache_ttl_s or 1e-9)
        self.hooks_pending: dict[str, asyncio.Future] = {}
        self.copy_cache: TTLCache = TTLCache(self.settings.cache_size or 1, self.settings.cache_ttl_s or 1e-9)

    # --- facts -----------------------------------------------------------------------------

    def facts(
        self,
        user_id: str,
        item_id: str,
        channel: str,
        language: str,
        promotion: Promotion,
        tone: str,
        reason: str = "",
        context_item_ids: tuple[str, ...] = (),
    ) -> CopyFacts:
        user = self.artifacts.users.iloc[self.artifacts.user_index(user_id)] if user_id else None
        item_row = int(self.artifacts.item_indices([item_id])[0])
        item = self.artifacts.items.iloc[item_row]
        price = float(item["price"]) if np.isfinite(item["price"]) else None
        if price is not None and promotion.amount_off >= price > 0:
            raise InvalidArgument("promotion.amount_off", f"must be below the item price {price:.2f}, got {promotion.amount_off}")
        after = promotion.price_after(price)
        if after is not None and after <= 0:
            raise InvalidArgument("promotion", f"percent_off and amount_off together leave nothing to pay for an item of {price:.2f}")
        if user is not None:
            interests = tuple(user["interests"])
        else:  # an anonymous shopper: what they looked at says what they like
            rows = self.artifacts.item_indices(list(context_item_ids)) if context_item_ids else []
            interests = tuple(dict.fromkeys(str(self.artifacts.items["category"].iat[int(r)]) for r in rows))
        return CopyFacts(
            item_id=str(item["item_id"]),
            title=str(item["title"]),
            price=price,
            currency=str(item["currency"] or ""),
            category=str(item["category"] or ""),
            brand=str(item["brand"] or ""),
            interests=interests,
            segment=str(user["segment"]) if user is not None else "",
            recent_titles=self.recent_titles(user_id) if user is not None else (),
            reason=reason,
            channel=channel,
            language=language,
            promotion=promotion,
            # The segment's tone (win-back for the lapsed, grateful for the loyal) unless asked otherwise.
            tone=tone or (str(user["segment_tone"]) if user is not None else "") or "friendly",
        )

    def recent_titles(self, user_id: str) -> tuple[str, ...]:
        recent = list(self.artifacts.owned_recent_first.get(user_id, ())[:RECENT_TITLES])
        if not recent:
            return ()
        return tuple(self.artifacts.items["title"].to_numpy()[self.artifacts.item_indices(recent)])

    # --- the model's free words -----------------------------------------------------------

    def hook_prompt(self, facts: CopyFacts) -> tuple[HookInput, str]:
        # The catalog's free-text description stays out of the prompt: instructions hidden in it
        # (a marketplace seller's "ignore the above…") then change nothing, and the title and
        # category say what the product is. (Seen: "bestseller" in an injected description
        # came back as "the bestie's old favorites".)
        given = hook_input(facts)
        return given, hook_prompt(given)

    async def hooks(self, facts: CopyFacts) -> list[Hook]:
        """The model's samples for (item, shopper's interests), best first, the failing ones
        last; [] for Chinese (this model cannot write it) or without an engine. Cached by the
        prompt (every input is in it) and the build: channels and families share them."""
        if facts.language != "en" or self.engine is None or not self.settings.model_words:
            return []
        given, prompt = self.hook_prompt(facts)
        key = hook_key(prompt, self.artifacts.build_id)
        cached = self.hook_cache.get(key)
        if cached is not None:
            return cached
        # The channels of one shopper ask at once: one engine call serves them all.
        pending = self.hooks_pending.get(key)
        if pending is None:
            pending = self.hooks_pending[key] = asyncio.ensure_future(self._sample(prompt, facts, given, key))
        try:
            return await asyncio.shield(pending)
        finally:
            if pending.done():
                self.hooks_pending.pop(key, None)

    async def _sample(self, prompt: str, facts: CopyFacts, given: HookInput, key: str) -> list[Hook]:
        texts = await self.engine.sample(
            prompt, HOOK_REGEX, self.settings.hook_candidates, self.settings.hook_max_tokens, self.settings.hook_temperature
        )
        hooks = self.judge(texts, facts, given)
        if texts:  # an engine failure is not remembered
            self.hook_cache[key] = hooks
        return hooks

    def judge(self, texts: list[str], facts: CopyFacts, given: HookInput) -> list[Hook]:
        texts = [" ".join(t.split()) for t in dict.fromkeys(texts) if t.strip()]
        if not texts:
            return []
        about = f"{given.title}. {given.kind}".strip()
        likes = ", ".join(given.interests) or about
        vectors = self.embedder.embed([about, likes, *texts])
        sense = vectors[2:] @ vectors[0]
        personal = vectors[2:] @ vectors[1]
        hooks = [
            Hook(
                text,
                float(s),
                float(p),
                tuple(
                    hook_problems(
                        text, facts.title, self.catalog, float(s), self.settings.sense_threshold, given.details,
                        [facts.reason, given.kind, *given.interests], self.known_words,
                    )
                ),
            )
            for text, s, p in zip(texts, sense, personal)
        ]
        return sorted(hooks, key=lambda h: (bool(h.problems), -h.score))

    # --- copy ------------------------------------------------------------------------------

    def copy_key(self, facts: CopyFacts, family: str, index: int) -> str:
        fields = dataclasses.asdict(facts)
        payload = json.dumps([fields, family, index, self.artifacts.build_id], sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()

    def links(self, facts: CopyFacts, user_id: str) -> dict[str, str]:
        # The unsubscribe token identifies the shopper to the shop's own unsubscribe page
        # without putting their id in the link.
        token = hashlib.sha256(f"unsubscribe\x1f{user_id}".encode()).hexdigest()[:24]
        s = self.settings
        return {
            "item_url": s.item_url.format(item_id=facts.item_id, token=token),
            "unsubscribe_url": s.unsubscribe_url.format(item_id=facts.item_id, token=token),
            "unsubscribe_mailto": s.unsubscribe_mailto.format(item_id=facts.item_id, token=token),
        }

    def _lay_out(self, facts: CopyFacts, hook: str, family: str, user_id: str) -> LaidOut | None:
        laid = lay_out(
            facts, hook, family, self.vocabulary, self.settings.shop_name, self.links(facts, user_id), self.settings.sms_max_segments
        )
        if laid is None:
            return None
        text = f"{laid.copy.title}\n{laid.copy.body}"
        if self.catalog.named_in(text, allowed=[facts.title, facts.reason]):
            return None
        return laid

    async def write(
        self, facts: CopyFacts, arms: list[tuple[str, str]], user_id: str = "", fresh: bool = False
    ) -> list[CopyOutcome]:
        """One checked variant per (family, tone) arm, in order: each with the best of the
        model's passing hooks not used by an earlier variant that fits the layout ("model"),
        a hook shortened to fit ("repaired"), or no model words ("template"). `fresh`: not
        from the copy cache (a stream's variant must use the words it streamed)."""
        hooks = await self.hooks(facts)
        passing = [h for h in hooks if not h.problems]
        rejected = tuple(f"{h.text!r}: {h.problems[0]}" for h in hooks if h.problems)[:4]
        outcomes: list[CopyOutcome] = []
        used: set[str] = set()
        for index, (family, tone) in enumerate(arms):
            key = self.copy_key(dataclasses.replace(facts, tone=tone), family, index)
            cached = None if fresh else self.copy_cache.get(key)
            if cached is not None:
                outcomes.append(cached)
                used.add(cached.model_words)
                continue
            toned = dataclasses.replace(facts, tone=tone)
            outcome = self._with_hooks(toned, family, user_id, [h for h in passing if h.text not in used], rejected)
            if outcome is None:
                outcome = self._with_hooks(toned, family, user_id, passing, rejected)
            if outcome is None:
                outcome = self._template(toned, family, user_id, rejected)
            used.add(outcome.model_words)
            self.copy_cache[key] = outcome
            outcomes.append(outcome)
        return outcomes

    def _with_hooks(self, facts, family, user_id, hooks: list[Hook], rejected) -> CopyOutcome | None:
        for hook in hooks:
            for text, source in ((hook.text, "model"), (_shorter(hook.text), "repaired")):
                laid = self._lay_out(facts, text, family, user_id) if text else None
                if laid is not None:
                    notes = rejected + (("free words shortened to fit",) if source == "repaired" else ())
                    return CopyOutcome(laid.copy, source, notes, family, facts.tone, text, laid.sms_segments, laid.email)
        return None

    def _template(self, facts, family, user_id, rejected) -> CopyOutcome:
        for fam in dict.fromkeys([family, DEFAULT_FAMILY, "story", "offer"]):
            laid = self._lay_out(facts, "", fam, user_id)
            if laid is not None:
                if facts.language != "en":
                    why = ("Chinese copy is laid out from the facts alone",)
                elif not self.settings.model_words:
                    why = ("model words are off (copywriting.model_words)",)
                else:
                    why = rejected
                return CopyOutcome(laid.copy, "template", why or ("no model words passed",), fam, facts.tone, "", laid.sms_segments, laid.email)
        raise RuntimeError(f"no layout fits item {facts.item_id} on {facts.channel}/{facts.language}")
