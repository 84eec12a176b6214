"""The ingress of the Tailor application: every RPC of protos/ lands here (Ray's gRPC proxy
calls the method named like the RPC). MarketingService.Recommend composes the leaf
deployments; the leaf services' RPCs are passed straight to their deployment, so each is
callable on its own. Domain errors become gRPC status codes here, and only here."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import date
from typing import Awaitable, Callable, TypeVar

import grpc
from grpc_health.v1 import health_pb2
from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.grpc_util import RayServegRPCContext

from serving import messages
from serving.metrics import RequestMetrics
from serving.served_build import recommend_build
from services.feedback.variant_ids import read_variant, secret_from
from services.config import TailorConfig
from services.errors import InvalidArgument, NotFound, Overloaded, Unavailable, excerpt
from services.insights.description import describe_shopper
from services.live_build import LiveBuild
from tailor.v1 import (
    copy_pb2,
    embedding_pb2,
    marketing_pb2,
    ranking_pb2,
    retrieval_pb2,
)

log = logging.getLogger("ray.serve")
Response = TypeVar("Response")

STATUS_CODES = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    BackPressureError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    # A leaf replica restarting or gone: worth a retry, as Ray's own proxy says.
    DeploymentUnavailableError: grpc.StatusCode.UNAVAILABLE,
    ActorDiedError: grpc.StatusCode.UNAVAILABLE,
    ActorUnavailableError: grpc.StatusCode.UNAVAILABLE,
}


# gRPC metadata over 16 KiB kills the stream; a status message stays well under that.
MAX_DETAILS_BYTES = 300


def short(details: str) -> str:
    """An error message cut to MAX_DETAILS_BYTES of UTF-8, whatever the input quoted in it."""
    raw = details.encode("utf-8")
    if len(raw) <= MAX_DETAILS_BYTES:
        return details
    return raw[: MAX_DETAILS_BYTES - 3].decode("utf-8", "ignore") + "…"


def status_of(error: Exception) -> tuple[grpc.StatusCode, str]:
    """The status code and message for a failure; unexpected errors answer INTERNAL with a
    reference to the server log, never a traceback."""
    cause = error.cause if isinstance(error, RayTaskError) and error.cause is not None else error
    code = next((c for kind, c in STATUS_CODES.items() if isinstance(cause, kind)), None)
    if code is None:
        reference = uuid.uuid4().hex[:12]
        log.exception("unexpected error (reference %s)", reference)
        return grpc.StatusCode.INTERNAL, f"internal error; the server log has reference {reference}"
    return code, short(str(cause))


@serve.deployment
class Marketing:
    def __init__(self, config: dict, embedder, retriever, ranker, copywriter, feedback):
        self.config = TailorConfig(**config)
        self.feedback = feedback
        self.secret = secret_from(self.config.state_path(self.config.copywriting.variant_secret_path))
        # Recommend runs candidates and ranking here, on the build this replica holds: two hops
        # to the Retriever and Ranker deployments cost more than the work behind them. Those
        # stay deployments of their own for direct Retrieve and Rank calls.
        self.builds = LiveBuild(self.config.artifacts_dir, self.config.index, recommend_build(self.config), self.config.serving.build_poll_s)
        self.embedder, self.retriever, self.ranker, self.copywriter = embedder, retriever, ranker, copywriter
        self.metrics = RequestMetrics()
        self.metrics.keep_reporting_build(lambda: self.builds.current_id)
        self.waiting = 0  # Recommends admitted but not yet started (see admit)

    async def answer(self, rpc: str, context: RayServegRPCContext, empty: Response, call: Callable[[], Awaitable[Response]]) -> Response:
        """Run one RPC; a failure becomes a status code and a short message naming the field.
        A request its caller gave up on is cancelled by Ray's proxy and counted as CANCELLED."""
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return await call()
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as error:  # noqa: BLE001 - every failure must become a status, not a crash
            code, details = status_of(error)
            context.set_code(code)
            context.set_details(details)
            return empty
        finally:
            self.metrics.answered(rpc, code.name, time.perf_counter() - started)

    # --- MarketingService: the whole flow -------------------------------------------------

    async def Recommend(self, request: marketing_pb2.RecommendRequest, grpc_context: RayServegRPCContext):
        return await self.answer("Recommend", grpc_context, marketing_pb2.RecommendResponse(), lambda: self.recommend(request))

    async def recommend(self, request: marketing_pb2.RecommendRequest) -> marketing_pb2.RecommendResponse:
        limits = self.config.serving
        query = messages.shopper_query(request, limits, messages.check_k(request.k, limits))
        # Checked here so that a bad request fails before any work.
        messages.channel_name(request.channel)
        messages.language_name(request.language)
        messages.tone(request.tone)
        promotion = messages.promotion(request.promotion, date.today())
        await self.admit()

        # One build for the whole request, the copy included, whatever is published meanwhile.
        build_id, served = self.builds.pinned("")
        self.metrics.serving(build_id)
        shopper, candidates = served.flow.candidates(query)
        self.metrics.gathered(candidates.ranks)
        ranked = served.flow.rank(shopper, candidates, query.k)
        response = marketing_pb2.RecommendResponse(build_id=build_id, items=messages.ranked_messages(ranked, served.items))
        profile = served.profile(query.user_id) if query.user_id else None
        if profile is not None:
            response.profile.CopyFrom(profile)
        if ranked and not request.skip_copy:
            position, note = served.flow.headline(ranked, promotion.amount_off)
            shopper_id = query.user_id if profile is not None else ""  # an anonymous shopper's copy carries no profile
            response.copy.CopyFrom(await self.copy_for(shopper_id, response.items[position], request, note, build_id))
        return response

    async def admit(self) -> None:
        """Wait for the replica's CPU, or be refused at once when too many already wait.

        Recommend's work is Python that nothing interrupts, one request at a time per replica;
        the replica also holds requests that only wait on a leaf (copy, Embed, Generate), so
        its `max_ongoing_requests` cannot bound this queue. Yielding once lets every request
        the replica holds arrive here first: those beyond `serving.max_waiting_recommends`
        are refused (RESOURCE_EXHAUSTED) instead of answering after their caller gave up, and
        a caller that gave up while this one waited has had its cancellation land here, before
        the work, not after it."""
        limit = self.config.serving.max_waiting_recommends
        if self.waiting >= limit:
            raise Overloaded(f"Recommend: {limit} requests already wait for this replica; retry shortly")
        self.waiting += 1
        try:
            await asyncio.sleep(0)
        finally:
            self.waiting -= 1

    async def copy_for(self, user_id: str, headline, request, note: str | None, build_id: str) -> copy_pb2.CopyVariant:
        """One variant about the headline item, in the arm the feedback loop picks; without the
        promotion when the flow said it does not apply (the note says why)."""
        generated = await self.copywriter.Generate.remote(
            copy_pb2.GenerateRequest(
                user_id=user_id,
                item_ids=[headline.item.item_id],
                channel=request.channel,
                language=request.language,
                promotion=None if note else request.promotion,
                tone=request.tone,
                n_variants=1,
                reason=headline.reasons[0] if headline.reasons else "",
                build_id=build_id,
            )
        )
        best = generated.variants[0]
        if note:
            best.problems.append(note)
        return best

    async def DescribeUser(self, request: marketing_pb2.DescribeUserRequest, grpc_context: RayServegRPCContext):
        return await self.answer("DescribeUser", grpc_context, marketing_pb2.DescribeUserResponse(), lambda: self.describe_user(request))

    async def describe_user(self, request: marketing_pb2.DescribeUserRequest) -> marketing_pb2.DescribeUserResponse:
        user_id = messages.check_user_id(request.user_id, self.config.serving)
        _, served = self.builds.pinned("")
        return messages.description_message(describe_shopper(served.artifacts, user_id))

    # --- Leaf services, passed through ----------------------------------------------------

    async def Embed(self, request, grpc_context: RayServegRPCContext):
        return await self.answer("Embed", grpc_context, embedding_pb2.EmbedResponse(), lambda: self.embedder.Embed.remote(request))

    async def Retrieve(self, request, grpc_context: RayServegRPCContext):
        return await self.answer("Retrieve", grpc_context, retrieval_pb2.RetrieveResponse(), lambda: self.retriever.Retrieve.remote(request))

    async def IndexInfo(self, request, grpc_context: RayServegRPCContext):
        return await self.answer("IndexInfo", grpc_context, retrieval_pb2.IndexInfoResponse(), lambda: self.retriever.IndexInfo.remote(request))

    async def Rank(self, request, grpc_context: RayServegRPCContext):
        return await self.answer("Rank", grpc_context, ranking_pb2.RankResponse(), lambda: self.ranker.Rank.remote(request))

    async def Generate(self, request, grpc_context: RayServegRPCContext):
        return await self.answer("Generate", grpc_context, copy_pb2.GenerateResponse(), lambda: self.copywriter.Generate.remote(request))

    # --- Health and the RPCs of later issues ----------------------------------------------

    def Check(self, request: health_pb2.HealthCheckRequest, grpc_context: RayServegRPCContext):
        # Reached only once every deployment of the application is up (Serve routes to a
        # running application), so SERVING is the truth here.
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    async def RecordFeedback(self, request: marketing_pb2.RecordFeedbackRequest, grpc_context: RayServegRPCContext):
        return await self.answer("RecordFeedback", grpc_context, marketing_pb2.RecordFeedbackResponse(), lambda: self.record_feedback(request))

    async def record_feedback(self, request: marketing_pb2.RecordFeedbackRequest) -> marketing_pb2.RecordFeedbackResponse:
        """What a shopper did with a variant, for the bandit: the id's signature is checked here
        (a forged one is INVALID_ARGUMENT), the rest by the loop's one owner."""
        user_id = messages.check_user_id(request.user_id, self.config.serving) if request.user_id.strip() else ""
        event = messages.feedback_event(request.event_type)
        tag = read_variant(request.variant_id.strip(), self.secret)
        if request.item_id.strip() and request.item_id.strip() != tag.item_id:
            raise NotFound("item_id", f"variant {excerpt(request.variant_id, 24)} is not about item {excerpt(request.item_id)}")
        await self.feedback.record.remote(user_id, request.variant_id.strip(), event, tag)
        return marketing_pb2.RecordFeedbackResponse()

    async def ForgetUser(self, request, grpc_context: RayServegRPCContext):
        return self.unimplemented("ForgetUser", grpc_context, marketing_pb2.ForgetUserResponse())

    async def ScoreUsers(self, request, grpc_context: RayServegRPCContext):
        self.unimplemented("ScoreUsers", grpc_context, None)
        # A stream that yields nothing never carries its status through the proxy: raise after
        # setting the code, and the proxy keeps the code we set.
        raise NotImplementedError("ScoreUsers")
        yield  # noqa: makes this a generator, as the streaming RPC requires

    async def GenerateStream(self, request, grpc_context: RayServegRPCContext):
        started, code = time.perf_counter(), grpc.StatusCode.OK
        stream = self.copywriter.options(stream=True).GenerateStream.remote(request)
        try:
            async for chunk in stream:
                yield chunk
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as error:  # noqa: BLE001 - a failure becomes the stream's status
            code, details = status_of(error)
            grpc_context.set_code(code)
            grpc_context.set_details(details)
            # The proxy keeps the code set here when the stream then raises.
            raise
        finally:
            self.metrics.answered("GenerateStream", code.name, time.perf_counter() - started)

    @staticmethod
    def unimplemented(rpc: str, grpc_context: RayServegRPCContext, empty):
        grpc_context.set_code(grpc.StatusCode.UNIMPLEMENTED)
        grpc_context.set_details(f"{rpc} is part of the contract but not implemented in this version of Tailor")
        return empty
