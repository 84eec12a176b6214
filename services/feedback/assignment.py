"""Which (family, tone) arms a request's variants get, and their signed, issued ids.

The bandit picks the first variant's arm for the shopper's (segment, channel); a holdout
shopper always gets the default (DEFAULT_FAMILY in the segment's tone), so the lift of the
bandit is measurable. Further variants take the other arms in order.
"""

from __future__ import annotations

import time

from services.copywriting.facts import CopyFacts, CopyOutcome
from services.copywriting.layouts import DEFAULT_FAMILY, FAMILIES
from services.feedback.bandit import Arm, FeedbackLoop
from services.feedback.variant_ids import VariantTag, sign_variant


def arms_for(facts: CopyFacts, tone_requested: bool) -> tuple[list[Arm], Arm]:
    """The arms to choose among and the default: every family, in the requested tone or in
    the segment's tone and friendly."""
    tones = [facts.tone] if tone_requested else list(dict.fromkeys([facts.tone, "friendly"]))
    arms = [(family, tone) for family in FAMILIES for tone in tones]
    return arms, (DEFAULT_FAMILY, facts.tone)


def order_arms(arms: list[Arm], first: Arm, held_out: bool, n: int) -> list[Arm]:
    """n arms: the chosen one first, then the others; a held-out shopper only sees the
    default family (the control group)."""
    rest = [a for a in arms if a != first and (not held_out or a[0] == first[0])]
    ordered = [first, *rest]
    return [ordered[i % len(ordered)] for i in range(n)]


def choose_arms(loop: FeedbackLoop, user_id: str, facts: CopyFacts, n: int, tone_requested: bool) -> tuple[list[Arm], bool]:
    """n arms, the bandit's (or the holdout's default) first; and whether the shopper is held out."""
    arms, default = arms_for(facts, tone_requested)
    first, held_out = loop.choose(user_id, facts.segment, facts.channel, arms, default)
    return order_arms(arms, first, held_out, n), held_out


def variant_tag(user_id: str, facts: CopyFacts, outcome: CopyOutcome, held_out: bool, build_id: str) -> VariantTag:
    return VariantTag(
        user_id=user_id,
        item_id=facts.item_id,
        channel=facts.channel,
        language=facts.language,
        family=outcome.family,
        tone=outcome.tone,
        segment=facts.segment,
        holdout=held_out,
        build_id=build_id,
        issued_at=int(time.time()),
    )


def issue_ids(
    loop: FeedbackLoop,
    secret: bytes,
    user_id: str,
    facts: CopyFacts,
    outcomes: list[CopyOutcome],
    held_out: bool,
    build_id: str,
) -> list[str]:
    """A signed id per variant, remembered by the loop so feedback on it is accepted."""
    ids = []
    for outcome in outcomes:
        tag = variant_tag(user_id, facts, outcome, held_out, build_id)
        variant_id = sign_variant(tag, secret)
        loop.issue(variant_id, tag)
        ids.append(variant_id)
    return ids
