"""The four leaf deployments. Each takes its proto request, checks it, calls the domain and
returns its proto response; domain errors propagate to the ingress, which turns them into
gRPC status codes (only the ingress holds the gRPC context)."""

from __future__ import annotations

import os
from datetime import date

import numpy as np
from ray import serve

from serving import messages
from serving.metrics import CopyMetrics
from serving.served_build import CopyBuild, copy_build, recommend_build
from services.config import TailorConfig
from services.shopper_rights import RightsView, ShopperRights
from services.copywriting.engine import LLMEngine
from services.copywriting.facts import CopyFacts
from services.copywriting.hooks import HOOK_REGEX, hook_key
from services.feedback.assignment import arms_for, order_arms, variant_tag
from services.feedback.bandit import FeedbackLoop
from services.feedback.variant_ids import VariantTag, secret_from, sign_variant
from services.recommend.embedding import TextEmbedder
from services.errors import InvalidArgument
from services.live_build import LiveBuild
from services.recommend.candidates import check_vector
from tailor.v1 import common_pb2, copy_pb2, embedding_pb2, ranking_pb2, retrieval_pb2


@serve.deployment
class Embedder:
    def __init__(self, config: dict):
        self.config = TailorConfig(**config)
        import torch

        torch.set_num_threads(self.config.embedding.cpu_threads or len(os.sched_getaffinity(0)))
        self.embedder = TextEmbedder(self.config)

    async def Embed(self, request: embedding_pb2.EmbedRequest) -> embedding_pb2.EmbedResponse:
        texts = messages.check_texts(request.texts, self.config.serving)
        vectors = await self.embed_batch(texts)
        return embedding_pb2.EmbedResponse(
            vectors=[common_pb2.Vector(values=vector) for vector in vectors],
            model=self.embedder.model_name,
            dimension=self.embedder.dimension,
        )

    # Concurrent requests share one encode at the model's batch size: a request of one text
    # alone would leave most of a forward pass unused.
    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.003)
    async def embed_batch(self, requests: list[list[str]]) -> list[np.ndarray]:
        vectors = self.embedder.embed([text for texts in requests for text in texts])
        bounds = np.cumsum([0] + [len(texts) for texts in requests])
        return [vectors[start:end] for start, end in zip(bounds[:-1], bounds[1:])]


@serve.deployment
class Retriever:
    def __init__(self, config: dict, embedder):
        self.config = TailorConfig(**config)
        self.builds = LiveBuild(self.config.artifacts_dir, self.config.index, recommend_build(self.config), self.config.serving.build_poll_s)
        self.embedder = embedder

    async def Retrieve(self, request: retrieval_pb2.RetrieveRequest) -> retrieval_pb2.RetrieveResponse:
        limits = self.config.serving
        k = messages.check_k(request.k, limits)
        build_id, served = await self.builds.get(messages.check_build_id(request.build_id, limits))
        flow = served.flow
        query = request.WhichOneof("query")
        if query == "user_id" or (query is None and request.cold_start):
            found = flow.retrieve(messages.shopper_query(request, limits, k))
            candidates = [messages.candidate_message(item_id, scores) for item_id, scores in found]
        elif query is None:
            raise InvalidArgument("query", "set one of user_id, text or vector (or cold_start)")
        else:
            item_filter = messages.item_filter(request.filter, limits)
            if query == "text":
                text = messages.check_text(request.text, limits, field="text")
                [vector] = await self.embedder.embed_batch.remote([text])
                vector = np.asarray(vector, dtype=np.float32)
            else:
                vector = check_vector(np.asarray(request.vector.values, dtype=np.float32), flow.snapshot.index.dimension)
            candidates = [messages.candidate_message(item_id, {"ann": score}) for item_id, score in flow.similar(vector, k, item_filter)]
        return retrieval_pb2.RetrieveResponse(candidates=candidates, build_id=build_id)

    def IndexInfo(self, request: retrieval_pb2.IndexInfoRequest) -> retrieval_pb2.IndexInfoResponse:
        build_id, served = self.builds.pinned("")
        manifest = served.artifacts.manifest
        index = served.flow.snapshot.index
        return retrieval_pb2.IndexInfoResponse(
            build_id=build_id,
            index_type=index.kind,
            size=index.size,
            dimension=index.dimension,
            metric=manifest["index"]["metric"],
            embedding_model=manifest["embedding"]["model"],
            built_at=manifest["built_at"],
        )

    def __del__(self):
        if hasattr(self, "builds"):
            self.builds.close()


