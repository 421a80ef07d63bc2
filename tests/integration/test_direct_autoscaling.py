"""On a real Ray Serve: an autoscaled version whose requests all come through the edge (none
through Serve) scales up by what its replicas' own servers report, and back down when they
are idle. The deployment is a stand-in for the model replica (no engine) with PRSM's
``DirectLoad`` and the autoscaling configuration PRSM gives a vLLM version (its delays and
intervals shortened)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import ray
from ray import serve

from prsm.adapters.inference import vllm_serve
from prsm.adapters.inference.autoscaling import DirectLoad
from prsm.domain.models import ModelSpec, Strategy


class Answering:
    """A replica's own server, answering as many requests as the file says."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def active(self) -> int:
        return int(self.path.read_text())


class StandIn(DirectLoad):
    def __init__(self, path: str) -> None:
        self._direct = Answering(Path(path))

    def __call__(self) -> str:
        return "ok"


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    try:
        serve.start()
        yield
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()


def replicas(app: str) -> int:
    status = serve.status().applications[app].deployments
    return sum(d.replica_states.get("RUNNING", 0) for d in status.values())


def eventually(check: Callable[[], bool], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.5)


def test_a_version_scales_by_the_requests_its_replicas_answer_directly(
    cluster: None, tmp_path: Path
) -> None:
    load = tmp_path / "active"
    load.write_text("0")
    spec = ModelSpec(name="tiny", version="v1", source="/models/tiny",
                     strategy=Strategy.REPLICATED, min_replicas=1, max_replicas=3)  # fmt: skip
    config = vllm_serve.deployment_config(spec)
    autoscaling_config = {**config["autoscaling_config"], "metrics_interval_s": 0.5,
                          "look_back_period_s": 1.0, "upscale_delay_s": 0.0,
                          "downscale_delay_s": 0.0}  # fmt: skip
    app = serve.deployment(StandIn, ray_actor_options=config["ray_actor_options"],
                           autoscaling_config=autoscaling_config).bind(str(load))  # fmt: skip
    serve.run(app, name="scaled", route_prefix=None)
    assert replicas("scaled") == 1
    load.write_text("40")  # 40 ongoing (per replica), 16 a replica wanted: 3 (the most)
    eventually(lambda: replicas("scaled") == 3)
    load.write_text("0")
    eventually(lambda: replicas("scaled") == 1)
    serve.delete("scaled")


def test_the_model_replica_reports_its_direct_load() -> None:
    from prsm.adapters.inference.llm_server import PrsmLLMServer

    assert PrsmLLMServer.record_autoscaling_stats is DirectLoad.record_autoscaling_stats
