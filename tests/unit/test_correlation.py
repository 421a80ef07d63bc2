"""One request's id through the runtime's own code: the log lines written while its work is
done carry it, the events the runtime records about its task keep it, and an agent's model
call takes it along (to the model replica, as its Serve request id)."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest

from prsm.adapters.skill_code import installed
from prsm.domain import commands as cmds
from prsm.domain import events as ev
from prsm.domain import streams
from prsm.domain.identity import Principal
from prsm.domain.tasks import Task
from prsm.observability.logging import JsonFormatter, correlated, current
from prsm.runtime.agent import AgentWorker, Complete, SubtaskCall
from prsm.service_layer.messagebus import MessageBus
from prsm.service_layer.ports import StreamWrite
from prsm.service_layer.task_log import TaskLog
from tests.support import register_agent
from tests.unit.fakes import FakeStore

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ALICE = Principal("alice", "acme", frozenset({"user"}))
INSTALLED = installed()


class JsonLines(logging.Handler):
    """PRSM's JSON lines, formatted as they are written (the id is the one set then)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def lines() -> Iterator[list[dict[str, Any]]]:
    handler, logger = JsonLines(), logging.getLogger("prsm")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_lines_carry_the_id_set_for_the_work_and_only_while_it_is_done(
    lines: list[dict[str, Any]],
) -> None:
    log = logging.getLogger("prsm.test")
    assert current() == ""
    with correlated("req-1"):
        log.info("outer")
        with correlated(""):  # no id: the one set stays
            log.info("kept")
        with correlated("req-2"):
            assert current() == "req-2"
            log.info("inner")
        log.info("outer again")
    log.info("outside")
    assert [(x["message"], x["correlation_id"]) for x in lines] == [
        ("outer", "req-1"), ("kept", "req-1"), ("inner", "req-2"), ("outer again", "req-1"),
        ("outside", "-")]  # fmt: skip
    assert current() == ""


async def test_the_runtime_records_a_tasks_events_under_the_id_of_the_request_that_submitted_it(
) -> None:  # fmt: skip
    store = FakeStore()
    await register_agent(store)
    bus = MessageBus(store, store, lambda: NOW, source="gateway", skills=INSTALLED)
    spec = cmds.TaskSpec(task_type="map", params={"skill": "math.square", "items": [1]})
    [s] = await bus.handle(cmds.SubmitTasks(correlation_id="req-7", principal=ALICE,
                                            specs=(spec,)))  # fmt: skip
    # A task submitted before the id was kept in its first event: its stream stands for it.
    [first] = [r.event for r in store.log if isinstance(r.event, ev.TaskSubmitted)]
    assert isinstance(first, ev.TaskSubmitted) and first.correlation_id == "req-7"
    old = Task.submit(dataclasses.replace(first, task_id="old-task", correlation_id=""))
    meta = ev.EventMetadata(occurred_at=NOW, source="gateway", correlation_id="x")
    await store.append([StreamWrite(streams.task(old.task_id), 0,
                                    [ev.NewEvent(e, meta) for e in old.changes])])  # fmt: skip
    follower = TaskLog(lambda _: True, source="scheduler")
    await follower.catch_up(store)
    task, older = follower.tasks[s.task.task_id], follower.tasks[old.task_id]
    assert (task.correlation_id, older.correlation_id) == ("req-7", "")
    placement = {"lane": "pooled", "strategy": "pooled", "bundles": []}
    await follower.write(store, [(task, partial(Task.schedule, at=NOW, placement=placement)),
                                 (older, partial(Task.schedule, at=NOW, placement=placement))],
                         NOW)  # fmt: skip
    [*_, scheduled] = await store.read_stream(streams.task(task.task_id))
    assert isinstance(scheduled.event, ev.TaskScheduled)
    assert (scheduled.metadata.correlation_id, scheduled.metadata.source) == ("req-7", "scheduler")
    [*_, other] = await store.read_stream(streams.task(older.task_id))
    assert other.metadata.correlation_id == streams.task(older.task_id)


def test_an_agent_runs_each_subtask_under_its_tasks_request_id_model_calls_included(
    lines: list[dict[str, Any]],
) -> None:
    seen: list[tuple[str, str]] = []

    async def build(_: dict[str, Any]) -> Complete:
        async def complete(tenant_id: str, user_id: str, item: dict[str, Any]) -> str:
            seen.append((item["prompt"], current()))  # on the agent's event loop thread
            return "an answer"

        return complete

    agent = AgentWorker("a1", 1, build_llm=build)
    llm, square = INSTALLED.find("llm.complete", "llm"), INSTALLED.find("math.square")
    prompt = {"model": "prsm-tiny", "max_tokens": 4}
    outcomes = agent.run([
        SubtaskCall("acme", "alice", "t1", "0", llm, {**prompt, "prompt": "one"}, "req-a"),
        SubtaskCall("acme", "alice", "t2", "0", llm, {**prompt, "prompt": "two"}, "req-b"),
        SubtaskCall("acme", "alice", "t2", "1", square, "not a number", "req-b"),
    ])  # fmt: skip
    assert [o.ok for o in outcomes] == [True, True, False]
    assert seen == [("one", "req-a"), ("two", "req-b")]
    agent_lines = [(x["level"], x["correlation_id"]) for x in lines if x["logger"] == "prsm.agent"]
    assert agent_lines == [("INFO", "req-a"), ("INFO", "req-b"), ("WARNING", "req-b")]
    assert current() == ""


def test_a_serve_handle_call_made_for_a_request_carries_its_id_and_the_rest_of_the_context(
) -> None:  # fmt: skip
    from ray.serve import context

    from prsm.adapters.ray_compat import serve_request_id, with_serve_request_id

    assert serve_request_id() == ""
    with with_serve_request_id("req-9"):
        assert serve_request_id() == "req-9"
        assert context._get_serve_request_context().request_id == "req-9"  # what a call reads
    outer = context._RequestContext(route="/v1/chat", request_id="serve-own", app_name="prsm")
    token = context._serve_request_context.set(outer)
    try:
        with with_serve_request_id("req-10"):
            inner = context._get_serve_request_context()
            assert (inner.request_id, inner.route, inner.app_name) == ("req-10", "/v1/chat", "prsm")
        assert context._get_serve_request_context() is outer
    finally:
        context._serve_request_context.reset(token)
