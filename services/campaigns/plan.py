"""What a campaign is: its settings (kept in the outbox's campaign.json, so that a run started
again is the same campaign), its promotion rule, and the shoppers it is for, cut into chunks."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from services.copywriting.facts import Promotion
from services.errors import DataFileError, InvalidArgument, excerpt

CAMPAIGN_FILE = "campaign.json"
SHOPPERS_FILE = "shoppers.parquet"
CHANNELS = ("push", "sms", "email", "banner")
LANGUAGES = ("en", "zh")
# What a promotion may be conditioned on (PIPL Art. 24: never the segment, propensity or profile).
CONDITION_KINDS = ("basket", "time", "tier", "code")
PROMOTION_TERMS = ("code", "percent_off", "amount_off", "ends", "description", "threshold_amount", "threshold_reduction", "event")


@dataclass(frozen=True)
class PromotionRule:
    """One promotion for everyone who qualifies: its terms, and the conditions that decide who
    does (a loyalty tier; the basket, a time limit and a code apply to all alike)."""

    terms: Promotion = field(default_factory=Promotion)
    tier: str = ""

    @property
    def is_empty(self) -> bool:
        return self.terms == Promotion()

    def conditions(self) -> dict[str, str]:
        t = self.terms
        found = {}
        if t.threshold_amount:
            found["basket"] = f">= {t.threshold_amount:g}"
        if t.ends:
            found["time"] = f"until {t.ends}"
        if self.tier:
            found["tier"] = self.tier
        if t.code:
            found["code"] = t.code
        return found

    def as_json(self) -> dict:
        terms = {name: getattr(self.terms, name) for name in PROMOTION_TERMS}
        body = {**terms, "conditions": self.conditions()}
        body["rule_id"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]
        return body

    def applies_to(self, loyalty_tier: str) -> bool:
        return not self.tier or loyalty_tier == self.tier


def parse_promotion(text: str, today: str) -> PromotionRule:
    """`code=XMAS10,percent_off=10,ends=2026-12-31,tier=gold` → a rule; '' → none. A segment,
    propensity or profile condition is refused: a price may not depend on who the shopper is."""
    if not text.strip():
        return PromotionRule()
    values: dict[str, object] = {}
    tier = ""
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            raise InvalidArgument("--promo", f"expected name=value pairs separated by commas, got {excerpt(part)}")
        if name == "tier":
            tier = value
        elif name in ("segment", "propensity", "profile"):
            raise InvalidArgument("--promo", f"a promotion may not depend on the shopper's {name} (PIPL Art. 24); use tier, code, basket or time")
        elif name in ("percent_off", "amount_off", "threshold_amount", "threshold_reduction"):
            try:
                values[name] = float(value)
            except ValueError:
                raise InvalidArgument(f"--promo {name}", f"is not a number: {excerpt(value)}") from None
        elif name in PROMOTION_TERMS:
            values[name] = value
        else:
            raise InvalidArgument("--promo", f"unknown term {excerpt(name)}; known: {', '.join(PROMOTION_TERMS + ('tier',))}")
    terms = Promotion(**values)
    if terms.ends and terms.ends < today:
        raise InvalidArgument("--promo ends", f"{terms.ends} is before the campaign's day {today}")
    return PromotionRule(terms, tier)


@dataclass(frozen=True)
class CampaignSettings:
    artifacts: str
    build_id: str
    selection: str  # "all" | "segment:<name>" | "users:<file>"
    channel: str
    language: str
    k: int
    promotion: dict  # PromotionRule.as_json() plus "tier"; {} for none
    with_copy: bool
    dry_run: bool
    now: str  # ISO 8601 UTC: the campaign's clock, fixed at its first start
    campaign_id: str = ""

    def __post_init__(self) -> None:
        if self.channel not in CHANNELS:
            raise InvalidArgument("--channel", f"one of {', '.join(CHANNELS)}; got {excerpt(self.channel)}")
        if self.language not in LANGUAGES:
            raise InvalidArgument("--language", f"one of {', '.join(LANGUAGES)}; got {excerpt(self.language)}")
        if not 1 <= self.k <= 100:
            raise InvalidArgument("--k", f"between 1 and 100, got {self.k}")
        if not self.campaign_id:
            # The id follows from everything but the clock's seconds: the same settings started
            # again are the same campaign, with the same idempotency keys.
            body = {k: v for k, v in asdict(self).items() if k != "campaign_id"}
            object.__setattr__(self, "campaign_id", hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16])

    @property
    def moment(self) -> datetime:
        return datetime.fromisoformat(self.now).astimezone(timezone.utc)

    def rule(self) -> PromotionRule:
        if not self.promotion:
            return PromotionRule()
        return PromotionRule(Promotion(**{n: self.promotion[n] for n in PROMOTION_TERMS}), self.promotion.get("tier", ""))

    def save(self, outbox: Path) -> None:
        path = Path(outbox) / CAMPAIGN_FILE
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False))
        tmp.replace(path)

    @classmethod
    def load(cls, outbox: Path) -> "CampaignSettings | None":
        path = Path(outbox) / CAMPAIGN_FILE
        if not path.exists():
            return None
        try:
            return cls(**json.loads(path.read_text()))
        except (ValueError, TypeError) as error:
            raise DataFileError(str(path), f"is not a campaign's settings: {error}") from None

    def same_campaign(self, other: "CampaignSettings") -> list[str]:
        """The settings in which a run started again differs from the outbox's campaign."""
        mine, theirs = asdict(self), asdict(other)
        return [k for k in mine if k not in ("now", "campaign_id") and mine[k] != theirs[k]]


