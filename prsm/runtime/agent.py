"""An agent: a Ray actor (made in ``prsm.runtime.actors``) that runs skills on batches of
subtasks for the orchestrator, and reports its load, observed speed and what it is running
in heartbeats.

It runs ``capacity`` batches at once (a threaded actor with one more thread for heartbeats).
A skill that raises fails only its own subtask: the error goes back as text, with the
exception's type and message and the last frames of its traceback; an output that does not
match the skill's output schema fails it too. Outputs over the inline limit go to the result
store, and a reference to one in an input is read back from it. A subtask that runs past its
timeout is not stopped here (a thread cannot be): each heartbeat says how long each running
subtask has run and its timeout, and the orchestrator replaces an agent that overran one.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
import traceback
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any

import ray

from prsm.adapters import skill_code
from prsm.adapters.blobs import BlobStore
from prsm.domain.results import has_reference
from prsm.domain.skills import Skill
from prsm.observability.logging import configure, correlated
from prsm.skill import spec_of

log = logging.getLogger("prsm.agent")

SPEED_ALPHA = 0.3
TRACEBACK_FRAMES = 3
MAX_ERROR_CHARS = 2000
LLM_TIMEOUT_S = 120.0

Complete = Callable[[str, str, dict[str, Any]], Coroutine[Any, Any, str]]
"""``(tenant_id, user_id, {model, prompt, max_tokens}) → text``: a model call through the
inference port, as the task's owner."""
LlmBuilder = Callable[[dict[str, Any]], Coroutine[Any, Any, Complete]]


@dataclass(frozen=True)
class SubtaskCall:
    """One subtask of a batch: its key, skill and input, the owner of its task (whom a
    model call acts for) and the id of the request that submitted the task (its log lines
    and model calls carry it)."""

    tenant_id: str
    user_id: str
    task_id: str
    key: str
    skill: Skill
    input: Any  # the skill's input (JSON-like)
    correlation_id: str = ""


@dataclass(frozen=True)
class Outcome:
    """A subtask's outcome: its output, or (``ok`` false) the error text."""

    key: str
    ok: bool
    output: Any
    seconds: float


@dataclass(frozen=True)
class Heartbeat:
    agent_id: str
    load: float  # share of its capacity in use, 0..1
    running: int  # batches running now
    done: int  # subtasks run since it started
    speed: dict[str, float]  # skill → nominal / observed seconds
    at: float  # time.time() of the heartbeat
    running_for: tuple[tuple[str, str, float, float], ...] = ()  # (task, key, s, timeout s)


