"""Task types (checks, decomposition, results) and one task's run under each coordination
strategy, with a fake clock: readiness, streaming, retries with backoff, resume."""

from __future__ import annotations

from typing import Any

import pytest

from prsm.adapters import skill_code
from prsm.domain import events as ev
from prsm.domain import task_types
from prsm.domain.errors import InvalidRequest
from prsm.domain.orchestration import FINAL, TaskRun, death_verdict
from prsm.domain.task_types import Plan
from prsm.domain.tasks import CoordinationStrategy as CS

INSTALLED = skill_code.installed()


def plan(task_type: str, params: dict[str, Any], strategy: CS | None = None) -> Plan:
    return task_types.plan(task_type, params, INSTALLED, strategy)


def run_of(task_type: str, params: dict[str, Any], strategy: CS | None = None) -> TaskRun:
    return TaskRun("t", plan(task_type, params, strategy), max_attempts=3, backoff_s=1.0)


def drain(run: TaskRun, now: float = 0.0) -> list[str]:
    """Run every ready subtask with its real skill until none is ready (or a model call is
    next, which goes back to the queue); the keys in order."""
    order = []
    while calls := run.take(now, 1000):
        for c in calls:
            if c.skill == "llm.complete":
                run.lost(c.key)
                return order
            code = skill_code.function(INSTALLED.find(c.skill, ("map", "reduce")))
            run.completed(c.key, code(c.input))
            order.append(c.key)
    return order


def test_the_built_in_skills_are_found_through_their_entry_points_with_their_code() -> None:
    names = {s.name for s in INSTALLED}
    assert len(names) == 18 and {"math.square", "sim.logistic", "llm.complete"} <= names
    for s in INSTALLED:
        assert s.origin == "installed" and s.code.startswith("prsm.builtin_skills.")
        assert s.code_hash.startswith("sha256:") and s.version
        assert callable(skill_code.function(s))


def test_map_reduce_runs_every_item_then_one_reduce() -> None:
    run = run_of("map_reduce", {"skill": "math.square", "items": [1, 2, 3, 4],
                                "reduce": "reduce.sum"})  # fmt: skip
    assert run.plan.strategy is CS.MAP_REDUCE and run.plan.size == 5
    first = run.take(0.0, 100)
    assert [c.key for c in first] == ["0:0", "0:1", "0:2", "0:3"]
    assert run.take(0.0, 100) == []  # the reduce waits for every item
    for c in first:
        run.completed(c.key, c.input**2)
    [reduce] = run.take(0.0, 100)
    assert (reduce.key, reduce.skill, reduce.input) == (FINAL, "reduce.sum", [1, 4, 9, 16])
    run.completed(FINAL, 30)
    assert run.finished and run.progress == 100.0
    assert run.outcome() == (True, {"value": 30, "count": 4}, None)


def test_a_pipeline_streams_each_item_to_the_next_stage_at_once() -> None:
    run = run_of("pipeline", {"stages": ["text.clean", "text.tokens", "text.count"],
                              "items": ["A b!", "c", "d e f"]})  # fmt: skip
    calls = run.take(0.0, 100)
    run.completed(calls[0].key, "a b")  # only item 0 of stage 0 is done
    [nxt] = run.take(0.0, 100)
    assert (nxt.key, nxt.input) == ("1:0", "a b")  # stage 1 starts before stage 0 ends
    run.completed(nxt.key, ["a", "b"])
    for c in calls[1:]:
        run.completed(c.key, c.input.lower())
    drain(run)
    assert run.outcome() == (True, {"outputs": [2, 1, 3]}, None)


def test_sequential_runs_one_subtask_at_a_time_item_after_item() -> None:
    run = run_of("pipeline", {"stages": ["text.clean", "text.count"], "items": ["ab", "c"]},
                 CS.SEQUENTIAL)  # fmt: skip
    assert [c.key for c in run.take(0.0, 100)] == ["0:0"]
    assert run.take(0.0, 100) == []  # one at a time
    run.completed("0:0", "ab")
    assert [c.key for c in run.take(0.0, 100)] == ["1:0"]  # the same item's next stage first
    run.completed("1:0", 2)
    assert drain(run) == ["0:1", "1:1"]


