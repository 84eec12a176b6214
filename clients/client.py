"""A Python client for Tailor's gRPC API (what any gRPC client does: stubs + `application` metadata)."""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import grpc

from tailor.v1 import (
    common_pb2,
    copy_pb2,
    copy_pb2_grpc,
    embedding_pb2,
    embedding_pb2_grpc,
    marketing_pb2,
    marketing_pb2_grpc,
    ranking_pb2,
    ranking_pb2_grpc,
    retrieval_pb2,
    retrieval_pb2_grpc,
)

# "push" → CHANNEL_PUSH, "zh" → LANGUAGE_ZH, read off the proto enums.
CHANNELS = {name.removeprefix("CHANNEL_").lower(): value for name, value in common_pb2.Channel.items() if value}
LANGUAGES = {name.removeprefix("LANGUAGE_").lower(): value for name, value in common_pb2.Language.items() if value}


class TailorClient:
    def __init__(self, address: str = "127.0.0.1:9000", application: str = "tailor", timeout_s: float = 120.0):
        self.address = address
        self.channel = grpc.insecure_channel(address)
        self.metadata = (("application", application),)
        self.timeout_s = timeout_s
        self.embedding = embedding_pb2_grpc.EmbeddingServiceStub(self.channel)
        self.retrieval = retrieval_pb2_grpc.RetrievalServiceStub(self.channel)
        self.ranking = ranking_pb2_grpc.RankingServiceStub(self.channel)
        self.copy = copy_pb2_grpc.CopyServiceStub(self.channel)
        self.marketing = marketing_pb2_grpc.MarketingServiceStub(self.channel)

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Raise grpc.FutureTimeoutError if nothing listens at the address in time."""
        grpc.channel_ready_future(self.channel).result(timeout=timeout_s)

    def _call(self, method, request):
        return method(request, metadata=self.metadata, timeout=self.timeout_s)

    def embed(self, texts: Sequence[str]) -> embedding_pb2.EmbedResponse:
        return self._call(self.embedding.Embed, embedding_pb2.EmbedRequest(texts=list(texts)))

    def retrieve(
        self,
        k: int,
        user_id: str | None = None,
        text: str | None = None,
        vector: Sequence[float] | None = None,
        exclude_purchased: bool = False,
        item_filter: common_pb2.ItemFilter | None = None,
        cold_start: bool = False,
        context_item_ids: Sequence[str] = (),
    ) -> retrieval_pb2.RetrieveResponse:
        request = retrieval_pb2.RetrieveRequest(
            k=k,
            exclude_purchased=exclude_purchased,
            filter=item_filter,
            cold_start=cold_start,
            context_item_ids=list(context_item_ids),
        )
        if user_id is not None:
            request.user_id = user_id
        elif text is not None:
            request.text = text
        elif vector is not None:
            request.vector.values.extend(vector)
        return self._call(self.retrieval.Retrieve, request)

    def index_info(self) -> retrieval_pb2.IndexInfoResponse:
        return self._call(self.retrieval.IndexInfo, retrieval_pb2.IndexInfoRequest())

    def rank(
        self,
        user_id: str,
        item_ids: Iterable[str] = (),
        k: int = 10,
        candidates: Iterable[retrieval_pb2.Candidate] = (),
        exclude_purchased: bool = False,
        item_filter: common_pb2.ItemFilter | None = None,
    ) -> ranking_pb2.RankResponse:
        """Rank item ids, or candidates with their sources (e.g. a retrieve() answer's)."""
        request = ranking_pb2.RankRequest(
            user_id=user_id,
            item_ids=list(item_ids),
            k=k,
            candidates=list(candidates),
            exclude_purchased=exclude_purchased,
            filter=item_filter,
        )
        return self._call(self.ranking.Rank, request)

    def generate(
        self,
        user_id: str,
        item_ids: Iterable[str],
        channel: str = "push",
        language: str = "en",
        n_variants: int = 1,
        promotion: common_pb2.Promotion | None = None,
        tone: str = "",
        reason: str = "",
        context_item_ids: Iterable[str] = (),
    ) -> copy_pb2.GenerateResponse:
        return self._call(
            self.copy.Generate,
            self.generate_request(user_id, item_ids, channel, language, n_variants, promotion, tone, reason, context_item_ids),
        )

    @staticmethod
    def generate_request(user_id, item_ids, channel="push", language="en", n_variants=1, promotion=None, tone="", reason="", context_item_ids=()):
        return copy_pb2.GenerateRequest(
            user_id=user_id,
            item_ids=list(item_ids),
            channel=CHANNELS[channel],
            language=LANGUAGES[language],
            n_variants=n_variants,
            promotion=promotion,
            tone=tone,
            reason=reason,
            context_item_ids=list(context_item_ids),
        )

    def generate_stream(self, user_id: str, item_ids: Iterable[str], channel: str = "push", language: str = "en", **fields):
        """The chunks of GenerateStream: text pieces, then the one with `final` set."""
        request = self.generate_request(user_id, item_ids, channel, language, **fields)
        return list(self.copy.GenerateStream(request, metadata=self.metadata, timeout=self.timeout_s))

    def record_feedback(self, user_id: str, variant_id: str, event: str, item_id: str = "") -> marketing_pb2.RecordFeedbackResponse:
        """event: impression, click or purchase."""
        event_type = marketing_pb2.FeedbackEvent.Value(f"FEEDBACK_EVENT_{event.upper()}")
        return self._call(
            self.marketing.RecordFeedback,
            marketing_pb2.RecordFeedbackRequest(user_id=user_id, item_id=item_id, variant_id=variant_id, event_type=event_type),
        )

    def recommend(
        self,
        user_id: str,
        k: int = 5,
        channel: str = "push",
        language: str = "en",
        promotion: common_pb2.Promotion | None = None,
        skip_copy: bool = False,
        tone: str = "",
        exclude_purchased: bool = False,
        cold_start: bool = False,
        context_item_ids: Sequence[str] = (),
        item_filter: common_pb2.ItemFilter | None = None,
    ) -> marketing_pb2.RecommendResponse:
        return self._call(
            self.marketing.Recommend,
            marketing_pb2.RecommendRequest(
                user_id=user_id,
                k=k,
                channel=CHANNELS[channel],
                language=LANGUAGES[language],
                promotion=promotion,
                skip_copy=skip_copy,
                tone=tone,
                exclude_purchased=exclude_purchased,
                cold_start=cold_start,
                context_item_ids=list(context_item_ids),
                filter=item_filter,
            ),
        )

    def describe_user(self, user_id: str) -> marketing_pb2.DescribeUserResponse:
        """Who the shopper is: profile, segment, tags, propensity and its reasons, basket rules."""
        return self._call(self.marketing.DescribeUser, marketing_pb2.DescribeUserRequest(user_id=user_id))

    def score_users(
        self,
        user_ids: Sequence[str] = (),
        segment: str = "",
        k: int = 5,
        channel: str = "push",
        language: str = "en",
        promotion: common_pb2.Promotion | None = None,
        with_copy: bool = False,
        exclude_purchased: bool = False,
    ) -> Iterator[marketing_pb2.ScoreUsersResponse]:
        """One response per shopper as the stream delivers them (check each one's `code`)."""
        request = marketing_pb2.ScoreUsersRequest(
            user_ids=list(user_ids),
            segment=segment,
            k=k,
            channel=CHANNELS[channel],
            language=LANGUAGES[language],
            promotion=promotion,
            with_copy=with_copy,
            exclude_purchased=exclude_purchased,
        )
        return self.marketing.ScoreUsers(request, metadata=self.metadata, timeout=self.timeout_s)

    def forget_user(self, user_id: str) -> marketing_pb2.ForgetUserResponse:
        return self._call(self.marketing.ForgetUser, marketing_pb2.ForgetUserRequest(user_id=user_id))

    def set_personalization(self, user_id: str, personalized: bool) -> marketing_pb2.SetPersonalizationResponse:
        return self._call(
            self.marketing.SetPersonalization, marketing_pb2.SetPersonalizationRequest(user_id=user_id, personalized=personalized)
        )

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "TailorClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
