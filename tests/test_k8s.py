"""k8s/: every overlay renders with kustomize, validates as the API server would, and says what production needs.

No Kubernetes cluster runs here: the RayService is checked against KubeRay's CRD schema
(../shared/k8s-schemas) with jsonschema, every core kind against Kubernetes' own schemas
(kubernetes-validate bundles them), both rejecting unknown fields as `kubectl apply --validate=strict` does.
"""

from __future__ import annotations

import copy
import functools
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import jsonschema
import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from clients.kube import kube_app, render_serve_config, write_overlays

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = Path(__file__).resolve().parents[2] / "shared" / "k8s-schemas"
OVERLAYS = ("cpu-dev", "gpu-prod")
# A release kubernetes-validate bundles schemas for (it holds 1.25 to 1.37).
KUBERNETES_VERSION = "1.33"
VOLUME_MOUNT = PurePosixPath("/mnt/tailor")
CAMPAIGN_JOB = ROOT / "k8s" / "jobs" / "campaign.yaml"
# What KubeRay's RayService controller knows (RayServiceUpgradeType in ray-operator/apis/ray/v1/rayservice_types.go);
# the CRD itself types the field as a free string.
UPGRADE_TYPES = {"NewCluster", "NewClusterWithIncrementalUpgrade", "None"}


