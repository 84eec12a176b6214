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
from services.campaigns.contact_log import ContactLog
from services.campaigns.outbox import forget_in_outboxes
from services.config import TailorConfig
from services.errors import InvalidArgument, NotFound, OptedOut, Overloaded, Unavailable, excerpt
from services.insights.description import describe_shopper
from services.live_build import LiveBuild
from services.recommend.flow import ShopperQuery, unpersonalized
from services.shopper_rights import RightsView, ShopperRights
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
    OptedOut: grpc.StatusCode.FAILED_PRECONDITION,
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
        # Forgotten and non-personalized shoppers, re-read within rights.poll_s of a change
        # made by any replica or the command line.
        self.rights = RightsView(ShopperRights.from_config(self.config), self.config.rights.poll_s, lambda _: self.drop_cached_profiles())

    def drop_cached_profiles(self) -> None:
        for served in self.builds.loaded():
            served.drop_cached_profiles()

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
        self.rights.check(query.user_id)
        personalized = self.rights.personalized(query.user_id)
        if not personalized:
            query = unpersonalized(query)
        await self.admit()

        # One build for the whole request, the copy included, whatever is published meanwhile.
        build_id, served = self.builds.pinned("")
        self.metrics.serving(build_id)
        shopper, candidates = served.flow.candidates(query)
        self.metrics.gathered(candidates.ranks)
        ranked = served.flow.rank(shopper, candidates, query.k)
        response = marketing_pb2.RecommendResponse(build_id=build_id, items=messages.ranked_messages(ranked, served.items), personalized=personalized)
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
        promotion when the flow said it does not apply (the note says why). `request` is a
        Recommend or ScoreUsers request (channel, language, promotion, tone)."""
        generated = await self.copywriter.Generate.remote(
            copy_pb2.GenerateRequest(
                user_id=user_id,
                item_ids=[headline.item.item_id],
                channel=request.channel,
                language=request.language,
                promotion=None if note else request.promotion,
                tone=getattr(request, "tone", ""),
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
        self.rights.check(user_id)
        _, served = self.builds.pinned("")
        return messages.description_message(describe_shopper(served.artifacts, user_id))

    # --- Leaf services, passed through ----------------------------------------------------

    async def Embed(self, request, grpc_context: RayServegRPCContext):
        return await self.answer("Embed", grpc_context, embedding_pb2.EmbedResponse(), lambda: self.embedder.Embed.remote(request))

    async def Retrieve(self, request, grpc_context: RayServegRPCContext):
        return await self.answer("Retrieve", grpc_context, retrieval_pb2.RetrieveResponse(), lambda: self.for_shopper(request, self.retriever.Retrieve))

    async def IndexInfo(self, request, grpc_context: RayServegRPCContext):
        return await self.answer("IndexInfo", grpc_context, retrieval_pb2.IndexInfoResponse(), lambda: self.retriever.IndexInfo.remote(request))

    async def Rank(self, request, grpc_context: RayServegRPCContext):
        return await self.answer("Rank", grpc_context, ranking_pb2.RankResponse(), lambda: self.for_shopper(request, self.ranker.Rank))

    async def Generate(self, request, grpc_context: RayServegRPCContext):
        return await self.answer("Generate", grpc_context, copy_pb2.GenerateResponse(), lambda: self.for_shopper(request, self.copywriter.Generate))

    async def for_shopper(self, request, method):
        """A leaf call about a shopper: NOT_FOUND once they are forgotten; copy for one who
        turned personalization off is written without their profile."""
        user_id = request.user_id.strip()
        self.rights.check(user_id)
        if isinstance(request, copy_pb2.GenerateRequest) and not self.rights.personalized(user_id):
            request = self.anonymous(request)
        return await method.remote(request)

    @staticmethod
    def anonymous(request: copy_pb2.GenerateRequest) -> copy_pb2.GenerateRequest:
        copy = copy_pb2.GenerateRequest()
        copy.CopyFrom(request)
        copy.user_id = ""
        return copy

    # --- Health and feedback ----------------------------------------------

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
        self.rights.check(user_id)
        event = messages.feedback_event(request.event_type)
        tag = read_variant(request.variant_id.strip(), self.secret)
        if request.item_id.strip() and request.item_id.strip() != tag.item_id:
            raise NotFound("item_id", f"variant {excerpt(request.variant_id, 24)} is not about item {excerpt(request.item_id)}")
        await self.feedback.record.remote(user_id, request.variant_id.strip(), event, tag)
        return marketing_pb2.RecordFeedbackResponse()

    # --- The shopper's rights ---------------------------------------------------------------

    async def ForgetUser(self, request, grpc_context: RayServegRPCContext):
        return await self.answer("ForgetUser", grpc_context, marketing_pb2.ForgetUserResponse(), lambda: self.forget_user(request))

    async def forget_user(self, request: marketing_pb2.ForgetUserRequest) -> marketing_pb2.ForgetUserResponse:
        """The tombstone first (every replica refuses the shopper within rights.poll_s, this one
        at once, and every later build leaves them out), then what other stores hold of them:
        the bandit's variants, the contact log, campaign outboxes. Forgetting an id no build
        knows is accepted too: a later build could learn it from the event log."""
        user_id = messages.check_user_id(request.user_id, self.config.serving)
        key = self.rights.rights.forget(user_id)
        self.rights.refresh()
        await self.feedback.forget.remote(user_id)
        await asyncio.to_thread(forget_in_campaigns, self.config, user_id, key)
        return marketing_pb2.ForgetUserResponse()

    async def SetPersonalization(self, request, grpc_context: RayServegRPCContext):
        return await self.answer(
            "SetPersonalization", grpc_context, marketing_pb2.SetPersonalizationResponse(), lambda: self.set_personalization(request)
        )

    async def set_personalization(self, request: marketing_pb2.SetPersonalizationRequest) -> marketing_pb2.SetPersonalizationResponse:
        user_id = messages.check_user_id(request.user_id, self.config.serving)
        self.rights.check(user_id)
        await asyncio.to_thread(self.rights.rights.set_personalized, user_id, request.personalized)
        self.rights.refresh()
        return marketing_pb2.SetPersonalizationResponse(personalized=request.personalized)

    # --- Streams ------------------------------------------------------------------------------

    async def ScoreUsers(self, request: marketing_pb2.ScoreUsersRequest, grpc_context: RayServegRPCContext):
        async for response in self.stream("ScoreUsers", grpc_context, self.score_users(request)):
            yield response

    async def score_users(self, request: marketing_pb2.ScoreUsersRequest):
        """One response per shopper, in order; a shopper that cannot be scored gets its status in
        its response and the stream goes on. The whole request is checked before the first."""
        limits = self.config.serving
        k = messages.check_k(request.k, limits)
        channel = messages.channel_name(request.channel)
        messages.language_name(request.language)
        promotion = messages.promotion(request.promotion, date.today())
        item_filter = messages.item_filter(request.filter, limits)
        build_id, served = self.builds.pinned("")
        targets = self.score_targets(request, served, limits)
        for position, user_id in enumerate(targets):
            response = marketing_pb2.ScoreUsersResponse(user_id=user_id[: limits.max_id_chars], build_id=build_id)
            try:
                user_id = messages.check_user_id(user_id, limits, f"user_ids[{position}]")
                self.rights.check(user_id, f"user_ids[{position}]")
                if self.rights.opted_out(user_id, channel):
                    raise OptedOut(f"user_ids[{position}]", f"the shopper opted out of {channel}")
                response.personalized = self.rights.personalized(user_id)
                query = ShopperQuery(user_id=user_id, k=k, item_filter=item_filter, exclude_purchased=request.exclude_purchased)
                ranked = served.flow.recommend(query if response.personalized else unpersonalized(query))
                response.items.extend(messages.ranked_messages(ranked, served.items))
                if ranked and request.with_copy:
                    headline, note = served.flow.headline(ranked, promotion.amount_off)
                    copy_user = user_id if response.personalized else ""
                    response.copy.CopyFrom(await self.copy_for(copy_user, response.items[headline], request, note, build_id))
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - one shopper's failure is theirs, not the stream's
                code, details = status_of(error)
                del response.items[:]
                response.ClearField("copy")
                response.code, response.message = code.value[0], details
            yield response
            await asyncio.sleep(0)  # a long stream leaves room for the replica's other requests

    def score_targets(self, request: marketing_pb2.ScoreUsersRequest, served, limits) -> list[str]:
        """The shoppers a ScoreUsers call names, or every shopper of its segment (the forgotten
        left out), within the per-call bound."""
        segment = request.segment.strip()
        if request.user_ids and segment:
            raise InvalidArgument("segment", "give user_ids or a segment, not both")
        if not request.user_ids and not segment:
            raise InvalidArgument("user_ids", "name the shoppers, or give a segment")
        bound = limits.max_score_users_with_copy if request.with_copy else limits.max_score_users
        field_name = "segment" if segment else "user_ids"
        if segment:
            names = served.artifacts.users["segment"].astype(str)
            if not (names == segment).any():
                known = ", ".join(sorted(names.unique())[:20])
                raise NotFound("segment", f"no segment {excerpt(segment)} in build {served.build_id}; it has: {known}")
            targets = [u for u in served.artifacts.users.loc[names == segment, "user_id"].astype(str) if not self.rights.forgotten(u)]
        else:
            targets = [u.strip() for u in request.user_ids]
        if len(targets) > bound:
            copy_note = " with copy" if request.with_copy else ""
            raise InvalidArgument(
                field_name, f"names {len(targets)} shoppers; at most {bound} per call{copy_note} (more is a campaign: tailor campaign)"
            )
        return targets

    async def GenerateStream(self, request, grpc_context: RayServegRPCContext):
        async def chunks():
            user_id = request.user_id.strip()
            self.rights.check(user_id)
            wanted = request if self.rights.personalized(user_id) else self.anonymous(request)
            async for chunk in self.copywriter.options(stream=True).GenerateStream.remote(wanted):
                yield chunk

        async for chunk in self.stream("GenerateStream", grpc_context, chunks()):
            yield chunk

    async def stream(self, rpc: str, grpc_context: RayServegRPCContext, responses):
        """A server stream: a failure before or between responses becomes its status. The proxy
        keeps the code set here when the stream then raises (a stream that yields nothing
        otherwise never carries its status through the proxy)."""
        started, code = time.perf_counter(), grpc.StatusCode.OK
        try:
            async for response in responses:
                yield response
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as error:  # noqa: BLE001 - a failure becomes the stream's status
            code, details = status_of(error)
            grpc_context.set_code(code)
            grpc_context.set_details(details)
            raise
        finally:
            self.metrics.answered(rpc, code.name, time.perf_counter() - started)


def forget_in_campaigns(config: TailorConfig, user_id: str, key: str) -> None:
    """A forgotten shopper out of the contact log and every campaign outbox written so far."""
    settings = config.campaign
    contacts = ContactLog(config.state_path(settings.contact_log_path))
    try:
        contacts.forget(key)
    finally:
        contacts.close()
    forget_in_outboxes(config.state_path(settings.outboxes_path), user_id)
