"""Assignment decision cost: one ``AgentPool.choose`` (the most suitable available agent for a
subtask, five-factor score over every registered agent) with 10, 100, 1,000 and 10,000
agents; beside it, the baseline: the same decision as a plain Python loop scoring one agent at
a time (``loop_score``, the straightforward implementation). Domain only, no Ray. Target:
<= 0.1 ms mean at 1,000 agents (the seed claims 2.3 ms).

    .venv/bin/python -m benchmarks.assignment [--decisions 2000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt

from benchmarks.common import write
from prsm.domain.agents import (
    Agent,
    AgentPool,
    AgentStatus,
    Location,
    Resources,
    SubtaskNeeds,
    SuitabilityWeights,
)

SIZES = (10, 100, 1_000, 10_000)
CAPS = [f"skill-{i}" for i in range(40)]


def make_pool(n: int, rng: random.Random) -> AgentPool:
    pool = AgentPool()
    for i in range(n):
        agent = Agent(
            agent_id=f"agent-{i}",
            agent_type="worker",
            capabilities=frozenset(rng.sample(CAPS, 8)) | {"python"},
            shape=Resources(cpu=4, gpu=rng.choice([0, 1]), memory_gb=16),
            location=Location(rng.choice(["eu", "us"]), rng.choice(["a", "b", "c"])),
            status=AgentStatus.AVAILABLE if rng.random() < 0.9 else AgentStatus.BUSY,
            load=rng.random() * 0.9,
        )
        agent.observe("sweep", rng.uniform(0.5, 2.0))
        pool.add(agent)
    return pool


def needs_list(rng: random.Random, count: int, pool: AgentPool) -> list[SubtaskNeeds]:
    """Subtasks needing a skill some available agent has (so each decision finds one)."""
    available = [a for a in pool.agents if a.status is AgentStatus.AVAILABLE]
    return [
        SubtaskNeeds(
            task_type=rng.choice(["sweep", "map"]),
            capabilities=frozenset(
                {"python", rng.choice(sorted(rng.choice(available).capabilities))}
            ),
            resources=Resources(cpu=1),
        )
        for _ in range(count)
    ]


def loop_score(agent: Agent, needs: SubtaskNeeds, caller: Location, w: SuitabilityWeights) -> float:
    """The baseline's five-factor score of one agent that has every capability wanted (the
    score ``AgentPool.choose`` computes for every agent at once)."""
    p = agent.performance(needs.task_type)
    shares = [
        max(0.0, min(1.0, (getattr(agent.shape, kind) - getattr(agent.used, kind)) / want))
        for kind in ("cpu", "gpu", "memory_gb")
        if (want := getattr(needs.resources, kind)) > 0
    ]
    here = agent.location
    near = 1.0 if here == caller else 0.5 if here.region == caller.region else 0.0
    wanted = len(needs.capabilities)
    specialisation = wanted / max(1, len(agent.capabilities)) if wanted else 1.0
    return (
        w.capability * specialisation
        + w.load * (1.0 - agent.load)
        + w.performance * p / (p + 1.0)
        + w.resources * (min(shares) if shares else 1.0)
        + w.proximity * near
    )


def timed(
    fn: Callable[[SubtaskNeeds, Location], Agent], items: list[SubtaskNeeds], caller: Location
) -> list[float]:
    out = []
    for needs in items:
        started = time.perf_counter()
        fn(needs, caller)
        out.append(time.perf_counter() - started)
    return out


def stats_ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "mean_ms": statistics.fmean(ordered) * 1000,
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decisions", type=int, default=2000)
    args = parser.parse_args()
    rng = random.Random(7)
    caller = Location("eu", "a")
    results: dict[str, dict[str, Any]] = {}
    for n in SIZES:
        pool = make_pool(n, rng)
        items = needs_list(rng, args.decisions, pool)

        def loop(needs: SubtaskNeeds, where: Location, pool: AgentPool = pool) -> Agent:
            eligible = [a for a in pool.agents if a.can_handle(needs)
                        and a.status is AgentStatus.AVAILABLE and a.load < 1]  # fmt: skip
            return max(eligible, key=lambda a: loop_score(a, needs, where, pool.weights))

        timed(pool.choose, items[:100], caller)  # warm up
        loop_items = items[: max(50, args.decisions // max(1, n // 100))]
        results[str(n)] = {
            "pool": stats_ms(timed(pool.choose, items, caller)),
            "python_loop": stats_ms(timed(loop, loop_items, caller)),
            "decisions": len(items),
            "loop_decisions": len(loop_items),
        }
        print(n, results[str(n)], flush=True)
    at_1000 = results["1000"]["pool"]["mean_ms"]
    figure, ax = plt.subplots(figsize=(7, 4))
    for name, style in (("pool", "o-"), ("python_loop", "s--")):
        for key, alpha in (("mean_ms", 1.0), ("p99_ms", 0.5)):
            ax.plot(SIZES, [results[str(n)][name][key] for n in SIZES], style, alpha=alpha,
                    label=f"{name} {key[:-3]}")  # fmt: skip
    ax.axhline(0.1, color="red", linewidth=0.8, label="target 0.1 ms at 1,000")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("registered agents")
    ax.set_ylabel("one assignment decision (ms)")
    ax.legend(fontsize=8)
    write(
        "assignment",
        {
            "target": "mean <= 0.1 ms per decision with 1,000 agents",
            "met": at_1000 <= 0.1,
            "results": results,
        },
        figure,
    )


if __name__ == "__main__":
    main()
