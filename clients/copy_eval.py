"""`tailor copy-eval`: runs services/evaluation/copy_campaign.py in this process (the vLLM
engine, the embedder and the build loaded here, many shoppers in flight) with a progress
bar, and prints and writes what it measured."""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from services.artifacts import Artifacts
from services.config import TailorConfig
from services.errors import InvalidArgument

console = Console()


def pick_shoppers(artifacts: Artifacts, n: int, seed: int) -> list[str]:
    """n shoppers who bought something, at random (seeded): a campaign's audience."""
    users = artifacts.users
    buyers = users[users["purchase_count"] > 0]["user_id"].astype(str).tolist() if "purchase_count" in users else users["user_id"].astype(str).tolist()
    if n > len(buyers):
        raise InvalidArgument("shoppers", f"the build has {len(buyers)} shoppers who bought, asked for {n}")
    return sorted(random.Random(seed).sample(buyers, n), key=buyers.index)


async def _run(config: TailorConfig, artifacts: Artifacts, user_ids: list[str], concurrency: int, state: Path, seed: int, shuffled: bool):
    from services.copywriting.engine import LLMEngine
    from services.copywriting.writer import CopyWriter
    from services.evaluation.copy_campaign import CopyCampaign, campaign_report, open_state, run_campaign
    from services.recommend.embedding import TextEmbedder
    from services.recommend.flow import RecommendationFlow

    engine = LLMEngine(config)
    try:
        writer = CopyWriter(artifacts, engine, TextEmbedder(config), config)
        loop, secret = open_state(state)
        campaign = CopyCampaign(RecommendationFlow(artifacts, config), writer, loop, secret, date.today().isoformat())
        total = len(user_ids) * (2 if shuffled else 1)
        columns = (TextColumn("copy"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("copy", total=total)
            delivered, shuffled_words = await run_campaign(
                campaign, user_ids, concurrency, lambda k: bar.advance(task, k), shuffled=shuffled, seed=seed
            )
        users = artifacts.users.set_index(artifacts.users["user_id"].astype(str))
        interests = {u: ", ".join(users.loc[u, "interests"]) for u in user_ids if u in users.index}
        report = campaign_report(delivered, shuffled_words, writer, interests, seed)
        loop.close()
        return delivered, report
    finally:
        engine.shutdown()


def copy_eval(config: TailorConfig, artifacts_dir: Path, shoppers: int, json_out: Path | None, variants_out: Path | None, concurrency: int, seed: int, shuffled: bool) -> dict:
    from services.evaluation.copy_campaign import write_variants

    # A campaign is batch work: a request may wait behind many others in the engine's batch.
    config = config.model_copy(update={"llm": config.llm.model_copy(update={"timeout_s": max(config.llm.timeout_s, 900.0)})})
    artifacts = Artifacts.open(artifacts_dir, config.index)
    user_ids = pick_shoppers(artifacts, shoppers, seed)
    state = (json_out or variants_out or Path("copy-eval.json")).parent / "copy-eval-state"
    started = time.perf_counter()
    delivered, report = asyncio.run(_run(config, artifacts, user_ids, concurrency, state, seed, shuffled))
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["build_id"] = artifacts.build_id
    show(report)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n")
    if variants_out is not None:
        write_variants(delivered, variants_out)
    return report


def show(report: dict) -> None:
    table = Table(title=f"copy-eval: {report['shoppers']} shoppers, {report['variants']} variants, {report.get('seconds', '?')} s")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key in ("pass_rate", "fact_accuracy", "free_words_share", "free_words_share_en", "distinct_1", "distinct_2",
                "near_duplicate_rate", "personalization", "personalization_shuffled", "personalization_interests_shuffled"):
        value = report[key]
        table.add_row(key, "n/a" if isinstance(value, float) and math.isnan(value) else f"{value:.3f}")
    for source, share in report["source_share"].items():
        table.add_row(f"source {source}", f"{share:.3f}")
    console.print(table)
