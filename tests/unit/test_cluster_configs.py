"""The cluster configs: Ray cluster launcher YAMLs (AWS, GCP, Azure) pass Ray's own config
validation; the KubeRay manifests pass the KubeRay CRDs' OpenAPI schemas (as an API server
would check them); and all of them turn on Ray's token authentication and mutual TLS
between nodes on every Ray process."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.serve.schema import ServeDeploySchema

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
CRDS = CLUSTER / "kuberay" / "crd-schemas"  # vendored from KubeRay, see its README
LAUNCHER = ["aws.yaml", "gcp.yaml", "azure.yaml"]
TLS_VARS = ("RAY_USE_TLS", "RAY_TLS_SERVER_CERT", "RAY_TLS_SERVER_KEY", "RAY_TLS_CA_CERT")


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def secured_launcher(config: dict[str, Any]) -> list[str]:
    """What a launcher config lacks to run every Ray process with token auth and TLS."""
    problems = []
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in config[key] if "ray start" in c]
        if not starts:
            problems.append(f"{key}: no ray start")
        for command in starts:
            needed = ["RAY_AUTH_MODE=token", "RAY_AUTH_TOKEN_PATH=", *(f"{v}=" for v in TLS_VARS)]
            problems += [f"{key}: {n} missing" for n in needed if n not in command]
    if "/etc/prsm" not in config.get("file_mounts", {}):
        problems.append("the token and certificates are not mounted at /etc/prsm")
    return problems


@pytest.mark.parametrize("name", LAUNCHER)
def test_launcher_configs_pass_rays_validation_and_are_secured(name: str) -> None:
    config = load(CLUSTER / name)
    validate_config(prepare_config(copy.deepcopy(config)))
    assert secured_launcher(config) == []
    types = config["available_node_types"]
    assert {"head", "cpu-worker", "gpu-worker"} <= set(types)
    assert all(types[t]["max_workers"] > types[t]["min_workers"] for t in types if t != "head")
    assert config["provider"]["type"] == name.removesuffix(".yaml")


def test_a_launcher_config_without_tls_is_caught() -> None:
    config = copy.deepcopy(load(CLUSTER / "aws.yaml"))
    config["worker_start_ray_commands"] = ["ray stop", "ray start --address=$RAY_HEAD_IP:6380"]
    assert any("RAY_USE_TLS" in p for p in secured_launcher(config))


def crd_schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CRDS / f"{kind.lower()}s.v1.json").read_text())
    return schema


def cluster_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    """The RayCluster spec of a RayCluster, RayService or RayJob."""
    spec = manifest["spec"]
    found: dict[str, Any] = spec.get("rayClusterConfig") or spec.get("rayClusterSpec") or spec
    return found


def pod_specs(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    spec = cluster_spec(manifest)
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [g["template"]["spec"] for g in groups]


def secured_manifest(manifest: dict[str, Any]) -> list[str]:
    spec = cluster_spec(manifest)
    problems = []
    if spec.get("authOptions", {}).get("mode") != "token":
        problems.append("authOptions.mode is not token")
    for pod in pod_specs(manifest):
        volumes = {v["name"] for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            env = {e["name"] for e in container.get("env", [])}
            problems += [f"{container['name']}: {v} missing" for v in TLS_VARS if v not in env]
            mounts = {m["name"] for m in container.get("volumeMounts", [])}
            if "ray-tls" not in mounts or "ray-tls" not in volumes:
                problems.append(f"{container['name']}: certificates not mounted")
    return problems


@pytest.mark.parametrize(("name", "kind"), [("raycluster.yaml", "RayCluster"),
                                            ("rayservice.yaml", "RayService"),
                                            ("rayjob-batch-inference.yaml", "RayJob")])  # fmt: skip
def test_kuberay_manifests_pass_the_crd_schemas_and_are_secured(name: str, kind: str) -> None:
    manifest = load(CLUSTER / "kuberay" / name)
    assert manifest["kind"] == kind and manifest["apiVersion"] == "ray.io/v1"
    jsonschema.validate(manifest, crd_schema(kind))
    assert secured_manifest(manifest) == []
    spec = cluster_spec(manifest)
    assert spec["enableInTreeAutoscaling"] is True
    gpu = [g for g in spec["workerGroupSpecs"] if g["groupName"] == "gpu"]
    assert gpu and gpu[0]["maxReplicas"] > gpu[0]["minReplicas"]


def test_the_rayservice_serves_prsms_gpu_serve_config() -> None:
    manifest = load(CLUSTER / "kuberay" / "rayservice.yaml")
    served = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(served)
    gpu = load(ROOT / "serve_configs" / "gpu.yaml")
    assert served["applications"] == gpu["applications"]


def test_a_manifest_violating_the_crd_or_without_tls_is_caught() -> None:
    manifest = copy.deepcopy(load(CLUSTER / "kuberay" / "raycluster.yaml"))
    manifest["spec"]["authOptions"]["mode"] = "sometimes"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(manifest, crd_schema("RayCluster"))
    manifest = copy.deepcopy(load(CLUSTER / "kuberay" / "raycluster.yaml"))
    del manifest["spec"]["workerGroupSpecs"][1]["template"]["spec"]["containers"][0]["env"]
    assert any("RAY_USE_TLS" in p for p in secured_manifest(manifest))


def test_the_per_tenant_variant_puts_a_secured_ray_cluster_in_a_namespace_of_its_own() -> None:
    docs = list(yaml.safe_load_all((CLUSTER / "kuberay" / "tenant-namespace.yaml").read_text()))
    by_kind = {d["kind"]: d for d in docs}
    assert set(by_kind) == {"Namespace", "ResourceQuota", "NetworkPolicy", "RayCluster"}
    namespace = by_kind["Namespace"]["metadata"]["name"]
    assert all(
        d["metadata"].get("namespace") == namespace for d in docs if d["kind"] != "Namespace"
    )
    cluster = by_kind["RayCluster"]
    jsonschema.validate(cluster, crd_schema("RayCluster"))
    assert secured_manifest(cluster) == []
    # Only pods of the namespace reach its pods, but for the gateway's Serve port.
    ingress = by_kind["NetworkPolicy"]["spec"]["ingress"]
    assert by_kind["NetworkPolicy"]["spec"]["podSelector"] == {}
    assert ingress[0] == {"from": [{"podSelector": {}}]}
    assert [p["port"] for rule in ingress[1:] for p in rule["ports"]] == [8000]
    hard = by_kind["ResourceQuota"]["spec"]["hard"]
    assert {"requests.cpu", "requests.memory", "requests.nvidia.com/gpu"} <= set(hard)


def test_the_rayjob_runs_the_batch_job_on_gpus_and_cleans_up() -> None:
    manifest = load(CLUSTER / "kuberay" / "rayjob-batch-inference.yaml")
    entry = manifest["spec"]["entrypoint"].split()
    assert entry[:2] == ["python", "jobs/batch_inference.py"]
    assert (ROOT / entry[1]).is_file()
    from jobs.batch_inference import parse_args

    args = parse_args(entry[2:])  # the job's own parser takes the manifest's arguments
    assert (args.accelerator, args.replicas) == ("gpu", 2)
    groups = cluster_spec(manifest)["workerGroupSpecs"]
    limits = [(g["replicas"], g["template"]["spec"]["containers"][0]["resources"]["limits"])
              for g in groups]  # fmt: skip
    gpu_workers = sum(n for n, limit in limits if "nvidia.com/gpu" in limit)
    assert gpu_workers >= args.replicas
    assert manifest["spec"]["shutdownAfterJobFinishes"] is True
    assert yaml.safe_load(manifest["spec"]["runtimeEnvYAML"])["working_dir"]


def test_every_cluster_runs_serve_in_the_mode_prsm_up_starts_it_in() -> None:
    """Serve's throughput settings reach each node's `ray start`, as `prsm up` sets them."""
    from prsm.runtime.local_cluster import SERVE_THROUGHPUT_ENV

    wanted = [f"{k}={v}" for k, v in SERVE_THROUGHPUT_ENV.items()]
    problems = []
    for name in LAUNCHER:
        config = load(CLUSTER / name)
        for key in ("head_start_ray_commands", "worker_start_ray_commands"):
            for command in (c for c in config[key] if "ray start" in c):
                problems += [f"{name} {key}: {w}" for w in wanted if w not in command]
    for path in sorted((CLUSTER / "kuberay").glob("*.yaml")):
        for manifest in yaml.safe_load_all(path.read_text()):
            if not manifest or manifest.get("kind") not in ("RayCluster", "RayService", "RayJob"):
                continue
            for pod in pod_specs(manifest):
                for container in pod["containers"]:
                    env = {f"{e['name']}={e.get('value')}" for e in container.get("env", [])}
                    problems += [f"{path.name} {container['name']}: {w}" for w in wanted
                                 if w not in env]  # fmt: skip
    assert not problems, problems
