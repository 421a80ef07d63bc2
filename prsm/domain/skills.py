"""The skills agents run, as the platform knows them before running any: name, the capability
an agent needs for it, its kind (``map``: one item → one output; ``reduce``: the list of
outputs → one value; ``llm``: a model call) and a nominal duration (the speed an agent
reports is nominal / observed). The code of each skill lives in ``prsm.runtime.skills``;
a unit test checks that both name the same skills."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prsm.domain.errors import InvalidRequest

SkillKind = Literal["map", "reduce", "llm"]
Accepts = Literal["number", "text", "list", "params", "prompt", "numbers", "lists"]

COMPUTE = "compute"
SIMULATION = "simulation"
LLM = "llm"


@dataclass(frozen=True)
class Skill:
    name: str
    capability: str
    kind: SkillKind
    nominal_s: float
    accepts: Accepts
    doc: str


SKILLS: dict[str, Skill] = {
    s.name: s
    for s in (
        Skill("math.square", COMPUTE, "map", 0.0005, "number", "x → x², for a number x"),
        Skill("math.sqrt", COMPUTE, "map", 0.0005, "number", "x → √x; fails on a negative x"),
        Skill("math.primes_below", COMPUTE, "map", 0.01, "number",
              "n → how many primes are below n (a NumPy sieve; n up to 10⁸)"),
        Skill("text.clean", COMPUTE, "map", 0.001, "text", "lower case, punctuation removed"),
        Skill("text.tokens", COMPUTE, "map", 0.001, "text", "a text → its words"),
        Skill("text.count", COMPUTE, "map", 0.0005, "list", "a list → its length"),
        Skill("sim.logistic", SIMULATION, "map", 0.02, "params",
              "logistic growth dy/dt = r·y·(1 − y/K) solved with SciPy's solve_ivp; "
              "params r, K, y0, t_end → final, peak_rate, t_half"),
        Skill("sim.oscillator", SIMULATION, "map", 0.02, "params",
              "damped oscillator x'' + 2ζωx' + ω²x = 0 solved with solve_ivp; params omega, "
              "zeta, t_end → final, max_amplitude, energy_left"),
        Skill("sim.monte_carlo_pi", SIMULATION, "map", 0.01, "params",
              "π estimated from `samples` random points (NumPy, seeded by `seed`) → "
              "estimate, error"),
        Skill("reduce.sum", COMPUTE, "reduce", 0.001, "numbers", "the sum of numbers"),
        Skill("reduce.mean", COMPUTE, "reduce", 0.001, "numbers", "the mean of numbers"),
        Skill("reduce.min", COMPUTE, "reduce", 0.001, "numbers", "the smallest number"),
        Skill("reduce.max", COMPUTE, "reduce", 0.001, "numbers", "the largest number"),
        Skill("reduce.count", COMPUTE, "reduce", 0.001, "list", "how many outputs"),
        Skill("reduce.stats", COMPUTE, "reduce", 0.001, "numbers", "count, mean, std, min, max"),
        Skill("reduce.concat", COMPUTE, "reduce", 0.001, "lists", "lists joined into one"),
        Skill("sys.where", COMPUTE, "map", 0.001, "number",
              "s → where the code runs (Ray node, assigned resources, GPU ids, "
              "CUDA_VISIBLE_DEVICES), after holding its slot for s seconds (at most 600)"),
        Skill("llm.complete", LLM, "llm", 1.0, "prompt",
              "a chat completion from a deployed model: {model, prompt, max_tokens} → text"),
    )
}  # fmt: skip


def skill(name: object, kind: SkillKind | tuple[SkillKind, ...] = "map") -> Skill:
    """The skill called ``name``, which must be of ``kind``, or a clear ``InvalidRequest``."""
    kinds = (kind,) if isinstance(kind, str) else kind
    found = SKILLS.get(name) if isinstance(name, str) else None
    if found is None or found.kind not in kinds:
        known = ", ".join(sorted(n for n, s in SKILLS.items() if s.kind in kinds))
        raise InvalidRequest(f"unknown {'/'.join(kinds)} skill {name!r}; known: {known}")
    return found
