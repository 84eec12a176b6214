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

from pathlib import Path
from typing import Any

import ray
import yaml
from ray.serve import Application

from serving.deployments import CopyWriter, Embedder, Feedback, Ranker, Retriever
from serving.ingress import Marketing
from services.artifacts import Artifacts
from services.config import TailorConfig, load_config

SERVE_CONFIG = Path(__file__).with_name("serve_config.yaml")
# What the gRPC proxy registers; a service missing here answers UNIMPLEMENTED at the proxy.
GRPC_SERVICER_FUNCTIONS = [
    "tailor.v1.embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server",
    "tailor.v1.retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server",
    "tailor.v1.ranking_pb2_grpc.add_RankingServiceServicer_to_server",
    "tailor.v1.copy_pb2_grpc.add_CopyServiceServicer_to_server",
    "tailor.v1.marketing_pb2_grpc.add_MarketingServiceServicer_to_server",
    "grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server",
]


def deployment_settings(path: Path = SERVE_CONFIG) -> dict[str, dict]:
    """Each deployment's replicas, autoscaling and queue limits, from serving/serve_config.yaml:
    the one place they are set, for `serve run`, `tailor serve` and KubeRay alike."""
    document = yaml.safe_load(path.read_text())
    application = next(a for a in document["applications"] if a["name"] == "tailor")
    return {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in application.get("deployments", [])}


def build_app(config: TailorConfig) -> Application:
    # Fail here, clearly, if nothing is published or the build is of a format this code cannot
    # read. Each replica then follows the published build (services.live_build).
    Artifacts.open(config.artifacts_dir, config.index)
    settings = config.model_dump(mode="json")
    per_deployment = deployment_settings()
    has_gpu = ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0

    def options(name: str, gpus: float | None = None, default_gpus: float = 0.0) -> dict:
        chosen = dict(per_deployment.get(name, {}))
        actor = {"num_cpus": config.serving.replica_cpus, **chosen.pop("ray_actor_options", {})}
        # A GPU share set in the configuration is asked for whatever this machine has (a
        # KubeRay GPU group may start with no node); unset, it follows what Ray sees here.
        share = gpus if gpus is not None else (default_gpus if has_gpu else 0.0)
        if share:
            actor["num_gpus"] = share  # Ray hides GPUs from a replica that asks for none
        return {"ray_actor_options": actor, "max_queued_requests": config.serving.max_queued_requests, **chosen}

    embedder = Embedder.options(**options("Embedder", config.embedding.num_gpus, 0.25)).bind(settings)
    feedback = Feedback.options(**options("Feedback")).bind(settings)
    return Marketing.options(**options("Marketing")).bind(
        settings,
        embedder,
        Retriever.options(**options("Retriever")).bind(settings, embedder),
        Ranker.options(**options("Ranker")).bind(settings),
        CopyWriter.options(**options("CopyWriter", config.llm.num_gpus, 0.5)).bind(settings, feedback),
        feedback,
    )


def app_builder(args: dict[str, Any]) -> Application:
    """For `serve run`: args are top-level configuration fields, plus `config` (a YAML path)."""
    args = dict(args or {})
    return build_app(load_config(args.pop("config", None), **args))
