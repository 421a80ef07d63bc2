"""Every private Ray, Ray Serve and Ray Serve LLM API that PRSM uses, in one place.

Private APIs change between Ray releases without notice, so PRSM supports exactly one Ray
release, ``SUPPORTED_RAY``: importing this module (which every process that uses one of
these APIs does) checks the installed Ray and refuses to go on with another. Moving to a new
Ray release means reading each wrapper below against the new release's code, and then
changing ``SUPPORTED_RAY`` (and the pins in ``pyproject.toml``).

Each wrapper says which public API is missing and why the private one is used.

- ``available_resources_per_node`` — ``ray._private.state.available_resources_per_node``
- ``deploy_app_nowait`` — ``ray.serve._run(..., _blocking=False)``
- ``delete_app_nowait`` — ``ray.serve.delete(..., _blocking=False)``
- ``serve_request_id`` / ``with_serve_request_id`` — ``ray.serve.context._serve_request_context``
  and its ``_RequestContext``
- ``reload_auth_config`` — ``ray._raylet.Config.initialize``
- ``CallbackBase`` — ``ray.llm._internal.common.callbacks.base.CallbackBase``
- ``batched`` — ``ray.llm._internal.serve.utils.batcher.Batcher``
- ``StreamBatchingHook`` — ``LLMServer._batch_output_stream`` / ``_get_batch_interval_ms``
- ``InProcessWorkerHook`` — ``LLMServer._get_default_engine_class`` and
  ``ray.llm._internal.serve.engines.vllm.vllm_engine.VLLMEngine._prepare_engine_config``
- ``sanitize_chat_request`` —
  ``ray.llm._internal.serve.core.ingress.utils._sanitize_chat_completion_request``

Only ``ray`` itself is imported here at once (the gateway and the CLI import this module);
Ray Serve and Ray Serve LLM are imported by the wrappers that need them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar, cast

import ray

# Cheap (no Serve, no vLLM): a base class has to exist when a subclass is defined.
from ray.llm._internal.common.callbacks.base import CallbackBase

from prsm import __version__

if TYPE_CHECKING:
    from ray.serve.llm.openai_api_models import ChatCompletionRequest

__all__ = [
    "SUPPORTED_RAY",
    "CallbackBase",
    "InProcessWorkerHook",
    "StreamBatchingHook",
    "UnsupportedRayVersion",
    "available_resources_per_node",
    "batched",
    "check_ray_version",
    "delete_app_nowait",
    "deploy_app_nowait",
    "reload_auth_config",
    "sanitize_chat_request",
    "serve_request_id",
    "with_serve_request_id",
]

SUPPORTED_RAY = "2.60.0"

T = TypeVar("T")


class UnsupportedRayVersion(RuntimeError):
    """The installed Ray is not the release PRSM's private-API uses were written against."""


def check_ray_version(installed: str) -> None:
    """Raise ``UnsupportedRayVersion`` unless ``installed`` is ``SUPPORTED_RAY``."""
    if installed != SUPPORTED_RAY:
        raise UnsupportedRayVersion(
            f"PRSM {__version__} supports ray=={SUPPORTED_RAY} (it uses private Ray APIs that "
            f"change between releases); installed: ray {installed}. "
            f"Install ray[serve,default,data]=={SUPPORTED_RAY}."
        )


check_ray_version(ray.__version__)


# --- Ray core ------------------------------------------------------------------------------


def available_resources_per_node() -> dict[str, dict[str, float]]:
    """Each live node's free resources (node id → resource → amount), net of every actor
    and placement group. Public Ray has only the cluster-wide sum
    (``ray.available_resources()``) and the nodes' totals (``ray.nodes()``); the state API
    (``ray.util.state``) lists nodes without what is free on them. The scheduler checks
    admission against the per-node figure, so it uses Ray's own private accessor."""
    from ray._private.state import available_resources_per_node as per_node

    free: dict[str, dict[str, float]] = per_node()  # type: ignore[no-untyped-call]
    return free


def reload_auth_config() -> None:
    """Make Ray read its system config (``RAY_AUTH_MODE`` among it) from the environment
    again. Ray reads it once per process, before PRSM has set the local cluster's token
    environment; there is no public call to re-read it, so this does what Ray's own token
    setup does (``ray._private.authentication.authentication_token_setup``): call the
    private ``ray._raylet.Config.initialize``."""
    from ray._raylet import Config  # type: ignore[attr-defined]

    Config.initialize("")


# --- Ray Serve -----------------------------------------------------------------------------


def deploy_app_nowait(app: Any, name: str, route_prefix: str | None = None) -> None:
    """Deploy (or update) a Serve application and return once Serve has accepted it,
    without waiting for it to run. Public ``serve.run`` waits until the application is
    RUNNING (minutes for a model); the model controller reconciles many applications in
    one pass and watches their status itself, so it uses ``serve._run(_blocking=False)``."""
    from ray import serve

    serve._run(app, name=name, route_prefix=route_prefix, _blocking=False)


def delete_app_nowait(name: str) -> None:
    """Ask Serve to delete an application and return at once. Public ``serve.delete``
    waits until it is gone; its ``_blocking=False`` is private. The model controller sees
    the application DELETING in its next passes."""
    from ray import serve

    serve.delete(name, _blocking=False)


