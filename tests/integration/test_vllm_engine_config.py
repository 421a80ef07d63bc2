"""The vLLM engine configuration a PRSM model replica starts its engine with, made by the
same code path a replica takes (Ray Serve LLM's engine with PRSM's hook), on the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

from prsm.adapters.inference import tiny_model, vllm_serve
from prsm.adapters.ray_compat import InProcessWorkerHook
from prsm.domain.models import ModelSpec, Strategy


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model.ensure_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def executor(model: Path, **fields: object) -> str:
    spec = ModelSpec(name="tiny", version="v1", source=str(model), max_model_len=512,
                     **fields)  # type: ignore[arg-type]  # fmt: skip
    engine = InProcessWorkerHook()._get_default_engine_class()(vllm_serve.llm_config(spec, "t"))
    args, _, config = engine._prepare_engine_config(callback_ctx=None)
    assert args.distributed_executor_backend == config.parallel_config.distributed_executor_backend
    return str(config.parallel_config.distributed_executor_backend)


def test_a_one_worker_cpu_engine_runs_its_worker_in_its_own_process(model: Path) -> None:
    # vLLM's "uni" executor; Ray Serve LLM alone would start the worker as one more
    # process ("mp").
    assert executor(model) == "uni"


def test_an_engine_of_several_workers_keeps_one_process_per_worker(model: Path) -> None:
    assert executor(model, strategy=Strategy.DISTRIBUTED, tensor_parallel=2) == "mp"
