"""`tailor campaign`: one campaign over many shoppers as a Ray Data job.

    prepare   the settings and the shopper list are fixed in the outbox (campaign.json,
              shoppers.parquet) at the first start; a run started again must match them
    score     the chunks without a checkpoint go through a Ray Data pipeline whose actors each
              hold the build once (services.campaigns.scoring.ChunkScorer): their own actors,
              with their own CPUs, beside serving's replicas, never through them
    summary   the outcome counts from every chunk's log (they add up to the shoppers asked for)
    deliver   optionally, the outbox to a webhook (jobs/webhook.py)

Locally Ray starts a cluster of its own for the job (`address="local"`); given a cluster's
address it runs there (the outbox must then be storage every node sees).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from services.artifacts import Artifacts, current_build_dir
from services.campaigns.outbox import OUTCOMES, register_outbox
from services.campaigns.plan import SHOPPERS_FILE, CampaignSettings, chunk_bounds, select_shoppers
from services.config import TailorConfig
from services.errors import DataFileError, InvalidArgument
from services.shopper_rights import ShopperRights

SUMMARY_FILE = "summary.json"
Progress = Callable[[int, int], None]  # (shoppers done, shoppers in all)


def prepare(settings: CampaignSettings, outbox: Path, config: TailorConfig, attributes: pd.DataFrame | None = None) -> CampaignSettings:
    """The campaign in `outbox`: started now, or the one already there when the settings match
    (its clock and shopper list kept). A different campaign in the same outbox is an error."""
    outbox = Path(outbox)
    outbox.mkdir(parents=True, exist_ok=True)
    existing = CampaignSettings.load(outbox)
    if existing is not None:
        differ = existing.same_campaign(settings)
        if differ:
            raise InvalidArgument("--out", f"{outbox} holds another campaign (it differs in {', '.join(differ)}); give a new folder")
        return existing
    artifacts = Artifacts(Path(settings.artifacts) / "builds" / settings.build_id, config.index)
    shoppers = select_shoppers(artifacts.users, settings.selection, attributes)
    rights = ShopperRights.from_config(config)
    forgotten = rights.snapshot().forgotten
    if forgotten:
        keep = np.array([k not in forgotten for k in rights.keys(shoppers["user_id"])], dtype=bool)
        shoppers = shoppers[keep].reset_index(drop=True)
    tmp = outbox / f".{SHOPPERS_FILE}.tmp"
    shoppers.to_parquet(tmp, index=False)
    tmp.replace(outbox / SHOPPERS_FILE)
    settings.save(outbox)  # last: its presence says the campaign is prepared
    register_outbox(config.state_path(config.campaign.outboxes_path), outbox)
    return settings


def settings_for(
    artifacts_dir: Path, selection: str, channel: str, language: str, k: int, promotion: dict, with_copy: bool, dry_run: bool, now: datetime | None
) -> CampaignSettings:
    build = current_build_dir(Path(artifacts_dir))
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    return CampaignSettings(
        artifacts=str(Path(artifacts_dir).resolve()),
        build_id=build.name,
        selection=selection,
        channel=channel,
        language=language,
        k=k,
        promotion=promotion,
        with_copy=with_copy,
        dry_run=dry_run,
        now=moment.isoformat(),
    )


def pending_chunks(outbox: Path, count: int, size: int) -> list[tuple[int, int, int]]:
    done = {p.name for p in (Path(outbox) / "done").glob("part-*")}
    return [(i, start, end) for i, (start, end) in enumerate(chunk_bounds(count, size)) if f"part-{i:05d}" not in done]


class ChunkActor:
    """A Ray Data actor: one build loaded once, then one chunk per call."""

    def __init__(self, settings: dict, config: dict, outbox: str):
        from threadpoolctl import threadpool_limits

        from services.campaigns.scoring import ChunkScorer

        threadpool_limits(1)  # the flow's products are small; more threads only contend
        self.config = TailorConfig(**config)
        self.settings = CampaignSettings(**settings)
        engine = embedder = None
        if self.settings.with_copy and self.config.copywriting.model_words:
            from services.copywriting.engine import LLMEngine
            from services.recommend.embedding import TextEmbedder

            engine, embedder = LLMEngine(self.config), TextEmbedder(self.config)
        self.scorer = ChunkScorer(self.settings, self.config, Path(outbox), engine, embedder)
        self.shoppers = pd.read_parquet(Path(outbox) / SHOPPERS_FILE)

    def __call__(self, batch: dict) -> dict:
        out = {"chunk": [], "shoppers": [], "seconds": [], **{o: [] for o in OUTCOMES}}
        for chunk, start, end in zip(batch["chunk"], batch["start"], batch["end"]):
            result = self.scorer.score(int(chunk), self.shoppers.iloc[int(start) : int(end)].reset_index(drop=True))
            out["chunk"].append(result.chunk)
            out["shoppers"].append(result.shoppers)
            out["seconds"].append(result.seconds)
            for o in OUTCOMES:
                out[o].append(result.counts[o])
        return {k: np.asarray(v) for k, v in out.items()}


def run(outbox: Path, config: TailorConfig, address: str | None = None, progress: Progress | None = None) -> dict:
    """Score every chunk not yet checkpointed, then write and return the summary."""
    import ray

    outbox = Path(outbox)
    settings = CampaignSettings.load(outbox)
    if settings is None:
        raise InvalidArgument("--out", f"{outbox} holds no prepared campaign")
    count = len(pd.read_parquet(outbox / SHOPPERS_FILE, columns=["user_id"]))
    size = config.campaign.chunk_shoppers
    todo = pending_chunks(outbox, count, size)
    done_before = count - sum(end - start for _, start, end in todo)
    started = time.perf_counter()
    if progress:
        progress(done_before, count)
    if todo:
        owns_ray = not ray.is_initialized()
        if owns_ray:
            ray.init(address=address or "local", include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING, configure_logging=False)
        try:
            logging.getLogger("ray.data").setLevel(logging.WARNING)  # the progress bar says enough
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = False
            ctx.verbose_stats_logs = False
            items = [{"chunk": i, "start": s, "end": e} for i, s, e in todo]
            ds = ray.data.from_items(items, override_num_blocks=len(items))
            scored = ds.map_batches(
                ChunkActor,
                fn_constructor_kwargs={"settings": asdict(settings), "config": config.model_dump(mode="json"), "outbox": str(outbox.resolve())},
                batch_size=1,
                compute=ray.data.ActorPoolStrategy(size=min(config.campaign.actors, len(items))),
                num_cpus=config.campaign.actor_cpus,
            )
            done = done_before
            for row in scored.iter_rows():
                done += int(row["shoppers"])
                if progress:
                    progress(done, count)
        finally:
            if owns_ray:
                ray.shutdown()
    summary = summarise(outbox, settings, count)
    summary["seconds_this_run"] = round(time.perf_counter() - started, 1)
    summary["shoppers_per_second_this_run"] = round((count - done_before) / max(summary["seconds_this_run"], 1e-9), 1)
    write_summary(outbox, summary)
    return summary


def summarise(outbox: Path, settings: CampaignSettings, count: int) -> dict:
    """Outcome counts from every chunk's log; they must add up to the shoppers asked for."""
    counts: Counter = Counter()
    logged = 0
    for path in sorted((Path(outbox) / "log").glob("part-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            counts[json.loads(line)["outcome"]] += 1
            logged += 1
    if logged != count:
        raise DataFileError(str(Path(outbox) / "log"), f"holds {logged} shoppers, the campaign asked for {count}: an outbox file was changed or lost")
    return {
        "campaign_id": settings.campaign_id,
        "build_id": settings.build_id,
        "channel": settings.channel,
        "language": settings.language,
        "dry_run": settings.dry_run,
        "with_copy": settings.with_copy,
        "now": settings.now,
        "shoppers": count,
        "outcomes": {o: int(counts.get(o, 0)) for o in OUTCOMES},
    }


def write_summary(outbox: Path, summary: dict) -> None:
    path = Path(outbox) / SUMMARY_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(path)
