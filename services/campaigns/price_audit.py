"""`tailor audit`: one price for everyone, and who was shown what.

PIPL Art. 24 ¶1 and the Algorithmic Recommendation Provisions Art. 21 (the rules against
大数据杀熟) forbid offering the same item at different prices or discounts to different
shoppers because of who they are. A campaign may still differ in price through a promotion
rule, if the rule's conditions are ones any shopper can meet (the basket, the time, a loyalty
tier, a code) and it reaches everyone who meets them. So, per item and currency, over the
outbox's message rows:

- every message carries the item's one list `price` (list_price_differs);
- nobody is offered more than the list price (above_list_price);
- a discount comes with a promotion rule (discount_without_rule);
- the rule's conditions are of the kinds basket | time | tier | code: segment, propensity,
  profile or anything else is targeting (targeted_condition);
- the rule gives exactly the offered price (rule_price_mismatch), and one rule_id has one set
  of terms (rule_redefined);
- a tier rule goes only to shoppers of its tiers (rule_beyond_its_conditions), and a rule
  reaches everyone who qualifies (rule_not_applied_to_all): with a tier condition every
  message to a shopper of those tiers, otherwise every message offering the item. A message
  that carries another rule at least as cheap is not short-changed (the best offer wins;
  rules are not stacked in a row);
- a campaign sent to one segment (campaign.json "selection": "segment:NAME") offers no
  discount at all: it would reach that segment alone (targeted_selection).

Exposure (exposure.py) is reported beside the findings, never a violation.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from services.campaigns.exposure import campaign_exposure, long_tail_items, read_items
from services.campaigns.outbox_rows import CampaignRows, read_outbox, shopper_count
from services.copywriting.facts import Promotion
from services.errors import DataFileError, InvalidArgument

AUDIT_FILE = "audit.json"
ALLOWED_CONDITIONS = ("basket", "time", "tier", "code")
# Prices are money: two prices within half a cent are the same price (float noise, not policy).
TOLERANCE = 0.005 + 1e-9
EXAMPLES = 3  # idempotency keys kept per violation: enough to find the rows, never the whole list

VIOLATIONS = {
    "list_price_differs": "the item's list price differs between messages",
    "above_list_price": "offered above the item's list price",
    "discount_without_rule": "a discount that no promotion rule explains",
    "targeted_condition": "a rule conditioned on who the shopper is (allowed: basket, time, tier, code)",
    "rule_price_mismatch": "the rule does not give the price offered",
    "rule_redefined": "one rule_id with different terms",
    "rule_beyond_its_conditions": "a tier rule given to shoppers outside its tiers",
    "rule_not_applied_to_all": "shoppers who qualify for the rule were offered more",
    "targeted_selection": "a discount in a campaign sent to one segment only",
}


@dataclass(frozen=True)
class Rule:
    """One promotion as a message row carries it (the outbox's `promotion` JSON)."""

    rule_id: str
    terms: str                      # canonical JSON of the whole rule: a rule's identity
    percent_off: float
    amount_off: float
    tiers: frozenset[str] | None    # None: no tier condition
    targeted: tuple[str, ...]       # condition kinds outside ALLOWED_CONDITIONS

    def price_after(self, price: float) -> float:
        # Promotion.price_after is the one rounding of a discounted price (cents, half up);
        # 满减 (threshold) rules cut an order, not the item's price.
        offered = Promotion(percent_off=self.percent_off, amount_off=self.amount_off).price_after(price)
        return price if offered is None else offered

    def reach(self) -> str:
        return "everyone offered the item" if self.tiers is None else "tier " + ", ".join(sorted(self.tiers))


@dataclass(frozen=True)
class Violation:
    kind: str
    item_id: str
    currency: str
    rule_id: str
    description: str
    shoppers: int                   # distinct shoppers affected (a forgotten shopper counts once per message)
    messages: int
    examples: tuple[str, ...]       # a few idempotency keys of affected messages


@dataclass
class Audit:
    outbox: str
    campaign_id: str
    build_id: str
    audited_at: str
    messages: int
    items: int
    violations: list[Violation]
    exposure: dict
    rules: list[dict]
    counts: dict | None             # summary.json as the campaign wrote it
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed,
                "violation_kinds": {kind: sum(v.kind == kind for v in self.violations) for kind in VIOLATIONS}}


