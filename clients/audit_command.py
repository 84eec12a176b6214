"""`tailor audit --outbox DIR`: the campaign's prices against the same-price-for-everyone rules,
and its exposure. Exit 0: no violation; 1: violations (listed first); 2: the outbox cannot be
audited as it stands (the message says why)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

SHOWN = 20  # violations printed; audit.json holds them all


def audit_command(
    outbox: Path = typer.Option(..., "--outbox", help="The campaign's outbox folder (`tailor campaign --out`)."),
    artifacts: Optional[Path] = typer.Option(None, "--artifacts", help="Artifacts folder holding the campaign's build, for the long tail (default: campaign.json's)."),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON (as written to audit.json)."),
) -> None:
    """Audit a campaign: one price for everyone (a discount only by a rule on the basket, time, tier or code, given to all who qualify) and long-tail and segment exposure. Writes <outbox>/audit.json."""
    from services.campaigns.price_audit import audit_outbox
    from services.errors import TailorError

    console, err = Console(), Console(stderr=True)
    try:
        audit = audit_outbox(outbox.resolve(), artifacts.resolve() if artifacts else None)
    except TailorError as error:
        err.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(2)
    if as_json:
        typer.echo(json.dumps(audit.to_dict(), indent=2, ensure_ascii=False))
    else:
        show_audit(console, audit)
    raise typer.Exit(0 if audit.passed else 1)


def show_audit(console: Console, audit) -> None:
    from services.campaigns.outbox_rows import outcome_counts
    from services.campaigns.price_audit import VIOLATIONS

    title = f"Campaign {audit.campaign_id or '?'} · build {audit.build_id or '?'} · {audit.messages:,} messages, {audit.items:,} items"
    if audit.violations:
        table = Table(title=f"[bold red]{len(audit.violations):,} price violations[/] — {title}", header_style="bold")
        for column in ("item", "violation", "rule", "shoppers", "messages", "what"):
            table.add_column(column, justify="right" if column in ("shoppers", "messages") else "left",
                             overflow="fold", no_wrap=column == "item")
        for v in audit.violations[:SHOWN]:
            table.add_row(f"{v.item_id} {v.currency}", v.kind, v.rule_id or "-", f"{v.shoppers:,}", f"{v.messages:,}", v.description)
        console.print(table)
        if len(audit.violations) > SHOWN:
            console.print(f"… and {len(audit.violations) - SHOWN:,} more in {Path(audit.outbox) / 'audit.json'}")
        kinds = {kind: n for kind, n in audit.to_dict()["violation_kinds"].items() if n}
        console.print("by kind: " + "; ".join(f"{kind} {n:,} ({VIOLATIONS[kind]})" for kind, n in kinds.items()))
    else:
        console.print(f"[bold green]No price violations[/] — {title}: every discount comes from a rule on the basket, "
                      "the time, a tier or a code, given to all who qualify.")
    exposure = audit.exposure
    lines = [f"[bold]Exposure[/] ({exposure['long_tail_defined_as']}):",
             f"  headline item in the long tail: {pct(exposure['headline_long_tail_share'])}; "
             f"of all ranked items: {pct(exposure['ranked_long_tail_share'])}; "
             f"long tail of the catalog: {pct(exposure['catalog_long_tail_share'])}",
             f"  {exposure['shoppers']:,} shoppers, {exposure['headline_items']:,} headline items, "
             f"{exposure['ranked_items']:,} ranked items; discounted messages {pct(exposure['discounted_share'])}"]
    console.print("\n".join(lines))
    if exposure["segments"]:
        table = Table(title="Per segment", header_style="bold")
        for column in ("segment", "messages", "shoppers", "items", "long tail", "long tail (ranked)", "discounted", "mean discount"):
            table.add_column(column, justify="left" if column == "segment" else "right")
        for s in exposure["segments"]:
            table.add_row(s["segment"], f"{s['messages']:,}", f"{s['shoppers']:,}", f"{s['items']:,}", pct(s["long_tail_share"]),
                          pct(s["ranked_long_tail_share"]), pct(s["discounted_share"]),
                          f"{s['mean_discount']:.2f} ({s['mean_discount_percent'] or 0:.1f} %)")
        console.print(table)
    counts = outcome_counts(audit.counts)
    if counts:
        console.print("[bold]Outcomes[/]: " + ", ".join(f"{outcome} {n:,}" for outcome, n in counts.items()))
    for note in audit.notes:
        console.print(f"[yellow]note:[/] {note}")


def pct(share) -> str:
    return "—" if share is None else f"{100 * share:.1f} %"
