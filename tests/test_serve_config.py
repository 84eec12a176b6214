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
    # Every deployment at its autoscaling maximum still fits two cores' worth of reservations.
    at_most = {
        name: (d._deployment_config.autoscaling_config.max_replicas if d._deployment_config.autoscaling_config else d._deployment_config.num_replicas)
        for name, d in deployments.items()
    }
    assert sum(d.ray_actor_options["num_cpus"] * at_most[name] for name, d in deployments.items()) <= 2.0
    # The file's settings are what `tailor serve` starts: one source of truth.
    for configured in application.deployments:
        config = deployments[configured.name]._deployment_config
        if "max_ongoing_requests" in configured.model_fields_set:
            assert config.max_ongoing_requests == configured.max_ongoing_requests
        if "autoscaling_config" in configured.model_fields_set:
            assert config.autoscaling_config is not None, configured.name
            assert config.autoscaling_config.max_replicas == configured.autoscaling_config["max_replicas"]
    # Replicas follow the published build themselves (services.live_build): none is bound to one folder.
    assert all(str(sample_build.path) not in map(str, d.init_args) for d in deployments.values())
    assert deployments["Feedback"]._deployment_config.num_replicas == 1
    assert all(d._deployment_config.max_queued_requests > 0 for d in deployments.values())
    assert deployments["Marketing"]._deployment_config.autoscaling_config.min_replicas >= 1


def test_every_servicer_function_imports():
    import importlib

    for path in GRPC_SERVICER_FUNCTIONS:
        module, function = path.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), function))