def serve_request_id() -> str:
    """The Serve request id of the request this replica serves now (``""`` outside one).
    Public Serve has no accessor for it (``serve.get_replica_context()`` says which replica,
    not which request); Ray Serve LLM reads it the same way, from the private request
    context, and gives it to vLLM as the request's id."""
    from ray.serve import context

    found = context._serve_request_context.get()
    return found.request_id if found is not None else ""


@contextmanager
def with_serve_request_id(request_id: str) -> Iterator[None]:
    """Serve handle calls made inside carry ``request_id`` as their Serve request id (the
    replica they reach, and vLLM there, see it). A handle call takes the id of the request
    context it is made in (the HTTP request's, in a replica), or a fresh one; public Serve
    has no way to choose it, so this replaces the private request context's id for the
    block, every other field of the context kept."""
    from ray.serve import context

    variable: ContextVar[Any] = context._serve_request_context
    current = variable.get() or context._RequestContext()
    token = variable.set(dataclasses.replace(current, request_id=request_id))
    try:
        yield
    finally:
        variable.reset(token)


# --- Ray Serve LLM -------------------------------------------------------------------------

# ``CallbackBase`` (imported above): the base class of the ``callback_class`` that
# ``LLMConfig.callback_config`` names. Ray Serve LLM documents the hook but exports the base
# class (with its ``ctx.run_init_node`` switch) from no public module.


def batched(
    generator: AsyncGenerator[T, None], interval_ms: float | None
) -> AsyncGenerator[list[T], None]:
    """The items of ``generator`` in lists, one list every ``interval_ms`` (all at once for
    ``None``): Ray Serve LLM's own stream batcher, which it does not export. (``stream()``
    is annotated to yield ``Iterable``; it yields lists, which ``LLMServer`` relies on.)"""
    from ray.llm._internal.serve.utils.batcher import Batcher

    stream = Batcher(generator, interval_ms=interval_ms).stream()
    return cast("AsyncGenerator[list[T], None]", stream)


class StreamBatchingHook:
    """A mixin for a subclass of ``ray.serve.llm.LLMServer`` (put it first among the bases)
    to change how a streamed answer's chunks are batched: ``LLMServer`` has no public
    option for it, only its private ``_batch_output_stream``, which this overrides to call
    ``batch_output_stream`` with the interval ``LLMServer`` would use (its private
    ``_get_batch_interval_ms``)."""

    if TYPE_CHECKING:

        def _get_batch_interval_ms(self, stream: bool = True) -> int: ...

    def batch_output_stream(
        self, generator: AsyncGenerator[T, None], interval_ms: float | None
    ) -> AsyncGenerator[list[T], None]:
        """Override: the batches to send (by default as ``LLMServer`` does)."""
        return batched(generator, interval_ms)

    def _batch_output_stream(
        self, generator: AsyncGenerator[T, None]
    ) -> AsyncGenerator[list[T], None]:
        return self.batch_output_stream(generator, self._get_batch_interval_ms())


class InProcessWorkerHook:
    """A mixin for a subclass of ``ray.serve.llm.LLMServer`` (put it first among the bases):
    a vLLM engine of one worker on CPU runs that worker in the engine's own process (vLLM's
    ``uni`` executor). Ray Serve LLM asks for the ``mp`` executor on CPU (and vLLM's CPU
    platform turns ``uni`` into ``mp`` too, because it binds a worker's threads to cores only
    in the processes that executor starts), which starts the one worker as a process of its
    own: one more process to start (it imports torch and vLLM again, seconds) and a hop
    through shared memory on every engine step. PRSM binds no threads (see
    ``vllm_serve.runtime_env``), so it does not need that process. Engines of several
    workers, and GPU engines, are left as Ray Serve LLM makes them. ``LLMServer`` picks its
    engine class in the private ``_get_default_engine_class``; the engine's arguments are
    made in ``VLLMEngine._prepare_engine_config``, also private; neither has a public
    option."""

    def _get_default_engine_class(self) -> type:
        return _in_process_worker_engine()


def _in_process_worker_engine() -> type:
    from ray.llm._internal.serve.engines.vllm.vllm_engine import VLLMEngine

    class InProcessWorkerEngine(VLLMEngine):
        def _prepare_engine_config(self, callback_ctx: Any) -> tuple[Any, Any, Any]:
            args, frontend, config = super()._prepare_engine_config(callback_ctx)
            parallel = config.parallel_config
            if parallel.world_size == 1 and parallel.distributed_executor_backend == "mp":
                parallel.distributed_executor_backend = "uni"
                args.distributed_executor_backend = "uni"
            return args, frontend, config

    return InProcessWorkerEngine


def sanitize_chat_request(request: ChatCompletionRequest) -> ChatCompletionRequest:
    """A chat request that Ray can pickle to a model replica: Pydantic leaves fields typed
    ``Iterable[...]`` (message ``content``, ``tool_calls``) as ``ValidatorIterator`` objects,
    which do not pickle. Ray's OpenAI ingress fixes them with this private helper before
    calling ``LLMServer`` through a handle, as PRSM's gateway does; it is not exported."""
    from ray.llm._internal.serve.core.ingress.utils import _sanitize_chat_completion_request

    _sanitize_chat_completion_request(request)  # in place; it returns the same object
    return request
