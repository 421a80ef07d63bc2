"""An agent: a Ray actor (made in ``prsm.runtime.actors``) that runs skills on batches of
subtasks for the orchestrator, and reports its load and observed speed in heartbeats.

It runs ``capacity`` batches at once (a threaded actor with one more thread for heartbeats).
A skill that raises fails only its own subtask; the error goes back as text.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import ray

from prsm.domain.skills import SKILLS as CATALOG
from prsm.runtime.skills import SKILLS

SPEED_ALPHA = 0.3
LLM_TIMEOUT_S = 120.0

Complete = Callable[[str, str, dict[str, Any]], Coroutine[Any, Any, str]]
"""``(tenant_id, user_id, {model, prompt, max_tokens}) → text``: a model call through the
inference port, as the task's owner."""
LlmBuilder = Callable[[dict[str, Any]], Coroutine[Any, Any, Complete]]


@dataclass(frozen=True)
class SubtaskCall:
    """One subtask of a batch: its key, skill and input, and the owner of its task (whom a
    model call acts for)."""

    tenant_id: str
    user_id: str
    key: str
    skill: str
    input: Any  # the skill's input (JSON-like)


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


class AgentWorker:
    def __init__(
        self,
        agent_id: str,
        capacity: int,
        build_llm: LlmBuilder | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.capacity = capacity
        self._build_llm = build_llm
        self._settings = settings or {}
        self._lock = threading.Lock()
        self._running = 0
        self._done = 0
        self._seconds: dict[str, float] = {}  # skill → moving average of its duration
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
        name, started = call.skill, time.perf_counter()
        try:
            output = self._llm(call) if name == "llm.complete" else SKILLS[name](call.input)
            ok = True
        except Exception as exc:  # the skill's failure is its subtask's, reported as text
            output, ok = f"{type(exc).__name__}: {exc}"[:500], False
        seconds = time.perf_counter() - started
        with self._lock:
            old = self._seconds.get(name)
            self._seconds[name] = seconds if old is None else old + SPEED_ALPHA * (seconds - old)
            self._done += 1
        return Outcome(call.key, ok, output, seconds)

    def heartbeat(self) -> Heartbeat:
        with self._lock:
            return Heartbeat(
                agent_id=self.agent_id,
                load=min(1.0, self._running / self.capacity),
                running=self._running,
                done=self._done,
                speed={s: CATALOG[s].nominal_s / max(t, 1e-6) for s, t in self._seconds.items()},
                at=time.time(),
            )

    def node_id(self) -> str:
        return str(ray.get_runtime_context().get_node_id())

    # --- the model call ------------------------------------------------------------------

    def _llm(self, call: SubtaskCall) -> str:
        loop = self._event_loop()
        with self._lock:
            if self._complete is None:
                if self._build_llm is None:
                    raise RuntimeError("this agent has no model access")
                self._complete = asyncio.run_coroutine_threadsafe(
                    self._build_llm(self._settings), loop
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
