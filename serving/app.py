"""The Tailor application: five deployments, composed through DeploymentHandles.

    Marketing (ingress, every RPC) ──▶ Retriever ──▶ Embedder
                                   ├─▶ Ranker
                                   ├─▶ CopyWriter (vLLM engine) ──▶ Feedback (bandit state, one replica)
                                   ├─▶ Feedback (RecordFeedback)
                                   └─▶ Embedder

`serve run serving/serve_config.yaml` uses `app_builder`; `tailor serve`, `tailor demo` and
the tests use `build_app` through serving.local_cluster.
"""

from __future__ import annotations

from typing import Any

import ray
from ray.serve import Application

from serving.deployments import CopyWriter, Embedder, Feedback, Ranker, Retriever
from serving.ingress import Marketing
from services.artifacts import Artifacts
from services.config import TailorConfig, load_config

# What the gRPC proxy registers; a service missing here answers UNIMPLEMENTED at the proxy.
GRPC_SERVICER_FUNCTIONS = [
    "tailor.v1.embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server",
    "tailor.v1.retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server",
    "tailor.v1.ranking_pb2_grpc.add_RankingServiceServicer_to_server",
    "tailor.v1.copy_pb2_grpc.add_CopyServiceServicer_to_server",
    "tailor.v1.marketing_pb2_grpc.add_MarketingServiceServicer_to_server",
    "grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server",
]


def build_app(config: TailorConfig) -> Application:
    # Every replica serves the same build: the one published now, resolved (and its format
    # checked, so an unreadable build fails here, clearly, not in every replica) once here.
    build_dir = str(Artifacts.open(config.artifacts_dir, config.index).path)
    settings = config.model_dump(mode="json")
    has_gpu = ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0

    def options(gpus: float | None = None, default_gpus: float = 0.0, **extra) -> dict:
        actor = {"num_cpus": config.serving.replica_cpus}
        share = gpus if gpus is not None else (default_gpus if has_gpu else 0.0)
        if share:
            actor["num_gpus"] = share  # Ray hides GPUs from a replica that asks for none
        return {"ray_actor_options": actor, "max_queued_requests": config.serving.max_queued_requests, **extra}

    embedder = Embedder.options(**options(config.embedding.num_gpus, 0.25)).bind(settings)
    # One replica, always: it owns the bandit's state (counts must not diverge per replica).
    feedback = Feedback.options(**options(num_replicas=1)).bind(settings)
    return Marketing.options(**options(max_ongoing_requests=config.serving.ingress_max_ongoing_requests)).bind(
        settings,
        build_dir,
        embedder,
        Retriever.options(**options()).bind(settings, build_dir, embedder),
        Ranker.options(**options()).bind(settings, build_dir),
        # Many requests in flight: the engine batches them (one at a time wastes the CPU).
        CopyWriter.options(**options(config.llm.num_gpus, 0.5, max_ongoing_requests=64)).bind(settings, build_dir, feedback),
        feedback,
    )


def app_builder(args: dict[str, Any]) -> Application:
    """For `serve run`: args are top-level configuration fields, plus `config` (a YAML path)."""
    args = dict(args or {})
    return build_app(load_config(args.pop("config", None), **args))
