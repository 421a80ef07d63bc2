"""The built-in task types: how each one's parameters are checked at submit, split into
subtasks, and how the results of its subtasks become the task's result.

| type         | params                                                  | strategies            |
|--------------|---------------------------------------------------------|-----------------------|
| `map`        | skill, items                                            | PARALLEL, SEQUENTIAL  |
| `map_reduce` | skill, items, reduce (a `reduce.*` skill)               | MAP_REDUCE            |
| `pipeline`   | stages (skills, in order), items                        | PIPELINE, SEQUENTIAL  |
| `sweep`      | skill (a map skill), parameter_sets or grid, metric, z, | PARALLEL, SEQUENTIAL  |
|              | summarise_with (a model: an LLM summary of the outliers)|                       |
| `prompt`     | model, prompts, max_tokens                              | PARALLEL, SEQUENTIAL  |

Every type also takes ``requires``: capabilities an agent must have besides the skills'.
The first strategy listed is the default. Skills are looked up in a ``SkillCatalog`` (by name,
or ``module:function``); each item is checked against the first stage's input schema.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from prsm.domain.errors import InvalidRequest
from prsm.domain.skills import Skill, SkillCatalog
from prsm.domain.tasks import CoordinationStrategy as CS

MAX_ITEMS = 10_000
MAX_STAGES = 10
MAX_TOKENS = 4096
DEFAULT_METRIC = {"sim.logistic": "t_half", "sim.oscillator": "energy_left",
                  "sim.monte_carlo_pi": "error"}  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """A task split into subtasks: ``stages`` (skills) applied in order to every item, then
    one optional ``final`` subtask over all the last stage's outputs."""

    task_type: str
    strategy: CS
    stages: tuple[Skill, ...]
    items: tuple[Any, ...]
    final: Skill | None
    requires: frozenset[str]
    params: Mapping[str, Any]

    @property
    def capabilities(self) -> frozenset[str]:
        return self.requires | {s.capability for s in self.skills}

    @property
    def skills(self) -> tuple[Skill, ...]:
        return (*self.stages, *([self.final] if self.final else []))

    @property
    def ships_code(self) -> bool:
        """Some skill's code is not installed: the task runs on agents of its own."""
        return any(s.ships_code for s in self.skills)

    @property
    def size(self) -> int:
        return len(self.stages) * len(self.items) + (1 if self.final else 0)

    def final_input(self, outputs: list[Any]) -> Any:
        if self.task_type == "sweep":
            return _summary_prompt(self, _sweep_figures(self, outputs))
        return outputs

    def result(self, outputs: list[Any], final: Any = None) -> dict[str, Any]:
        """The task's result from the last stage's outputs (in item order) and the final
        subtask's output."""
        if self.task_type == "map_reduce":
            return {"value": final, "count": len(outputs)}
        if self.task_type == "sweep":  # the metric of every set, in order, for plots
            figures = _sweep_figures(self, outputs)
            values = [float(o[figures["metric"]]) for o in outputs]
            return {**figures, "values": values, "summary": final}
        return {"outputs": outputs}


def plan(task_type: str, params: Mapping[str, Any], skills: SkillCatalog,
         strategy: CS | None = None) -> Plan:  # fmt: skip
    """Check a task definition and split it; a clear ``InvalidRequest`` if it is not valid."""
    build = _TYPES.get(task_type)
    if build is None:
        raise InvalidRequest(f"unknown task type {task_type!r}; known: {', '.join(_TYPES)}")
    allowed = _STRATEGIES[task_type]
    chosen = strategy or allowed[0]
    if chosen not in allowed:
        names = ", ".join(s.value for s in allowed)
        raise InvalidRequest(f"a {task_type} task runs {names}, not {chosen.value}")
    stages, items, final = build(params, skills)
    if len(items) > MAX_ITEMS:
        raise InvalidRequest(f"at most {MAX_ITEMS} items per task, got {len(items)}")
    for i, item in enumerate(items):
        stages[0].check_input(item, f"items[{i}]")
    requires = params.get("requires", [])
    if not isinstance(requires, list) or not all(isinstance(c, str) and c for c in requires):
        raise InvalidRequest("requires must be a list of capability names")
    return Plan(task_type, chosen, stages, tuple(items), final, frozenset(requires), params)


# --- per type --------------------------------------------------------------------------

Parts = tuple[tuple[Skill, ...], list[Any], Skill | None]


def _map(params: Mapping[str, Any], skills: SkillCatalog) -> Parts:
    return (skills.find(params.get("skill"), ("map", "llm")),), _items(params), None


def _map_reduce(params: Mapping[str, Any], skills: SkillCatalog) -> Parts:
    reduce = skills.find(params.get("reduce"), "reduce")
    return (skills.find(params.get("skill")),), _items(params), reduce


def _pipeline(params: Mapping[str, Any], skills: SkillCatalog) -> Parts:
    stages = params.get("stages")
    if not isinstance(stages, list) or not 1 <= len(stages) <= MAX_STAGES:
        raise InvalidRequest(f"stages must be a list of 1 to {MAX_STAGES} skill names")
    return tuple(skills.find(s) for s in stages), _items(params), None


