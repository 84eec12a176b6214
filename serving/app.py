"""The Tailor application: five deployments, composed through DeploymentHandles.

    Marketing (ingress, every RPC) ──▶ Retriever ──▶ Embedder
                                   ├─▶ Ranker
                                   ├─▶ CopyWriter (vLLM engine)
                                   └─▶ Embedder

`serve run serving/serve_config.yaml` uses `app_builder`; `tailor serve`, `tailor demo` and
the tests use `build_app` through serving.local_cluster.
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from serving.deployments import CopyWriter, Embedder, Ranker, Retriever
from serving.ingress import Marketing
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
    settings = config.model_dump(mode="json")
    cpus = {"ray_actor_options": {"num_cpus": config.serving.replica_cpus}}
    embedder = Embedder.options(**cpus).bind(settings)
    return Marketing.options(**cpus).bind(
        settings,
        embedder,
        Retriever.options(**cpus).bind(settings, embedder),
        Ranker.options(**cpus).bind(settings),
        CopyWriter.options(**cpus).bind(settings),
    )


def app_builder(args: dict[str, Any]) -> Application:
    """For `serve run`: args are top-level configuration fields, plus `config` (a YAML path)."""
    args = dict(args or {})
    return build_app(load_config(args.pop("config", None), **args))