class AgentWorker:
    def __init__(
        self,
        agent_id: str,
        capacity: int,
        build_llm: LlmBuilder | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        """``settings``: PRSM's settings as plain data; with a ``log_level`` (as the actor
        gets them), this process's PRSM logs are set up as JSON lines."""
        if settings and "log_level" in settings:
            configure(str(settings["log_level"]))
        self.agent_id = agent_id
        self.capacity = capacity
        self._build_llm = build_llm
        self._settings = settings or {}
        self._lock = threading.Lock()
        self._running = 0
        self._done = 0
        self._seconds: dict[str, float] = {}  # skill → moving average of its duration
        self._nominal: dict[str, float] = {}
        self._functions: dict[tuple[str, str], tuple[Skill, Callable[[Any], Any]]] = {}
        self._now: dict[int, tuple[str, str, float, float]] = {}  # thread → what it runs
        self._default_timeout_s = float(self._settings.get("skill_timeout_s", 900.0))
        self._inline_max = int(self._settings.get("result_inline_max_bytes", 65_536))
        self._blobs: BlobStore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._complete: Future[Complete] | None = None

    def run(self, calls: list[SubtaskCall]) -> list[Outcome]:
        """Run each subtask in turn."""
        with self._lock:
            self._running += 1
        try:
            return [self._one(call) for call in calls]
        finally:
            with self._lock:
                self._running -= 1

    def _one(self, call: SubtaskCall) -> Outcome:
        with correlated(call.correlation_id):
            return self._run_one(call)

    def _run_one(self, call: SubtaskCall) -> Outcome:
        name, started = call.skill.name, time.perf_counter()
        thread = threading.get_ident()
        try:
            skill, fn = self._function(call.skill)
            timeout = skill.timeout_s or self._default_timeout_s
            with self._lock:
                self._now[thread] = (call.task_id, call.key, time.monotonic(), timeout)
            if skill.kind == "llm":
                output = self._llm(call)
            else:
                output = fn(self._resolve(call.input))
                problem = skill.output_error(output)
                if problem is not None:
                    raise OutputMismatch(problem)
                output = self._keep(output)
            ok = True
        except Exception as exc:  # the skill's failure is its subtask's, reported as text
            output, ok = _describe(exc), False
            log.warning("task %s: subtask %s (%s) failed: %s", call.task_id, call.key, name,
                        f"{type(exc).__name__}: {exc}"[:300])  # fmt: skip
        finally:
            with self._lock:
                self._now.pop(thread, None)
        seconds = time.perf_counter() - started
        with self._lock:
            old = self._seconds.get(name)
            self._seconds[name] = seconds if old is None else old + SPEED_ALPHA * (seconds - old)
            self._nominal[name] = call.skill.nominal_s
            self._done += 1
        return Outcome(call.key, ok, output, seconds)

    def _function(self, skill: Skill) -> tuple[Skill, Callable[[Any], Any]]:
        """The code of ``skill`` (loaded once); a reference's function brings the schemas and
        timeout of its ``prsm.skill`` mark, where it has one."""
        key = (skill.name, skill.code)
        found = self._functions.get(key)
        if found is None:
            fn = _no_code if skill.kind == "llm" else skill_code.function(skill)
            spec = spec_of(fn)
            if skill.origin == "reference" and spec is not None:
                skill = replace(skill, input_schema=spec.input_schema,
                                output_schema=spec.output_schema,
                                timeout_s=spec.timeout_s)  # fmt: skip
            found = self._functions[key] = (skill, fn)
        return found

    def _store(self) -> BlobStore:
        if self._blobs is None:
            self._blobs = BlobStore(str(self._settings["result_store"]))
        return self._blobs

    def _keep(self, output: Any) -> Any:
        if isinstance(output, int | float | bool) or output is None:
            return output
        return self._store().keep(output, self._inline_max)

    def _resolve(self, value: Any) -> Any:
        """An input with a stored output in it, read back (the store is touched only then)."""
        if has_reference(value):
            return self._store().resolve(value)
        return value

    def heartbeat(self) -> Heartbeat:
        now = time.monotonic()
        with self._lock:
            return Heartbeat(
                agent_id=self.agent_id,
                load=min(1.0, self._running / self.capacity),
                running=self._running,
                done=self._done,
                speed={s: self._nominal[s] / max(t, 1e-6) for s, t in self._seconds.items()},
                at=time.time(),
                running_for=tuple(
                    (task, key, round(now - at, 3), timeout)
                    for task, key, at, timeout in self._now.values()
                ),
            )

    def node_id(self) -> str:
        return str(ray.get_runtime_context().get_node_id())

    # --- the model call ------------------------------------------------------------------

    def _llm(self, call: SubtaskCall) -> str:
        """The model call of an ``llm`` skill, made on the agent's event loop thread; it
        carries the request id of this thread's context (the call's task's)."""
        log.info("task %s: subtask %s calls model %s", call.task_id, call.key,
                 call.input.get("model") if isinstance(call.input, dict) else None)  # fmt: skip
        loop = self._event_loop()
        with self._lock:
            if self._complete is None:
                if self._build_llm is None:
                    raise RuntimeError("this agent has no model access")
                # Built outside any request's context: what it starts outlives this call.
                self._complete = contextvars.Context().run(
                    asyncio.run_coroutine_threadsafe, self._build_llm(self._settings), loop
                )
        complete = self._complete.result(timeout=LLM_TIMEOUT_S)
        answer: Future[str] = asyncio.run_coroutine_threadsafe(
            complete(call.tenant_id, call.user_id, call.input), loop
        )
        return answer.result(timeout=LLM_TIMEOUT_S)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, daemon=True,
                                 name="agent-llm").start()  # fmt: skip
            return self._loop


class OutputMismatch(Exception):
    """The skill's output does not match its output schema."""


def _no_code(_: Any) -> Any:
    raise RuntimeError("a model call is run by its agent")


def _describe(exc: BaseException) -> str:
    """``Type: message`` and the last frames of the traceback (where in the skill it broke)."""
    head = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, OutputMismatch):
        return head[:MAX_ERROR_CHARS]
    frames = traceback.format_tb(exc.__traceback__, limit=-TRACEBACK_FRAMES)
    return (head[: MAX_ERROR_CHARS // 2] + "\n" + "".join(frames))[:MAX_ERROR_CHARS].rstrip()
