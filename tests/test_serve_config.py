"""serving/serve_config.yaml is a config `serve run` accepts and matches the application."""

from __future__ import annotations

from pathlib import Path

import yaml
from ray.serve.schema import ServeDeploySchema

from serving.app import GRPC_SERVICER_FUNCTIONS, app_builder

CONFIG = Path(__file__).resolve().parents[1] / "serving" / "serve_config.yaml"


def test_serve_config_validates_and_matches_the_app(sample_build):
    document = yaml.safe_load(CONFIG.read_text())
    schema = ServeDeploySchema.model_validate(document) if hasattr(ServeDeploySchema, "model_validate") else ServeDeploySchema.parse_obj(document)
    assert schema.grpc_options.grpc_servicer_functions == GRPC_SERVICER_FUNCTIONS
    (application,) = schema.applications
    assert application.route_prefix, "Ray's gRPC proxy only routes to applications with a route prefix"
    # The builder named by import_path builds exactly the deployments the file configures.
    module, function = application.import_path.split(":")
    assert (module, function) == ("serving.app", "app_builder")
    built = app_builder({**application.args, "artifacts_dir": str(sample_build.path.parent.parent)})
    deployments = {built._bound_deployment.name: built._bound_deployment}
    pending = list(built._bound_deployment.init_args)
    while pending:
        arg = pending.pop()
        if hasattr(arg, "_bound_deployment"):
            deployments[arg._bound_deployment.name] = arg._bound_deployment
            pending.extend(arg._bound_deployment.init_args)
    assert set(deployments) == {d.name for d in application.deployments}
    # Six deployments on two cores: every replica must reserve a fraction of a CPU.
    assert sum(d.ray_actor_options["num_cpus"] for d in deployments.values()) <= 1.5
    # Every replica serves the one build published when the app was built.
    # Every deployment but the Embedder and the Feedback owner (its state lives outside builds) serves the build.
    assert all(str(sample_build.path) in map(str, d.init_args) for d in deployments.values() if d.name not in ("Embedder", "Feedback"))
    assert deployments["Feedback"]._deployment_config.num_replicas == 1
    assert all(d._deployment_config.max_queued_requests > 0 for d in deployments.values())


def test_every_servicer_function_imports():
    import importlib

    for path in GRPC_SERVICER_FUNCTIONS:
        module, function = path.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), function))
