"""Event serialisation, projection and migrations: pure code, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prsm.adapters.store import codec, migrations
from prsm.domain import errors
from prsm.domain import events as ev
from prsm.domain.tasks import TaskStatus
from prsm.serve.errors import status_of
from prsm.service_layer.views import project_tasks

T0 = datetime(2026, 1, 1, tzinfo=UTC)
META = ev.EventMetadata(occurred_at=T0, source="tests", correlation_id="c")


def submitted() -> ev.TaskSubmitted:
    return ev.TaskSubmitted(
        task_id="t1", task_type="demo", params={"nested": {"a": [1, 2.5, None]}}, priority=3,
        user_id="u", tenant_id="acme", cpu=2.0, gpu=0.5, memory_mb=512, dependencies=("d1",),
        strategy="PIPELINE", submitted_at=T0, request_hash="h",
        placement={"strategy": "latency", "strict": False, "zone": "z1", "bundles": 2},
    )  # fmt: skip


def test_every_event_type_round_trips() -> None:
    samples: list[ev.Event] = [
        submitted(),
        ev.TaskQueued(task_id="t1", at=T0),
        ev.TaskScheduled(task_id="t1", at=T0, placement={"nodes": ["n1"]}),
        ev.TaskStarted(task_id="t1", at=T0),
        ev.TaskProgressed(task_id="t1", at=T0, progress=12.5),
        ev.TaskRequeued(task_id="t1", at=T0, reason="node lost"),
        ev.TaskSucceeded(task_id="t1", at=T0, result_ref=None, result={"value": [1, 2.5]}),
        ev.TaskFailed(task_id="t1", at=T0, error="boom", result={"failed": [{"item": 3}]}),
        ev.TaskCancelled(task_id="t1", at=T0, reason="r", cancelled_by="u"),
        ev.AllocationReleased(task_id="t1", at=T0, reason="succeeded"),
        ev.AllocationMoved(task_id="t1", at=T0, nodes=("n2", "n3")),
        ev.SubtaskCompleted(task_id="t1", key="0:3", agent_id="a", output={"x": 1.5}, seconds=0.01),
        ev.SubtaskFailed(
            task_id="t1", key="final", agent_id="a", attempt=2, error="E", final=False
        ),
        ev.AgentRegistered(
            agent_id="a",
            agent_type="compute",
            capabilities=("compute",),
            cpu=0.5,
            gpu=0.0,
            memory_gb=0.0,
            region="r",
            zone="z",
            node_id="n",
            at=T0,
        ),
        ev.AgentDrained(agent_id="a", reason="asked", at=T0),
        ev.AgentRemoved(agent_id="a", reason="drained", at=T0),
    ]
    assert {type(s) for s in samples} == {*ev.TASK_EVENTS, *ev.RUN_EVENTS, *ev.AGENT_EVENTS}
    for event in samples:
        event_id, name, data, meta = codec.encode(ev.NewEvent(event, META))
        assert event_id == META.event_id
        assert codec.decode_event(name, data) == event
        assert codec.decode_metadata(meta) == META


def _recorded(event: ev.Event, position: int) -> ev.RecordedEvent:
    return ev.RecordedEvent("task-t1", position, position, event, META)


def test_the_task_view_follows_its_events() -> None:
    later = [
        ev.TaskQueued(task_id="t1", at=T0),
        ev.TaskScheduled(task_id="t1", at=T0, placement={}),
        ev.TaskStarted(task_id="t1", at=T0),
        ev.SubtaskCompleted(task_id="t1", key="0:0", agent_id="a", output=1, seconds=0.1),
        ev.TaskProgressed(task_id="t1", at=T0, progress=50),
        ev.TaskFailed(task_id="t1", at=T0 + timedelta(seconds=3), error="boom"),
    ]
    # Submitted and then changed within one batch: one new row, as it ends.
    together = project_tasks([_recorded(e, p) for p, e in enumerate([submitted(), *later], 7)])
    [view] = together.new.values()
    assert together.updates == {}
    assert (view.seq, view.status, view.progress, view.error) == (7, TaskStatus.FAILED, 50, "boom")
    assert (view.resources.memory_mb, view.updated_at) == (512, T0 + timedelta(seconds=3))
    # Changed in a later batch: only the columns its events set, the last value winning.
    apart = project_tasks([_recorded(e, p) for p, e in enumerate(later, 8)])
    assert apart.new == {}
    assert apart.updates == {
        "t1": {
            "status": TaskStatus.FAILED,
            "progress": 50,
            "error": "boom",
            "result": None,
            "updated_at": T0 + timedelta(seconds=3),
        }
    }


def test_migrations_are_numbered_and_split_into_statements() -> None:
    for dialect in ("sqlite", "postgres"):
        found = migrations.load(dialect)  # type: ignore[arg-type]
        assert [m.version for m in found] == list(range(1, len(found) + 1))
        assert all(s.endswith(";") for m in found for s in m.statements())


def test_errors_map_to_http_statuses() -> None:
    assert status_of(errors.NotFound("x")) == 404
    assert status_of(errors.IllegalTransition("x")) == 409
    assert status_of(errors.ConcurrencyError("s", 1, 2)) == 409
    assert status_of(errors.InvalidRequest("x")) == 422
    assert status_of(errors.AuthenticationError("x")) == 401
    assert status_of(errors.StoreUnavailable("x")) == 503
    assert status_of(errors.PrsmError("x")) == 500