@dataclass(frozen=True)
class Rendered:
    overlay: str
    documents: list[dict]

    def all(self, kind: str) -> list[dict]:
        return [document for document in self.documents if document["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict:
        found = [d for d in self.all(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.overlay}: expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    @property
    def rayservice(self) -> dict:
        return self.one("RayService")

    @property
    def serve_config(self) -> dict:
        return yaml.safe_load(self.rayservice["spec"]["serveConfigV2"])

    @property
    def application(self) -> dict:
        (application,) = self.serve_config["applications"]
        return application

    def deployment_settings(self, name: str) -> dict:
        (deployment,) = [d for d in self.application["deployments"] if d["name"] == name]
        return deployment

    def worker_group(self, name: str) -> dict:
        cluster = self.rayservice["spec"]["rayClusterConfig"]
        (group,) = [g for g in cluster["workerGroupSpecs"] if g["groupName"] == name]
        return group

    def ray_pod_templates(self) -> dict[str, dict]:
        cluster = self.rayservice["spec"]["rayClusterConfig"]
        return {"head": cluster["headGroupSpec"]["template"], **{g["groupName"]: g["template"] for g in cluster["workerGroupSpecs"]}}


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail("kubectl is not installed: `make test` installs it (Debian's kubectl package), or run `apt-get install kubectl`")
    return path


def kustomize(path: Path) -> list[dict]:
    result = subprocess.run([kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
    return [document for document in yaml.safe_load_all(result.stdout) if document]


@functools.cache
def rendered(overlay: str) -> Rendered:
    return Rendered(overlay, kustomize(ROOT / "k8s" / "overlays" / overlay))


@pytest.fixture(params=OVERLAYS)
def overlay(request) -> Rendered:
    return rendered(request.param)


def closed(schema: dict) -> dict:
    """`schema` with unknown fields refused wherever it lists the known ones (an API server with strict
    field validation refuses them; the CRD's schema alone would let a misspelt field through, pruned)."""
    schema = dict(schema)
    if "properties" in schema:
        schema["properties"] = {name: closed(child) for name, child in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
    if isinstance(schema.get("additionalProperties"), dict):
        schema["additionalProperties"] = closed(schema["additionalProperties"])
    if isinstance(schema.get("items"), dict):
        schema["items"] = closed(schema["items"])
    for combinator in ("allOf", "anyOf", "oneOf"):
        if combinator in schema:
            schema[combinator] = [closed(child) for child in schema[combinator]]
    return schema


# KubeRay's kinds and the file of ../shared/k8s-schemas holding each one's CRD.
CRDS = {"RayService": "ray.io_rayservices.yaml", "RayJob": "ray.io_rayjobs.yaml"}


@functools.cache
def crd_validator(kind: str) -> jsonschema.Draft7Validator:
    crd = yaml.safe_load((SCHEMAS / CRDS[kind]).read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return jsonschema.Draft7Validator(closed(version["schema"]["openAPIV3Schema"]))


def crd_errors(document: dict) -> list[str]:
    validator = crd_validator(document["kind"])
    return [f"{'.'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(document)]


def validate(document: dict) -> None:
    """Raise if the API server (strict field validation) would refuse `document`."""
    if document["kind"] in CRDS:
        errors = crd_errors(document)
        assert not errors, f"{document['kind']} refused by KubeRay's CRD schema:\n" + "\n".join(errors)
    else:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def under(path: str | Path, folder: PurePosixPath) -> bool:
    return PurePosixPath(str(path)).is_relative_to(folder)


def campaign_job() -> dict:
    (job,) = yaml.safe_load_all(CAMPAIGN_JOB.read_text())
    return job


def campaign_ray_pod_templates(job: dict) -> dict[str, dict]:
    cluster = job["spec"]["rayClusterSpec"]
    return {"head": cluster["headGroupSpec"]["template"], **{g["groupName"]: g["template"] for g in cluster["workerGroupSpecs"]}}


def campaign_options(job: dict) -> dict:
    """The entrypoint's options as `tailor campaign` parses them: an unknown option, a missing
    required one or a value of the wrong type is refused here as it would be on the cluster."""
    import typer.main

    from clients.cli import app

    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["tailor", "campaign"], argv
    command = typer.main.get_command(app).commands["campaign"]
    with command.make_context("tailor campaign", argv[2:]) as context:
        return context.params


# Validation: the manifests are ones a cluster accepts, and a broken one is refused.


def test_every_document_of_every_overlay_validates(overlay):
    kinds = {document["kind"] for document in overlay.documents}
    assert {"RayService", "Service", "Deployment", "ConfigMap", "PersistentVolumeClaim"} <= kinds
    for document in overlay.documents:
        try:
            validate(document)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(map(str, error.path))
            pytest.fail(f"{overlay.overlay}: {document['kind']} {document['metadata']['name']} refused at {path}: {error.message}")


def test_the_build_job_validates():
    (job,) = yaml.safe_load_all((ROOT / "k8s" / "jobs" / "build-artifacts.yaml").read_text())
    kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)


def test_the_campaign_job_validates_as_a_rayjob_with_core_pod_templates():
    job = campaign_job()
    validate(job)
    templates = {**campaign_ray_pod_templates(job), "submitter": job["spec"]["submitterPodTemplate"]}
    for name, template in templates.items():
        pod_template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"campaign-{name}"}, "template": template}
        kubernetes_validate.validate(pod_template, KUBERNETES_VERSION, strict=True)
    misspelt = copy.deepcopy(job)
    misspelt["spec"]["shutdownAfterJobFinish"] = misspelt["spec"].pop("shutdownAfterJobFinishes")
    assert any("shutdownAfterJobFinish" in error for error in crd_errors(misspelt))
    wrong_type = copy.deepcopy(job)
    wrong_type["spec"]["ttlSecondsAfterFinished"] = "300"
    assert any("ttlSecondsAfterFinished" in error for error in crd_errors(wrong_type))


def test_a_broken_rayservice_is_refused():
    rayservice = rendered("gpu-prod").rayservice
    assert crd_errors(rayservice) == []
    wrong_type = copy.deepcopy(rayservice)
    wrong_type["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] = "yes"
    assert any("enableInTreeAutoscaling" in error and "boolean" in error for error in crd_errors(wrong_type))
    misspelt = copy.deepcopy(rayservice)
    misspelt["spec"]["rayClusterConfig"]["workerGroupSpec"] = misspelt["spec"]["rayClusterConfig"].pop("workerGroupSpecs")
    assert any("workerGroupSpec" in error for error in crd_errors(misspelt))


def test_a_broken_core_manifest_is_refused():
    service = copy.deepcopy(rendered("gpu-prod").one("Service", "tailor-grpc"))
    service["spec"]["ports"][0]["port"] = "9000"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, KUBERNETES_VERSION, strict=True)
    deployment = copy.deepcopy(rendered("gpu-prod").one("Deployment", "tailor-edge"))
    deployment["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


# serveConfigV2: one source of truth, carried through, and a stale copy caught.


def test_serve_config_v2_is_what_render_gives_now(overlay):
    assert overlay.rayservice["spec"]["serveConfigV2"] == render_serve_config(overlay.overlay, ROOT), (
        f"k8s/overlays/{overlay.overlay}/rayservice-serve-config.yaml is stale: run `tailor k8s render`"
    )


def test_render_check_passes_on_the_committed_files():
    result = CliRunner().invoke(kube_app, ["render", "--check", "--root", str(ROOT)])
    assert result.exit_code == 0, result.output


def test_serve_config_v2_is_a_serve_config_ray_accepts(overlay):
    from ray.serve.schema import ServeDeploySchema

    from serving.app import GRPC_SERVICER_FUNCTIONS

    schema = ServeDeploySchema.model_validate(overlay.serve_config)
    assert schema.grpc_options.grpc_servicer_functions == GRPC_SERVICER_FUNCTIONS
    assert schema.http_options.host == "0.0.0.0"
    assert schema.proxy_location.value == "EveryNode"


def test_every_deployment_and_setting_of_serve_config_reaches_serve_config_v2(overlay):
    source = yaml.safe_load((ROOT / "serving" / "serve_config.yaml").read_text())
    (application,) = source["applications"]
    overrides = [yaml.safe_load(path.read_text()) or {} for path in (ROOT / "k8s" / "base" / "serve-overrides.yaml", ROOT / "k8s" / "overlays" / overlay.overlay / "serve-overrides.yaml")]
    assert [d["name"] for d in overlay.application["deployments"]] == [d["name"] for d in application["deployments"]]
    for deployment in application["deployments"]:
        overridden = set().union(*(leaves(o.get("deployments", {}).get(deployment["name"], {})) for o in overrides))
        for path, value in leaves(deployment).items():
            if path not in overridden:
                assert leaf(overlay.deployment_settings(deployment["name"]), path) == value, (overlay.overlay, deployment["name"], path)
    for key in ("route_prefix", "import_path", "name"):
        assert overlay.application[key] == application[key]


def leaves(settings: dict, prefix: tuple = ()) -> dict[tuple, object]:
    if not isinstance(settings, dict):
        return {prefix: settings}
    return {path: value for key, child in settings.items() for path, value in leaves(child, (*prefix, key)).items()}


def leaf(settings: dict, path: tuple):
    for key in path:
        settings = settings[key]
    return settings


SERVE_CONFIG_WITH_AUTOSCALING = """
proxy_location: HeadOnly
http_options: {host: 127.0.0.1, port: 8000}
grpc_options: {port: 9000, grpc_servicer_functions: []}
applications:
  - name: tailor
    route_prefix: /tailor
    import_path: serving.app:app_builder
    args: {artifacts_dir: artifacts}
    deployments:
      - name: Marketing
        autoscaling_config: {min_replicas: 2, max_replicas: 4, target_ongoing_requests: 5, upscale_delay_s: 10, downscale_delay_s: 300}
      - name: Feedback
        num_replicas: 1
"""


def project_copy(tmp_path: Path, serve_config: str | None = None) -> Path:
    """A project root holding serving/serve_config.yaml and k8s/'s serve-overrides files, to render in."""
    (tmp_path / "serving").mkdir()
    (tmp_path / "serving" / "serve_config.yaml").write_text(serve_config or (ROOT / "serving" / "serve_config.yaml").read_text())
    for source in (ROOT / "k8s").glob("**/serve-overrides.yaml"):
        target = tmp_path / source.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source.read_text())
    return tmp_path


def test_an_overlay_overrides_one_autoscaling_setting_and_keeps_the_others(tmp_path):
    root = project_copy(tmp_path, SERVE_CONFIG_WITH_AUTOSCALING)
    (root / "k8s" / "overlays" / "gpu-prod" / "serve-overrides.yaml").write_text(
        "deployments:\n  Marketing:\n    autoscaling_config: {max_replicas: 8}\n"
    )
    (marketing, feedback) = yaml.safe_load(render_serve_config("gpu-prod", root))["applications"][0]["deployments"]
    assert marketing["autoscaling_config"] == {
        "min_replicas": 2, "max_replicas": 8, "target_ongoing_requests": 5, "upscale_delay_s": 10, "downscale_delay_s": 300,
    }
    assert feedback == {"name": "Feedback", "num_replicas": 1}


def test_an_override_of_a_deployment_that_does_not_exist_is_refused(tmp_path):
    root = project_copy(tmp_path)
    (root / "k8s" / "overlays" / "gpu-prod" / "serve-overrides.yaml").write_text("deployments:\n  CopyWritter: {num_replicas: 2}\n")
    with pytest.raises(ValueError, match="CopyWritter"):
        render_serve_config("gpu-prod", root)


def test_render_check_names_a_stale_file_and_render_fixes_it(tmp_path):
    root = project_copy(tmp_path)
    runner = CliRunner()
    written = runner.invoke(kube_app, ["render", "--root", str(root)])
    assert written.exit_code == 0 and all(f"{overlay}/rayservice-serve-config.yaml" in written.output for overlay in OVERLAYS)
    assert runner.invoke(kube_app, ["render", "--check", "--root", str(root)]).exit_code == 0
    config = root / "serving" / "serve_config.yaml"
    config.write_text(config.read_text().replace("- name: Ranker", "- name: Ranker\n        num_replicas: 3"))
    stale = runner.invoke(kube_app, ["render", "--check", "--root", str(root)])
    assert stale.exit_code == 1
    assert "cpu-dev/rayservice-serve-config.yaml" in stale.output and "tailor k8s render" in stale.output
    assert write_overlays(root) and runner.invoke(kube_app, ["render", "--check", "--root", str(root)]).exit_code == 0


def test_the_generated_patch_says_it_is_generated(overlay):
    text = (ROOT / "k8s" / "overlays" / overlay.overlay / "rayservice-serve-config.yaml").read_text()
    assert text.startswith("# generated by `tailor k8s render`") and "do not edit" in text.splitlines()[1]


# GPUs: asked for by configuration, not by what Ray happens to see.


GPU_SHARE = {"cpu-dev": 0, "gpu-prod": 1}


@pytest.fixture
def actor_options(overlay, sample_build) -> dict[str, dict]:
    """Each deployment's ray_actor_options on the cluster: the application built from serveConfigV2's
    args, then the options serveConfigV2 sets, which replace the code's (Ray Serve's rule)."""
    import ray

    from serving.app import app_builder

    # Nothing here knows about GPUs: Ray is not running, or runs on this machine, which has none.
    assert not ray.is_initialized() or not ray.cluster_resources().get("GPU")
    app = app_builder({**overlay.application["args"], "artifacts_dir": str(sample_build.path.parent.parent)})
    return {
        name: overlay.deployment_settings(name).get("ray_actor_options", deployment.ray_actor_options)
        for name, deployment in built_deployments(app).items()
    }


def built_deployments(app) -> dict:
    deployments = {app._bound_deployment.name: app._bound_deployment}
    pending = list(app._bound_deployment.init_args)
    while pending:
        arg = pending.pop()
        if hasattr(arg, "_bound_deployment"):
            deployments[arg._bound_deployment.name] = arg._bound_deployment
            pending.extend(arg._bound_deployment.init_args)
    return deployments


def test_the_copy_writer_asks_for_the_overlays_gpu_share_with_no_gpu_in_sight(overlay, actor_options):
    assert actor_options["CopyWriter"].get("num_gpus", 0) == GPU_SHARE[overlay.overlay]
    assert all(not options.get("num_gpus") for name, options in actor_options.items() if name != "CopyWriter")


def test_the_worker_groups_hold_every_deployment_at_its_most_replicas(overlay, actor_options):
    def most_replicas(name: str) -> int:
        settings = overlay.deployment_settings(name)
        return settings["autoscaling_config"]["max_replicas"] if "autoscaling_config" in settings else settings.get("num_replicas", 1)

    def ray_resources(group: dict) -> tuple[float, float]:
        """CPUs and GPUs Ray counts on one pod of the group (KubeRay takes them from the limits)."""
        (container,) = group["template"]["spec"]["containers"]
        limits = container["resources"]["limits"]
        cpus = float(group.get("rayStartParams", {}).get("num-cpus", limits["cpu"]))
        return cpus, float(limits.get("nvidia.com/gpu", 0))

    for gpu_replicas, group in ((False, overlay.worker_group("cpu")), (True, overlay.worker_group("gpu"))):
        placed = {name: options for name, options in actor_options.items() if bool(options.get("num_gpus")) == gpu_replicas}
        cpus, gpus = ray_resources(group)
        for name, options in placed.items():
            assert options["num_cpus"] <= cpus and options.get("num_gpus", 0) <= gpus, f"{name} fits no {group['groupName']} pod"
        assert sum(most_replicas(n) * o["num_cpus"] for n, o in placed.items()) <= group["maxReplicas"] * cpus, group["groupName"]
        assert sum(most_replicas(n) * o.get("num_gpus", 0) for n, o in placed.items()) <= group["maxReplicas"] * gpus, group["groupName"]


def test_gpu_prod_starts_its_gpu_group_at_zero_pods_each_with_one_gpu():
    prod = rendered("gpu-prod")
    gpu = prod.worker_group("gpu")
    assert gpu["minReplicas"] == 0 and gpu["replicas"] == 0 and gpu["maxReplicas"] >= 1
    (container,) = gpu["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["image"].endswith("-gpu")
    assert all(c["image"].endswith("-cpu") for g in ("head", "cpu") for c in prod.ray_pod_templates()[g]["spec"]["containers"])
    # One CopyWriter replica (llm.num_gpus 1, serving.replica_cpus CPUs) fits a GPU pod as Ray counts it,
    # and every replica it may scale to has a GPU pod to go to.
    args = prod.application["args"]
    assert args["llm"]["num_gpus"] <= int(container["resources"]["limits"]["nvidia.com/gpu"])
    assert args["serving"]["replica_cpus"] <= float(gpu["rayStartParams"]["num-cpus"])
    max_replicas = prod.deployment_settings("CopyWriter")["autoscaling_config"]["max_replicas"]
    assert max_replicas * args["llm"]["num_gpus"] <= gpu["maxReplicas"] * int(container["resources"]["limits"]["nvidia.com/gpu"])


def test_cpu_dev_never_starts_a_gpu_pod():
    dev = rendered("cpu-dev")
    assert dev.worker_group("gpu")["maxReplicas"] == 0
    assert dev.application["args"]["llm"]["num_gpus"] == 0


# The cluster: autoscaling, upgrades, the volume, gRPC, the edge.


def test_the_ray_autoscaler_scales_pods_and_serve_scales_replicas(overlay):
    spec = overlay.rayservice["spec"]
    assert spec["upgradeStrategy"]["type"] in UPGRADE_TYPES
    assert spec["upgradeStrategy"]["type"] == "NewCluster"
    cluster = spec["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True and cluster["autoscalerOptions"]
    assert not overlay.all("HorizontalPodAutoscaler")
    for group in cluster["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"] or group["maxReplicas"] == group["replicas"] == 0


def test_gpu_prod_lets_every_deployment_but_feedback_scale_out():
    prod = rendered("gpu-prod")
    for deployment in prod.application["deployments"]:
        if deployment["name"] == "Feedback":
            assert deployment.get("num_replicas") == 1  # the bandit's state has one owner
        else:
            assert deployment["autoscaling_config"]["max_replicas"] > 1, deployment["name"]


def test_every_ray_pod_mounts_the_volume_the_args_point_at(overlay):
    claim = overlay.one("PersistentVolumeClaim")["metadata"]["name"]
    for group, template in overlay.ray_pod_templates().items():
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        (container,) = template["spec"]["containers"]
        mounts = [m for m in container["volumeMounts"] if volumes[m["name"]].get("persistentVolumeClaim", {}).get("claimName") == claim]
        assert [PurePosixPath(m["mountPath"]) for m in mounts] == [VOLUME_MOUNT], group
        assert {"name": "TAILOR_HOME", "value": str(VOLUME_MOUNT)} in container["env"], group
    args = overlay.application["args"]
    for path in (args["artifacts_dir"], args["llm"]["model"], args["copywriting"]["feedback_path"], args["copywriting"]["variant_secret_path"]):
        assert under(path, VOLUME_MOUNT), path


def test_the_build_job_writes_where_the_overlays_read(overlay):
    (job,) = yaml.safe_load_all((ROOT / "k8s" / "jobs" / "build-artifacts.yaml").read_text())
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    args = overlay.application["args"]
    assert env["TAILOR_ARTIFACTS_DIR"] == args["artifacts_dir"] and env["TAILOR_LLM__MODEL"] == args["llm"]["model"]
    (volume,) = pod["volumes"]
    assert volume["persistentVolumeClaim"]["claimName"] == overlay.one("PersistentVolumeClaim")["metadata"]["name"]
    assert [PurePosixPath(m["mountPath"]) for m in container["volumeMounts"]] == [VOLUME_MOUNT]

def test_the_campaign_entrypoint_is_a_campaign_command_line_tailor_accepts():
    from services.campaigns.plan import CHANNELS, LANGUAGES, parse_promotion

    job = campaign_job()
    assert "\n" not in job["spec"]["entrypoint"]  # KubeRay puts it into a shell command line
    options = campaign_options(job)
    assert options["address"] == "auto"  # the driver runs on the RayJob's own head
    assert options["everyone"] and options["copy"] is False and not options["dry_run"]
    assert options["channel"] in CHANNELS and options["language"] in LANGUAGES
    parse_promotion(options["promo"], "2000-01-01")  # an edited --promo must still parse


def test_a_broken_campaign_entrypoint_is_refused():
    job = campaign_job()
    job["spec"]["entrypoint"] += " --ray-adress auto"
    with pytest.raises(Exception, match="No such option: --ray-adress"):  # typer's own click's UsageError
        campaign_options(job)


def test_the_campaign_job_reads_and_writes_where_the_overlays_do(overlay):
    from services.config import CampaignConfig, CopyConfig, RightsConfig

    job = campaign_job()
    claim = overlay.one("PersistentVolumeClaim")["metadata"]["name"]
    args = overlay.application["args"]
    envs = []
    for group, template in campaign_ray_pod_templates(job).items():
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        (container,) = template["spec"]["containers"]
        assert [(volumes[m["name"]]["persistentVolumeClaim"]["claimName"], PurePosixPath(m["mountPath"])) for m in container["volumeMounts"]] == [
            (claim, VOLUME_MOUNT)
        ], group
        envs.append({e["name"]: e["value"] for e in container["env"]})
    env = envs[0]
    assert all(other == env for other in envs), "the head and the workers see one configuration"
    assert PurePosixPath(env["TAILOR_HOME"]) == VOLUME_MOUNT
    assert env["TAILOR_ARTIFACTS_DIR"] == args["artifacts_dir"] and env["TAILOR_LLM__MODEL"] == args["llm"]["model"]
    options = campaign_options(job)
    assert str(options["artifacts"]) == args["artifacts_dir"]
    assert PurePosixPath(str(options["out"])).parent == VOLUME_MOUNT / "outbox"
    # The state the campaign keeps (relative paths land under TAILOR_HOME) is on the volume, and the
    # files it shares with serving's replicas are the very ones the overlays' args name.
    home = PurePosixPath(env["TAILOR_HOME"])
    for path in (CampaignConfig().contact_log_path, CampaignConfig().outboxes_path, RightsConfig().path, RightsConfig().salt_path):
        assert not path.is_absolute() and under(home / path, VOLUME_MOUNT), path
    for name in ("variant_secret_path", "feedback_path"):
        assert str(home / getattr(CopyConfig(), name)) == args["copywriting"][name], name


def test_a_campaign_runs_on_a_cluster_of_its_own_never_the_serving_one(overlay):
    job = campaign_job()
    spec = job["spec"]
    assert "clusterSelector" not in spec and spec.get("submissionMode", "K8sJobMode") == "K8sJobMode"
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0
    assert spec["rayClusterSpec"]["rayVersion"] == overlay.rayservice["spec"]["rayClusterConfig"]["rayVersion"]
    selector = overlay.one("Service", "tailor-grpc")["spec"]["selector"]
    for group, template in {**campaign_ray_pod_templates(job), "submitter": spec["submitterPodTemplate"]}.items():
        labels = template["metadata"]["labels"]
        assert not selector.items() <= {**labels, "ray.io/serve": "true"}.items(), f"{group} would receive gRPC traffic"
        (container,) = template["spec"]["containers"]
        resources = container["resources"]
        assert resources["limits"]["cpu"] and resources["limits"]["memory"], group
        if group != "submitter":
            assert resources["requests"] == resources["limits"], group  # Ray counts the limits: reserve them


def test_the_campaign_actors_fit_the_campaign_workers(monkeypatch):
    from services.config import TailorConfig

    job = campaign_job()
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # the actors go to the workers
    (head,) = cluster["headGroupSpec"]["template"]["spec"]["containers"]
    for variable in head["env"]:
        if variable["name"] != "TAILOR_HOME":  # read once, at import (services/config.py)
            monkeypatch.setenv(variable["name"], variable["value"])
    # The driver reads the campaign's settings from the head's environment.
    settings = TailorConfig().campaign
    assert settings.actors == int(next(v["value"] for v in head["env"] if v["name"] == "TAILOR_CAMPAIGN__ACTORS"))

    def cpus(group: dict) -> float:
        (container,) = group["template"]["spec"]["containers"]
        return float(group.get("rayStartParams", {}).get("num-cpus", container["resources"]["limits"]["cpu"]))

    workers = cluster["workerGroupSpecs"]
    assert all(g["minReplicas"] == g["replicas"] == g["maxReplicas"] for g in workers)  # no autoscaler: the size is fixed
    assert settings.actor_cpus <= max(cpus(g) for g in workers)
    assert settings.actors * settings.actor_cpus <= sum(g["replicas"] * cpus(g) for g in workers)


def test_grpc_is_served_to_the_ray_proxies(overlay):
    assert overlay.serve_config["grpc_options"]["port"] == 9000
    service = overlay.one("Service", "tailor-grpc")
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(9000, 9000)]
    selector = service["spec"]["selector"]
    assert selector.pop("ray.io/serve") == "true"  # set by KubeRay on pods whose proxy is ready
    for group, template in overlay.ray_pod_templates().items():
        assert selector.items() <= template["metadata"]["labels"].items(), group
        (container,) = template["spec"]["containers"]
        assert 9000 in {p["containerPort"] for p in container["ports"]}, group
    assert overlay.rayservice["spec"]["excludeHeadPodFromServeSvc"] is True


def envoy_config(overlay: Rendered) -> tuple[dict, dict]:
    """The edge's Deployment and the envoy.yaml of the ConfigMap it mounts."""
    edge = overlay.one("Deployment", "tailor-edge")
    volumes = {v["name"]: v for v in edge["spec"]["template"]["spec"]["volumes"]}
    config_map = overlay.one("ConfigMap", volumes["config"]["configMap"]["name"])
    return edge, yaml.safe_load(config_map["data"]["envoy.yaml"])


def test_the_edge_terminates_tls_from_a_secret_and_checks_a_key(overlay):
    edge, envoy = envoy_config(overlay)
    pod = edge["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][:2] == ["-c", "/etc/envoy/config/envoy.yaml"]
    secret_mounts = {
        volume["secret"]["secretName"]: PurePosixPath(mount["mountPath"])
        for volume in pod["volumes"] if "secret" in volume
        for mount in container["volumeMounts"] if mount["name"] == volume["name"]
    }
    assert set(secret_mounts) == {"tailor-edge-tls", "tailor-edge-auth"}
    assert not overlay.all("Secret"), "secrets are created by the operator, never committed"

    (listener,) = envoy["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    tls = chain["transport_socket"]["typed_config"]
    assert tls["@type"].endswith("tls.v3.DownstreamTlsContext")
    (certificate,) = tls["common_tls_context"]["tls_certificates"]
    assert PurePosixPath(certificate["certificate_chain"]["filename"]).parent == secret_mounts["tailor-edge-tls"]
    assert PurePosixPath(certificate["private_key"]["filename"]).parent == secret_mounts["tailor-edge-tls"]
    assert listener["address"]["socket_address"]["port_value"] == container["ports"][0]["containerPort"]

    (manager,) = chain["filters"]
    filters = manager["typed_config"]["http_filters"]
    # The key is checked before anything routes: basic_auth first, the router last.
    assert filters[0]["typed_config"]["@type"].endswith("basic_auth.v3.BasicAuth")
    assert PurePosixPath(filters[0]["typed_config"]["users"]["filename"]).parent == secret_mounts["tailor-edge-auth"]
    assert filters[-1]["typed_config"]["@type"].endswith("router.v3.Router")


def test_the_edge_routes_grpc_over_http2_to_the_grpc_service(overlay):
    _, envoy = envoy_config(overlay)
    (listener,) = envoy["static_resources"]["listeners"]
    (manager,) = listener["filter_chains"][0]["filters"]
    routes = [route for host in manager["typed_config"]["route_config"]["virtual_hosts"] for route in host["routes"]]
    clusters = {cluster["name"]: cluster for cluster in envoy["static_resources"]["clusters"]}
    service = overlay.one("Service", "tailor-grpc")
    for route in routes:
        cluster = clusters[route["route"]["cluster"]]
        (endpoint,) = [e for group in cluster["load_assignment"]["endpoints"] for e in group["lb_endpoints"]]
        address = endpoint["endpoint"]["address"]["socket_address"]
        assert (address["address"], address["port_value"]) == (service["metadata"]["name"], service["spec"]["ports"][0]["port"])
        options = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
        assert "http2_protocol_options" in options["explicit_http_config"]
        # Headless Service + DNS: Envoy balances requests over every proxy, not connections over one.
        assert cluster["type"] == "STRICT_DNS" and service["spec"]["clusterIP"] == "None"
    edge_service = overlay.one("Service", "tailor-edge")
    assert [p["port"] for p in edge_service["spec"]["ports"]] == [443]