def audit_outbox(outbox: Path, artifacts: Path | None = None, write: bool = True) -> Audit:
    """Audit the outbox; with `write`, also write <outbox>/audit.json (whole or not at all).

    Raises NotFound / InvalidArgument for a folder that is no outbox, DataFileError for a
    message file that cannot be audited (the file, row and column named)."""
    campaign = read_outbox(Path(outbox))
    rules = parse_rules(campaign)
    # An item the catalog gives no price is offered at none: nothing to compare (the campaign
    # writes NaN for both), but it still counts in exposure.
    priced = campaign.rows[campaign.rows[["price", "offered_price"]].notna().all(axis=1).to_numpy()].reset_index(drop=True)
    violations = price_violations(priced, rules) + selection_violations(campaign.settings, priced)
    items, where, notes = read_items(campaign, artifacts)
    if len(priced) < len(campaign.rows):
        notes.append(f"{len(campaign.rows) - len(priced):,} messages about items without a price: no price to audit")
    if str(campaign.settings.get("selection", "")).startswith("users:"):
        notes.append("the campaign went to a list of shoppers: a discount in it reaches only them; make sure the list "
                     "is a tier's members or a code's holders, not shoppers picked by profile")
    long_tail = long_tail_items(items) if items is not None else None
    if items is not None and long_tail is None:
        notes.append(f"long tail: the items table at {where} records no purchases")
    audit = Audit(
        outbox=str(campaign.outbox),
        campaign_id=str(campaign.settings.get("campaign_id", "")),
        build_id=campaign.build_id,
        audited_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        messages=len(campaign.rows),
        items=int(campaign.rows.groupby(["item_id", "currency"]).ngroups) if len(campaign.rows) else 0,
        violations=violations,
        exposure=campaign_exposure(campaign.rows, campaign.ranked, long_tail, items),
        rules=rules_table(campaign.rows, rules),
        counts=campaign.summary,
        notes=campaign.notes + notes,
    )
    if write:
        write_audit(audit, Path(outbox))
    return audit


