"""Agents and assignment: can_handle, the completion estimate, the moving average
of speed, and AgentPool, the decision the orchestrator makes: the five-factor suitability
score with its default weights, the typed errors when no agent can take a subtask, and the
vectorised choice agreeing with the score's formula agent by agent."""

from __future__ import annotations

import random

import pytest

from prsm.domain.agents import (
    Agent,
    AgentPool,
    AgentStatus,
    Location,
    Resources,
    SubtaskNeeds,
    SuitabilityWeights,
)
from prsm.domain.errors import AgentUnavailable, CapabilityMismatch, InvalidRequest

ODE = SubtaskNeeds(task_type="sweep", capabilities=frozenset({"python", "scipy"}),
                   resources=Resources(cpu=1), complexity=2.0)  # fmt: skip


def agent(agent_id: str = "a", **kw: object) -> Agent:
    fields: dict[str, object] = {
        "agent_id": agent_id,
        "agent_type": "sim",
        "capabilities": frozenset({"python", "scipy"}),
        "shape": Resources(cpu=4, memory_gb=8),
    }
    return Agent(**(fields | kw))  # type: ignore[arg-type]


def test_can_handle_needs_every_capability() -> None:
    assert agent().can_handle(ODE)
    assert not agent(capabilities=frozenset({"python"})).can_handle(ODE)


def test_completion_estimate_follows_the_spec_formula() -> None:
    a = agent(load=0.5)
    assert a.completion_estimate_s(ODE) == pytest.approx(2.0 * 60 / 1.0 * 1.25)
    a.observe("sweep", 2.0)
    assert a.completion_estimate_s(ODE) == pytest.approx(2.0 * 60 / 2.0 * 1.25)


def test_speed_is_a_moving_average_per_task_type() -> None:
    a = agent()
    a.observe("sweep", 2.0)
    a.observe("sweep", 1.0)
    assert a.performance("sweep") == pytest.approx(2.0 + 0.3 * (1.0 - 2.0))
    assert a.performance("prompt") == 1.0
    with pytest.raises(InvalidRequest):
        a.observe("sweep", 0)


def test_the_pool_scores_by_the_default_weights() -> None:
    def scored() -> Agent:
        a = agent("a", load=0.2, location=Location("eu", "eu-1"), used=Resources(cpu=3.5))
        a.observe("sweep", 3.0)
        return a

    # 0.40 × 1 + 0.25 × 0.8 + 0.20 × 3/4 + 0.10 × min(1, 0.5/1) + 0.05 × 0.5 (same region)
    expected = 0.40 + 0.25 * 0.8 + 0.20 * 0.75 + 0.10 * 0.5 + 0.05 * 0.5
    # Beside it an agent of nominal speed, all free, in no region: 0.40 + 0.25 × (1 − load)
    # + 0.20 × 1/2 + 0.10 × 1 + 0.05 × 0; at this load both score the same.
    even = 1 - (expected - 0.60) / 0.25
    for load, winner in ((even - 0.004, "reference"), (even + 0.004, "a")):  # ± 0.001
        pool = AgentPool()
        pool.add_many([scored(), agent("reference", load=load)])
        assert pool.choose(ODE, caller=Location("eu", "eu-2")).agent_id == winner
    with pytest.raises(InvalidRequest):
        AgentPool(SuitabilityWeights(capability=0.9))


def test_the_pool_refuses_with_the_reason_nobody_can_take_it() -> None:
    pool = AgentPool()
    pool.add(agent("a", capabilities=frozenset({"python"})))
    with pytest.raises(CapabilityMismatch, match="no agent has python, scipy"):
        pool.choose(ODE)
    pool.add(agent("b", status=AgentStatus.OFFLINE))
    with pytest.raises(AgentUnavailable, match="busy or away"):
        pool.choose(ODE)
    pool.add(agent("c", load=0.9))
    assert pool.choose(ODE).agent_id == "c"  # not "a", idle but lacking scipy


@pytest.mark.parametrize(
    ("status", "load"),
    [(AgentStatus.DRAINING, 0.0), (AgentStatus.BUSY, 0.0), (AgentStatus.OFFLINE, 0.0),
     (AgentStatus.AVAILABLE, 1.0)],
)  # fmt: skip
def test_the_pool_never_assigns_to_an_agent_that_is_not_available(
    status: AgentStatus, load: float
) -> None:
    away = agent("away", status=status, load=load)
    pool = AgentPool()
    pool.add(away)
    with pytest.raises(AgentUnavailable):
        pool.choose(ODE)
    pool.add(agent("loaded", load=0.95))
    assert pool.choose(ODE).agent_id == "loaded"
    away.status, away.load = AgentStatus.AVAILABLE, 0.0
    pool.update(away)
    assert pool.choose(ODE).agent_id == "away"