def promotion_json(rule: PromotionRule) -> dict:
    return {} if rule.is_empty else {**rule.as_json(), "tier": rule.tier}


def read_user_file(path: Path) -> pd.DataFrame:
    """--users FILE: one shopper id a line, or a CSV with a user_id column (and optional
    timezone and loyalty_tier columns). Row-numbered errors."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(str(path), "does not exist")
    text = path.read_text(encoding="utf-8-sig")
    lines = text.splitlines()
    if lines and "," in lines[0] or (lines and lines[0].strip() == "user_id"):
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        if "user_id" not in table.columns:
            raise DataFileError(str(path), "a CSV of shoppers needs a user_id column", column="user_id")
    else:
        table = pd.DataFrame({"user_id": lines})
    table["user_id"] = table["user_id"].astype(str).str.strip()
    blank = (table["user_id"] == "").to_numpy().nonzero()[0]
    if len(blank):
        raise DataFileError(str(path), "empty shopper id", row=int(blank[0]) + 1, column="user_id")
    long = (table["user_id"].str.len() > 128).to_numpy().nonzero()[0]
    if len(long):
        raise DataFileError(str(path), f"shopper id over 128 characters: {excerpt(table['user_id'].iat[long[0]])}", row=int(long[0]) + 1)
    repeated = table["user_id"].duplicated().to_numpy().nonzero()[0]
    if len(repeated):
        raise DataFileError(str(path), f"shopper {excerpt(table['user_id'].iat[repeated[0]])} is listed twice", row=int(repeated[0]) + 1)
    for column in ("timezone", "loyalty_tier"):
        if column not in table.columns:
            table[column] = ""
    return table[["user_id", "timezone", "loyalty_tier"]].reset_index(drop=True)


def select_shoppers(users: pd.DataFrame, selection: str, attributes: pd.DataFrame | None) -> pd.DataFrame:
    """The campaign's shoppers in a fixed order (user_id, timezone, loyalty_tier)."""
    kind, _, value = selection.partition(":")
    if kind == "all":
        chosen = pd.DataFrame({"user_id": users["user_id"].astype(str)})
    elif kind == "segment":
        names = users["segment"].astype(str)
        if not (names == value).any():
            raise InvalidArgument("--segment", f"no segment {excerpt(value)} in this build; it has: {', '.join(sorted(names.unique()))}")
        chosen = pd.DataFrame({"user_id": users.loc[names == value, "user_id"].astype(str)})
    elif kind == "users":
        chosen = read_user_file(Path(value))
    else:
        raise InvalidArgument("selection", f"all, segment:NAME or users:FILE; got {excerpt(selection)}")
    chosen = chosen.reset_index(drop=True)
    for column in ("timezone", "loyalty_tier"):
        if column not in chosen.columns:
            chosen[column] = ""
    if attributes is not None and len(attributes):
        known = attributes.drop_duplicates("user_id").set_index("user_id")
        for column in ("timezone", "loyalty_tier"):
            if column in known.columns:
                given = chosen["user_id"].map(known[column]).fillna("")
                chosen[column] = chosen[column].where(chosen[column] != "", given)
    return chosen[["user_id", "timezone", "loyalty_tier"]]


def chunk_bounds(count: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, count)) for start in range(0, count, size)]
