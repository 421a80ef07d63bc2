"""Canary rollouts end to end: versions of the tiny model on real vLLM (CPU build) on a local
Ray, traffic through the PRSM gateway with the official ``openai`` client, the model
controller deciding on schedule from the per-version figures every gateway replica sends to
the stats actor. Intervals are seconds; the scenarios run one after another on one model,
then a rollout declared in a Serve config starts on its own."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest
import ray
import yaml
from ray import serve

from prsm.adapters.inference import tiny_model
from prsm.adapters.inference.vllm_serve import app_name
from prsm.api.rollouts import RolloutOut
from prsm.client import PrsmClient
from prsm.config import Settings
from prsm.runtime import model_controller
from tests.e2e.platform import running
from tests.e2e.test_model_serving import wait_for
from tests.support import free_port

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[2]
MODEL = "canary"
# Seconds instead of minutes; 8 requests judge a version (20 in the healthy scenario, whose p95
# must not be a single slow request). The healthy scenario allows a p95 up to 3 × v1's: two
# engines sharing two cores are that noisy; injected latency is far above.
FAST = {"evaluation_interval_s": 2.0, "min_window_s": 0, "min_samples": 8}


@dataclass
class Platform:
    url: str
    settings: Settings
    client: PrsmClient
    token: str


LOAD_PAUSE_S = 0.05


@dataclass
class Load:
    """Requests to ``MODEL`` from two client threads until stopped; outcomes counted. Each
    thread pauses ``LOAD_PAUSE_S`` after a request: the two stay under the default rate limit
    (100 requests/s per caller), which answers 429 above it, however fast the platform is."""

    platform: Platform
    outcomes: Counter[str] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        for _ in range(2):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _run(self) -> None:
        llm = openai.OpenAI(
            base_url=f"{self.platform.url}/v1", api_key=self.platform.token, max_retries=0
        )
        while not self._stop.is_set():
            try:
                llm.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=1
                )
                self.outcomes["ok"] += 1
            except openai.APIStatusError as exc:
                self.outcomes[str(exc.status_code)] += 1
            except openai.APIConnectionError:
                self.outcomes["connection"] += 1
            self._stop.wait(LOAD_PAUSE_S)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("prsm-canary"), http_port=free_port())
    tiny_model.ensure_tiny_model(settings.tiny_model_path)
    with running(settings) as (url, token, client):
        source = str(settings.tiny_model_path)
        client.deploy_model(MODEL, "v1", source=source, max_model_len=2048, kv_cache_mb=64)
        assert wait_for(client, MODEL, "v1", "READY", "FAILED").status.value == "READY"
        yield Platform(url, settings, client, token)


def finish(platform: Platform, rollout_id: str, timeout: float = 300) -> RolloutOut:
    deadline = time.monotonic() + timeout
    while (r := platform.client.rollout(rollout_id)).status.value == "IN_PROGRESS":
        assert time.monotonic() < deadline, f"still in progress: {r.model_dump_json()}"
        time.sleep(0.5)
    return r


def removed(platform: Platform, version: str) -> None:
    deadline = time.monotonic() + 120
    while any(d.id == f"{MODEL}:{version}" for d in platform.client.deployments()):
        assert time.monotonic() < deadline, f"{version} still listed"
        time.sleep(1)
    assert app_name("lab", MODEL, version) not in serve.status().applications


def start(platform: Platform, version: str, **policy: Any) -> RolloutOut:
    rollout = platform.client.start_rollout(MODEL, version, policy=FAST | policy)
    assert rollout.status.value == "IN_PROGRESS" and rollout.current_version == "v1"
    return rollout


def test_a_version_with_injected_errors_rolls_back_and_is_removed(platform: Platform) -> None:
    rollout = start(platform, "v2", initial_percent=50)
    platform.client.set_faults(MODEL, "v2", error_rate=0.5)
    assert wait_for(platform.client, MODEL, "v2", "READY", "FAILED").status.value == "READY"
    with Load(platform) as load:
        done = finish(platform, rollout.id)
    assert done.status.value == "ROLLED_BACK", done.model_dump_json()
    assert "success rate" in (done.history[-1].reason or "")
    assert load.outcomes["503"] >= 1 and load.outcomes["ok"] >= 1
    removed(platform, "v2")


def test_a_version_with_injected_latency_rolls_back(platform: Platform) -> None:
    rollout = start(platform, "v3", initial_percent=50, max_latency_ratio=2.0)
    platform.client.set_faults(MODEL, "v3", latency_ms=1500)
    assert wait_for(platform.client, MODEL, "v3", "READY", "FAILED").status.value == "READY"
    with Load(platform) as load:
        done = finish(platform, rollout.id)
    assert done.status.value == "ROLLED_BACK", done.model_dump_json()
    assert "p95" in (done.history[-1].reason or "")
    figures = done.history[-1].figures
    assert figures["candidate"]["p95_ms"] > 2 * figures["current"]["p95_ms"]
    assert set(load.outcomes) == {"ok"}
    removed(platform, "v3")


def test_a_rollout_without_traffic_holds_then_follows_its_no_data_policy(
    platform: Platform,
) -> None:
    rollout = start(platform, "v4", max_empty_intervals=2, on_no_data="ABORT")
    assert wait_for(platform.client, MODEL, "v4", "READY", "FAILED").status.value == "READY"
    done = finish(platform, rollout.id)
    assert done.status.value == "ABORTED", done.model_dump_json()
    (held, held_reason), (last, last_reason) = [(d.decision, d.reason or "")
                                                 for d in done.history[-2:]]  # fmt: skip
    assert held == "RolloutHeld" and held_reason.startswith("fewer than 8 requests")
    assert last == "RolloutAborted" and last_reason.startswith("no data")
    removed(platform, "v4")


def test_a_healthy_version_goes_to_100_percent_across_a_controller_restart(
    platform: Platform,
) -> None:
    rollout = start(platform, "v5", initial_percent=20, max_latency_ratio=3.0, min_samples=20)
    env = {**os.environ, "PRSM_TOKEN": platform.token,
           "PRSM_HTTP_PORT": str(platform.settings.http_port)}  # fmt: skip
    watch = subprocess.Popen(
        [sys.executable, "-m", "prsm", "rollout", "watch", rollout.id],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert wait_for(platform.client, MODEL, "v5", "READY", "FAILED").status.value == "READY"
    with Load(platform) as load:
        deadline = time.monotonic() + 300
        while (now := platform.client.rollout(rollout.id)).percent < 40:
            assert now.status.value == "IN_PROGRESS", now.model_dump_json()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        controller = ray.get_actor(model_controller.NAME, namespace=model_controller.NAMESPACE)
        ray.kill(controller, no_restart=False)  # Ray restarts it; it resumes from the store
        assert platform.client.rollout(rollout.id).percent == now.percent
        done = finish(platform, rollout.id)
    assert done.status.value == "COMPLETED", done.model_dump_json()
    advanced = [d.percent for d in done.history if d.decision == "RolloutAdvanced"]
    assert advanced == [40.0, 80.0]  # every step once, none repeated after the restart
    assert done.history[-1].decision == "RolloutCompleted" and done.traffic == {"v5": 100.0}
    assert set(load.outcomes) == {"ok"}
    removed(platform, "v1")
    output, _ = watch.communicate(timeout=60)
    assert watch.returncode == 0, output
    assert "COMPLETED" in output and "v5" in output
    chat = openai.OpenAI(base_url=f"{platform.url}/v1", api_key=platform.token)
    answer = chat.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "after"}], max_tokens=1
    )
    assert answer.choices


def test_a_rollout_declared_in_a_serve_config_starts_once_its_model_serves(
    platform: Platform,
) -> None:
    """serve_configs/canary.yaml's application built as `serve run` builds it (its import
    path called with its args, on this module's data dir): the shared prsm-tiny v1 is
    registered, and the rollout the config declares starts once v1 serves, deploying v2."""
    [app] = yaml.safe_load((ROOT / "serve_configs" / "canary.yaml").read_text())["applications"]
    args = {**app["args"], "settings": {**app["args"]["settings"],
            "data_dir": str(platform.settings.data_dir),
            "http_port": platform.settings.http_port}}  # fmt: skip
    module, _, name = app["import_path"].partition(":")
    builder = getattr(importlib.import_module(module), name)
    serve.run(builder(args), name=app["name"], route_prefix=app["route_prefix"])
    assert wait_for(platform.client, "prsm-tiny", "v1", "READY", "FAILED").status.value == "READY"
    deadline = time.monotonic() + 120
    while not (started := platform.client.rollouts("prsm-tiny")):
        assert time.monotonic() < deadline, "the declared rollout did not start"
        time.sleep(1)
    [rollout] = started
    assert (rollout.current_version, rollout.new_version, rollout.owned_by) == (
        "v1", "v2", "prsm")  # fmt: skip
    assert rollout.status.value == "IN_PROGRESS" and rollout.policy.evaluation_interval_s == 60
    assert wait_for(platform.client, "prsm-tiny", "v2", "READY", "FAILED").status.value == "READY"
    builder(args)  # the config applied again: the rollout is declared once
    time.sleep(2 * model_controller.INTERVAL_S)
    assert [r.id for r in platform.client.rollouts("prsm-tiny")] == [rollout.id]
