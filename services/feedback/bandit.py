"""Which copy arm — a (template family, tone) pair — each shopper gets, learned from feedback.

Thompson sampling per (segment, channel): every arm's success rate has a Beta(1 + successes,
1 + impressions - successes) posterior (uniform prior, so an arm never seen is a fair coin with
wide doubt); one draw per arm, the highest wins. A success is a click or a purchase, at most
one per variant (see store.py), so the rate is successes per impression.

Who is steered:
    holdout    a fixed share of identified shoppers (sha256 of the id, so the same shoppers on
               every replica and restart) always get the default arm; their results are the
               baseline the lift is measured against.
    anonymous  ("" user id) get the default arm too, but are not holdout: with no id they cannot
               be kept in or out of a group across visits, so they sit in neither side of the
               lift. Their feedback still counts for the default arm.
    the rest   the bandit's choice.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from services.errors import InvalidArgument, NotFound, excerpt
from services.feedback.store import EVENTS, FeedbackStore
from services.feedback.variant_ids import MAX_ID_CHARS, VariantTag

Arm = tuple[str, str]  # (family, tone)

HOLDOUT_SHARE = 0.10
# Changing the salt reshuffles who is held out: only do it when starting a new experiment.
_HOLDOUT_SALT = b"tailor-holdout-v1:"


def holdout(user_id: str, share: float = HOLDOUT_SHARE) -> bool:
    """Whether this shopper is in the holdout; anonymous ("") never is.

    Nested by design: whoever is held out at 5 % is also held out at 10 %.
    """
    if not 0.0 <= share <= 1.0:
        raise InvalidArgument("share", f"{share} is not between 0 and 1")
    if not user_id:
        return False
    digest = hashlib.sha256(_HOLDOUT_SALT + user_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < share * 2**64


def thompson_pick(counts: list[tuple[int, int]], rng: np.random.Generator) -> int:
    """Index of the arm whose posterior draw is highest; counts are (impressions, successes)."""
    n = np.array([c[0] for c in counts], dtype=float)
    s = np.array([c[1] for c in counts], dtype=float)
    return int(np.argmax(rng.beta(1.0 + s, 1.0 + n - s)))


def _check_arm(field: str, arm) -> Arm:
    if not (isinstance(arm, (tuple, list)) and len(arm) == 2 and all(isinstance(x, str) and x for x in arm)):
        raise InvalidArgument(field, f"{excerpt(repr(arm))} is not a (family, tone) pair of names")
    return (arm[0], arm[1])


class FeedbackLoop:
    """The bandit and its evidence, kept in the SQLite file `path` (see store.py: one owner)."""

    def __init__(self, path: Path, holdout_share: float = HOLDOUT_SHARE):
        holdout("", holdout_share)  # validates the share before the file is taken
        self.holdout_share = holdout_share
        self._store = FeedbackStore(path)

    def close(self) -> None:
        self._store.close()

    def forget(self, user_id: str) -> int:
        return self._store.forget_user(user_id)

    def __enter__(self) -> FeedbackLoop:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def choose(
        self,
        user_id: str,
        segment: str,
        channel: str,
        arms: list[Arm],
        default: Arm,
        rng: np.random.Generator | None = None,
    ) -> tuple[Arm, bool]:
        """(arm, holdout) for this shopper's next variant in (segment, channel)."""
        if not arms:
            raise InvalidArgument("arms", "is empty")
        checked = [_check_arm(f"arms[{i}]", arm) for i, arm in enumerate(arms)]
        for i, arm in enumerate(checked):
            if arm in checked[:i]:
                raise InvalidArgument(f"arms[{i}]", f"repeats {arm}")
        default = _check_arm("default", default)
        held = holdout(user_id, self.holdout_share)
        if held or not user_id:
            return default, held
        counts = self._store.arm_counts(segment, channel)
        # A fresh Generator per call when none is given: Generators are not safe to share across threads.
        pick = thompson_pick([counts.get(arm, (0, 0)) for arm in checked], rng or np.random.default_rng())
        return checked[pick], False

    def issue(self, variant_id: str, tag: VariantTag) -> None:
        """Remember a variant that was sent, so its feedback is accepted; repeating it is a no-op."""
        if not isinstance(variant_id, str) or not variant_id or len(variant_id) > MAX_ID_CHARS:
            raise InvalidArgument("variant_id", f"must be 1 to {MAX_ID_CHARS} characters")
        if tag.holdout and not tag.user_id:
            raise InvalidArgument("tag.holdout", "an anonymous variant cannot be in the holdout")
        group = "holdout" if tag.holdout else "bandit" if tag.user_id else "anonymous"
        self._store.add_variant(variant_id, tag, group)

    def record(self, user_id: str, variant_id: str, event: str, tag: VariantTag) -> None:
        """Count one event on an issued variant of this shopper; repeats count nothing more.

        NotFound("variant_id") if it was never issued, NotFound("user_id") if it was issued to
        somebody else (the pair asked about does not exist; the request itself is well formed),
        InvalidArgument("variant_id") if `tag` is not the tag it was issued with.
        """
        if event not in EVENTS:
            raise InvalidArgument("event", f"{excerpt(event)} is not one of {', '.join(EVENTS)}")
        issued = self._store.tag(variant_id)
        if issued is None:
            raise NotFound("variant_id", f"{excerpt(variant_id)} was never issued")
        if issued.user_id != user_id:
            raise NotFound("user_id", f"{excerpt(user_id)} was not sent this variant")
        if issued != tag:
            raise InvalidArgument("variant_id", "the tag given differs from the one it was issued with")
        self._store.mark(variant_id, event)

    def stats(self, segment: str | None = None, channel: str | None = None) -> list[dict]:
        """Per (segment, channel, family, tone): impressions, successes and the posterior mean rate."""
        return [
            {
                "segment": seg,
                "channel": chan,
                "family": family,
                "tone": tone,
                "impressions": n,
                "successes": s,
                "posterior_mean": (1 + s) / (2 + n),
            }
            for seg, chan, family, tone, n, s in self._store.arms(segment, channel)
        ]

    def lift(self) -> dict:
        """Success rates of bandit-chosen and holdout variants, with counts; anonymous shown apart.

        "lift" is bandit rate / holdout rate - 1, "difference" bandit rate - holdout rate; None
        until both sides have impressions (and, for "lift", the holdout a success).
        """
        report: dict = {}
        for group, (issued, n, s) in self._store.groups().items():
            report[group] = {"issued": issued, "impressions": n, "successes": s, "success_rate": s / n if n else None}
        treated, base = report["bandit"]["success_rate"], report["holdout"]["success_rate"]
        both = treated is not None and base is not None
        report["difference"] = treated - base if both else None
        report["lift"] = treated / base - 1 if both and base > 0 else None
        return report
