"""One chunk of a campaign, start to end: each shopper's list (the flow Recommend uses), the
contact rules' outcome, the headline item at the price this shopper is offered, copy from the
same writer class CopyService uses; then the chunk's outbox files, its sends in the contact
log, and last its checkpoint. Plain Python: jobs/campaign.py runs one ChunkScorer per Ray
Data actor."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from services.artifacts import Artifacts
from services.campaigns.contact_log import ContactLog
from services.campaigns.contact_rules import ContactRules, zone
from services.campaigns.outbox import OUTCOMES, write_chunk
from services.campaigns.plan import CampaignSettings
from services.config import TailorConfig
from services.errors import InvalidArgument, TailorError
from services.recommend.flow import RecommendationFlow, RankedItem, ShopperQuery, unpersonalized
from services.shopper_rights import ShopperRights

# Shoppers whose copy is written at once (the writer is async; templates are quick, a model is not).
COPY_CONCURRENCY = 16


def idempotency_key(campaign_id: str, user_id: str, channel: str) -> str:
    return hashlib.sha256(f"{campaign_id}\x1f{user_id}\x1f{channel}".encode()).hexdigest()[:32]


def iso(moment: datetime | None) -> str:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else ""


@dataclass
class ChunkResult:
    chunk: int
    shoppers: int
    counts: dict[str, int]
    seconds: float


class ChunkScorer:
    """Holds one build's flow (and copy writer) and scores chunks of one campaign."""

    def __init__(self, settings: CampaignSettings, config: TailorConfig, outbox: Path, engine=None, embedder=None):
        self.settings, self.config, self.outbox = settings, config, Path(outbox)
        self.artifacts = Artifacts(Path(settings.artifacts) / "builds" / settings.build_id, config.index)
        self.flow = RecommendationFlow(self.artifacts, config)
        items = self.artifacts.items
        self.items = items.set_index("item_id")[["title", "price", "currency"]]
        users = self.artifacts.users
        self.segment_of = pd.Series(users["segment"].astype(str).to_numpy(), index=users["user_id"].astype(str))
        self.rights = ShopperRights.from_config(config)
        self.contacts = ContactLog(config.state_path(config.campaign.contact_log_path))
        self.rules = ContactRules.from_config(config.campaign)
        self.rule = settings.rule()
        self.writer = None
        if settings.with_copy:
            from services.copywriting.writer import CopyWriter  # only a campaign with copy loads it

            self.writer = CopyWriter(self.artifacts, engine, embedder, config)

    def score(self, chunk: int, shoppers: pd.DataFrame) -> ChunkResult:
        started = datetime.now()
        settings = self.settings
        now = settings.moment
        rights = self.rights.snapshot()
        user_ids = shoppers["user_id"].astype(str).tolist()
        keys = self.rights.keys(user_ids)
        n = len(user_ids)
        outcome = np.full(n, "", dtype=object)
        reason = np.full(n, "", dtype=object)
        ranked: list[list[RankedItem]] = [[] for _ in range(n)]
        personalized = np.ones(n, dtype=bool)

        timezones = shoppers["timezone"].fillna("").astype(str).tolist()
        for i, name in enumerate(timezones):
            if name:
                try:
                    zone(name, "timezone")
                except InvalidArgument:
                    outcome[i], reason[i] = "failed", f"unknown time zone {name[:40]!r}"
                    timezones[i] = ""
        for i, (user_id, key) in enumerate(zip(user_ids, keys)):
            if outcome[i]:
                continue
            if not user_id or key in rights.forgotten:
                outcome[i], reason[i] = "failed", "no such shopper (forgotten)"
                continue
            personalized[i] = key not in rights.unpersonalized
            query = ShopperQuery(user_id=user_id, k=settings.k)
            try:
                ranked[i] = self.flow.recommend(query if personalized[i] else unpersonalized(query))
            except TailorError as error:
                outcome[i], reason[i] = "failed", str(error)[:200]

        open_rows = outcome == ""
        since = self.rules.window_start(settings.channel, now)
        earlier = (
            self.contacts.earlier_sends(keys, settings.channel, since, exclude_campaign=settings.campaign_id)
            if since is not None
            else np.zeros(n, dtype=np.int64)
        )
        opted = rights.opted_out.get(settings.channel, frozenset())
        decisions = self.rules.decide_many(
            channel=settings.channel,
            now=now,
            timezones=timezones,
            opted_out=[k in opted for k in keys],
            has_recommendation=[bool(r) for r in ranked],
            earlier_sends=earlier,
        )
        outcome[open_rows] = decisions.outcome[open_rows]
        reason[open_rows] = decisions.reason[open_rows]
        send_after = np.where(open_rows, decisions.send_after, None)

        messages = [i for i in range(n) if outcome[i] in ("sent", "scheduled")]
        # A dry run decides and logs; it builds no message.
        rows = [] if settings.dry_run else [
            self.message(user_ids[i], shoppers.iloc[i], ranked[i], bool(personalized[i]), send_after[i], timezones[i]) for i in messages
        ]
        if self.writer is not None and rows:
            asyncio.run(self.write_copy(rows))
        log = [
            {
                "campaign_id": settings.campaign_id,
                "user_id": user_ids[i],
                "outcome": str(outcome[i]),
                "reason": str(reason[i]),
                "channel": settings.channel,
                "send_after": iso(send_after[i]),
                "idempotency_key": idempotency_key(settings.campaign_id, user_ids[i], settings.channel) if outcome[i] in ("sent", "scheduled") else "",
            }
            for i in range(n)
        ]
        write_chunk(self.outbox, chunk, rows, log, dry_run=settings.dry_run)
        if not settings.dry_run:
            sends = [(keys[i], send_after[i]) for i in messages]
            self.contacts.record(settings.campaign_id, settings.channel, sends)
        (self.outbox / "done").mkdir(exist_ok=True)
        (self.outbox / "done" / f"part-{chunk:05d}").write_text(json.dumps(Counter(outcome.tolist())))
        counts = Counter(outcome.tolist())
        return ChunkResult(chunk, n, {o: int(counts.get(o, 0)) for o in OUTCOMES}, (datetime.now() - started).total_seconds())

    def message(self, user_id: str, shopper, ranked: list[RankedItem], personalized: bool, send_after, timezone: str) -> dict:
        """The channel-ready message: the headline item at the price this shopper is offered."""
        settings, rule = self.settings, self.rule
        tier = str(shopper.get("loyalty_tier", "") or "")
        applies = not rule.is_empty and rule.applies_to(tier)
        position, note = self.flow.headline(ranked, rule.terms.amount_off if applies else 0.0)
        if note:
            applies = False  # the amount off does not fit any item of the list
        headline = ranked[position]
        item = self.items.loc[headline.item_id]
        price = float(item["price"]) if np.isfinite(item["price"]) else float("nan")
        offered = rule.terms.price_after(price) if applies and np.isfinite(price) else None
        return {
            "idempotency_key": idempotency_key(settings.campaign_id, user_id, settings.channel),
            "campaign_id": settings.campaign_id,
            "user_id": user_id,
            "channel": settings.channel,
            "language": settings.language,
            "outcome": "scheduled" if send_after is not None and send_after > settings.moment else "sent",
            "send_after": iso(send_after),
            "date": send_after.strftime("%Y-%m-%d"),
            "timezone": timezone or self.rules.default_zone,
            "segment": str(self.segment_of.get(user_id, "")),
            "loyalty_tier": tier,
            "build_id": settings.build_id,
            "item_ids": [r.item_id for r in ranked],
            "item_id": headline.item_id,
            "item_title": str(item["title"]),
            "currency": str(item["currency"] or ""),
            "price": price,
            "offered_price": float(offered) if offered is not None else price,
            "promotion": json.dumps(rule.as_json(), ensure_ascii=False) if applies else "",
            "title": "",
            "body": "",
            "call_to_action": "",
            "copy_source": "",
            "personalized": personalized,
            "_reason": headline.reasons[0] if headline.reasons else "",
            "_promotion_applies": applies,
        }

    async def write_copy(self, rows: list[dict]) -> None:
        """Copy for every message, through the writer class CopyService uses: the segment's
        default arm (a campaign does not explore; the online bandit does)."""
        from services.copywriting.facts import Promotion
        from services.feedback.assignment import arms_for

        gate = asyncio.Semaphore(COPY_CONCURRENCY)
        settings = self.settings

        async def one(row: dict) -> None:
            async with gate:
                shopper = row["user_id"] if row["personalized"] else ""
                promotion = self.rule.terms if row["_promotion_applies"] else Promotion()
                facts = self.writer.facts(shopper, row["item_id"], settings.channel, settings.language, promotion, "", row["_reason"])
                _, default = arms_for(facts, tone_requested=False)
                outcome = (await self.writer.write(facts, [default], shopper))[0]
                row["title"] = outcome.copy.title
                row["body"] = outcome.copy.body
                row["call_to_action"] = outcome.copy.call_to_action
                row["copy_source"] = outcome.source

        await asyncio.gather(*(one(row) for row in rows))

    def close(self) -> None:
        self.contacts.close()
        self.rights.close()
