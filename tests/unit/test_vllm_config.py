"""The Ray Serve LLM configuration PRSM generates for each deployment strategy, and how the
gateway cuts Serve's streamed batches."""

from __future__ import annotations

import pytest

from prsm.adapters.inference import vllm_serve
from prsm.domain.models import Accelerator, ModelSpec, Strategy


def spec(**kw: object) -> ModelSpec:
    return ModelSpec(name="tiny", version="v1", source="/m/tiny", **kw)  # type: ignore[arg-type]


def test_single_node_is_one_cpu_replica_with_an_explicit_kv_cache() -> None:
    config = vllm_serve.llm_config(spec(kv_cache_mb=64, max_model_len=2048), "tiny")
    assert config.deployment_config == {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0}}
    assert config.model_id == "tiny"
    assert config.model_loading_config.model_source == "/m/tiny"
    assert config.accelerator_config.kind == "cpu"
    assert config.engine_kwargs["kv_cache_memory_bytes"] == 64 << 20
    assert config.engine_kwargs["max_model_len"] == 2048
    assert config.engine_kwargs["enforce_eager"] is True
    assert config.placement_group_config == {"bundle_per_worker": {"CPU": 1.0},
                                             "strategy": "PACK"}  # fmt: skip
    # As many compute threads as the worker reserves CPUs; the OS places them.
    assert config.runtime_env["env_vars"] == {"OMP_NUM_THREADS": "1",
                                              "VLLM_CPU_OMP_THREADS_BIND": "nobind"}  # fmt: skip


def test_replicated_takes_a_count_or_autoscaling_bounds_down_to_zero() -> None:
    fixed = vllm_serve.llm_config(spec(strategy=Strategy.REPLICATED, replicas=3), "tiny")
    assert fixed.deployment_config["num_replicas"] == 3
    scaled = vllm_serve.llm_config(
        spec(strategy=Strategy.REPLICATED, min_replicas=0, max_replicas=4), "tiny"
    )
    auto = scaled.deployment_config["autoscaling_config"]
    assert (auto["min_replicas"], auto["max_replicas"], auto["initial_replicas"]) == (0, 4, 1)


@pytest.mark.parametrize(
    ("accelerator", "bundle"),
    [(Accelerator.CPU, {"CPU": 3.0}), (Accelerator.GPU, {"GPU": 1.0, "CPU": 3.0})],
)
def test_distributed_has_one_bundle_per_worker_and_the_strategy(
    accelerator: Accelerator, bundle: dict[str, float]
) -> None:
    sharded = spec(
        strategy=Strategy.DISTRIBUTED,
        tensor_parallel=2,
        pipeline_parallel=2,
        placement="STRICT_SPREAD",
        accelerator=accelerator,
        cpus_per_worker=3,
    )
    config = vllm_serve.llm_config(sharded, "tiny")
    assert config.placement_group_config == {"bundle_per_worker": bundle,
                                             "strategy": "STRICT_SPREAD"}  # fmt: skip
    assert config.engine_kwargs["tensor_parallel_size"] == 2
    assert config.engine_kwargs["pipeline_parallel_size"] == 2
    assert config.accelerator_config.kind == accelerator.value
    if accelerator is Accelerator.CPU:
        assert config.runtime_env["env_vars"]["OMP_NUM_THREADS"] == "3"
    else:
        assert "kv_cache_memory_bytes" not in config.engine_kwargs
        assert not config.runtime_env


def test_app_names_are_serve_safe_and_unique_per_tenant() -> None:
    a = vllm_serve.app_name("lab", "Qwen/Qwen2.5 0.5B", "v1")
    b = vllm_serve.app_name("other", "Qwen/Qwen2.5 0.5B", "v1")
    assert a != b and a.startswith(vllm_serve.APP_PREFIX)
    assert all(c.isalnum() or c == "-" for c in a)


def test_streamed_batches_keep_order_and_isolate_the_usage_chunk() -> None:
    chunk = 'data: {"choices":[{"index":0}]}\n\n'
    usage = 'data: {"choices":[],"usage":{"completion_tokens":3}}\n\n'
    done = "data: [DONE]\n\n"
    assert vllm_serve._items([chunk, chunk, usage, done]) == [chunk + chunk, usage, done]
    assert vllm_serve._items(chunk) == [chunk]
