"""The Serve config files under serve_configs/: valid for Ray Serve, and every model in them
valid for PRSM and for Ray Serve LLM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from prsm.adapters.inference.vllm_serve import llm_config
from prsm.domain.models import SHARED_TENANT, Accelerator, Strategy
from prsm.serve_apps import plan, planned_rollouts

CONFIGS = Path(__file__).resolve().parents[2] / "serve_configs"


def load(name: str) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((CONFIGS / name).read_text())
    return config


@pytest.mark.parametrize("name", ["local_cpu.yaml", "gpu.yaml", "canary.yaml"])
def test_configs_pass_ray_serves_schema(name: str) -> None:
    schema = ServeDeploySchema.model_validate(load(name))
    [app] = schema.applications
    assert (app.import_path, app.route_prefix) == ("prsm.serve_apps:platform", "/")


def test_the_local_config_serves_the_tiny_model_on_cpu() -> None:
    [app] = load("local_cpu.yaml")["applications"]
    settings, [tiny] = plan(app["args"])
    assert tiny.source == str(settings.tiny_model_path)  # "prsm:tiny" resolved
    assert (tiny.accelerator, tiny.strategy) == (Accelerator.CPU, Strategy.SINGLE_NODE)
    config = llm_config(tiny, tiny.name)
    assert config.accelerator_config.kind == "cpu"
    assert config.engine_kwargs["kv_cache_memory_bytes"] == 64 << 20


def test_the_gpu_config_runs_a_replicated_and_a_sharded_model_on_gpus() -> None:
    [app] = load("gpu.yaml")["applications"]
    settings, [replicated, sharded] = plan(app["args"])
    assert settings.gateway_replicas == 2
    assert replicated.strategy is Strategy.REPLICATED and replicated.autoscaling
    scaling = llm_config(replicated, replicated.name).deployment_config["autoscaling_config"]
    assert (scaling["min_replicas"], scaling["max_replicas"]) == (1, 4)
    config = llm_config(sharded, sharded.name)
    assert config.accelerator_config.kind == "gpu"
    assert config.engine_kwargs["tensor_parallel_size"] == 4
    assert config.placement_group_config == {
        "bundle_per_worker": {"GPU": 1.0, "CPU": 1.0},  # one per worker: 4 (Ray Serve LLM)
        "strategy": "STRICT_PACK",
    }


def test_the_canary_config_serves_v1_and_declares_a_rollout_to_v2() -> None:
    [app] = load("canary.yaml")["applications"]
    settings, [v1] = plan(app["args"])
    [rollout] = planned_rollouts(app["args"], settings)
    assert (v1.name, v1.version) == ("prsm-tiny", "v1")
    assert (rollout.model, rollout.new_version, rollout.current_version) == (
        "prsm-tiny", "v2", None)  # fmt: skip
    assert rollout.tenant_id == SHARED_TENANT and rollout.source == str(settings.tiny_model_path)
    assert (rollout.policy.initial_percent, rollout.policy.evaluation_interval_s) == (10, 60)


def test_an_invalid_rollout_in_a_config_is_refused() -> None:
    from pydantic import ValidationError

    from prsm.domain.errors import InvalidRequest

    settings = plan({})[0]
    too_much = {"model": "m", "version": "v2", "policy": {"initial_percent": 150}}
    with pytest.raises(ValidationError, match="initial_percent"):
        planned_rollouts({"rollouts": [too_much]}, settings)
    same = {"model": "m", "version": "v1", "current_version": "v1"}
    with pytest.raises(InvalidRequest, match="must differ"):
        planned_rollouts({"rollouts": [same]}, settings)
    with pytest.raises(InvalidRequest, match="version: 1-64 letters"):
        planned_rollouts({"rollouts": [{"model": "m", "version": "v 2"}]}, settings)


def test_an_invalid_model_in_a_config_is_refused() -> None:
    from prsm.domain.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="DISTRIBUTED"):
        plan(
            {"models": [{"name": "m", "version": "v1", "source": "/m", "strategy": "DISTRIBUTED"}]}
        )
