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

Outcome = tuple[str, bool, Any, float]
"""``(subtask key, ok, output or error text, seconds)``."""


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

    def run(self, calls: list[tuple[tuple[str, str], str, str, Any]]) -> list[Outcome]:
        """Run each ``(owner, key, skill, input)`` in turn; ``owner`` is the subtask's task's
        (tenant, user), whom a model call acts for."""
        with self._lock:
            self._running += 1
        try:
            return [self._one(owner, key, name, value) for owner, key, name, value in calls]
        finally:
            with self._lock:
                self._running -= 1

    def _one(self, owner: tuple[str, str], key: str, name: str, value: Any) -> Outcome:
        started = time.perf_counter()
        try:
            output = self._llm(owner, value) if name == "llm.complete" else SKILLS[name](value)
            ok = True
        except Exception as exc:  # the skill's failure is its subtask's, reported as text
            output, ok = f"{type(exc).__name__}: {exc}"[:500], False
        seconds = time.perf_counter() - started
        with self._lock:
            old = self._seconds.get(name)
            self._seconds[name] = seconds if old is None else old + SPEED_ALPHA * (seconds - old)
            self._done += 1
        return key, ok, output, seconds

    def heartbeat(self) -> dict[str, Any]:
        with self._lock:
            return {
                "agent_id": self.agent_id,
                "load": min(1.0, self._running / self.capacity),
                "running": self._running,
                "done": self._done,
                "speed": {s: CATALOG[s].nominal_s / max(t, 1e-6) for s, t in self._seconds.items()},
                "at": time.time(),
            }

    def node_id(self) -> str:
        return str(ray.get_runtime_context().get_node_id())

    # --- the model call ------------------------------------------------------------------

    def _llm(self, owner: tuple[str, str], item: dict[str, Any]) -> str:
        loop = self._event_loop()
        with self._lock:
            if self._complete is None:
                if self._build_llm is None:
                    raise RuntimeError("this agent has no model access")
                self._complete = asyncio.run_coroutine_threadsafe(
                    self._build_llm(self._settings), loop
                )
        complete = self._complete.result(timeout=LLM_TIMEOUT_S)
        call: Future[str] = asyncio.run_coroutine_threadsafe(
            complete(owner[0], owner[1], item), loop
        )
        return call.result(timeout=LLM_TIMEOUT_S)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, daemon=True,
                                 name="agent-llm").start()  # fmt: skip
            return self._loop