def random_pool(seed: int, n: int) -> AgentPool:
    rng = random.Random(seed)
    caps = [f"cap{i}" for i in range(70)]  # more than one 64-bit word of capabilities
    pool = AgentPool()
    for i in range(n):
        a = Agent(
            agent_id=f"a{i}",
            agent_type="any",
            capabilities=frozenset(rng.sample(caps, rng.randint(1, 12))) | {"python"},
            shape=Resources(
                cpu=rng.choice([2, 4, 8]), gpu=rng.choice([0, 0, 1]), memory_gb=rng.choice([8, 16])
            ),
            location=Location(rng.choice(["eu", "us"]), rng.choice(["1", "2", "3"])),
            status=rng.choice(list(AgentStatus)),
            load=rng.random(),
            used=Resources(cpu=rng.random() * 2),
        )
        for task_type in ("sweep", "map"):
            if rng.random() < 0.5:
                a.observe(task_type, rng.uniform(0.2, 3.0))
        pool.add(a)
    return pool


def formula_score(a: Agent, needs: SubtaskNeeds, caller: Location | None) -> float:
    """The five-factor score of one agent with every wanted capability, with the default
    weights, one agent at a time: what the pool's vectorised choice must agree with."""
    p = a.performance(needs.task_type)
    shares = [
        max(0.0, min(1.0, (getattr(a.shape, kind) - getattr(a.used, kind)) / want))
        for kind in ("cpu", "gpu", "memory_gb")
        if (want := getattr(needs.resources, kind)) > 0
    ]
    if caller is None or a.location == caller:
        near = 1.0
    else:
        near = 0.5 if a.location.region == caller.region else 0.0
    wanted = len(needs.capabilities)
    specialisation = wanted / max(1, len(a.capabilities)) if wanted else 1.0
    return (
        0.40 * specialisation + 0.25 * (1.0 - a.load) + 0.20 * p / (p + 1.0)
        + 0.10 * (min(shares) if shares else 1.0) + 0.05 * near
    )  # fmt: skip


@pytest.mark.parametrize("seed", range(8))
def test_the_pool_picks_the_best_scoring_eligible_agent(seed: int) -> None:
    pool = random_pool(seed, 300)
    rng = random.Random(seed)
    for _ in range(20):
        needs = SubtaskNeeds(
            task_type=rng.choice(["sweep", "map", "prompt"]),
            capabilities=frozenset({"python", f"cap{rng.randrange(70)}"}),
            resources=Resources(cpu=rng.choice([0, 1, 2]), gpu=rng.choice([0, 0, 1])),
        )
        caller = rng.choice([None, Location("eu", "1"), Location("us", "3")])
        eligible = [a for a in pool.agents if a.can_handle(needs)
                    and a.status is AgentStatus.AVAILABLE and a.load < 1]  # fmt: skip
        if not eligible:
            continue
        best = max(formula_score(a, needs, caller) for a in eligible)
        chosen = pool.choose(needs, caller)
        assert chosen in eligible
        assert formula_score(chosen, needs, caller) == pytest.approx(best)


def test_updates_and_removals_keep_the_columns_in_step() -> None:
    pool = random_pool(1, 50)
    for a in list(pool.agents)[::3]:
        pool.remove(a.agent_id)
    for a in pool.agents:
        a.load, a.status = 0.99, AgentStatus.AVAILABLE
        pool.update(a)
    favourite = pool.agents[7]
    favourite.load = 0.0
    favourite.observe("map", 50.0)
    pool.update(favourite)
    needs = SubtaskNeeds(task_type="map", capabilities=frozenset({"python"}))
    assert pool.choose(needs) is favourite
    assert len(pool) == 50 - len(range(0, 50, 3))
    with pytest.raises(InvalidRequest):
        pool.add(favourite)


MAP = SubtaskNeeds(task_type="math.square", capabilities=frozenset({"compute"}),
                   resources=Resources(cpu=1))  # fmt: skip
Z1, Z2 = Location("r1", "z1"), Location("r2", "z2")


def two(better: dict[str, object], worse: dict[str, object]) -> list[Agent]:
    """Two agents alike in every factor but one: ``better``'s and ``worse``'s values of it."""
    base: dict[str, object] = {"capabilities": frozenset({"compute"}),
                               "shape": Resources(cpu=1), "location": Z1}  # fmt: skip
    return [agent("x", **(base | better)), agent("y", **(base | worse))]


@pytest.mark.parametrize(
    ("factor", "better", "worse"),
    [
        ("capability: the specialist over the generalist",
         {"capabilities": frozenset({"compute"})},
         {"capabilities": frozenset({"compute", "simulation"})}),
        ("load", {"load": 0.1}, {"load": 0.6}),
        ("history for the task type", {"speed": {"math.square": 2.0}},
         {"speed": {"math.square": 0.5}}),
        ("free resources against the subtask's needs", {"used": Resources(cpu=0.0)},
         {"used": Resources(cpu=0.75)}),
        ("proximity to the caller", {"location": Z1}, {"location": Z2}),
    ],
)  # fmt: skip
def test_each_factor_alone_changes_the_agent_chosen(
    factor: str, better: dict[str, object], worse: dict[str, object]
) -> None:
    for first, second, winner in ((better, worse, "x"), (worse, better, "y")):
        pool = AgentPool()
        pool.add_many(two(first, second))
        assert pool.choose(MAP, caller=Z1).agent_id == winner, factor
