"""The orchestrator and its agents on a real local Ray, with the SQLite store: the built-in
task types end to end through the service layer, and what must survive — agents killed at
random, the orchestrator killed mid-task, skills that raise."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from prsm import bootstrap
from prsm.adapters.skill_code import installed
from prsm.config import Settings
from prsm.domain import commands as cmds
from prsm.domain import events as ev
from prsm.domain.identity import Principal
from prsm.domain.tasks import CoordinationStrategy, Task, TaskStatus
from prsm.runtime import actors, orchestrator, scheduler
from prsm.runtime.agent_registry import actor_name
from prsm.service_layer.handlers import load_task
from prsm.service_layer.messagebus import MessageBus
from prsm.service_layer.runtime_views import AgentView

ALICE = Principal(user_id="alice", tenant_id="lab", roles=frozenset({"user"}))
AGENTS = {"compute": 4, "simulation": 1}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    data_dir: Path = tmp_path_factory.mktemp("orchestration")
    settings = Settings(data_dir=data_dir, agents=AGENTS, task_retry_backoff_s=0.05,
                        default_model="")  # fmt: skip
    ray.init(address="local", num_cpus=8, include_dashboard=False, logging_level=logging.ERROR)
    try:
        bootstrap.start_orchestrator(settings)
        wait_for(lambda: len(agents()) == sum(AGENTS.values()), 120, "agents to start")
        yield settings
    finally:
        scheduler.stop()
        orchestrator.stop()
        ray.shutdown()


@pytest.fixture
async def bus(platform: Settings) -> AsyncIterator[MessageBus]:
    store = await bootstrap.open_store(platform)
    yield MessageBus(store, store, bootstrap.utc_now, source="tests", skills=installed())
    await store.close()


def agents() -> list[AgentView]:
    handle = orchestrator.handle()
    return [] if handle is None else list(ray.get(handle.agents.remote()))


def wait_for(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


async def submit(bus: MessageBus, task_type: str, params: dict[str, Any], **fields: Any) -> str:
    spec = cmds.TaskSpec(task_type=task_type, params=params, **fields)
    [s] = await bus.handle(cmds.SubmitTasks(correlation_id="t", principal=ALICE, specs=(spec,)))
    return str(s.task.task_id)


async def finished(bus: MessageBus, task_id: str, timeout_s: float = 120) -> Task:
    store = bus._context.store
    deadline = time.monotonic() + timeout_s
    while True:
        task = await load_task(store, task_id)
        if task.status.is_terminal:
            return task
        assert time.monotonic() < deadline, f"task {task_id} still {task.status}"
        await asyncio.sleep(0.1)


async def run_events(bus: MessageBus, task_id: str) -> list[ev.Event]:
    return [r.event for r in await bus._context.store.read_stream(f"run-{task_id}")]


def completed_keys(events: list[ev.Event]) -> Counter[str]:
    return Counter(e.key for e in events if isinstance(e, ev.SubtaskCompleted))


def primes_below_reference(limits: list[int]) -> list[int]:
    """An independent count (a plain bytearray sieve), to check the agents' answers."""
    top = max(limits)
    sieve = bytearray([1]) * top
    sieve[:2] = b"\x00\x00"
    for p in range(2, int(top**0.5) + 1):
        if sieve[p]:
            sieve[p * p :: p] = bytearray(len(range(p * p, top, p)))
    counts = list(itertools.accumulate(sieve))
    return [counts[n - 1] for n in limits]


ITEMS = [4_000_000 + 15_013 * i for i in range(200)]
EXPECTED = sum(primes_below_reference(ITEMS))
PRIMES = {"skill": "math.primes_below", "items": ITEMS, "reduce": "reduce.sum"}


