"""The ingress of the Tailor application: every RPC of protos/ lands here (Ray's gRPC proxy
calls the method named like the RPC). MarketingService.Recommend composes the leaf
deployments; the leaf services' RPCs are passed straight to their deployment, so each is
callable on its own. Domain errors become gRPC status codes here, and only here."""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Awaitable, Callable, TypeVar

import grpc
from grpc_health.v1 import health_pb2
from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.grpc_util import RayServegRPCContext

from serving import messages
from services.feedback.variant_ids import read_variant, secret_from
from services.artifacts import Artifacts
from services.config import TailorConfig
from services.errors import InvalidArgument, NotFound, Unavailable, excerpt
from services.insights.description import describe_shopper
from services.insights.profiles import summarise
from services.recommend.flow import RecommendationFlow
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
    BackPressureError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    # A leaf replica restarting or gone: worth a retry, as Ray's own proxy says.
    DeploymentUnavailableError: grpc.StatusCode.UNAVAILABLE,
    ActorDiedError: grpc.StatusCode.UNAVAILABLE,
    ActorUnavailableError: grpc.StatusCode.UNAVAILABLE,
}


async def answer(context: RayServegRPCContext, empty: Response, call: Callable[[], Awaitable[Response]]) -> Response:
    """Run one RPC; turn a failure into a status code and a message naming the field.

    Unexpected errors answer INTERNAL with a reference to the server log, never a traceback."""
    try:
        return await call()
    except Exception as error:  # noqa: BLE001 - every failure must become a status, not a crash
        cause = error.cause if isinstance(error, RayTaskError) and error.cause is not None else error
        code = next((c for kind, c in STATUS_CODES.items() if isinstance(cause, kind)), None)
        if code is None:
            reference = uuid.uuid4().hex[:12]
            log.exception("unexpected error (reference %s)", reference)
            code, details = grpc.StatusCode.INTERNAL, f"internal error; the server log has reference {reference}"
        else:
            details = str(cause)
        context.set_code(code)
        context.set_details(details)
        return empty


async def _raise(error: Exception):
    raise error


@serve.deployment
class Marketing:
    def __init__(self, config: dict, build_dir: str, embedder, retriever, ranker, copywriter, feedback):
        self.config = TailorConfig(**config)
        self.feedback = feedback
        self.secret = secret_from(self.config.state_path(self.config.copywriting.variant_secret_path))
        self.artifacts = Artifacts(Path(build_dir), self.config.index)
        # Recommend runs candidates and ranking here, on the build this replica holds: two hops
        # to the Retriever and Ranker deployments cost more than the work behind them. Those
        # stay deployments of their own for direct Retrieve and Rank calls.
        self.flow = RecommendationFlow(self.artifacts, self.config)
        self.embedder, self.retriever, self.ranker, self.copywriter = embedder, retriever, ranker, copywriter

    # --- MarketingService: the whole flow -------------------------------------------------

    async def Recommend(self, request: marketing_pb2.RecommendRequest, grpc_context: RayServegRPCContext):
        return await answer(grpc_context, marketing_pb2.RecommendResponse(), lambda: self.recommend(request))

    async def recommend(self, request: marketing_pb2.RecommendRequest) -> marketing_pb2.RecommendResponse:
        limits = self.config.serving
        query = messages.shopper_query(request, limits, messages.check_k(request.k, limits))
        # Checked here so that a bad request fails before any work.
        messages.channel_name(request.channel)
        messages.language_name(request.language)
        messages.tone(request.tone)
        promotion = messages.promotion(request.promotion, date.today())

        ranked = self.flow.recommend(query)
        known = bool(query.user_id) and self.flow.snapshot.history.user_row(query.user_id) is not None
        response = marketing_pb2.RecommendResponse(build_id=self.artifacts.build_id)
        if known:
            profile = summarise(self.artifacts.users.iloc[self.artifacts.user_index(query.user_id)])
            response.profile.CopyFrom(marketing_pb2.ProfileSummary(**{**asdict(profile), "interests": list(profile.interests)}))
        response.items.extend(messages.ranked_messages(ranked, self.artifacts.items, self.flow.snapshot.item_row))
        if ranked and not request.skip_copy:
            position, note = self.flow.headline(ranked, promotion.amount_off)
            shopper = query.user_id if known else ""  # an anonymous shopper's copy carries no profile
            response.copy.CopyFrom(await self.copy_for(shopper, response.items[position], request, note))
        return response

    async def copy_for(self, user_id: str, headline, request, note: str | None) -> copy_pb2.CopyVariant:
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
            )
        )
        best = generated.variants[0]
        if note:
            best.problems.append(note)
        return best

    async def DescribeUser(self, request: marketing_pb2.DescribeUserRequest, grpc_context: RayServegRPCContext):
        return await answer(grpc_context, marketing_pb2.DescribeUserResponse(), lambda: self.describe_user(request))

    async def describe_user(self, request: marketing_pb2.DescribeUserRequest) -> marketing_pb2.DescribeUserResponse:
        user_id = messages.check_user_id(request.user_id, self.config.serving)
        return messages.description_message(describe_shopper(self.artifacts, user_id))

    # --- Leaf services, passed through ----------------------------------------------------

    async def Embed(self, request, grpc_context: RayServegRPCContext):
        return await answer(grpc_context, embedding_pb2.EmbedResponse(), lambda: self.embedder.Embed.remote(request))

    async def Retrieve(self, request, grpc_context: RayServegRPCContext):
        return await answer(grpc_context, retrieval_pb2.RetrieveResponse(), lambda: self.retriever.Retrieve.remote(request))

    async def IndexInfo(self, request, grpc_context: RayServegRPCContext):
        return await answer(grpc_context, retrieval_pb2.IndexInfoResponse(), lambda: self.retriever.IndexInfo.remote(request))

    async def Rank(self, request, grpc_context: RayServegRPCContext):
        return await answer(grpc_context, ranking_pb2.RankResponse(), lambda: self.ranker.Rank.remote(request))

    async def Generate(self, request, grpc_context: RayServegRPCContext):
        return await answer(grpc_context, copy_pb2.GenerateResponse(), lambda: self.copywriter.Generate.remote(request))

    # --- Health and the RPCs of later issues ----------------------------------------------

    def Check(self, request: health_pb2.HealthCheckRequest, grpc_context: RayServegRPCContext):
        # Reached only once every deployment of the application is up (Serve routes to a
        # running application), so SERVING is the truth here.
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    async def RecordFeedback(self, request: marketing_pb2.RecordFeedbackRequest, grpc_context: RayServegRPCContext):
        return await answer(grpc_context, marketing_pb2.RecordFeedbackResponse(), lambda: self.record_feedback(request))

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
        stream = self.copywriter.options(stream=True).GenerateStream.remote(request)
        try:
            async for chunk in stream:
                yield chunk
        except Exception as error:  # noqa: BLE001 - a failure becomes the stream's status
            await answer(grpc_context, None, lambda: _raise(error))
            raise

    @staticmethod
    def unimplemented(rpc: str, grpc_context: RayServegRPCContext, empty):
        grpc_context.set_code(grpc.StatusCode.UNIMPLEMENTED)
        grpc_context.set_details(f"{rpc} is part of the contract but not implemented in this version of Tailor")
        return empty
