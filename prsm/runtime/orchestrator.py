"""The orchestrator: a named, detached Ray actor that Ray restarts when it dies. It follows
the event log for tasks of the built-in types, splits each into subtasks (``task_types``),
runs them on agents chosen by suitability (``AgentPool``) under the task's coordination
strategy (``TaskRun``), and records subtask outcomes, progress and the task's result.

A task runs the code recorded with it at submit (``Task.skills``): installed skills on pooled
agents; shipped code on agents of its own, in its ``runtime_env``. A subtask past its timeout
has its agent killed and replaced and counts a failed try, as does one whose agent died
running it alone; a dead agent's batch goes again, each alone, to find the culprit. A large
result is stored whole in the result store (``result_ref``).

It holds nothing the store does not: restarted, it reads the log from the start, takes back
the agents that still run, and resumes every unfinished task, each finished subtask's output
coming from its ``SubtaskCompleted`` event instead of running again.

Seam with the scheduler: the scheduler decides when and where (admission, dependencies,
quotas, the placement group); the orchestrator decides who and how. A task is the
orchestrator's once the scheduler has marked it SCHEDULED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

import ray
from ray.exceptions import RayActorError

from prsm.adapters import skill_code
from prsm.adapters.blobs import BlobStore
from prsm.domain import events as ev
from prsm.domain import streams
from prsm.domain.agents import AgentPool, Location, Resources
from prsm.domain.errors import AgentUnavailable, CapabilityMismatch, PrsmError
from prsm.domain.orchestration import Call, TaskRun, death_verdict
from prsm.domain.skills import Skill
from prsm.domain.task_types import TASK_TYPES, plan
from prsm.domain.tasks import Task, TaskStatus
from prsm.observability import metrics
from prsm.observability.logging import correlated
from prsm.runtime import actors
from prsm.runtime.agent import LlmBuilder, Outcome, SubtaskCall
from prsm.runtime.agent_registry import AgentRegistry, actor_name
from prsm.runtime.loop_actor import LoopActor, StoreBuilder
from prsm.runtime.shipped_code import ray_runtime_env
from prsm.service_layer.ports import StreamWrite
from prsm.service_layer.runtime_views import AgentView
from prsm.service_layer.task_log import Mutation, TaskLog

log = logging.getLogger("prsm.orchestrator")

NAME = "prsm-orchestrator"
MAX_BATCH = 256  # subtasks per agent call (batches shrink to keep every agent busy)
PROGRESS_EVERY_S = 0.5
HEARTBEAT_EVERY_S = 1.0
READ_BATCH = 2000

Item = tuple[str, TaskRun, Call]  # (task id, its run, a subtask)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class OrchestratorOptions:
    """How the orchestrator runs tasks (built from ``Settings`` by ``prsm.bootstrap``)."""

    agents: dict[str, int]  # agent type → how many to keep running
    max_attempts: int  # tries of a subtask before it fails for good
    backoff_s: float  # wait before a subtask's first retry (doubles with each)


class Orchestrator(LoopActor):
    name = "orchestrator"

    def __init__(self, build_store: StoreBuilder, build_llm: LlmBuilder | None,
                 settings: dict[str, Any], options: OrchestratorOptions) -> None:  # fmt: skip
        super().__init__(build_store, settings)
        self._max_attempts = options.max_attempts
        self._backoff_s = options.backoff_s
        self._agents = AgentRegistry(dict(options.agents), build_llm, settings)
        self._log = TaskLog(lambda e: e.task_type in TASK_TYPES, source="orchestrator")
        self._tasks = self._log.tasks  # unfinished tasks of the built-in types
        self._runs: dict[str, TaskRun] = {}
        self._run_events: dict[str, list[ev.Event]] = {}
        self._progress_at: dict[str, tuple[float, float]] = {}  # task → (time, progress) written
        self._touched: set[str] = set()  # runs with answers not yet reflected in the task
        self._snapshot: list[AgentView] = []
        self._beat_at = 0.0
        self._installed = skill_code.installed()
        self._blobs = BlobStore(str(settings["result_store"]))
        self._inline_max = int(settings["result_inline_max_bytes"])
        self._start()

    # --- actor methods (called from Ray's threads) ---------------------------------------

    def agents(self) -> list[AgentView]:
        """Every agent with its type, status, load, speed and heartbeat age."""
        return self._snapshot

    def runs(self) -> dict[str, float]:
        """Progress (%) of each task running now."""
        return {task_id: run.progress for task_id, run in list(self._runs.items())}

    def drain(self, agent_id: str) -> bool:
        done = asyncio.run_coroutine_threadsafe(self._drain(agent_id), self._loop)
        return done.result(timeout=10)

    async def _drain(self, agent_id: str) -> bool:
        return self._agents.drain(agent_id)

    # --- the loop ----------------------------------------------------------------------------

    async def _setup(self) -> None:
        assert self._store is not None
        await self._agents.restore(self._store)

    async def _pass(self) -> None:
        assert self._store is not None
        self._agents.ensure()
        if time.monotonic() - self._beat_at > HEARTBEAT_EVERY_S:
            self._beat_at = time.monotonic()
            self._agents.stop_overdue(await self._agents.heartbeats())
            self._agents.retire_drained()
            self._snapshot = self._agents.snapshot()
            metrics.agents(self._snapshot, self._agents.desired)
        await self._log.catch_up(self._store)
        await self._admit()
        self._dispatch()
        await self._flush()

    # --- tasks -------------------------------------------------------------------------------

    async def _admit(self) -> None:
        """Drop the runs of finished tasks; start the tasks the scheduler placed; take back
        the runs of running ones (after a restart)."""
        for task_id in [t for t in self._runs if t not in self._tasks]:
            del self._runs[task_id]  # ended (e.g. cancelled): answers still due are dropped
            self._agents.release(task_id)
            self._progress_at.pop(task_id, None)
            if self._log.status.get(task_id) is TaskStatus.CANCELLED:
                self._run_events.pop(task_id, None)
        if len(self._runs) == len(self._tasks):
            return  # every task the orchestrator holds is running
        now = _now()
        waiting = [t for t in self._tasks.values() if t.task_id not in self._runs]
        placed = [t for t in waiting if t.status is TaskStatus.SCHEDULED]
        await self._write_tasks([(t, partial(Task.start, at=now)) for t in placed])
        for task in placed:
            if task.status is TaskStatus.RUNNING:  # started now: no subtask has run yet
                await self._resume(task, fresh=True)
        for task in waiting:
            if task.status is TaskStatus.RUNNING and task.task_id not in self._runs:
                await self._resume(task)

    async def _resume(self, task: Task, fresh: bool = False) -> None:
        assert self._store is not None
        try:
            skills = self._installed.merged(Skill.from_record(r) for r in task.skills)
            p = plan(task.task_type, task.params, skills, task.strategy)
            runtime_env = ray_runtime_env(task.runtime_env, self._blobs)
        except (PrsmError, ValueError) as exc:
            await self._write_tasks([(task, partial(Task.fail, at=_now(), error=str(exc)))])
            return
        run = TaskRun(task.task_id, p, self._max_attempts, self._backoff_s)
        allocation = task.allocation or {}
        if allocation.get("placement_group"):  # its code runs in its own bundles
            bundles = [(float(c), float(g), float(m)) for c, g, m in allocation["bundles"]]
            self._agents.reserve(task.task_id, bundles, p.capabilities, runtime_env)
        if not fresh:  # started before a restart: take back what its subtasks recorded
            run.restore(r.event for r in await self._store.read_stream(streams.run(task.task_id)))
            self._touched.add(task.task_id)  # perhaps finished already: its outcome is due
        self._runs[task.task_id] = run
        with correlated(task.correlation_id):
            log.info("task %s running: %d of %d subtasks done", task.task_id,
                     len(run.outputs), p.size)  # fmt: skip

    # --- subtasks ----------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Send ready subtasks to agents: those of tasks without a reservation to the pooled
        agents, together; those of a task with one to its own agents (once each of its
        bundles has had one)."""
        now = time.monotonic()
        ready = [t for t, run in self._runs.items() if run.waiting]
        order = sorted(ready, key=lambda t: (-self._tasks[t].priority,
                                             self._tasks[t].submitted_at))  # fmt: skip
        for task_id in order:
            r = self._agents.reservations.get(task_id)
            if r is not None and r.failed is not None:
                self._runs[task_id].abandon(r.failed)
                self._touched.add(task_id)
        pooled = [t for t in order if t not in self._agents.reservations]
        if pooled:
            self._dispatch_to(self._agents.pool, pooled, now)
        for task_id in order:
            if task_id in self._agents.reservations and self._agents.can_dispatch(task_id):
                self._dispatch_to(self._agents.pool_for(task_id), [task_id], now)

    def _dispatch_to(self, pool: AgentPool, order: list[str], now: float) -> None:
        """Take ready subtasks of these runs (in order), group them by skill across tasks —
        many small tasks share one agent call — and send each batch to the most suitable
        agent of ``pool``. A retry goes alone, to an agent it has not failed on."""
        agents = max(1, len(pool))
        waiting = sum(self._runs[t].waiting for t in order)
        size = max(1, min(MAX_BATCH, waiting // (2 * agents)))
        budget = size * self._agents.free_slots(pool)
        batches: list[list[Item]] = []
        groups: dict[tuple[str, frozenset[str]], list[Item]] = {}
        for task_id in order:
            run = self._runs[task_id]
            for call in run.take(now, budget):
                budget -= 1
                item = (task_id, run, call)
                if call.key in run.tried:
                    batches.append([item])
                else:
                    kind = (call.skill, run.plan.requires)
                    group = groups.setdefault(kind, [])
                    group.append(item)
                    if len(group) == size:
                        batches.append(groups.pop(kind))
            if budget <= 0:
                break
        batches.extend(groups.values())
        unsent = [batch for batch in batches if not self._send(pool, batch)]
        for batch in reversed(unsent):  # back to the front of their queues, in order
            for _, run, call in reversed(batch):
                run.lost(call.key)

    def _send(self, pool: AgentPool, batch: list[Item]) -> bool:
        task_id, run, first = batch[0]
        task = self._tasks[task_id]
        r = task.resources  # what one of its subtasks needs of an agent (per bundle: its own)
        bundles = max(1, len((task.allocation or {}).get("bundles") or ()))
        needs = replace(
            run.needs(first.key),
            resources=Resources(
                cpu=r.cpu / bundles, gpu=r.gpu / bundles, memory_gb=r.memory_mb / 1024 / bundles
            ),
        )
        region, zone = task.origin  # proximity: to the gateway it was submitted to
        caller = Location(region, zone) if region or zone else None
        try:
            agent = pool.choose(needs, caller=caller, avoid=run.tried.get(first.key, ()))
        except (AgentUnavailable, CapabilityMismatch):
            return False
        handle = self._agents.acquire(agent.agent_id)
        self._loop.create_task(self._call(agent.agent_id, handle, batch))
        return True

    async def _call(self, agent_id: str, handle: Any, batch: list[Item]) -> None:
        calls = [SubtaskCall(self._tasks[t].tenant_id, self._tasks[t].user_id, t, c.key,
                             run.skill_of(c.key), c.input, self._tasks[t].correlation_id)
                 for t, run, c in batch if t in self._tasks]  # fmt: skip
        try:
            outcomes: list[Outcome] = await handle.run.remote(calls)
        except RayActorError as exc:
            self._agents.died(agent_id, f"{type(exc).__name__} while running subtasks")
            self._died_running(agent_id, batch, exc)
            return
        except Exception as exc:  # the call itself failed (e.g. an input Ray cannot ship)
            outcomes = [Outcome(c.key, False, f"{type(exc).__name__}: {exc}"[:500], 0.0)
                        for _, _, c in batch]  # fmt: skip
        finally:
            self._agents.done(agent_id)
            self._wake.set()
        now = time.monotonic()
        where = self._agents.info.get(agent_id)
        node_id, bundle = (where.node_id, where.bundle) if where else ("", None)
        for (task_id, run, _), out in zip(batch, outcomes, strict=False):
            if self._runs.get(task_id) is not run:
                continue  # cancelled, or finished meanwhile: nothing to record
            self._touched.add(task_id)
            buffer = self._run_events.setdefault(task_id, [])
            if out.ok and run.completed(out.key, out.output):
                buffer.append(ev.SubtaskCompleted(task_id=task_id, key=out.key, agent_id=agent_id,
                                                  output=out.output, seconds=out.seconds,
                                                  node_id=node_id, bundle=bundle))  # fmt: skip
            elif not out.ok:  # the agent logged it, under the task's request id
                failed = run.failed(out.key, agent_id, str(out.output), now)
                if failed is not None:
                    buffer.append(replace(failed, node_id=node_id, bundle=bundle))

    def _died_running(self, agent_id: str, batch: list[Item], exc: RayActorError) -> None:
        """An agent died running ``batch``: each subtask counts a failed try or goes again
        alone, as ``death_verdict`` decides."""
        overdue = self._agents.overdue.pop(agent_id, {})
        now = time.monotonic()
        for task_id, run, c in reversed(batch):
            if self._runs.get(task_id) is not run:
                continue
            error = death_verdict(exc, overdue.get((task_id, c.key)), len(batch), bool(overdue))
            if error is None:
                run.lost(c.key, alone=True)
                continue
            self._touched.add(task_id)
            failed = run.failed(c.key, agent_id, error, now)
            if failed is not None:
                self._run_events.setdefault(task_id, []).append(failed)

    # --- writes ------------------------------------------------------------------------------

    async def _flush(self) -> None:
        """Append the subtask and agent events gathered, then progress and outcomes."""
        assert self._store is not None
        # Take the buffers first: agent answers arriving during the append go to new ones.
        runs, self._run_events = self._run_events, {}
        agents, self._agents.events = self._agents.events, []
        writes = [StreamWrite(streams.run(t), None, [self._new(e, t) for e in events])
                  for t, events in runs.items() if events]  # fmt: skip
        if agents:
            news = [self._new(e, "agents") for e in agents]
            writes.append(StreamWrite(streams.AGENTS, None, news))
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
        for task_id in list(self._touched):  # runs that got answers: finished, or progressed
            run = self._runs.get(task_id)
            if run is None or task_id not in self._tasks:
                self._touched.discard(task_id)
                continue
            task = self._tasks[task_id]
            if task_id in self._run_events:
                continue  # answers that came during the append: recorded before the outcome
            if run.finished:
                ok, result, error = run.outcome()
                with correlated(task.correlation_id):
                    log.info("task %s finished: %s", task_id, "ok" if ok else error)
                if ok:
                    ref, result = await asyncio.to_thread(
                        self._blobs.result, result, self._inline_max
                    )
                    changes.append((task, partial(Task.succeed, at=now, result_ref=ref,
                                                  result=result)))  # fmt: skip
                else:
                    changes.append((task, partial(Task.fail, at=now, error=error or "",
                                                  result=result)))  # fmt: skip
                continue
            at, written = self._progress_at.get(task_id, (0.0, 0.0))
            if run.progress == written:
                self._touched.discard(task_id)
            elif clock - at >= PROGRESS_EVERY_S:
                self._touched.discard(task_id)
                self._progress_at[task_id] = (clock, run.progress)
                changes.append((task, partial(Task.report_progress, at=now,
                                              progress=run.progress)))  # fmt: skip
        await self._write_tasks(changes)

    async def _write_tasks(self, changes: Sequence[tuple[Task, Mutation]]) -> None:
        assert self._store is not None
        await self._log.write(self._store, changes, _now())

    def _new(self, event: ev.Event, key: str) -> ev.NewEvent:
        """``key``: the task the event is about (recorded under the id of the request that
        submitted it, where known), or the stream of the agents."""
        task = self._tasks.get(key)
        request = (task.correlation_id if task else "") or key
        meta = ev.EventMetadata(occurred_at=_now(), source="orchestrator", correlation_id=request)
        return ev.NewEvent(event, meta)


def start(build_store: StoreBuilder, build_llm: LlmBuilder | None, settings: dict[str, Any],
          options: OrchestratorOptions) -> Any:  # fmt: skip
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
        listed: list[AgentView] = ray.get(running.agents.remote(), timeout=10)
        for agent in listed:
            actors.kill(actor_name(agent.id))
    actors.kill(NAME)
