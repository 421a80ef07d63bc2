"""What the gateway and a model replica's own server share to talk to a vLLM engine in Ray
Serve LLM: its request models (imported off the event loop), a request body parsed into
one of them (a clear 400 otherwise), and an engine's error answer raised as PRSM's error."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

from prsm.domain.errors import BadModelRequest, NotFound, RateLimited, UpstreamError

REQUEST_MODELS = "ray.serve.llm.openai_api_models"
_request_models: Any = None  # the module, once this process has imported it
_preloading: asyncio.Task[Any] | None = None


async def request_models() -> Any:
    """Ray Serve LLM's request models. Importing them imports vLLM and torch (seconds): done
    in a thread, so that a gateway's first model call does not stop its event loop (every
    request it holds) for that long. A call during ``preload_request_models``'s import waits
    in its thread for that import to finish (``sys.modules`` would give the module
    half-imported)."""
    global _request_models
    if _request_models is None:
        _request_models = await asyncio.to_thread(importlib.import_module, REQUEST_MODELS)
    return _request_models


def preload_request_models() -> None:
    """Start importing the request models now, beside a gateway replica's start, rather
    than in its first model call."""
    global _preloading
    _preloading = asyncio.get_running_loop().create_task(request_models())


def parse(model: Any, body: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:10]
        )
        raise BadModelRequest(problems) from None


def raise_if_error(item: Any) -> None:
    error = getattr(item, "error", None)
    if error is None or not hasattr(error, "code"):
        return
    message, code = str(error.message), int(error.code)
    if code == 404:
        raise NotFound(message)
    if code == 429:
        raise RateLimited(message)
    if 400 <= code < 500:
        raise BadModelRequest(message)
    raise UpstreamError(message)