def test_a_failed_subtask_is_retried_with_backoff_then_fails_the_task_naming_it() -> None:
    run = run_of("map", {"skill": "math.sqrt", "items": [4, -1, 9]})
    calls = run.take(0.0, 100)
    for c in calls:
        if c.input < 0:
            first = run.failed(c.key, "agent-a", "ValueError: math domain error", now=0.0)
            assert first is not None and not first.final and first.attempt == 1
        else:
            run.completed(c.key, c.input**0.5)
    assert run.take(0.5, 100) == []  # backing off: 1 s after the first failure
    [retry] = run.take(1.0, 100)
    assert retry.key == "0:1" and run.tried["0:1"] == {"agent-a"}
    run.failed(retry.key, "agent-b", "ValueError: math domain error", now=1.0)
    assert run.take(2.9, 100) == []  # then 2 s
    [last] = run.take(3.0, 100)
    final = run.failed(last.key, "agent-c", "ValueError: math domain error", now=3.0)
    assert final is not None and final.final and final.attempt == 3
    assert run.finished
    ok, result, error = run.outcome()
    assert not ok
    assert result["failed"] == [{"subtask": "0:1", "item": 1, "attempts": 3,
                                 "error": "ValueError: math domain error"}]  # fmt: skip
    assert error is not None and error.startswith("1 of 3 subtasks failed after 3 tries: 0:1")


def test_a_failed_map_item_stops_the_reduce() -> None:
    run = run_of("map_reduce", {"skill": "math.sqrt", "items": [1, -1], "reduce": "reduce.sum"})
    run = TaskRun("t", run.plan, max_attempts=1, backoff_s=1.0)
    for c in run.take(0.0, 100):
        if c.input < 0:
            run.failed(c.key, "a", "ValueError", 0.0)
        else:
            run.completed(c.key, 1.0)
    assert run.take(0.0, 100) == [] and run.finished
    assert run.outcome()[0] is False


def test_work_of_a_dead_agent_runs_again_without_counting_a_try() -> None:
    run = run_of("map", {"skill": "math.square", "items": [1, 2]})
    calls = run.take(0.0, 100)
    run.lost(calls[1].key)
    assert run.attempts == {}
    assert [c.key for c in run.take(0.0, 100)] == ["0:1"]
    assert run.completed("0:0", 1) and not run.completed("0:0", 1)  # a late duplicate


def test_a_resumed_run_does_not_run_finished_subtasks_again() -> None:
    p = plan("pipeline", {"stages": ["text.clean", "text.count"], "items": ["a", "b c", "d"]})
    history = [
        ev.SubtaskCompleted(task_id="t", key="0:0", agent_id="x", output="a", seconds=0.1),
        ev.SubtaskCompleted(task_id="t", key="1:0", agent_id="x", output=1, seconds=0.1),
        ev.SubtaskCompleted(task_id="t", key="0:1", agent_id="x", output="b c", seconds=0.1),
        ev.SubtaskFailed(task_id="t", key="0:2", agent_id="x", attempt=2, error="e", final=False),
    ]
    run = TaskRun("t", p, max_attempts=3, backoff_s=0.5)
    run.restore(history)
    assert sorted(c.key for c in run.take(0.0, 100)) == ["0:2", "1:1"]
    assert run.attempts["0:2"] == 2 and run.tried["0:2"] == {"x"}
    assert run.progress == 50.0


def test_a_sweep_runs_the_ode_per_parameter_set_and_finds_the_outliers() -> None:
    grid = {"r": [1.0, 1.1, 0.9, 1.05, 0.95, 1.0, 1.02, 0.98, 1.01, 0.05], "K": [10.0]}
    run = run_of("sweep", {"skill": "sim.logistic", "grid": grid, "z": 2.5})
    assert run.plan.size == 10  # no summary model asked: no final subtask
    drain(run)
    ok, result, _ = run.outcome()
    assert ok and result["count"] == 10 and result["metric"] == "t_half"
    [outlier] = result["outliers"]
    assert outlier["params"] == {"r": 0.05, "K": 10.0} and outlier["z"] > 2.5
    assert result["summary"] is None