async def test_map_reduce_gives_the_exact_result_while_agents_are_killed_at_random(
    bus: MessageBus,
) -> None:
    task_id = await submit(bus, "map_reduce", PRIMES)
    killed: list[str] = []
    stop = threading.Event()

    def killer() -> None:
        rng = random.Random(7)
        while not stop.wait(0.3) and len(killed) < 4:
            victims = [a.id for a in agents() if a.id not in killed]
            if victims:
                victim = rng.choice(victims)
                handle = actors.lookup(actor_name(victim))
                if handle is not None:
                    ray.kill(handle)
                    killed.append(victim)

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        task = await finished(bus, task_id)
    finally:
        stop.set()
        thread.join()
    assert task.status is TaskStatus.SUCCEEDED, task.error
    assert task.result == {"value": EXPECTED, "count": 200}
    assert len(killed) >= 2, "the agents were not killed while the task ran"
    done = completed_keys(await run_events(bus, task_id))
    assert set(done) == {f"0:{i}" for i in range(200)} | {"final"}
    assert max(done.values()) == 1  # no item counted twice
    registry = [r.event for r in await bus._context.store.read_stream("agents")]
    removed = {e.agent_id for e in registry if isinstance(e, ev.AgentRemoved)}
    assert set(killed) <= removed
    wait_for(lambda: len(agents()) == sum(AGENTS.values()), 60, "replacement agents")
    assert not {a.id for a in agents()} & set(killed)


async def test_the_orchestrator_killed_mid_task_comes_back_and_finishes(bus: MessageBus) -> None:
    before = {a.id for a in agents()}
    task_id = await submit(bus, "map_reduce", PRIMES)
    deadline = time.monotonic() + 60
    while len(completed_keys(await run_events(bus, task_id))) < 30:
        assert time.monotonic() < deadline, "no progress"
        await asyncio.sleep(0.05)
    handle = orchestrator.handle()
    assert handle is not None
    ray.kill(handle, no_restart=False)
    task = await finished(bus, task_id)
    assert task.status is TaskStatus.SUCCEEDED, task.error
    assert task.result == {"value": EXPECTED, "count": 200}
    done = completed_keys(await run_events(bus, task_id))
    assert len(done) == 201 and max(done.values()) == 1  # nothing finished ran again
    assert before <= {a.id for a in agents()}  # the agents outlived it and were taken back


async def test_a_skill_that_raises_fails_its_subtasks_after_retries_on_other_agents(
    bus: MessageBus,
) -> None:
    task_id = await submit(bus, "map", {"skill": "math.sqrt", "items": [4, -1, 9, -4, 16]})
    task = await finished(bus, task_id)
    assert task.status is TaskStatus.FAILED
    assert task.error is not None and task.error.startswith("2 of 5 subtasks failed after 3")
    assert task.result is not None
    assert [(f["item"], f["attempts"]) for f in task.result["failed"]] == [(1, 3), (3, 3)]
    for f in task.result["failed"]:  # the exception, then the last frames: the skill's line
        assert f["error"].startswith("ValueError: math domain error\n")
        assert 'compute.py", line' in f["error"] and "math.sqrt(x)" in f["error"]
    tries = [e for e in await run_events(bus, task_id) if isinstance(e, ev.SubtaskFailed)]
    on = {e.agent_id for e in tries if e.key == "0:1"}
    assert len(on) >= 2  # retried elsewhere
    assert [e.final for e in tries if e.key == "0:1"] == [False, False, True]


async def test_a_pipeline_streams_items_from_stage_to_stage(bus: MessageBus) -> None:
    # Sixty cheap items, then sixty costly ones: the batches split at the boundary for any
    # agent count the dispatcher divides by (120 // (2 × agents) divides 60 for 1..6 agents),
    # so streaming shows as the cheap items' second stage ending while the costly first
    # stages still run, a gap of seconds, whatever the machine's load.
    items = [10 + i for i in range(60)] + [10_000_000 + 1_000 * i for i in range(60)]
    params = {"stages": ["math.primes_below", "math.sqrt", "math.square"], "items": items}
    task_id = await submit(bus, "pipeline", params)
    task = await finished(bus, task_id)
    assert task.status is TaskStatus.SUCCEEDED, task.error
    expected = primes_below_reference(items)
    assert task.result is not None
    assert [round(x) for x in task.result["outputs"]] == expected
    keys = [e.key for e in await run_events(bus, task_id) if isinstance(e, ev.SubtaskCompleted)]
    last_first_stage = max(i for i, k in enumerate(keys) if k.startswith("0:"))
    first_second_stage = min(i for i, k in enumerate(keys) if k.startswith("1:"))
    assert first_second_stage < last_first_stage  # stage 2 began before stage 1 ended


