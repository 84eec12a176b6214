"""Session fixtures: one build of the shipped sample, and one live Tailor on local Ray Serve."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.config import TailorConfig, load_config
from serving.local_cluster import free_ports

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "uci_online_retail_sample"
SHARED = ROOT.parent / "shared" / "datasets"



@pytest.fixture(scope="session")
def sample_config(tmp_path_factory) -> TailorConfig:
    artifacts = tmp_path_factory.mktemp("artifacts")
    grpc_port, http_port, metrics_port = free_ports(3)
    state = tmp_path_factory.mktemp("state")
    return load_config(
        data=SAMPLE,
        artifacts_dir=artifacts,
        serving={"grpc_port": grpc_port, "http_port": http_port, "metrics_port": metrics_port},
        # The model's words on, so the tests exercise that path (the shipped default is off).
        copywriting={"feedback_path": state / "feedback.sqlite", "variant_secret_path": state / "variant_secret", "model_words": True},
        # Shoppers' rights, contact log and outbox list of this session only.
        rights={"path": state / "shopper_rights.sqlite", "salt_path": state / "shopper_salt"},
        campaign={"contact_log_path": state / "contacts.sqlite", "outboxes_path": state / "outboxes.txt"},
    )


@pytest.fixture(scope="session")
def sample_build(sample_config):
    from services.build import build_artifacts

    return build_artifacts(sample_config.data, sample_config.artifacts_dir, sample_config)


@pytest.fixture(scope="session")
def sample_artifacts(sample_build, sample_config):
    from services.artifacts import Artifacts

    return Artifacts.open(sample_config.artifacts_dir, sample_config.index)


@pytest.fixture(scope="session")
def live_tailor(sample_build, sample_config):
    """The real application (Ray Serve, gRPC proxy, sentence-transformers, FAISS, vLLM), started once."""
    from clients.client import TailorClient
    from serving import local_cluster

    local_cluster.start(sample_config, quiet=True)
    client = TailorClient(f"127.0.0.1:{sample_config.serving.grpc_port}", sample_config.serving.app_name)
    client.wait_ready(30)
    try:
        yield client
    finally:
        client.close()
        local_cluster.stop()
