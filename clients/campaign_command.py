"""`tailor campaign` (a campaign over many shoppers, jobs/campaign.py) and `tailor opt-out`
(channel opt-outs the campaigns honour)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

console = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def load(config: Optional[Path], artifacts: Optional[Path]):
    from services.config import load_config

    try:
        return load_config(config, artifacts_dir=artifacts.resolve() if artifacts else None)
    except (FileNotFoundError, ValueError) as error:
        fail(str(error))


def campaign_command(
    out: Path = typer.Option(..., "--out", help="The outbox folder (created; a run started again with the same settings resumes it)."),
    artifacts: Optional[Path] = typer.Option(None, "--artifacts", help="Artifacts folder; the campaign uses its published build."),
    segment: Optional[str] = typer.Option(None, "--segment", help="Every shopper of this segment."),
    users: Optional[Path] = typer.Option(None, "--users", help="A file of shopper ids (one a line, or CSV with user_id[, timezone, loyalty_tier])."),
    everyone: bool = typer.Option(False, "--all", help="Every shopper of the build."),
    channel: str = typer.Option("push", "--channel", help="push, sms, email or banner."),
    language: str = typer.Option("en", "--language", help="en or zh."),
    promo: str = typer.Option("", "--promo", help="The promotion rule: code=XMAS10,percent_off=10,ends=2026-12-31[,tier=gold]."),
    k: int = typer.Option(5, "--k", help="Products per shopper."),
    copy: bool = typer.Option(True, "--copy/--no-copy", help="Write copy for every message."),
    webhook: Optional[str] = typer.Option(None, "--webhook", help="POST the messages here in batches (at least once, with retries)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Decide every shopper's outcome and log it; write no message, record no send."),
    now: Optional[datetime] = typer.Option(None, "--now", help="The campaign's clock (ISO time, UTC unless it says), for quiet hours and caps."),
    attributes: Optional[Path] = typer.Option(None, "--shopper-attributes", help="CSV user_id, timezone, loyalty_tier for the shoppers chosen."),
    address: Optional[str] = typer.Option(None, "--ray-address", help="A Ray cluster to run on (default: a local Ray of the job's own)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML configuration file."),
) -> None:
    """Score, apply contact rules, write copy and an outbox for many shoppers (a Ray Data job; resumable)."""
    from jobs.campaign import prepare, run, settings_for
    from services.campaigns.plan import parse_promotion, promotion_json, read_user_file
    from services.errors import TailorError

    chosen = [name for name, given in (("--segment", segment), ("--users", users), ("--all", everyone)) if given]
    if len(chosen) != 1:
        fail("give exactly one of --segment NAME, --users FILE or --all")
    selection = f"segment:{segment}" if segment else f"users:{users.resolve()}" if users else "all"
    settings = load(config, artifacts)
    moment = now.replace(tzinfo=now.tzinfo or timezone.utc) if now else None
    try:
        rule = parse_promotion(promo, (moment or datetime.now(timezone.utc)).date().isoformat())
        wanted = settings_for(
            settings.artifacts_dir, selection, channel, language, k, promotion_json(rule), copy and not dry_run, dry_run, moment
        )
        extra = read_user_file(attributes) if attributes else None
        campaign = prepare(wanted, out, settings, extra)
        if campaign.now != wanted.now and now is None:
            console.print(f"resuming campaign {campaign.campaign_id} (started with clock {campaign.now})")
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("shoppers", total=None)
            summary = run(out, settings, address, lambda done, total: bar.update(task, completed=done, total=total))
    except TailorError as error:
        fail(str(error))
    show_summary(summary, out)
    if webhook and dry_run:
        console.print("a dry run: nothing delivered to the webhook")
    elif webhook:
        deliver_to(webhook, out, settings)


def show_summary(summary: dict, out: Path) -> None:
    kind = f"{summary['channel']}, {summary['language']}{', dry run' if summary['dry_run'] else ''}"
    table = Table(title=f"campaign {summary['campaign_id']} ({kind})", title_justify="left")
    table.add_column("outcome")
    table.add_column("shoppers", justify="right")
    for outcome, count in summary["outcomes"].items():
        table.add_row(outcome, f"{count:,}")
    table.add_row("[bold]asked for[/]", f"[bold]{summary['shoppers']:,}[/]")
    console.print(table)
    console.print(f"{summary['shoppers_per_second_this_run']:,} shoppers/s this run; outbox {out} (summary.json, log/, messages/)")


def deliver_to(url: str, out: Path, settings) -> None:
    from jobs.webhook import DeliveryError, deliver
    from services.shopper_rights import ShopperRights

    rights = ShopperRights.from_config(settings)
    forgotten = rights.snapshot().forgotten
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("webhook batches", total=None)
            report = deliver(
                out,
                url,
                batch_size=settings.campaign.webhook_batch,
                attempts=settings.campaign.webhook_attempts,
                timeout_s=settings.campaign.webhook_timeout_s,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
                skip=lambda row: bool(row.get("user_id")) and rights.key(row["user_id"]) in forgotten,
            )
    except DeliveryError as error:
        fail(str(error), 1)
    console.print(
        f"delivered {report.messages:,} messages in {report.batches:,} batches ({report.retries} retries; "
        f"{report.already_delivered_batches:,} batches were delivered before)"
    )


def opt_out_command(
    channel: str = typer.Option(..., "--channel", help="push, sms, email or banner."),
    users: Path = typer.Option(..., "--users", help="A file of shopper ids (one a line, or CSV with user_id)."),
    undo: bool = typer.Option(False, "--undo", help="Opt them back in."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML configuration file."),
) -> None:
    """Opt shoppers out of a channel (campaigns then send them nothing there)."""
    from services.campaigns.plan import read_user_file
    from services.errors import TailorError
    from services.shopper_rights import ShopperRights

    settings = load(config, None)
    try:
        ids = read_user_file(users)["user_id"].tolist()
        changed = ShopperRights.from_config(settings).set_opted_out(ids, channel, not undo)
    except TailorError as error:
        fail(str(error))
    console.print(f"{changed:,} of {len(ids):,} shoppers {'opted back in to' if undo else 'opted out of'} {channel}")