async def test_sequential_runs_in_item_order(bus: MessageBus) -> None:
    items = list(range(20))
    task_id = await submit(bus, "map", {"skill": "math.square", "items": items},
                           strategy=CoordinationStrategy.SEQUENTIAL)  # fmt: skip
    task = await finished(bus, task_id)
    assert task.result == {"outputs": [i * i for i in items]}
    keys = [e.key for e in await run_events(bus, task_id) if isinstance(e, ev.SubtaskCompleted)]
    assert keys == [f"0:{i}" for i in items]


async def test_a_sweep_solves_the_ode_for_every_set_and_names_the_outliers(
    bus: MessageBus,
) -> None:
    grid = {"omega": [1.0, 2.0, 3.0], "zeta": [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 2.0]}
    task_id = await submit(bus, "sweep", {"skill": "sim.oscillator", "grid": grid, "z": 1.5})
    task = await finished(bus, task_id)
    assert task.status is TaskStatus.SUCCEEDED, task.error
    result = task.result
    assert result is not None and result["count"] == 21 and result["metric"] == "energy_left"
    undamped = [o for o in result["outliers"] if o["params"]["zeta"] == 0.0]
    assert len(undamped) == 3  # energy kept: far above the damped runs
    assert all(abs(o["value"] - 1.0) < 1e-3 for o in undamped)


async def test_a_cancelled_task_stops_and_stays_cancelled(bus: MessageBus) -> None:
    task_id = await submit(bus, "map", {"skill": "math.primes_below", "items": ITEMS * 3})
    deadline = time.monotonic() + 60
    while not completed_keys(await run_events(bus, task_id)):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    await bus.handle(cmds.CancelTask(correlation_id="c", principal=ALICE, task_id=task_id))
    handle = orchestrator.handle()
    assert handle is not None
    wait_for(lambda: task_id not in ray.get(handle.runs.remote()), 10, "the run to stop")
    done = len(completed_keys(await run_events(bus, task_id)))
    await asyncio.sleep(1.0)
    assert len(completed_keys(await run_events(bus, task_id))) == done < 600
    assert (await load_task(bus._context.store, task_id)).status is TaskStatus.CANCELLED


async def test_a_task_waits_for_its_dependencies_and_fails_with_a_failed_one(
    bus: MessageBus,
) -> None:
    good = await submit(bus, "map", {"skill": "math.square", "items": [3]})
    bad = await submit(bus, "map", {"skill": "math.sqrt", "items": [-1]})
    after_good = await submit(bus, "map", {"skill": "math.square", "items": [4]},
                              dependencies=(good,))  # fmt: skip
    after_bad = await submit(bus, "map", {"skill": "math.square", "items": [5]},
                             dependencies=(bad,))  # fmt: skip
    assert (await finished(bus, after_good)).result == {"outputs": [16]}
    failed = await finished(bus, after_bad)
    assert failed.status is TaskStatus.FAILED and failed.error == f"dependency {bad} failed"


async def test_a_drained_agent_is_removed_and_replaced(bus: MessageBus) -> None:
    handle = orchestrator.handle()
    assert handle is not None
    victim = next(a.id for a in agents() if a.type == "compute")
    assert ray.get(handle.drain.remote(victim))
    wait_for(lambda: victim not in {a.id for a in agents()}, 30, "the drained agent to go")
    wait_for(lambda: len(agents()) == sum(AGENTS.values()), 60, "its replacement")
    registry = [r.event for r in await bus._context.store.read_stream("agents")]
    assert any(isinstance(e, ev.AgentDrained) and e.agent_id == victim for e in registry)
    assert any(isinstance(e, ev.AgentRemoved) and e.agent_id == victim and e.reason == "drained"
               for e in registry)  # fmt: skip
    assert not ray.get(handle.drain.remote("no-such-agent"))
    listed = agents()
    assert {a.type for a in listed} == set(AGENTS)
    assert all(0.0 <= a.load <= 1.0 and a.status == "AVAILABLE" for a in listed)
