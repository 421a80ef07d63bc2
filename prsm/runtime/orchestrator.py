"""The orchestrator: a named, detached Ray actor that Ray restarts when it dies. It follows
the event log for tasks of the built-in types, splits each into subtasks (``task_types``),
runs them on agents chosen by suitability (``AgentPool``) under the task's coordination
strategy (``TaskRun``), and records subtask outcomes, progress and the task's result.

It holds nothing the store does not: restarted, it reads the log from the start, takes back
the agents that still run, and resumes every unfinished task, each finished subtask's output
coming from its ``SubtaskCompleted`` event instead of running again.

Seam with the scheduler: a task is the orchestrator's once it is SCHEDULED. Until the
scheduler exists, the orchestrator admits a QUEUED task itself as soon as its dependencies
have succeeded (and fails it when one failed or was cancelled).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import ray
from ray.exceptions import RayActorError

from prsm.domain import events as ev
from prsm.domain.errors import AgentUnavailable, CapabilityMismatch, ConcurrencyError, PrsmError
from prsm.domain.orchestration import Call, TaskRun
from prsm.domain.task_types import TASK_TYPES, plan
from prsm.domain.tasks import STATUS_AFTER, Task, TaskStatus
from prsm.runtime import actors
from prsm.runtime.agent import LlmBuilder
from prsm.runtime.agent_registry import AgentRegistry, actor_name
from prsm.service_layer import agents as agent_events
from prsm.service_layer.handlers import load_task, task_stream
from prsm.service_layer.ports import EventStore, StreamWrite

log = logging.getLogger("prsm.orchestrator")

NAME = "prsm-orchestrator"
MAX_BATCH = 16  # subtasks per agent call
PROGRESS_EVERY_S = 0.5
HEARTBEAT_EVERY_S = 1.0
READ_BATCH = 2000

StoreBuilder = Callable[[dict[str, Any]], Awaitable[EventStore]]
Mutation = Callable[[Task], None]


def run_stream(task_id: str) -> str:
    return f"run-{task_id}"


def _now() -> datetime:
    return datetime.now(UTC)


class Orchestrator:
    """Runs its loop on a thread of its own, started by the constructor, so that a restarted
    actor resumes without being asked. ``options``: ``agents`` (type → count),
    ``max_attempts``, ``backoff_s``."""

    def __init__(self, build_store: StoreBuilder, build_llm: LlmBuilder | None,
                 settings: dict[str, Any], options: dict[str, Any]) -> None:  # fmt: skip
        self._build_store = build_store
        self._settings = settings
        self._max_attempts = int(options.get("max_attempts", 3))
        self._backoff_s = float(options.get("backoff_s", 0.5))
        self._agents = AgentRegistry(dict(options.get("agents", {})), build_llm, settings)
        self._store: EventStore | None = None
        self._position = 0
        self._status: dict[str, TaskStatus] = {}  # every task seen
        self._tasks: dict[str, Task] = {}  # unfinished tasks of the built-in types
        self._runs: dict[str, TaskRun] = {}
        self._run_events: dict[str, list[ev.Event]] = {}
        self._progress_at: dict[str, tuple[float, float]] = {}  # task → (time, progress) written
        self._snapshot: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._wake = asyncio.Event()
        self._started = threading.Event()
        threading.Thread(target=self._loop.run_until_complete, args=(self._main(),),
                         daemon=True, name="orchestrator").start()  # fmt: skip

    # --- actor methods (called from Ray's threads) ---------------------------------------

    def ready(self) -> bool:
        return self._started.wait(timeout=300)

    def agents(self) -> list[dict[str, Any]]:
        """Every agent with its type, status, load, speed and heartbeat age."""
        return self._snapshot

    def runs(self) -> dict[str, float]:
        """Progress (%) of each task running now."""
        return {task_id: run.progress for task_id, run in list(self._runs.items())}

    def drain(self, agent_id: str) -> bool:
        done = asyncio.run_coroutine_threadsafe(self._drain(agent_id), self._loop)
        return done.result(timeout=10)

    def wake(self) -> None:
        self._loop.call_soon_threadsafe(self._wake.set)

    async def _drain(self, agent_id: str) -> bool:
        return self._agents.drain(agent_id)

    # --- the loop ----------------------------------------------------------------------------

    async def _main(self) -> None:
        self._store = await self._build_store(self._settings)
        await self._agents.restore(self._store)
        self._started.set()
        beat_at = 0.0
        while True:
            try:
                self._agents.ensure()
                if time.monotonic() - beat_at > HEARTBEAT_EVERY_S:
                    beat_at = time.monotonic()
                    await self._agents.heartbeats()
                    self._agents.retire_drained()
                    self._snapshot = self._agents.snapshot()
                await self._follow_log()
                await self._admit()
                self._dispatch()
                await self._flush()
            except Exception:  # keep going: the next pass retries from what the store holds
                log.exception("orchestrator pass failed")
                await asyncio.sleep(1.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=0.05)
            self._wake.clear()

    async def _follow_log(self) -> None:
        assert self._store is not None
        while True:
            batch = await self._store.read_all(after=self._position, limit=READ_BATCH)
            for r in batch:
                self._position = r.position
                self._follow(r)
            if len(batch) < READ_BATCH:
                return

    def _follow(self, r: ev.RecordedEvent) -> None:
        e = r.event
        if isinstance(e, ev.TaskSubmitted):
            self._status[e.task_id] = TaskStatus.SUBMITTED
            if e.task_type in TASK_TYPES:
                self._tasks[e.task_id] = Task.from_events([e], version=r.version)
            return
        status = STATUS_AFTER.get(type(e))
        task_id = getattr(e, "task_id", None)
        if status is None or task_id not in self._status:
            return
        self._status[task_id] = status
        task = self._tasks.get(task_id)
        if task is not None:
            task.follow(e, r.version)

    # --- tasks -------------------------------------------------------------------------------

    async def _admit(self) -> None:
        """Drop finished tasks; start QUEUED ones whose dependencies succeeded; resume the
        runs of SCHEDULED and RUNNING ones."""
        now, writes = _now(), list[tuple[Task, Mutation]]()
        for task_id, task in list(self._tasks.items()):
            if task.status.is_terminal:
                del self._tasks[task_id]
                self._runs.pop(task_id, None)
                self._progress_at.pop(task_id, None)
            elif task_id not in self._runs and task.status is TaskStatus.QUEUED:
                verdict = self._dependencies(task)
                if verdict == "wait":
                    continue
                if verdict:
                    writes.append((task, partial(Task.fail, at=now, error=verdict)))
                    continue
                writes.append((task, partial(_begin, at=now)))
            elif task_id not in self._runs and task.status is TaskStatus.SCHEDULED:
                writes.append((task, partial(Task.start, at=now)))
        await self._write_tasks(writes)
        for task_id, task in list(self._tasks.items()):
            if task.status is TaskStatus.RUNNING and task_id not in self._runs:
                await self._resume(task)

    def _dependencies(self, task: Task) -> str:
        """``""`` to go, ``"wait"``, or why the task cannot run."""
        for dep in task.dependencies:
            status = self._status.get(dep)
            if status is None:
                return f"dependency {dep} does not exist"
            if status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
                return f"dependency {dep} {status.value.lower()}"
            if status is not TaskStatus.SUCCEEDED:
                return "wait"
        return ""

    async def _resume(self, task: Task) -> None:
        assert self._store is not None
        try:
            p = plan(task.task_type, task.params, task.strategy)
        except PrsmError as exc:
            await self._write_tasks([(task, partial(Task.fail, at=_now(), error=str(exc)))])
            return
        run = TaskRun(task.task_id, p, self._max_attempts, self._backoff_s)
        run.restore(r.event for r in await self._store.read_stream(run_stream(task.task_id)))
        self._runs[task.task_id] = run
        if run.outputs:
            log.info("task %s resumed with %d of %d subtasks done", task.task_id,
                     len(run.outputs), p.size)  # fmt: skip

    # --- subtasks ----------------------------------------------------------------------------

    def _dispatch(self) -> None:
        now = time.monotonic()
        order = sorted(self._runs, key=lambda t: (-self._tasks[t].priority,
                                                  self._tasks[t].submitted_at))  # fmt: skip
        agents = max(1, len(self._agents.pool))
        for task_id in order:
            run = self._runs[task_id]
            size = max(1, min(MAX_BATCH, run.waiting // (2 * agents)))
            while self._dispatch_batch(task_id, run, now, size):
                pass

    def _dispatch_batch(self, task_id: str, run: TaskRun, now: float, size: int) -> bool:
        """Send one batch to the best agent; ``False`` when nothing more can go now."""
        calls = run.take(now, size)
        if not calls:
            return False
        fresh = [c for c in calls if c.key not in run.tried]
        groups = [[c] for c in calls if c.key in run.tried]  # a retry goes alone, elsewhere
        by_skill: dict[str, list[Call]] = {}
        for c in fresh:
            by_skill.setdefault(c.skill, []).append(c)
        groups.extend(by_skill.values())
        sent = True
        for group in groups:
            try:
                if not sent:
                    raise AgentUnavailable("stop")
                agent = self._agents.pool.choose(run.needs(group[0].key),
                                                 avoid=run.tried.get(group[0].key, ()))  # fmt: skip
            except (AgentUnavailable, CapabilityMismatch):
                sent = False
                for c in reversed(group):
                    run.lost(c.key)
                continue
            handle = self._agents.acquire(agent.agent_id)
            task = self._tasks[task_id]
            self._loop.create_task(self._call(task_id, run, agent.agent_id, handle,
                                              (task.tenant_id, task.user_id), group))  # fmt: skip
        return sent

    async def _call(self, task_id: str, run: TaskRun, agent_id: str, handle: Any,
                    owner: tuple[str, str], calls: list[Call]) -> None:  # fmt: skip
        try:
            outcomes = await handle.run.remote(owner, [(c.key, c.skill, c.input) for c in calls])
        except RayActorError as exc:
            self._agents.died(agent_id, f"{type(exc).__name__} while running subtasks")
            for c in reversed(calls):
                run.lost(c.key)
            return
        except Exception as exc:  # the call itself failed (e.g. an input Ray cannot ship)
            outcomes = [(c.key, False, f"{type(exc).__name__}: {exc}"[:500], 0.0) for c in calls]
        finally:
            self._agents.release(agent_id)
            self._wake.set()
        if self._runs.get(task_id) is not run:
            return  # cancelled, or finished meanwhile: nothing to record
        now, buffer = time.monotonic(), self._run_events.setdefault(task_id, [])
        for key, ok, value, seconds in outcomes:
            if ok and run.completed(key, value):
                buffer.append(ev.SubtaskCompleted(task_id=task_id, key=key, agent_id=agent_id,
                                                  output=value, seconds=seconds))  # fmt: skip
            elif not ok:
                failed = run.failed(key, agent_id, str(value), now)
                if failed is not None:
                    buffer.append(failed)

    # --- writes ------------------------------------------------------------------------------

    async def _flush(self) -> None:
        """Append the subtask and agent events gathered, then progress and outcomes."""
        assert self._store is not None
        # Take the buffers first: agent answers arriving during the append go to new ones.
        runs, self._run_events = self._run_events, {}
        agents, self._agents.events = self._agents.events, []
        writes = [StreamWrite(run_stream(t), None, [self._new(e, t) for e in events])
                  for t, events in runs.items() if events]  # fmt: skip
        if agents:
            news = [self._new(e, "agents") for e in agents]
            writes.append(StreamWrite(agent_events.STREAM, None, news))
        if writes:
            try:
                await self._store.append(writes)
            except Exception:  # keep them, in order, for the next pass
                for t, events in self._run_events.items():
                    runs.setdefault(t, []).extend(events)
                self._run_events = runs
                self._agents.events = agents + self._agents.events
                raise
        now, clock = _now(), time.monotonic()
        changes: list[tuple[Task, Mutation]] = []
        for task_id, run in self._runs.items():
            task = self._tasks[task_id]
            if run.finished:
                ok, result, error = run.outcome()
                if ok:
                    changes.append((task, partial(Task.succeed, at=now, result_ref=None,
                                                  result=result)))  # fmt: skip
                else:
                    changes.append((task, partial(Task.fail, at=now, error=error or "",
                                                  result=result)))  # fmt: skip
                continue
            at, written = self._progress_at.get(task_id, (0.0, -1.0))
            if run.progress != written and clock - at >= PROGRESS_EVERY_S:
                self._progress_at[task_id] = (clock, run.progress)
                changes.append((task, partial(Task.report_progress, at=now,
                                              progress=run.progress)))  # fmt: skip
        await self._write_tasks(changes)

    async def _write_tasks(self, changes: Sequence[tuple[Task, Mutation]]) -> None:
        """Apply each change to its task and append them all in one transaction; a task that
        moved on meanwhile (e.g. cancelled by its owner) is reloaded and left out."""
        assert self._store is not None
        pending: dict[str, Task] = {}
        for task, change in changes:
            try:
                change(task)
                pending[task.task_id] = task
            except PrsmError:
                task.changes.clear()
        while pending:
            writes = [StreamWrite(task_stream(t.task_id), t.version,
                                  [self._new(e, t.task_id) for e in t.changes])
                      for t in pending.values()]  # fmt: skip
            try:
                await self._store.append(writes)
            except ConcurrencyError as exc:
                stale = pending.pop(exc.stream_id.removeprefix("task-"))
                self._tasks[stale.task_id] = await load_task(self._store, stale.task_id)
                continue
            except Exception:  # nothing was written: take the tasks back as stored
                for t in pending.values():
                    self._tasks[t.task_id] = await load_task(self._store, t.task_id)
                raise
            for t in pending.values():
                t.version += len(t.changes)
                t.changes.clear()
            return

    def _new(self, event: ev.Event, correlation: str) -> ev.NewEvent:
        meta = ev.EventMetadata(occurred_at=_now(), source="orchestrator",
                                correlation_id=correlation)  # fmt: skip
        return ev.NewEvent(event, meta)


def _begin(task: Task, at: datetime) -> None:
    task.schedule(at, {"agents": "pool"})
    task.start(at)


def start(build_store: StoreBuilder, build_llm: LlmBuilder | None, settings: dict[str, Any],
          options: dict[str, Any]) -> Any:  # fmt: skip
    """Get or create the orchestrator and wait until it has opened its store."""
    handle = actors.singleton(Orchestrator, NAME, build_store, build_llm, settings, options)
    ray.get(handle.ready.remote())
    return handle


def handle() -> Any | None:
    return actors.lookup(NAME)


def stop() -> None:
    """Kill the orchestrator and its agents for good."""
    running = handle()
    if running is None:
        return
    with contextlib.suppress(RayActorError):
        for agent in ray.get(running.agents.remote(), timeout=10):
            actors.kill(actor_name(agent["id"]))
    actors.kill(NAME)