@serve.deployment
class Ranker:
    def __init__(self, config: dict):
        self.config = TailorConfig(**config)
        self.builds = LiveBuild(self.config.artifacts_dir, self.config.index, recommend_build(self.config), self.config.serving.build_poll_s)

    async def Rank(self, request: ranking_pb2.RankRequest) -> ranking_pb2.RankResponse:
        limits = self.config.serving
        k = messages.check_k(request.k, limits)
        query = messages.shopper_query(request, limits, k)
        if request.candidates and request.item_ids:
            raise InvalidArgument("candidates", "set either item_ids or candidates, not both")
        if request.candidates:
            item_ids, named = messages.candidate_sources(request.candidates, limits)
        else:
            item_ids, named = messages.check_item_ids(request.item_ids, limits.max_candidates, limits=limits), None
        build_id, served = await self.builds.get(messages.check_build_id(request.build_id, limits))
        shopper, candidates = served.flow.explicit_candidates(query, item_ids, named)
        ranked = await self.rank_batch((served.flow, shopper, candidates, k))
        return ranking_pb2.RankResponse(items=messages.ranked_messages(ranked, served.items), ranker=served.flow.ranker.name, build_id=build_id)

    # Concurrent Rank calls share one model call: LightGBM's per-call overhead dominates a
    # request's few hundred rows. Calls pinned to different builds are ranked apart.
    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def rank_batch(self, jobs: list[tuple]) -> list[list]:
        out: list = [None] * len(jobs)
        by_flow: dict[int, list[int]] = {}
        for position, job in enumerate(jobs):
            by_flow.setdefault(id(job[0]), []).append(position)
        for positions in by_flow.values():
            flow = jobs[positions[0]][0]
            for position, ranked in zip(positions, flow.rank_many([jobs[p][1:] for p in positions])):
                out[position] = ranked
        return out

    def __del__(self):
        if hasattr(self, "builds"):
            self.builds.close()