def _sweep(params: Mapping[str, Any], skills: SkillCatalog) -> Parts:
    sim = skills.find(params.get("skill"))
    if ("grid" in params) == ("parameter_sets" in params):
        raise InvalidRequest("a sweep takes either parameter_sets or grid")
    sets = _grid(params["grid"]) if "grid" in params else params["parameter_sets"]
    if not isinstance(sets, list) or not sets:
        raise InvalidRequest("parameter_sets must be a non-empty list of objects")
    metric = _metric(sim, params)
    figures = (sim.output_schema or {}).get("properties")
    if not isinstance(metric, str) or (figures is not None and metric not in figures):
        known = f"; {sim.name} gives {', '.join(figures)}" if figures else ""
        raise InvalidRequest(f"unknown metric {metric!r}{known}")
    z = params.get("z", 2.0)
    if not isinstance(z, int | float) or not 0 < z <= 10:
        raise InvalidRequest("z (the outlier threshold in standard deviations) must be in (0, 10]")
    model = params.get("summarise_with")
    final = None
    if model is not None:
        _prompt_item(model, "x", params.get("max_tokens", 256))
        final = skills.find("llm.complete", "llm")
    return (sim,), sets, final


def _prompt(params: Mapping[str, Any], skills: SkillCatalog) -> Parts:
    prompts = params.get("prompts")
    if not isinstance(prompts, list) or not prompts:
        raise InvalidRequest("prompts must be a non-empty list of strings")
    items = [_prompt_item(params.get("model"), p, params.get("max_tokens", 128)) for p in prompts]
    return (skills.find("llm.complete", "llm"),), items, None


_TYPES: dict[str, Callable[[Mapping[str, Any], SkillCatalog], Parts]] = {
    "map": _map, "map_reduce": _map_reduce, "pipeline": _pipeline, "sweep": _sweep,
    "prompt": _prompt,
}  # fmt: skip
_STRATEGIES: dict[str, tuple[CS, ...]] = {
    "map": (CS.PARALLEL, CS.SEQUENTIAL),
    "map_reduce": (CS.MAP_REDUCE,),
    "pipeline": (CS.PIPELINE, CS.SEQUENTIAL),
    "sweep": (CS.PARALLEL, CS.SEQUENTIAL),
    "prompt": (CS.PARALLEL, CS.SEQUENTIAL),
}
TASK_TYPES = frozenset(_TYPES)


# --- checks ----------------------------------------------------------------------------


def _items(params: Mapping[str, Any]) -> list[Any]:
    items = params.get("items")
    if not isinstance(items, list) or not items:
        raise InvalidRequest("items must be a non-empty list")
    return items


def _grid(grid: object) -> list[dict[str, Any]]:
    if not isinstance(grid, dict) or not grid:
        raise InvalidRequest("grid must map parameter names to lists of values")
    if not all(isinstance(v, list) and v for v in grid.values()):
        raise InvalidRequest("each grid entry must be a non-empty list of values")
    if math.prod(len(v) for v in grid.values()) > MAX_ITEMS:
        raise InvalidRequest(f"the grid spans more than {MAX_ITEMS} parameter sets")
    names = list(grid)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*grid.values())]


def _prompt_item(model: object, prompt: object, max_tokens: object) -> dict[str, Any]:
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model must name a deployed model")
    if not isinstance(prompt, str) or not prompt:
        raise InvalidRequest("each prompt must be a non-empty string")
    if not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_TOKENS:
        raise InvalidRequest(f"max_tokens must be an integer in 1..{MAX_TOKENS}")
    return {"model": model, "prompt": prompt, "max_tokens": max_tokens}


# --- sweep figures ---------------------------------------------------------------------


def _metric(sim: Skill, params: Mapping[str, Any]) -> Any:
    if "metric" not in params and sim.name not in DEFAULT_METRIC:
        raise InvalidRequest(f"a sweep of {sim.name} names its metric (a figure of its output)")
    return params.get("metric", DEFAULT_METRIC.get(sim.name))


def _sweep_figures(p: Plan, outputs: list[Any]) -> dict[str, Any]:
    """Statistics of the metric over the sweep, and the outliers: sets whose metric lies at
    least ``z`` standard deviations from the mean."""
    metric = _metric(p.stages[0], p.params)
    values = np.array([float(o[metric]) for o in outputs])
    mean, std = float(values.mean()), float(values.std())
    scores = np.zeros_like(values) if std == 0 else (values - mean) / std
    z = float(p.params.get("z", 2.0))
    outliers = [
        {"index": int(i), "params": p.items[i], "value": float(values[i]), "z": float(scores[i])}
        for i in np.flatnonzero(np.abs(scores) >= z)
    ]
    return {
        "count": len(outputs),
        "metric": metric,
        "stats": {"mean": mean, "std": std, "min": float(values.min()), "max": float(values.max())},
        "outliers": outliers,
    }


def _summary_prompt(p: Plan, figures: dict[str, Any]) -> dict[str, Any]:
    lines = [f"- set {o['index']}: {o['params']} → {figures['metric']} = {o['value']:.4g} "
             f"(z = {o['z']:+.2f})" for o in figures["outliers"][:20]]  # fmt: skip
    prompt = (
        f"A sweep of {p.stages[0].name} over {figures['count']} parameter sets gave "
        f"{figures['metric']} mean {figures['stats']['mean']:.4g}, std "
        f"{figures['stats']['std']:.4g}. Outliers:\n"
        + ("\n".join(lines) or "- none")
        + "\nSummarise what the outliers have in common."
    )
    return _prompt_item(p.params["summarise_with"], prompt, p.params.get("max_tokens", 256))
