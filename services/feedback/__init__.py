"""The copy feedback loop: signed variant ids, and a bandit that learns which copy works.

    variant_ids.py  VariantTag, sign_variant / read_variant (HMAC-signed ids), secret_from
    store.py        FeedbackStore: the SQLite state (issued variants, counts), one owning process
    bandit.py       holdout, FeedbackLoop: Thompson sampling per (segment, channel), feedback, lift

Pure Python: nothing here imports Ray or gRPC; serving/ wraps FeedbackLoop in one replica.
"""

from services.feedback.bandit import HOLDOUT_SHARE, Arm, FeedbackLoop, holdout, thompson_pick
from services.feedback.store import EVENTS, GROUPS, SUCCESS_EVENTS, FeedbackStore
from services.feedback.variant_ids import MAX_ID_CHARS, VariantTag, read_variant, secret_from, sign_variant

__all__ = [
    "EVENTS",
    "GROUPS",
    "HOLDOUT_SHARE",
    "MAX_ID_CHARS",
    "SUCCESS_EVENTS",
    "Arm",
    "FeedbackLoop",
    "FeedbackStore",
    "VariantTag",
    "holdout",
    "read_variant",
    "secret_from",
    "sign_variant",
    "thompson_pick",
]
