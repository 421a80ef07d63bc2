"""vLLM model versions on Ray Serve, through Ray Serve LLM (``ray.serve.llm``).

``llm_config`` turns a PRSM ``ModelSpec`` into Ray's ``LLMConfig`` (replicas or autoscaling,
tensor/pipeline parallel sizes with placement-group bundles and strategy, CPU or GPU);
``build_app`` gives the Serve application that runs it (Ray's ``LLMServer``, which runs the
vLLM engine in the replica). ``VllmServeBackend`` calls such an application from the gateway
through a Serve handle, as Ray's own OpenAI ingress does, so that PRSM's gateway (auth,
routing, metrics) is the only HTTP hop. A call carries the id of the request it serves
(PRSM's correlation id) as its Serve request id: the model replica logs it, and vLLM takes
it as the request's id.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from prsm.adapters.inference.engine_io import parse, raise_if_error, request_models
from prsm.domain.errors import ModelUnavailable, UpstreamError, UpstreamTimeout
from prsm.domain.models import Accelerator, ModelSpec, Strategy
from prsm.observability.logging import current
from prsm.service_layer.ports import Completion

if TYPE_CHECKING:
    from prsm.adapters.inference.llm_server import DirectOptions

APP_PREFIX = "prsm-model-"
_LOCAL_WEIGHTS_CALLBACK = "prsm.adapters.inference.llm_server:SkipDownloadForLocalWeights"
MIB = 1 << 20
DIRECT_ADDRESS_TIMEOUT_S = 2.0
DIRECT_REFRESH_S = 0.5
DIRECT_TTL_S = 10.0


def app_name(tenant_id: str, name: str, version: str) -> str:
    """The Serve application of one model version (unique per tenant, Serve-safe)."""
    slug = re.sub(r"[^A-Za-z0-9-]+", "-", f"{name}-{version}").strip("-")[:80]
    tenant = hashlib.sha256(tenant_id.encode()).hexdigest()[:8]
    return f"{APP_PREFIX}{slug}-{tenant}"


# Serve's default policy, counting the requests the edge sends to the replicas too.
AUTOSCALING_POLICY = "prsm.adapters.inference.autoscaling:policy"


def deployment_config(spec: ModelSpec) -> dict[str, Any]:
    # The engine's worker bundles hold the CPUs (and GPUs); the replica actor that drives
    # the engine only waits on it, so it reserves none (else each replica costs one more).
    config: dict[str, Any] = {"ray_actor_options": {"num_cpus": 0}}
    if spec.autoscaling:
        low, high = spec.min_replicas or 0, spec.max_replicas or 1
        config["autoscaling_config"] = {
            "min_replicas": low,
            "max_replicas": high,
            "initial_replicas": max(low, 1),
            "target_ongoing_requests": 16,
            "policy": {"policy_function": AUTOSCALING_POLICY},  # the edge's requests too
        }
    else:
        config["num_replicas"] = 1 if spec.strategy is Strategy.SINGLE_NODE else spec.replicas
    return config


def engine_kwargs(spec: ModelSpec) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "tensor_parallel_size": spec.tensor_parallel,
        "pipeline_parallel_size": spec.pipeline_parallel,
        "dtype": "auto",
    }
    if spec.max_model_len is not None:
        kwargs["max_model_len"] = spec.max_model_len
    if spec.accelerator is Accelerator.CPU:
        # An explicit KV cache (instead of a share of host memory) and eager mode: vLLM-CPU
        # then skips its warm-up pass and starts in seconds.
        kwargs["kv_cache_memory_bytes"] = spec.kv_cache_mb * MIB
        kwargs["enforce_eager"] = True
    return kwargs


def placement_group_config(spec: ModelSpec) -> dict[str, Any]:
    """One bundle per engine worker, of ``cpus_per_worker`` CPUs (and a GPU); the replica
    actor shares the first bundle."""
    bundle = {"CPU": float(spec.cpus_per_worker)}
    if spec.accelerator is Accelerator.GPU:
        bundle["GPU"] = 1.0
    return {"bundle_per_worker": bundle, "strategy": spec.placement}


def runtime_env(spec: ModelSpec) -> dict[str, Any] | None:
    """A CPU engine's workers compute with as many threads as their bundles reserve CPUs.
    Ray gives a replica that reserves no CPU of its own one OpenMP thread, which the engine
    would inherit; vLLM sets a worker's count itself only when it binds the worker to cores,
    and its automatic binding gives every engine the same cores (the first NUMA node's,
    minus one), regardless of the others on the node and of what Ray reserved. The
    operating system places the threads."""
    if spec.accelerator is not Accelerator.CPU:
        return None
    env = {"OMP_NUM_THREADS": str(spec.cpus_per_worker), "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
    return {"env_vars": env}


def llm_config(spec: ModelSpec, model_id: str) -> Any:
    from ray.serve.llm import LLMConfig

    kind = "gpu" if spec.accelerator is Accelerator.GPU else "cpu"
    options: dict[str, Any] = {
        "model_loading_config": {"model_id": model_id, "model_source": spec.source},
        "callback_config": {"callback_class": _LOCAL_WEIGHTS_CALLBACK},
        "accelerator_config": {"kind": kind},
        "deployment_config": deployment_config(spec),
        "engine_kwargs": engine_kwargs(spec),
        "placement_group_config": placement_group_config(spec),
    }
    env = runtime_env(spec)
    if env is not None:
        options["runtime_env"] = env
    return LLMConfig(**options)


def build_app(spec: ModelSpec, model_id: str, log_level: str = "INFO",
              direct: DirectOptions | None = None) -> Any:  # fmt: skip
    """``log_level``: of PRSM's JSON lines in the replica (one per request, with its id);
    ``direct``: the replica also answers HTTP itself (``direct_http``)."""
    from ray.serve.llm import build_llm_deployment

    from prsm.adapters.inference.llm_server import PrsmLLMServer

    return build_llm_deployment(
        llm_config(spec, model_id),
        name_prefix="prsm:",
        bind_kwargs={"log_level": log_level, "direct": direct},
        deployment_cls=PrsmLLMServer,
        # PRSM's gateway logs and meters each request; a second access log line per request
        # in the model replica costs CPU the engine needs.
        override_serve_options={"logging_config": {"enable_access_log": False}},
    )


class VllmServeBackend:
    """A model version on Serve, called through a streaming deployment handle."""

    def __init__(self, app: str, timeout_s: float) -> None:
        from ray import serve

        self.app = app
        self._timeout_s = timeout_s
        self._direct: dict[str, float] = {}  # replica address -> when Serve last named it
        self._direct_asked = 0.0
        self._learning: asyncio.Task[None] | None = None
        try:
            self._unary = serve.get_app_handle(app)
            self._handle = self._unary.options(stream=True)
        except Exception as exc:  # Serve does not know the application (yet, or any more)
            raise ModelUnavailable("the model is not serving right now; retry shortly") from exc

    async def chat(self, body: dict[str, Any]) -> Completion:
        from prsm.adapters.ray_compat import sanitize_chat_request

        models = await request_models()
        request = sanitize_chat_request(parse(models.ChatCompletionRequest, body))
        return await self._call("chat", request)

    async def completions(self, body: dict[str, Any]) -> Completion:
        models = await request_models()
        return await self._call("completions", parse(models.CompletionRequest, body))

    async def close(self) -> None:
        return None

    async def direct_address(self) -> str:
        """``host:port`` of the HTTP server of one replica of this version, picked at random
        among those this gateway replica knows ("": none known, e.g. while the version
        starts).

        Replicas are learnt from Serve, one handle call at a time (Serve picks the replica
        that answers): in line when none is known, else in the background at most every
        ``DIRECT_REFRESH_S``; one not seen for ``DIRECT_TTL_S`` is forgotten. A handle
        call per request would cost each request a round trip through Ray's RPC in both
        processes. An address whose replica died meanwhile is refused by the edge's own
        check (it cannot connect: the request takes the gateway's route)."""
        now = time.monotonic()
        self._direct = {a: seen for a, seen in self._direct.items() if now - seen < DIRECT_TTL_S}
        if not self._direct:
            await self._learn_direct()
        elif now - self._direct_asked >= DIRECT_REFRESH_S and (
            self._learning is None or self._learning.done()
        ):
            self._learning = asyncio.get_running_loop().create_task(self._learn_direct())
        return random.choice(list(self._direct)) if self._direct else ""

    async def _learn_direct(self) -> None:
        self._direct_asked = time.monotonic()
        try:
            address: str = await asyncio.wait_for(self._unary.direct_address.remote(),
                                                  DIRECT_ADDRESS_TIMEOUT_S)  # fmt: skip
        except Exception:  # no replica, an old one, a dead one: the gateway serves it
            return
        if address:
            self._direct[address] = time.monotonic()

    async def _call(self, method: str, request: Any) -> Completion:
        from prsm.adapters.ray_compat import with_serve_request_id

        request_id = current()
        if request_id:
            with with_serve_request_id(request_id):
                stream: Any = getattr(self._handle, method).remote(request, None)
        else:  # no request here (e.g. a warm-up): Serve's own id
            stream = getattr(self._handle, method).remote(request, None)
        try:
            first = await asyncio.wait_for(anext(stream), self._timeout_s)
        except TimeoutError:  # e.g. no replica left to take it: never hang the client
            stream.cancel()
            raise UpstreamTimeout(
                f"no answer from the model within {self._timeout_s:g} s"
            ) from None
        except StopAsyncIteration:
            raise UpstreamError("the model returned nothing") from None
        except Exception as exc:  # a replica that died or could not be reached
            raise UpstreamError(f"the model deployment failed: {type(exc).__name__}") from exc
        head = first[0] if isinstance(first, list) and first else first
        raise_if_error(head)
        if not isinstance(first, list) and hasattr(first, "model_dump"):
            result: dict[str, Any] = first.model_dump(mode="json", exclude_none=True)
            return result
        return _sse(first, stream)


async def _sse(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[str]:
    """Serve LLM streams batches of ``data: {json}\\n\\n`` strings; pass each batch on as one
    item, but a usage-only chunk (``"choices":[]``) as an item of its own, and end with
    ``[DONE]`` exactly once."""
    done = False
    batch: Any = first
    while True:
        for text in _items(batch):
            done = done or text.startswith("data: [DONE]")
            yield text
        try:
            batch = await anext(rest)
        except StopAsyncIteration:
            break
        except Exception as exc:  # the replica died mid-stream
            raise UpstreamError(f"the model stream broke: {type(exc).__name__}") from exc
    if not done:
        yield "data: [DONE]\n\n"


def _items(batch: Any) -> list[str]:
    """A batch as items in order: runs of chunks joined, each usage-only chunk alone."""
    if not isinstance(batch, list):
        batch = [batch]
    items: list[str] = []
    run: list[str] = []
    for b in batch:
        text = b if isinstance(b, str) else f"data: {b.model_dump_json()}\n\n"
        if '"choices":[]' in text:
            if run:
                items.append("".join(run))
                run = []
            items.append(text)
        else:
            run.append(text)
    if run:
        items.append("".join(run))
    return items
