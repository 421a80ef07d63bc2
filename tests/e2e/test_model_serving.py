"""Model serving end to end: real vLLM (CPU build) with PRSM's tiny model on a local Ray,
deployed by the model controller through Ray Serve LLM, called through the PRSM gateway with
the official ``openai`` client."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest
import ray
from prometheus_client.parser import text_string_to_metric_families
from ray import serve

from prsm import bootstrap
from prsm.adapters.inference.vllm_serve import app_name
from prsm.api.models import DeploymentOut
from prsm.client import PrsmClient
from prsm.config import Settings
from prsm.runtime import model_controller
from tests.e2e.platform import running
from tests.support import free_port

pytestmark = pytest.mark.ray

REPLICATED = {
    "strategy": "REPLICATED",
    "replicas": 2,
    "cpus_per_worker": 2,
    "max_model_len": 2048,
    "kv_cache_mb": 64,
}
SHARDED = {
    "strategy": "DISTRIBUTED",
    "tensor_parallel": 2,
    "placement": "PACK",
    "max_model_len": 2048,
    "kv_cache_mb": 64,
}


@dataclass
class Platform:
    url: str
    settings: Settings
    client: PrsmClient
    token: str

    def openai(self, **kw: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=self.token, **kw)


def wait_for(client: PrsmClient, name: str, version: str, *states: str) -> DeploymentOut:
    deadline = time.monotonic() + 600
    while True:
        d = client.deployment(name, version)
        if d.status.value in states or time.monotonic() > deadline:
            return d
        time.sleep(1)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("prsm-models"), http_port=free_port(),
                        metrics_port=free_port())  # fmt: skip
    with running(settings) as (url, token, client):
        asyncio.run(bootstrap.register_default_model(settings))
        # All deployments start together: the controller deploys them side by side.
        source = str(settings.tiny_model_path)
        client.deploy_model("tiny-replicated", "v1", source=source, **REPLICATED)
        client.deploy_model("tiny-sharded", "v1", source=source, **SHARDED)
        client.deploy_model("no-weights", "v1", source="/nonexistent/model-dir")
        yield Platform(url, settings, client, token)


def test_the_default_model_serves_chat_completions_and_streams(platform: Platform) -> None:
    tiny = wait_for(platform.client, "prsm-tiny", "v1", "READY", "FAILED")
    assert (tiny.status.value, tiny.shared, tiny.healthy) == ("READY", True, True), tiny.detail
    llm = platform.openai()

    chat = llm.chat.completions.create(
        model="prsm-tiny", messages=[{"role": "user", "content": "hello"}], max_tokens=8
    )
    assert chat.object == "chat.completion" and chat.model == "prsm-tiny"
    assert isinstance(chat.choices[0].message.content, str)
    assert chat.choices[0].finish_reason in ("length", "stop")
    assert chat.usage is not None and chat.usage.prompt_tokens > 5
    assert 1 <= chat.usage.completion_tokens <= 8

    chunks = list(
        llm.chat.completions.create(
            model="prsm-tiny",
            messages=[{"role": "user", "content": "stream please"}],
            max_tokens=8,
            stream=True,
        )
    )
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert all(c.choices for c in chunks)  # no usage-only chunk unless asked for
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")

    with_usage = list(
        llm.chat.completions.create(
            model="prsm-tiny",
            messages=[{"role": "user", "content": "count"}],
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert with_usage[-1].choices == [] and with_usage[-1].usage is not None
    assert with_usage[-1].usage.completion_tokens == 5  # random weights: EOS is rare

    text = llm.completions.create(model="prsm-tiny", prompt="Once upon", max_tokens=6)
    assert text.object == "text_completion" and isinstance(text.choices[0].text, str)
    assert text.usage is not None and text.usage.completion_tokens <= 6

    models = {m.id for m in llm.models.list()}
    assert "prsm-tiny" in models


def test_bad_requests_get_openai_shaped_4xx(platform: Platform) -> None:
    wait_for(platform.client, "prsm-tiny", "v1", "READY", "FAILED")
    llm = platform.openai(max_retries=0)
    with pytest.raises(openai.BadRequestError) as too_long:
        llm.completions.create(model="prsm-tiny", prompt="x" * 5000, max_tokens=4)
    assert "maximum context length" in too_long.value.message
    with pytest.raises(openai.NotFoundError) as unknown:
        llm.chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "x"}])
    assert isinstance(unknown.value.body, dict) and unknown.value.body["code"] == "not_found"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{platform.url}/v1", api_key="not-a-token").models.list()
    with pytest.raises(openai.UnprocessableEntityError):
        llm.chat.completions.create(model="prsm-tiny", messages=[])


def test_a_replicated_deployment_runs_two_replicas_that_serve(platform: Platform) -> None:
    d = wait_for(platform.client, "tiny-replicated", "v1", "READY", "FAILED")
    assert d.status.value == "READY", d.detail
    app = serve.status().applications[app_name("lab", "tiny-replicated", "v1")]
    [deployment] = app.deployments.values()
    assert deployment.replica_states.get("RUNNING") == 2

    async def burst() -> list[int]:
        llm = openai.AsyncOpenAI(base_url=f"{platform.url}/v1", api_key=platform.token)
        answers = await asyncio.gather(
            *(
                llm.chat.completions.create(
                    model="tiny-replicated",
                    messages=[{"role": "user", "content": f"q{i}"}],
                    max_tokens=4,
                )
                for i in range(12)
            )
        )
        return [a.usage.completion_tokens for a in answers if a.usage]

    assert len(asyncio.run(burst())) == 12
    # Each replica's engine computes with as many threads as its worker reserves CPUs.
    for pid in _replica_pids(app_name("lab", "tiny-replicated", "v1")):
        [engine] = [p for p in psutil.Process(pid).children() if "EngineCore" in p.name()]
        assert engine.environ()["OMP_NUM_THREADS"] == str(REPLICATED["cpus_per_worker"])


def test_a_replica_killed_mid_stream_gives_a_clean_error_and_the_next_request_succeeds(
    platform: Platform,
) -> None:
    """The replica that streams an answer (straight to the client, through the edge) is
    killed (SIGKILL) after the first chunks: the client's stream ends at once with an error
    (the connection closes before the answer's end), and the next request is answered by
    the other replica while Serve replaces the dead one."""
    d = wait_for(platform.client, "tiny-replicated", "v1", "READY", "FAILED")
    assert d.status.value == "READY", d.detail
    app = app_name("lab", "tiny-replicated", "v1")
    llm = platform.openai(max_retries=0)
    request_id = f"kill-{uuid.uuid4().hex}"
    stream = llm.chat.completions.create(
        model="tiny-replicated", messages=[{"role": "user", "content": "a long answer"}],
        max_tokens=1500, stream=True, extra_body={"ignore_eos": True},
        extra_headers={"X-Request-ID": request_id},
    )  # fmt: skip
    chunks = iter(stream)
    for _ in range(3):
        next(chunks)
    os.kill(_replica_pid(app, request_id), signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises((openai.APIError, httpx.TransportError)):  # closed or reset
        for _ in chunks:
            pass
    assert time.monotonic() - started < 30
    answer = llm.chat.completions.create(
        model="tiny-replicated", messages=[{"role": "user", "content": "again"}], max_tokens=4
    )
    assert answer.usage is not None and answer.usage.completion_tokens >= 1


def test_answers_stream_from_the_replica_whose_port_refuses_requests_without_a_grant(
    platform: Platform,
) -> None:
    """A chat request through the edge is answered by the model replica's own server (its
    log line says so); that server refuses a request that did not pass the gateway, and one
    with a forged grant."""
    wait_for(platform.client, "prsm-tiny", "v1", "READY")
    request_id = f"direct-{uuid.uuid4().hex}"
    chunks = list(platform.openai().chat.completions.create(
        model="prsm-tiny", messages=[{"role": "user", "content": "d"}], max_tokens=4,
        stream=True, extra_headers={"X-Request-ID": request_id},
    ))  # fmt: skip
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")
    app = app_name("*", "prsm-tiny", "v1")
    [pid] = _replica_pids(app, count=1)
    logs = Path("/tmp/ray/session_latest/logs")
    text = "".join(p.read_text(errors="replace") for p in logs.glob(f"worker-*-{pid}.err"))
    lines = [line for line in text.splitlines() if request_id in line]
    assert any("direct" in line for line in lines), lines
    address = serve.get_app_handle(app).direct_address.remote().result()
    body = {"model": "prsm-tiny", "messages": [{"role": "user", "content": "x"}]}
    url = f"http://{address}/v1/chat/completions"
    refused = httpx.post(url, json=body, headers={"Authorization": f"Bearer {platform.token}"})
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["code"] == "unauthenticated"
    forged = httpx.post(url, json=body, headers={"x-prsm-grant": "e30.0123abcd"})
    assert forged.status_code == 401, forged.text


def _replica_pid(app: str, request_id: str) -> int:
    """The process of the replica that logged the request (PRSM's line for each request, in
    the replica worker's stderr file: ``worker-<id>-<job>-<pid>.err``)."""
    pids = _replica_pids(app)
    logs = Path("/tmp/ray/session_latest/logs")  # this driver's session (Ray's default folder)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for pid in pids:
            for path in logs.glob(f"worker-*-{pid}.err"):
                if request_id in path.read_text(errors="replace"):
                    return pid
        time.sleep(0.5)
    raise AssertionError(f"no replica of {app} ({pids}) logged {request_id}")


def _replica_pids(app: str, count: int = 2) -> set[int]:
    pids = set()
    for named in ray.util.list_named_actors(all_namespaces=True):
        if named["name"].startswith(f"SERVE_REPLICA::{app}#"):
            replica = ray.get_actor(named["name"], namespace=named["namespace"])
            pids.add(ray.get(replica.__ray_call__.remote(lambda _: os.getpid())))
    assert len(pids) == count, pids
    return pids


def test_a_tensor_parallel_deployment_serves_on_cpu(platform: Platform) -> None:
    d = wait_for(platform.client, "tiny-sharded", "v1", "READY", "FAILED")
    assert d.status.value == "READY", d.detail
    assert (d.strategy.value, d.tensor_parallel) == ("DISTRIBUTED", 2)
    chat = platform.openai().chat.completions.create(
        model="tiny-sharded", messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    assert chat.usage is not None and chat.usage.completion_tokens >= 1


def test_a_deployment_that_cannot_start_fails_with_its_reason(platform: Platform) -> None:
    d = wait_for(platform.client, "no-weights", "v1", "READY", "FAILED")
    assert d.status.value == "FAILED"
    assert d.detail  # Serve's message about the failed replica
    deadline = time.monotonic() + 60
    while app_name("lab", "no-weights", "v1") in serve.status().applications:
        assert time.monotonic() < deadline, "the failed deployment's Serve app was not removed"
        time.sleep(0.5)


def test_undeploy_removes_the_serve_app_and_frees_its_cpus_even_across_a_controller_restart(
    platform: Platform,
) -> None:
    assert wait_for(platform.client, "tiny-replicated", "v1", "READY").status.value == "READY"
    before = ray.available_resources().get("CPU", 0.0)
    # The controller dies; Ray restarts it and it carries on from the registry in the store.
    controller = ray.get_actor(model_controller.NAME, namespace=model_controller.NAMESPACE)
    ray.kill(controller, no_restart=False)
    gone = platform.client.undeploy_model("tiny-replicated", "v1")
    assert gone.status.value == "UNDEPLOYING"
    deadline = time.monotonic() + 120
    while any(d.id == "tiny-replicated:v1" for d in platform.client.deployments()):
        assert time.monotonic() < deadline, "still listed"
        time.sleep(1)
    assert app_name("lab", "tiny-replicated", "v1") not in serve.status().applications
    deadline = time.monotonic() + 30
    freed = before + 4  # two replicas of one worker, each reserving 2 CPUs
    while ray.available_resources().get("CPU", 0.0) < freed and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0.0) >= freed
    with pytest.raises(openai.NotFoundError):
        platform.openai(max_retries=0).chat.completions.create(
            model="tiny-replicated", messages=[{"role": "user", "content": "x"}]
        )


def test_inference_metrics_per_model_and_version(platform: Platform) -> None:
    """Requests answered by the model replica are metered there, into Ray's metrics (the
    cluster-wide sink the dashboards query: ``ray_prsm_…`` on the node's export port)."""
    wait_for(platform.client, "prsm-tiny", "v1", "READY")
    platform.openai().chat.completions.create(
        model="prsm-tiny", messages=[{"role": "user", "content": "m"}], max_tokens=3
    )
    with pytest.raises(openai.BadRequestError):
        platform.openai(max_retries=0).completions.create(
            model="prsm-tiny", prompt="y" * 5000, max_tokens=2
        )
    wanted = {
        ("ray_prsm_inference_requests_total", (("endpoint", "chat"), ("outcome", "ok"))): 1,
        ("ray_prsm_inference_requests_total",
         (("endpoint", "completions"), ("outcome", "bad_request"))): 1,
        ("ray_prsm_inference_time_to_first_token_seconds_count", ()): 1,
        ("ray_prsm_inference_duration_seconds_count", ()): 1,
        ("ray_prsm_inference_tokens_total", (("direction", "out"),)): 3,
        ("ray_prsm_inference_tokens_total", (("direction", "in"),)): 1,
    }  # fmt: skip
    deadline = time.monotonic() + 90  # Ray's processes report every few seconds
    while True:
        text = httpx.get(f"http://127.0.0.1:{platform.settings.metrics_port}/metrics",
                         timeout=10).text  # fmt: skip
        missing = [key for key, least in wanted.items() if _total(text, *key) < least]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert not missing, missing


def _total(text: str, name: str, labels: tuple[tuple[str, str], ...]) -> float:
    """The sum of ``name``'s samples for prsm-tiny v1 with ``labels`` (Ray adds its own)."""
    want = {"model": "prsm-tiny", "version": "v1", **dict(labels)}
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and want.items() <= sample.labels.items()
    )