def test_a_sweep_with_a_model_ends_with_a_summary_prompt_of_its_outliers() -> None:
    params = {"skill": "sim.monte_carlo_pi", "summarise_with": "prsm-tiny", "max_tokens": 16,
              "parameter_sets": [{"samples": 50, "seed": s} for s in range(20)]}  # fmt: skip
    run = run_of("sweep", params)
    drain(run)
    [summary] = run.take(0.0, 10)
    assert summary.skill == "llm.complete" and summary.input["model"] == "prsm-tiny"
    assert "Outliers" in summary.input["prompt"] and summary.input["max_tokens"] == 16
    run.completed(FINAL, "they used few samples")
    assert run.outcome()[1]["summary"] == "they used few samples"


@pytest.mark.parametrize(
    ("task_type", "params", "message"),
    [
        ("nope", {}, "unknown task type"),
        ("map", {"skill": "reduce.sum", "items": [1]}, "unknown map/llm skill"),
        ("map", {"skill": "math.square", "items": [1, True]}, r"items\[1\]: True is not of type"),
        ("map", {"skill": "math.square", "items": [1], "requires": "gpu"}, "requires"),
        ("map_reduce", {"skill": "math.square", "items": [1]}, "unknown reduce skill"),
        ("sweep", {"skill": "sim.oscillator", "grid": {"omega": [1]}, "parameter_sets": []},
         "either"),
        ("sweep", {"skill": "sim.oscillator", "grid": {"omega": [1] * 101, "zeta": [0] * 100}},
         "more than"),
        ("sweep", {"skill": "sim.oscillator", "parameter_sets": [{"mass": 1}]}, "'mass' was unexp"),
        ("sweep", {"skill": "sim.oscillator", "parameter_sets": [{"zeta": -1}]},
         r"items\[0\]\.zeta: -1 is less than the minimum of 0"),
        ("sweep", {"skill": "sim.oscillator", "grid": {"zeta": [1]}, "metric": "x"}, "metric"),
        ("prompt", {"model": "m", "prompts": ["hi"], "max_tokens": 0}, "max_tokens"),
    ],
)  # fmt: skip
def test_invalid_definitions_are_refused_with_a_clear_message(
    task_type: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        plan(task_type, params)


def test_each_type_has_its_strategies() -> None:
    assert plan("map", {"skill": "math.square", "items": [1]}).strategy is CS.PARALLEL
    assert plan("pipeline", {"stages": ["text.clean"], "items": ["a"]}).strategy is CS.PIPELINE
    with pytest.raises(InvalidRequest, match="MAP_REDUCE"):
        plan("map_reduce", {"skill": "math.square", "items": [1], "reduce": "reduce.sum"},
             CS.PARALLEL)  # fmt: skip


def test_the_capabilities_of_a_plan_are_its_skills_and_its_requirements() -> None:
    p = plan("sweep", {"skill": "sim.logistic", "parameter_sets": [{"r": 1}],
                       "summarise_with": "m", "requires": ["eu"]})  # fmt: skip
    assert p.capabilities == {"simulation", "llm", "eu"}


def test_an_agents_death_fails_the_try_of_the_overdue_or_lone_subtask_only() -> None:
    died = RuntimeError("The actor died unexpectedly\nmore detail")
    assert death_verdict(died, 3.2, 5, True) == (
        "timed out: ran 3 s, over its skill's timeout; its agent was stopped and replaced"
    )
    assert death_verdict(died, None, 1, False) == (
        "its worker died: RuntimeError (The actor died unexpectedly)"
    )
    assert death_verdict(died, None, 5, False) is None  # a companion: it goes again alone
    assert death_verdict(died, None, 1, True) is None  # another subtask overran: not this one