def write_audit(audit: Audit, outbox: Path) -> Path:
    path = outbox / AUDIT_FILE
    staging = path.with_name(f".{AUDIT_FILE}.{os.getpid()}.tmp")
    try:
        staging.write_text(json.dumps(audit.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    return path


# ---- the promotion column -------------------------------------------------------------------


def parse_rules(campaign: CampaignRows) -> dict[str, Rule]:
    """Each distinct promotion string once (a campaign has few rules and many rows)."""
    rows = campaign.rows
    rules: dict[str, Rule] = {}
    for text in rows["promotion"].unique():
        if text == "":
            continue
        try:
            rules[text] = parse_rule(text)
        except (ValueError, InvalidArgument) as error:
            first = rows.index[rows["promotion"].to_numpy() == text][0]
            file, row = campaign.where(first)
            message = f"not JSON ({error.msg})" if isinstance(error, json.JSONDecodeError) else str(error)
            raise DataFileError(file, message, row=row, column="promotion") from None
    return rules


def parse_rule(text: str) -> Rule:
    rule = json.loads(text)
    if not isinstance(rule, dict):
        raise ValueError(f"a promotion is a JSON object, got {type(rule).__name__}")
    conditions = rule.get("conditions") or {}
    if not isinstance(conditions, dict):
        raise ValueError(f"conditions is an object of kind: value, got {type(conditions).__name__}")
    amounts = {}
    for name in ("percent_off", "amount_off"):
        value = rule.get(name) or 0
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a number, 0 or more; got {value!r}")
        amounts[name] = float(value)
    Promotion(**amounts)  # the same bounds a request's promotion has (percent_off below 100)
    tiers = None
    if "tier" in conditions:
        value = conditions["tier"]
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
            raise ValueError(f"the tier condition names a tier or a list of tiers, got {value!r}")
        tiers = frozenset(values)
    terms = json.dumps(rule, sort_keys=True, ensure_ascii=False)
    return Rule(
        # A rule without an id is named by its terms: two such rules are two rules, not one redefined.
        rule_id=str(rule.get("rule_id") or "unnamed-" + hashlib.sha256(terms.encode()).hexdigest()[:8]),
        terms=terms,
        percent_off=amounts["percent_off"],
        amount_off=amounts["amount_off"],
        tiers=tiers,
        targeted=tuple(sorted(kind for kind in conditions if kind not in ALLOWED_CONDITIONS)),
    )


# ---- the checks -----------------------------------------------------------------------------


def price_violations(rows: pd.DataFrame, rules: dict[str, Rule]) -> list[Violation]:
    if rows.empty:
        return []
    out: list[Violation] = []
    keys = ["item_id", "currency"]
    price, offered = rows["price"].to_numpy(), rows["offered_price"].to_numpy()
    promotion = rows["promotion"].to_numpy()
    rule_of = [rules.get(text) for text in promotion]
    rule_id = np.array([r.rule_id if r else "" for r in rule_of], dtype=object)

    positions = rows.groupby(keys).indices
    # One list price per item: the most common is the item's, the others are the violation.
    listed_cents = np.round(price, 2)
    prices = rows.assign(cents=listed_cents).groupby(keys + ["cents"]).size()
    for (item, currency), counts in prices.groupby(level=[0, 1]):
        if len(counts) > 1:
            counts = counts.droplevel([0, 1]).sort_values(ascending=False, kind="stable")
            listed = ", ".join(f"{p:.2f} ({n:,} messages)" for p, n in counts.head(4).items())
            at = positions[(item, currency)]
            at = at[listed_cents[at] != counts.index[0]]
            out.append(violation("list_price_differs", rows.iloc[at], "", f"list price differs across messages: {listed}"))

    above = offered > price + TOLERANCE
    out += grouped("above_list_price", rows, above, lambda g: f"offered up to {g['offered_price'].max():.2f}, "
                   f"above the list price {g['price'].iloc[0]:.2f}")
    unexplained = (offered < price - TOLERANCE) & (promotion == "")
    out += grouped("discount_without_rule", rows, unexplained, lambda g: (
        f"offered {money_range(g['offered_price'])} against the list price {g['price'].iloc[0]:.2f} with no promotion rule"))

    targeted = np.array([bool(r and r.targeted) for r in rule_of])
    rows = rows.assign(rule_id=rule_id)
    out += grouped("targeted_condition", rows, targeted, lambda g: (
        f"rule {g['rule_id'].iloc[0]!r} is conditioned on {', '.join(rules[g['promotion'].iloc[0]].targeted)}, "
        f"not on the basket, the time, a tier or a code; offered {money_range(g['offered_price'])} "
        f"against {g['price'].iloc[0]:.2f}"), by=["rule_id"])

    # What each rule gives at each list price, computed once per (rule, price).
    expected = expected_prices(rule_of, promotion, price)
    carried = promotion != ""
    mismatch = carried & ~targeted & (np.abs(offered - expected) > TOLERANCE)
    out += grouped("rule_price_mismatch", rows.assign(expected=expected), mismatch, lambda g: (
        f"rule {g['rule_id'].iloc[0]!r} gives {g['expected'].iloc[0]:.2f} but {money_range(g['offered_price'])} "
        "was offered"), by=["rule_id"])

    with_rule = rows[carried]
    terms = with_rule.groupby(keys + ["rule_id"])["promotion"].nunique()
    for (item, currency, rid), n in terms[terms > 1].items():
        at = positions[(item, currency)]
        at = at[rule_id[at] == rid]
        out.append(violation("rule_redefined", rows.iloc[at], rid, f"rule {rid!r} carries {n} different terms on this item"))

    tier = rows["loyalty_tier"].to_numpy()
    beyond = np.array([bool(r and r.tiers is not None and not r.targeted and t not in r.tiers)
                       for r, t in zip(rule_of, tier)])
    out += grouped("rule_beyond_its_conditions", rows, beyond, lambda g: (
        f"rule {g['rule_id'].iloc[0]!r} ({rules[g['promotion'].iloc[0]].reach()}) went to shoppers of tier "
        + ", ".join(repr(t) if t else "(none)" for t in sorted(g["loyalty_tier"].unique())[:4])), by=["rule_id"])

    out += unreached(rows, rules, positions)
    return out


def selection_violations(settings: dict, rows: pd.DataFrame) -> list[Violation]:
    """targeted_selection: a campaign sent to one segment (campaign.json "selection":
    "segment:NAME") offers its discounts to that segment alone, whatever the rule says."""
    selection = str(settings.get("selection", ""))
    if not selection.startswith("segment:"):
        return []
    discounted = (rows["offered_price"] < rows["price"] - TOLERANCE).to_numpy()
    return grouped("targeted_selection", rows, discounted, lambda g: (
        f"the campaign was sent to {selection!r} only, so its discount ({money_range(g['offered_price'])} against "
        f"{g['price'].iloc[0]:.2f}) reaches that segment alone"))


def unreached(rows: pd.DataFrame, rules: dict[str, Rule], positions: dict) -> list[Violation]:
    """rule_not_applied_to_all: for each allowed rule on an item, the messages that qualify
    for it (the item's, or its tiers') and were offered more than it gives."""
    out = []
    promotion, tier = rows["promotion"].to_numpy(), rows["loyalty_tier"].to_numpy()
    price, offered = rows["price"].to_numpy(), rows["offered_price"].to_numpy()
    carried = rows[promotion != ""].groupby(["item_id", "currency", "promotion"]).size()
    cache: dict[tuple[str, float], float] = {}  # most items share a few list prices and rules

    def rule_price(text: str, listed: float) -> float:
        if (text, listed) not in cache:
            cache[text, listed] = rules[text].price_after(listed)
        return cache[text, listed]

    for (item, currency, text), _ in carried.items():
        rule = rules[text]
        if rule.targeted:
            continue  # its reach is who the shopper is: reported as targeted_condition
        at = positions[(item, currency)]
        qualifies = np.ones(len(at), dtype=bool) if rule.tiers is None else np.isin(tier[at], list(rule.tiers))
        # The rule's price at each row's own list price (a row with a mismatched price under
        # this very rule is rule_price_mismatch already).
        listed, inverse = np.unique(price[at], return_inverse=True)
        gives = np.array([rule_price(text, p) for p in listed], dtype=np.float64)[inverse]
        short = qualifies & (offered[at] > gives + TOLERANCE) & (promotion[at] != text)
        if short.any():
            missed = rows.iloc[at[short]]
            out.append(violation("rule_not_applied_to_all", missed, rule.rule_id, (
                f"rule {rule.rule_id!r} for {rule.reach()} gives {money_range(pd.Series(gives[short]))}, but "
                f"{shopper_count(missed['user_id']):,} shoppers who qualify were offered {money_range(missed['offered_price'])}")))
    return out


def expected_prices(rule_of: list, promotion: np.ndarray, price: np.ndarray) -> np.ndarray:
    frame = pd.DataFrame({"promotion": promotion, "price": price})
    firsts = frame.drop_duplicates().index
    table = {(promotion[i], price[i]): (rule_of[i].price_after(price[i]) if rule_of[i] else price[i]) for i in firsts}
    return np.array([table[pair] for pair in zip(promotion, price)], dtype=np.float64)


def grouped(kind: str, rows: pd.DataFrame, mask: np.ndarray, describe, by: list[str] = ()) -> list[Violation]:
    """One violation per item (and rule) among the rows the mask picks."""
    picked = rows[mask]
    if picked.empty:
        return []
    keys = ["item_id", "currency", *by]
    return [violation(kind, group, group["rule_id"].iloc[0] if by else "", describe(group))
            for _, group in picked.groupby(keys, sort=True)]


def violation(kind: str, rows: pd.DataFrame, rule_id: str, description: str) -> Violation:
    return Violation(
        kind=kind, item_id=str(rows["item_id"].iloc[0]), currency=str(rows["currency"].iloc[0]), rule_id=rule_id,
        description=description, shoppers=shopper_count(rows["user_id"]),
        messages=len(rows), examples=tuple(rows["idempotency_key"].head(EXAMPLES)),
    )


def money_range(values: pd.Series) -> str:
    low, high = float(values.min()), float(values.max())
    return f"{low:.2f}" if abs(high - low) <= TOLERANCE else f"{low:.2f}–{high:.2f}"


def rules_table(rows: pd.DataFrame, rules: dict[str, Rule]) -> list[dict]:
    """The promotion rules the campaign used: terms, and how many messages and items carry each."""
    carried = rows[rows["promotion"] != ""]
    table = []
    for text, group in carried.groupby("promotion", sort=False):
        rule = rules[text]
        table.append({"rule_id": rule.rule_id, "conditions": json.loads(text).get("conditions") or {},
                      "percent_off": rule.percent_off, "amount_off": rule.amount_off,
                      "messages": len(group), "items": int(group["item_id"].nunique())})
    return sorted(table, key=lambda r: (-r["messages"], r["rule_id"]))

