"""CopyWriter: the facts for (user, item) from the published build, and checked copy variants
from the engine, best first."""

from __future__ import annotations

import numpy as np

from services.artifacts import Artifacts
from services.config import TailorConfig
from services.copywriting.engine import LLMEngine
from services.copywriting.facts import CopyFacts, CopyOutcome, Promotion
from services.copywriting.prompt import build_messages, copy_json_schema
from services.copywriting.repair import finalize
from services.errors import InvalidArgument

RECENT_TITLES = 3
SOURCE_PREFERENCE = ("model", "repaired", "template")


class CopyWriter:
    """Builds the facts for (user, item) from the published build and writes checked copy."""

    def __init__(self, artifacts: Artifacts, engine: LLMEngine, config: TailorConfig):
        self.artifacts = artifacts
        self.engine = engine
        self.config = config

    def facts(
        self,
        user_id: str,
        item_id: str,
        channel: str,
        language: str,
        promotion: Promotion,
        tone: str,
        reason: str = "",
    ) -> CopyFacts:
        user = self.artifacts.users.iloc[self.artifacts.user_index(user_id)] if user_id else None
        item_row = int(self.artifacts.item_indices([item_id])[0])
        item = self.artifacts.items.iloc[item_row]
        price = float(item["price"]) if np.isfinite(item["price"]) else None
        if price is not None and promotion.amount_off >= price > 0:
            raise InvalidArgument("promotion.amount_off", f"must be below the item price {price:.2f}, got {promotion.amount_off}")
        return CopyFacts(
            item_id=str(item["item_id"]),
            title=str(item["title"]),
            price=price,
            currency=str(item["currency"] or ""),
            category=str(item["category"] or ""),
            brand=str(item["brand"] or ""),
            interests=tuple(user["interests"]) if user is not None else (),
            segment=str(user["segment"]) if user is not None else "",
            recent_titles=self.recent_titles(user_id) if user is not None else (),
            goes_with=self.goes_with(item_row),
            reason=reason,
            channel=channel,
            language=language,
            promotion=promotion,
            # The segment's tone (win-back for the lapsed, grateful for the loyal) unless asked otherwise.
            tone=tone or (str(user["segment_tone"]) if user is not None else "") or "friendly",
        )

    def goes_with(self, item_row: int) -> str:
        """The title of what is most often bought with the item (its top basket rule), for cross-sell."""
        rules = self.artifacts.rules.for_items([item_row])
        if not len(rules):
            return ""
        return str(self.artifacts.items["title"].iat[int(rules["consequent_row"].iat[0])])

    def recent_titles(self, user_id: str) -> tuple[str, ...]:
        recent = list(self.artifacts.owned_recent_first.get(user_id, ())[:RECENT_TITLES])
        if not recent:
            return ()
        return tuple(self.artifacts.items["title"].to_numpy()[self.artifacts.item_indices(recent)])

    async def write(self, facts: CopyFacts, n: int) -> list[CopyOutcome]:
        """n checked variants, best first: the model's own words, then repaired, then templates."""
        raw = await self.engine.complete_json(build_messages(facts), copy_json_schema(facts.channel, facts.language), n)
        outcomes = [finalize(text, facts) for text in raw]
        return sorted(outcomes, key=lambda outcome: SOURCE_PREFERENCE.index(outcome.source))
