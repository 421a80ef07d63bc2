"""One task's run under its coordination strategy: which subtasks are ready, what each one is
given, retries with backoff, and the task's outcome. Pure: the orchestrator actor feeds it
agent answers and the clock, and records what it returns.

Subtask keys are ``"stage:item"`` (``"0:17"``: the first stage on item 17) and ``"final"``.

- PARALLEL / MAP_REDUCE: every item of the first stage is ready at once; the final subtask
  (the reduce) once every item is done.
- PIPELINE: ``s+1:i`` is ready as soon as ``s:i`` is done, whatever the other items do.
- SEQUENTIAL: one subtask at a time, item after item (each through all its stages).

A subtask that fails is retried after ``backoff × 2^(n−1)`` seconds, on another agent where
there is one, until ``max_attempts``; then it fails for good, its item goes no further, the
final subtask does not run, and the task fails naming it. A subtask whose agent died in a
batch goes back to the front of the queue without counting as a try, to run alone (``lost``).
A run whose code cannot start at all (its runtime_env) is ``abandon``-ed with the reason.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prsm.domain import events as ev
from prsm.domain.agents import SubtaskNeeds
from prsm.domain.skills import Skill
from prsm.domain.task_types import Plan
from prsm.domain.tasks import CoordinationStrategy

FINAL = "final"
MAX_ERRORS_NAMED = 5


@dataclass(frozen=True)
class Call:
    key: str
    skill: str
    input: Any


class TaskRun:
    def __init__(self, task_id: str, plan: Plan, max_attempts: int, backoff_s: float):
        self.task_id = task_id
        self.plan = plan
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.outputs: dict[str, Any] = {}
        self.failures: dict[str, str] = {}
        self.attempts: dict[str, int] = {}
        self.tried: dict[str, set[str]] = {}
        self.running: set[str] = set()
        self.abandoned: str | None = None
        self._ready: deque[str] = deque()
        self._later: list[tuple[float, str]] = []
        self._sequential = plan.strategy is CoordinationStrategy.SEQUENTIAL
        self._last = len(plan.stages) - 1
        self._unfinished_items = len(plan.items)  # items whose last stage is not done
        self._frontier()

    # --- restore -----------------------------------------------------------------------

    def restore(self, history: Iterable[ev.Event]) -> None:
        """Take back what the store recorded of an earlier run (after a restart): finished
        subtasks keep their outputs and are not run again; tries already spent count."""
        for e in history:
            if isinstance(e, ev.SubtaskCompleted):
                self.outputs.setdefault(e.key, e.output)
            elif isinstance(e, ev.SubtaskFailed):
                self.attempts[e.key] = max(self.attempts.get(e.key, 0), e.attempt)
                self.tried.setdefault(e.key, set()).add(e.agent_id)
                if e.final:
                    self.failures[e.key] = e.error
        self._frontier()

    def _frontier(self) -> None:
        self._ready.clear()
        self._unfinished_items = sum(
            f"{self._last}:{i}" not in self.outputs for i in range(len(self.plan.items))
        )
        for i in range(len(self.plan.items)):
            for s in range(len(self.plan.stages)):
                key = f"{s}:{i}"
                if key in self.failures:
                    break
                if key not in self.outputs:
                    self._ready.append(key)
                    break
        self._queue_final()

    def _queue_final(self) -> None:
        p = self.plan
        if p.final is None or self.failures or FINAL in self.outputs or FINAL in self.running:
            return
        if self._unfinished_items == 0:
            self._ready.append(FINAL)

    # --- dispatch ------------------------------------------------------------------------

    def take(self, now: float, limit: int) -> list[Call]:
        """Up to ``limit`` subtasks to start now (marked running)."""
        while self._later and self._later[0][0] <= now:
            self._ready.appendleft(heapq.heappop(self._later)[1])
        if self._sequential:
            limit = 0 if self.running else min(limit, 1)
        calls: list[Call] = []
        while self._ready and len(calls) < limit:
            key = self._ready.popleft()
            try:
                given = self._input(key)
            except Exception as exc:  # outputs the task type cannot combine (e.g. no metric)
                self.failures[key] = f"its input could not be made: {type(exc).__name__}: {exc}"
                continue
            self.running.add(key)
            calls.append(Call(key, self.skill_of(key).name, given))
        return calls

    def skill_of(self, key: str) -> Skill:
        if key == FINAL:
            assert self.plan.final is not None
            return self.plan.final
        return self.plan.stages[int(key.split(":", 1)[0])]

    def needs(self, key: str) -> SubtaskNeeds:
        s = self.skill_of(key)
        return SubtaskNeeds(task_type=s.name, capabilities=self.plan.requires | {s.capability})

    def _input(self, key: str) -> Any:
        if key == FINAL:
            return self.plan.final_input(self._last_outputs())
        stage, item = (int(x) for x in key.split(":", 1))
        return self.plan.items[item] if stage == 0 else self.outputs[f"{stage - 1}:{item}"]

    def _last_outputs(self) -> list[Any]:
        return [self.outputs[f"{self._last}:{i}"] for i in range(len(self.plan.items))]

    # --- answers -------------------------------------------------------------------------

    def completed(self, key: str, output: Any) -> bool:
        """Record a subtask's output; ``False`` if it was not running (a late duplicate)."""
        if key not in self.running:
            return False
        self.running.discard(key)
        self.outputs[key] = output
        if key != FINAL:
            stage, item = (int(x) for x in key.split(":", 1))
            if stage < self._last:
                nxt = f"{stage + 1}:{item}"
                self._ready.appendleft(nxt) if self._sequential else self._ready.append(nxt)
            else:
                self._unfinished_items -= 1
                self._queue_final()
        return True

    def failed(self, key: str, agent_id: str, error: str, now: float) -> ev.SubtaskFailed | None:
        """Record a failed try; the event to store (``final`` once out of tries), or ``None``
        if the subtask was not running."""
        if key not in self.running:
            return None
        self.running.discard(key)
        attempt = self.attempts[key] = self.attempts.get(key, 0) + 1
        self.tried.setdefault(key, set()).add(agent_id)
        final = attempt >= self.max_attempts
        if final:
            self.failures[key] = error
        else:
            heapq.heappush(self._later, (now + self.backoff_s * 2 ** (attempt - 1), key))
        return ev.SubtaskFailed(task_id=self.task_id, key=key, agent_id=agent_id,
                                attempt=attempt, error=error, final=final)  # fmt: skip

    def lost(self, key: str, alone: bool = False) -> None:
        """The agent running ``key`` died: run it again elsewhere, not counted as a try
        (``alone``: in a batch of its own, as retries are)."""
        if key in self.running:
            self.running.discard(key)
            self._ready.appendleft(key)
            if alone:
                self.tried.setdefault(key, set())

    def abandon(self, reason: str) -> None:
        """Nothing more can run (its code cannot start): every subtask not done fails."""
        if self.abandoned is None:
            self.abandoned = reason
            for key in [*self._ready, *(k for _, k in self._later)]:
                self.failures[key] = reason
            self._ready.clear()
            self._later.clear()

    # --- state ---------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return not (self.running or self._ready or self._later)

    @property
    def waiting(self) -> int:
        """Subtasks ready or waiting for a retry."""
        return len(self._ready) + len(self._later)

    @property
    def progress(self) -> float:
        return round(100.0 * len(self.outputs) / self.plan.size, 2)

    def outcome(self) -> tuple[bool, dict[str, Any], str | None]:
        """``(succeeded, result, error)`` of a finished run."""
        if not self.failures:
            try:
                return True, self.plan.result(self._last_outputs(), self.outputs.get(FINAL)), None
            except Exception as exc:  # outputs the task type cannot combine
                error = f"its result could not be made: {type(exc).__name__}: {exc}"
                return False, {"completed": len(self.outputs)}, error
        failed = [
            {"subtask": k, "item": None if k == FINAL else int(k.split(":")[1]),
             "error": e, "attempts": self.attempts.get(k, 0)}
            for k, e in sorted(self.failures.items(), key=lambda kv: _order(kv[0]))
        ]  # fmt: skip
        if self.abandoned is not None:
            return False, {"failed": failed, "completed": len(self.outputs)}, self.abandoned
        named = "; ".join(f"{f['subtask']}: {f['error']}" for f in failed[:MAX_ERRORS_NAMED])
        extra = len(failed) - MAX_ERRORS_NAMED
        more = f" and {extra} more" if extra > 0 else ""
        error = (f"{len(failed)} of {self.plan.size} subtasks failed after "
                 f"{self.max_attempts} tries: {named}{more}")  # fmt: skip
        return False, {"failed": failed, "completed": len(self.outputs)}, error


def _order(key: str) -> tuple[int, int]:
    if key == FINAL:
        return (1 << 30, 0)
    stage, item = key.split(":", 1)
    return (int(item), int(stage))


def death_verdict(exc: BaseException, overran_s: float | None, batch_size: int,
                  any_overdue: bool) -> str | None:  # fmt: skip
    """The error a subtask's try fails with when its agent died running it (``overran_s``:
    how long it had run past its timeout, if it had): one that overran its timeout, or ran
    alone, counts a failed try; ``None``: an innocent companion, to go again alone."""
    if overran_s is not None:
        return (f"timed out: ran {overran_s:.0f} s, over its skill's timeout; its agent was "
                "stopped and replaced")  # fmt: skip
    if batch_size == 1 and not any_overdue:
        cause = str(exc).strip().splitlines()
        return f"its worker died: {type(exc).__name__}" + (f" ({cause[0][:300]})" if cause else "")
    return None
