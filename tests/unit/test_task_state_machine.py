from __future__ import annotations

from datetime import UTC, datetime

import pytest

from prsm.domain import events as ev
from prsm.domain.errors import IllegalTransition, InvalidRequest
from prsm.domain.tasks import TRANSITIONS, ResourceRequest, Task, TaskStatus, request_hash

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def submitted(**overrides: object) -> ev.TaskSubmitted:
    fields: dict[str, object] = dict(
        task_id="t1", task_type="demo", params={}, priority=0, user_id="u", tenant_id="acme",
        cpu=1.0, gpu=0.0, memory_mb=0, dependencies=(), strategy="PARALLEL", submitted_at=T0,
        request_hash="h",
    )  # fmt: skip
    fields.update(overrides)
    return ev.TaskSubmitted(**fields)  # type: ignore[arg-type]


def task_in(status: TaskStatus) -> Task:
    """A task brought to ``status`` through legal transitions."""
    task = Task.submit(submitted())
    path = {
        TaskStatus.QUEUED: [],
        TaskStatus.SCHEDULED: [lambda t: t.schedule(T0, {})],
        TaskStatus.RUNNING: [lambda t: t.schedule(T0, {}), lambda t: t.start(T0)],
        TaskStatus.SUCCEEDED: [
            lambda t: t.schedule(T0, {}),
            lambda t: t.start(T0),
            lambda t: t.succeed(T0, "r"),
        ],
        TaskStatus.FAILED: [lambda t: t.fail(T0, "boom")],
        TaskStatus.CANCELLED: [lambda t: t.cancel(T0, "no", "u")],
    }[status]
    for step in path:
        step(task)
    return task


MOVES = {
    TaskStatus.QUEUED: lambda t: t.requeue(T0, "node lost"),
    TaskStatus.SCHEDULED: lambda t: t.schedule(T0, {}),
    TaskStatus.RUNNING: lambda t: t.start(T0),
    TaskStatus.SUCCEEDED: lambda t: t.succeed(T0, None),
    TaskStatus.FAILED: lambda t: t.fail(T0, "x"),
    TaskStatus.CANCELLED: lambda t: t.cancel(T0, "x", "u"),
}


def test_submission_records_submitted_then_queued() -> None:
    task = Task.submit(submitted())
    assert task.status is TaskStatus.QUEUED
    assert [type(e) for e in task.changes] == [ev.TaskSubmitted, ev.TaskQueued]


def test_the_happy_path_ends_succeeded_with_full_progress() -> None:
    task = task_in(TaskStatus.RUNNING)
    task.report_progress(T0, 40.0)
    assert task.progress == 40.0
    task.succeed(T0, "s3://results/1")
    assert (task.status, task.progress, task.result_ref) == (
        TaskStatus.SUCCEEDED,
        100.0,
        "s3://results/1",
    )


@pytest.mark.parametrize("start", [s for s in TaskStatus if s is not TaskStatus.SUBMITTED])
@pytest.mark.parametrize("target", list(MOVES))
def test_every_transition_follows_the_table(start: TaskStatus, target: TaskStatus) -> None:
    task = task_in(start)
    if target in TRANSITIONS[start]:
        MOVES[target](task)
        assert task.status is target
    else:
        before = list(task.changes)
        with pytest.raises(IllegalTransition):
            MOVES[target](task)
        assert task.status is start
        assert task.changes == before  # nothing recorded


def test_terminal_states_accept_nothing() -> None:
    for status in (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED):
        assert status.is_terminal
        assert TRANSITIONS[status] == frozenset()


def test_history_rebuilds_the_same_task() -> None:
    task = task_in(TaskStatus.RUNNING)
    task.report_progress(T0, 55.0)
    rebuilt = Task.from_events(task.changes)
    assert (rebuilt.status, rebuilt.progress, rebuilt.version) == (TaskStatus.RUNNING, 55.0, 5)
    assert rebuilt.changes == []


def test_a_history_must_start_with_submission() -> None:
    with pytest.raises(ValueError, match="TaskSubmitted"):
        Task.from_events([ev.TaskQueued(task_id="t1", at=T0)])


def test_progress_only_while_running_and_within_bounds() -> None:
    with pytest.raises(IllegalTransition):
        task_in(TaskStatus.QUEUED).report_progress(T0, 10)
    with pytest.raises(InvalidRequest):
        task_in(TaskStatus.RUNNING).report_progress(T0, 101)


@pytest.mark.parametrize("bad", ["", "Upper", "has space", "9starts-with-digit", "x" * 65])
def test_task_types_are_validated(bad: str) -> None:
    with pytest.raises(InvalidRequest, match="task type"):
        Task.submit(submitted(task_type=bad))


def test_a_task_cannot_depend_on_itself() -> None:
    with pytest.raises(InvalidRequest, match="itself"):
        Task.submit(submitted(dependencies=("t1",)))


def test_negative_resources_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="cpu=-1"):
        ResourceRequest(cpu=-1)


def test_request_hash_ignores_key_order_but_not_values() -> None:
    assert request_hash({"a": 1, "b": [1, 2]}) == request_hash({"b": [1, 2], "a": 1})
    assert request_hash({"a": 1}) != request_hash({"a": 2})
