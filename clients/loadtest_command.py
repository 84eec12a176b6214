"""`tailor loadtest` and `tailor loadtest-requests`: the command line over clients/loadtest.py
(the open-loop run) and clients/load_requests.py (request lists from a build)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from clients.load_requests import LoadTestError, embed_requests, rank_requests, recommend_requests
from clients.load_result import LoadResult
from clients.loadtest import APPLICATION, TARGET, check_schedule, find_rpc, parse_ramp, read_requests, run_load, write_requests

err = Console(stderr=True)
console = Console()


def fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def loadtest_command(
    rpc: str = typer.Option(..., "--rpc", help="RPC to call, e.g. Recommend, Embed, GenerateStream, Check (or Service/Method)."),
    rate: Optional[float] = typer.Option(None, "--rate", help="Requests started per second (open loop: never waits for answers)."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Seconds at --rate."),
    ramp: Optional[str] = typer.Option(None, "--ramp", help='Rate steps instead of --rate/--duration: "20:30,100:30,20:30" (rate:seconds, ...).'),
    requests_file: Optional[Path] = typer.Option(None, "--requests", help="JSON Lines, one request per line in protobuf JSON, used round-robin (default: one empty request)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the whole result (settings, percentiles, codes, per-second timeline) here."),
    target: str = typer.Option(TARGET, "--target", help="host:port of the gRPC proxy."),
    application: str = typer.Option(APPLICATION, "--application", help="The `application` metadata the Ray proxy routes on."),
    timeout: float = typer.Option(5.0, "--timeout", help="Deadline of each call, seconds."),
    channels: int = typer.Option(1, "--channels", help="gRPC channels (connections), used round-robin."),
    quiet: bool = typer.Option(False, "--quiet", help="No live progress line."),
) -> None:
    """Offer one RPC at a fixed rate (or a ramp) open-loop and report latency, codes and throughput."""
    if ramp is not None and (rate is not None or duration is not None):
        fail("give either --ramp or --rate with --duration, not both")
    if ramp is None and (rate is None or duration is None):
        fail("give --rate and --duration (or --ramp)")
    if channels < 1:
        fail("--channels must be at least 1")
    try:
        schedule = parse_ramp(ramp) if ramp is not None else [(rate, duration)]
        check_schedule(schedule)
        found = find_rpc(rpc)
        requests = read_requests(requests_file, found) if requests_file is not None else []
    except LoadTestError as error:
        fail(str(error))

    async def run_until_done_or_interrupted() -> LoadResult:
        # Ctrl-C ends the schedule early but keeps what was measured.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, stop.set)
        except (ValueError, RuntimeError, NotImplementedError):  # not the main thread, or no signals here
            pass
        try:
            return await run_load(target, found, requests, schedule, application, timeout, progress=not quiet and err, channels=channels, stop=stop)
        finally:
            loop.remove_signal_handler(signal.SIGINT)

    try:
        result = asyncio.run(run_until_done_or_interrupted())
    except LoadTestError as error:
        fail(str(error), 1)
    console.print(result.summary(), highlight=False, soft_wrap=True)
    if json_out is not None:
        result.to_json(json_out)
        console.print(f"Result written to {json_out}")


def loadtest_requests_command(
    out: Path = typer.Option(..., "--out", help="JSON Lines file to write, for `tailor loadtest --requests`."),
    rpc: str = typer.Option("Recommend", "--rpc", help="Recommend, Rank or Embed."),
    n: int = typer.Option(5000, "--n", help="Number of requests."),
    texts: int = typer.Option(8, "--texts", help="Embed: product titles per request (e.g. 1, 8, 64)."),
    with_copy: bool = typer.Option(False, "--with-copy", help="Recommend: ask for copy too (default skip_copy, products only)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the shuffles and draws."),
    artifacts: Optional[Path] = typer.Option(None, "--artifacts", help="Artifacts folder holding the published build (default: config artifacts_dir)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML configuration file (default: $TAILOR_CONFIG, else built-in defaults)."),
) -> None:
    """Write a mixed request file from the published build's shoppers and catalogue."""
    from services.artifacts import Artifacts
    from services.config import load_config
    from services.errors import TailorError

    if n < 1 or texts < 1:
        fail("--n and --texts must be at least 1")
    try:
        found = find_rpc(rpc)
    except LoadTestError as error:
        fail(str(error))
    if found.method not in ("Recommend", "Rank", "Embed"):
        fail(f"request files can be made for Recommend, Rank and Embed, not {found.method}")
    try:
        settings = load_config(config, artifacts_dir=artifacts.resolve() if artifacts else None)
        build = Artifacts.open(settings.artifacts_dir, settings.index)
        if found.method == "Recommend":
            requests = recommend_requests(build, n, seed, skip_copy=not with_copy)
        elif found.method == "Rank":
            requests = rank_requests(build, n, seed=seed)
        else:
            requests = embed_requests(build, texts, n, seed)
    except (TailorError, LoadTestError, FileNotFoundError, ValueError) as error:
        fail(str(error))
    write_requests(out, requests)
    console.print(f"{len(requests)} {found.method} requests from build {build.build_id} written to {out}")
