"""The page's sections in order, and the ones about the build as a whole: overview, rules, data quality, stages."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import plotly.graph_objects as go

from clients.report.data import ReportData
from clients.report.format import (
    PALETTE, cards, count, esc, figures, html_table, missing, number, percent, plot_text, seconds, unavailable,
)
from clients.report.shoppers import propensity_section, rfm_section, segments_section, served_scores
from clients.report.trends import trends_section


def overview_section(data: ReportData) -> str:
    manifest = data.manifest
    counts = manifest.get("counts", {})
    span = manifest.get("time_span", {})
    in_cards = {"users": "shoppers", "items": "products", "events": "events"}
    figures_ = [(label, count(counts.get(key))) for key, label in in_cards.items()]
    if data.segments:
        figures_.append(("segments", count(data.segments.get("segments"))))
    if data.propensity:
        name, scores, _ = served_scores(data.propensity)
        if scores and not missing(scores.get("auc")):
            figures_.append((f"buy-again AUC ({name})", number(scores["auc"], 3)))
    rows = [
        ["Build", f'<code>{esc(manifest.get("build_id", "—"))}</code>'],
        ["Built at", esc(manifest.get("built_at", "—"))],
        ["Data source", esc(manifest.get("data", {}).get("source", "—"))],
        ["Events from", esc(span.get("first_event", "—"))],
        ["Events to", esc(span.get("last_event", "—"))],
    ]
    for name, value in counts.items():
        if name in in_cards:
            continue
        if isinstance(value, dict):
            value = "; ".join(f"{esc(key)} {count(n)}" for key, n in value.items())
        else:
            value = count(value)
        rows.append([esc(name.replace("_", " ")), value])
    return cards(figures_) + html_table(None, rows)


def rules_section(data: ReportData) -> str:
    """BasketRules.report(): the strongest rules by lift among those above the report's support floor."""
    rules = data.rules
    if not rules or not rules.get("top_rules_by_lift"):
        return unavailable("Association rules")
    top = rules["top_rules_by_lift"]
    rows = [[str(i), " + ".join(esc(title) for title in rule["antecedent"]), esc(rule["consequent"]), count(rule["baskets"]),
             percent(rule["support"], 2), percent(rule["confidence"]), f"{number(rule['lift'], 1)} ×"]
            for i, rule in enumerate(top, 1)]
    intro = (
        f"<p>{count(rules['rules'])} rules mined from {count(rules['baskets'])} baskets, each from products bought together "
        f"in at least {count(rules.get('min_baskets_per_itemset'))} baskets; {count(rules.get('items_with_rules'))} products "
        f"lead to another. Below, the {len(top)} strongest by lift (how many times likelier the second product is in a basket "
        f"that holds the first), among the rules found in at least {percent(rules.get('top_rules_min_support'))} of the "
        "baskets: rarer ones can show a high lift by chance. Each set of products is listed once, in its most confident "
        "direction.</p>"
    )
    header = ["#", "shoppers who buy", "also buy", "baskets", "support", "confidence", "lift"]
    return intro + html_table(header, rows, numeric={0, 3, 4, 5, 6})


def data_quality_section(data: ReportData) -> str:
    info = data.manifest.get("data")
    if not info or "rows_read" not in info:
        return unavailable("Data-quality counts")
    files = info.get("files") or []
    parts = [f"<p>Source <b>{esc(info.get('source', '—'))}</b>"
             + (f" ({', '.join(f'<code>{esc(Path(f).name)}</code>' for f in files)})" if files else "") + ".</p>"]
    for table, read in info["rows_read"].items():
        kept = info.get("rows_kept", {}).get(table)
        dropped = info.get("dropped", {}).get(table, {})
        repaired = info.get("repaired", {}).get(table, {})
        rows = [["rows read", count(read), ""], ["rows kept", count(kept), percent(kept / read if read and kept is not None else None)]]
        rows += [[f"dropped: {esc(reason.replace('_', ' '))}", count(n), percent(n / read if read else None)]
                 for reason, n in dropped.items() if n]
        rows += [[f"repaired: {esc(what.replace('_', ' '))}", count(n), percent(n / read if read else None)]
                 for what, n in repaired.items() if n]
        adds_up = kept is not None and read == kept + sum(dropped.values())
        verdict = ('<span class="ok">✔ every row read is kept or dropped for a named reason</span>' if adds_up else
                   '<span class="bad">✘ the counts do not add up: read ≠ kept + dropped</span>')
        clean = [esc(name.replace("_", " ")) for name, n in {**dropped, **repaired}.items() if not n]
        parts.append(f"<h3>{esc(table.replace('_', ' '))}</h3>" + html_table(["", "rows", "of read"], rows, numeric={1, 2})
                     + (f'<p class="muted">Checked, none found: {", ".join(clean)}.</p>' if clean else "") + f"<p>{verdict}</p>")
    if "balanced" in info:
        parts.append(f"<p>The build's own check: {'balanced' if info['balanced'] else '<b>not balanced</b>'}.</p>")
    if info.get("notes"):
        parts.append("<ul>" + "".join(f"<li>{esc(note)}</li>" for note in info["notes"]) + "</ul>")
    return "".join(parts)


def build_stages_section(data: ReportData) -> str:
    stages = data.manifest.get("stages")
    if not stages:
        return unavailable("Stage timings")
    total = sum(stages.values())
    fig = go.Figure(go.Bar(x=list(stages.values())[::-1], y=[plot_text(s) for s in list(stages)[::-1]], orientation="h",
                           marker_color=PALETTE[4], hovertemplate="%{y}: %{x:,.1f} s<extra></extra>"))
    fig.update_layout(title=f"Seconds per stage (total {seconds(total)})", xaxis_title="seconds", height=max(300, 28 * len(stages) + 120))
    rows = [[esc(stage), seconds(value), percent(value / total if total else None)] for stage, value in stages.items()]
    return figures((fig, "stages")) + html_table(["stage", "time", "share"], rows, numeric={1, 2})


# The page's sections in order: id → (heading, renderer). The ids are the page's contract
# (links, tests).
SECTIONS: dict[str, tuple[str, Callable[[ReportData], str]]] = {
    "overview": ("Overview", overview_section),
    "segments": ("Shopper segments", segments_section),
    "rfm": ("Recency, frequency, spend", rfm_section),
    "trends": ("Sales forecasts", trends_section),
    "rules": ("Bought together", rules_section),
    "propensity": ("Who will buy again", propensity_section),
    "data-quality": ("Data quality", data_quality_section),
    "build-stages": ("Build stages", build_stages_section),
}
REPORT_SECTIONS = tuple(SECTIONS)