@serve.deployment
class CopyWriter:
    def __init__(self, config: dict, feedback):
        self.config = TailorConfig(**config)
        self.engine = LLMEngine(self.config)
        load = copy_build(self.config, self.engine, TextEmbedder(self.config))
        self.builds = LiveBuild(self.config.artifacts_dir, self.config.index, load, self.config.serving.build_poll_s)
        self.feedback = feedback
        self.secret = secret_from(self.config.state_path(self.config.copywriting.variant_secret_path))
        self.metrics = CopyMetrics()
        # Copy cached for a shopper who is then forgotten must go within a second.
        self.rights = RightsView(ShopperRights.from_config(self.config), self.config.rights.poll_s, lambda _: self.drop_cached_copy())

    def drop_cached_copy(self) -> None:
        for served in self.builds.loaded():
            served.writer.copy_cache.clear()
            served.writer.hook_cache.clear()

    async def request(self, request: copy_pb2.GenerateRequest) -> tuple[CopyBuild, CopyFacts, int, bool]:
        """The request's fields checked (INVALID_ARGUMENT / NOT_FOUND naming the field), as
        facts from the build it names (the current one when it names none)."""
        limits = self.config.serving
        # Empty for an anonymous shopper (a cold-start Recommend): copy without personal interests.
        user_id = messages.check_user_id(request.user_id, limits) if request.user_id.strip() else ""
        item_ids = messages.check_item_ids(request.item_ids, limits.max_copy_items, limits=limits)
        context = messages.check_item_ids(request.context_item_ids, limits.max_context_items, "context_item_ids", required=False, limits=limits)
        n = request.n_variants or 1
        if not 1 <= n <= limits.max_variants:
            raise InvalidArgument("n_variants", f"must be between 1 and {limits.max_variants}, got {n}")
        channel = messages.channel_name(request.channel)
        language = messages.language_name(request.language, self.config.copywriting.default_language)
        promotion = messages.promotion(request.promotion, date.today())
        tone = messages.tone(request.tone)
        reason = messages.check_short_text(request.reason, "reason", 200)
        _, served = await self.builds.get(messages.check_build_id(request.build_id, limits))
        served.artifacts.item_indices(item_ids + context)  # every id must exist, not only the headline one
        facts = served.writer.facts(user_id, item_ids[0], channel, language, promotion, tone, reason, tuple(context))
        return served, facts, n, bool(tone)

    async def variants(
        self, request, served: CopyBuild, facts: CopyFacts, n: int, tone_given: bool, fresh: bool = False
    ) -> list[copy_pb2.CopyVariant]:
        user_id = request.user_id.strip()
        arms, default = arms_for(facts, tone_given)
        first, held_out = await self.feedback.choose.remote(user_id, facts.segment, facts.channel, arms, default)
        outcomes = await served.writer.write(facts, order_arms(arms, tuple(first), held_out, n), user_id, fresh)
        model_words = self.config.copywriting.model_words and facts.language == "en"
        for o in outcomes:
            self.metrics.written(o.source, facts.channel, model_words and o.source == "template")
        tags = [variant_tag(user_id, facts, o, held_out, served.build_id) for o in outcomes]
        ids = [sign_variant(tag, self.secret) for tag in tags]
        await self.feedback.issue_many.remote(list(zip(ids, tags)))
        return [messages.variant_message(o, facts.item_id, i, held_out) for o, i in zip(outcomes, ids)]

    async def Generate(self, request: copy_pb2.GenerateRequest) -> copy_pb2.GenerateResponse:
        served, facts, n, tone_given = await self.request(request)
        return copy_pb2.GenerateResponse(
            variants=await self.variants(request, served, facts, n, tone_given),
            model=self.engine.model_name,
            channel=facts.channel,
            language=facts.language,
            build_id=served.build_id,
        )

    async def GenerateStream(self, request: copy_pb2.GenerateRequest):
        """The model's free words as they come (English), then the checked variant; the
        variant uses the streamed words only if they pass the checks."""
        served, facts, _, tone_given = await self.request(request)
        writer = served.writer
        if facts.language == "en" and self.config.copywriting.model_words:
            given, prompt = writer.hook_prompt(facts)
            settings = self.config.copywriting
            pieces = []
            async for piece in self.engine.stream(prompt, HOOK_REGEX, settings.hook_max_tokens, settings.hook_temperature):
                pieces.append(piece)
                yield copy_pb2.GenerateChunk(text=piece)
            writer.hook_cache[hook_key(prompt, served.build_id)] = writer.judge(["".join(pieces)], facts, given)
        [variant] = await self.variants(request, served, facts, 1, tone_given, fresh=True)
        yield copy_pb2.GenerateChunk(final=variant)

    def __del__(self):
        if hasattr(self, "builds"):
            self.builds.close()
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.shutdown()


@serve.deployment
class Feedback:
    """The one owner of the feedback loop's state (a single replica: Thompson sampling's counts
    must not diverge per replica). The state lives outside builds and survives restarts."""

    def __init__(self, config: dict):
        self.config = TailorConfig(**config)
        settings = self.config.copywriting
        self.loop = FeedbackLoop(self.config.state_path(settings.feedback_path), settings.holdout_share)

    def choose(self, user_id: str, segment: str, channel: str, arms: list, default: tuple):
        return self.loop.choose(user_id, segment, channel, [tuple(a) for a in arms], tuple(default))

    def issue_many(self, issued: list) -> None:
        for variant_id, tag in issued:
            self.loop.issue(variant_id, tag)

    def record(self, user_id: str, variant_id: str, event: str, tag: VariantTag) -> None:
        self.loop.record(user_id, variant_id, event, tag)

    def forget(self, user_id: str) -> int:
        return self.loop.forget(user_id)

    def stats(self) -> dict:
        return {"arms": self.loop.stats(), "lift": self.loop.lift()}
