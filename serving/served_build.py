"""What each deployment serves from, per build. A replica follows the published build
(services.live_build) and loads one of these for each; it answers one real request on it
before the build takes traffic, so no request pays for a cold cache."""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

from threadpoolctl import threadpool_limits

from serving import messages
from services.artifacts import Artifacts
from services.config import TailorConfig
from services.copywriting.facts import Promotion
from services.copywriting.writer import CopyWriter as CopyWriterDomain
from services.insights.profiles import ProfileSummaries
from services.recommend.flow import RecommendationFlow, ShopperQuery
from tailor.v1 import common_pb2, marketing_pb2

# Profile summaries kept per build (the busiest shoppers come back often).
PROFILE_CACHE = 50_000


class RecommendBuild:
    """A build as Recommend, Retrieve and Rank read it: the flow, and the catalog as protos."""

    def __init__(self, artifacts: Artifacts, config: TailorConfig):
        self.artifacts = artifacts
        self.build_id = artifacts.build_id
        self.flow = RecommendationFlow(artifacts, config)
        self.items: dict[str, common_pb2.Item] = messages.item_messages(artifacts.items)
        self._summaries = ProfileSummaries(artifacts.users)
        self._profiles: OrderedDict[int, marketing_pb2.ProfileSummary] = OrderedDict()

    def profile(self, user_id: str) -> marketing_pb2.ProfileSummary | None:
        """The shopper's summary, or None for a shopper this build does not know."""
        row = self.artifacts.user_row.get(user_id)
        if row is None:
            return None
        summary = self._profiles.get(row)
        if summary is None:
            summary = messages.profile_message(self._summaries.of(int(row)))
            self._profiles[row] = summary
            if len(self._profiles) > PROFILE_CACHE:
                self._profiles.popitem(last=False)
        return summary

    def drop_cached_profiles(self) -> None:
        """After a shopper is forgotten: no summary of them stays in memory."""
        self._profiles.clear()

    def warm(self) -> "RecommendBuild":
        """One real request on the busiest shopper (loads every lazy table the path reads)."""
        users = self.artifacts.users
        if len(users):
            busiest = str(users["user_id"].iloc[int(users["purchase_count"].to_numpy().argmax())])
            self.flow.recommend(ShopperQuery(user_id=busiest, k=10))
            self.profile(busiest)
        self.flow.recommend(ShopperQuery(cold_start=True, k=10))
        return self


def recommend_build(config: TailorConfig) -> Callable[[Artifacts], RecommendBuild]:
    # One BLAS thread: a request's matrix products are small, and a second thread only
    # contends with the other replicas and the proxy (bench/bench_flow.py: p99 12.8 ms with
    # two threads, 7.8 ms with one).
    threadpool_limits(1)
    return lambda artifacts: RecommendBuild(artifacts, config).warm()


class CopyBuild:
    """A build as the copy writer reads it (catalog facts, profiles, names to check against)."""

    def __init__(self, artifacts: Artifacts, writer: CopyWriterDomain):
        self.artifacts = artifacts
        self.build_id = artifacts.build_id
        self.writer = writer


def copy_build(config: TailorConfig, engine, embedder) -> Callable[[Artifacts], CopyBuild]:
    def load(artifacts: Artifacts) -> CopyBuild:
        writer = CopyWriterDomain(artifacts, engine, embedder, config)
        if len(artifacts.items):
            # The facts of one item: loads the catalog, profiles and names the checks read.
            item_id = str(artifacts.items["item_id"].iloc[0])
            writer.facts("", item_id, "push", config.copywriting.default_language, Promotion(), "")
        return CopyBuild(artifacts, writer)

    return load
