"""The campaign section (`tailor report --outbox DIR`): the outcome counts of summary.json and
the findings of `tailor audit`: price violations first, then long-tail and segment exposure."""

from __future__ import annotations

import json
from pathlib import Path

from clients.report.data import ReportData
from clients.report.format import cards, count, esc, html_table, number, percent
from services.campaigns.outbox import OUTCOMES
from services.campaigns.outbox_rows import CAMPAIGN_FILE, MESSAGE_GLOB, SUMMARY_FILE, outcome_counts
from services.campaigns.price_audit import AUDIT_FILE, audit_outbox

SHOWN_VIOLATIONS = 50  # audit.json holds them all; a page of thousands of rows helps nobody
OUTCOME_WORDS = {"sent": "sent", "scheduled": "scheduled (quiet hours)", "capped": "held back by a frequency cap",
                 "opted_out": "opted out of the channel", "no_recommendation": "nothing to recommend", "failed": "failed"}


def load_campaign(outbox: Path, artifacts: Path | None = None) -> dict:
    """The audit of the outbox as audit.json holds it, when that is newer than everything the
    campaign wrote; otherwise audited now (and not written: a report only reads).

    Raises what audit_outbox raises for a folder that is no outbox."""
    outbox = Path(outbox)
    written = outbox / AUDIT_FILE
    if written.is_file() and (outbox / CAMPAIGN_FILE).is_file():
        sources = [outbox / CAMPAIGN_FILE, *outbox.glob(MESSAGE_GLOB)]
        sources += [outbox / SUMMARY_FILE] if (outbox / SUMMARY_FILE).is_file() else []
        if written.stat().st_mtime >= max(path.stat().st_mtime for path in sources):
            try:
                return json.loads(written.read_text(encoding="utf-8"))
            except ValueError:
                pass  # a torn or hand-edited file: audit again
    return audit_outbox(outbox, artifacts, write=False).to_dict()


def campaign_section(data: ReportData) -> str:
    audit = data.campaign
    exposure = audit.get("exposure") or {}
    counts = outcome_counts(audit.get("counts"))
    violations = audit.get("violations") or []
    asked = sum(counts.values()) if counts else None
    parts = [f"<p>Campaign <code>{esc(audit.get('campaign_id') or '—')}</code> on build "
             f"<code>{esc(audit.get('build_id') or '—')}</code>, audited {esc(audit.get('audited_at', '—'))}: "
             f"{count(audit.get('messages'))} messages about {count(audit.get('items'))} products.</p>"]
    parts.append(cards([
        ("shoppers asked for", count(asked)),
        ("messages", count(audit.get("messages"))),
        ("price violations", f'<span class="{"bad" if violations else "ok"}">{count(len(violations))}</span>'),
        ("headline product in the long tail", percent(exposure.get("headline_long_tail_share"))),
    ]))
    parts.append("<h3>Outcomes</h3>")
    if counts:
        rows = [[esc(OUTCOME_WORDS.get(outcome, outcome)), count(counts[outcome]), percent(counts[outcome] / asked if asked else None)]
                for outcome in OUTCOMES if outcome in counts]
        parts.append(html_table(["outcome", "shoppers", "share"], rows, numeric={1, 2}))
    else:
        parts.append('<p class="na">No outcome counts: the campaign has not finished (no summary.json).</p>')
    parts.append("<h3>One price for everyone</h3>" + violations_part(violations))
    parts.append("<h3>Exposure</h3>" + exposure_part(exposure))
    if audit.get("rules"):
        rows = [[esc(r["rule_id"] or "—"), esc(conditions_text(r.get("conditions"))), number(r.get("percent_off"), 1),
                 number(r.get("amount_off")), count(r.get("messages")), count(r.get("items"))] for r in audit["rules"]]
        parts.append("<h3>Promotion rules used</h3>")
        parts.append(html_table(["rule", "conditions", "% off", "amount off", "messages", "products"], rows, numeric={2, 3, 4, 5}))
    for note in audit.get("notes") or []:
        parts.append(f'<p class="muted">{esc(note)}</p>')
    return "".join(parts)


def violations_part(violations: list[dict]) -> str:
    intro = ("<p>Per product, every shopper is offered the one list price, or a price a promotion rule gives; a rule's "
             "conditions may be the basket, the time, a loyalty tier or a code (never the segment, propensity or "
             "profile), and it reaches everyone who qualifies (PIPL Art. 24, Algorithmic Recommendation Provisions Art. 21).</p>")
    if not violations:
        return intro + '<p class="ok">No violations: every discount comes from such a rule, given to all who qualify.</p>'
    rows = [[f"<code>{esc(v['item_id'])}</code>", esc(v["currency"]), esc(v["kind"]), esc(v["rule_id"] or "—"),
             count(v["shoppers"]), count(v["messages"]), esc(v["description"])] for v in violations[:SHOWN_VIOLATIONS]]
    more = (f'<p class="muted">The first {SHOWN_VIOLATIONS} of {count(len(violations))}; audit.json in the outbox holds them all.</p>'
            if len(violations) > SHOWN_VIOLATIONS else "")
    return (intro + f'<p class="bad">{count(len(violations))} violations.</p><div class="wide">'
            + html_table(["product", "currency", "violation", "rule", "shoppers", "messages", "what"], rows, numeric={4, 5})
            + "</div>" + more)


def exposure_part(exposure: dict) -> str:
    if not exposure:
        return '<p class="na">No exposure figures in this audit.</p>'
    rows = [
        ["headline products in the long tail", percent(exposure.get("headline_long_tail_share"))],
        ["all ranked products in the long tail", percent(exposure.get("ranked_long_tail_share"))],
        ["the catalog's products in the long tail", percent(exposure.get("catalog_long_tail_share"))],
        ["distinct headline products", count(exposure.get("headline_items"))],
        ["distinct ranked products", count(exposure.get("ranked_items"))],
        ["messages with a discount", percent(exposure.get("discounted_share"))],
    ]
    parts = [f"<p>Long tail: {esc(exposure.get('long_tail_defined_as', ''))}.</p>", html_table(None, rows, numeric={1})]
    segments = exposure.get("segments") or []
    if segments:
        currency = esc(exposure.get("currency") or "")
        rows = [[esc(s["segment"]), count(s["messages"]), count(s["shoppers"]), count(s["items"]), percent(s.get("long_tail_share")),
                 percent(s.get("ranked_long_tail_share")), percent(s.get("discounted_share")),
                 f"{number(s.get('mean_discount'))} {currency} ({number(s.get('mean_discount_percent'), 1)} %)"] for s in segments]
        parts.append(html_table(["segment", "messages", "shoppers", "products", "long tail (headline)", "long tail (ranked)",
                                 "with a discount", "mean discount"], rows, numeric={1, 2, 3, 4, 5, 6, 7}))
    return "".join(parts)


def conditions_text(conditions: dict | None) -> str:
    return "; ".join(f"{kind}: {value}" for kind, value in (conditions or {}).items()) or "none (everyone)"
