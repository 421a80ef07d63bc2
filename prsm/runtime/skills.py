"""The code of each skill named in ``prsm.domain.skills``: plain functions of one input. The
scientific ones use NumPy and SciPy; ``llm.complete`` is given a model caller by its agent."""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import ray
from scipy.integrate import solve_ivp

Skill = Callable[[Any], Any]


def logistic(p: dict[str, float]) -> dict[str, float]:
    """dy/dt = r·y·(1 − y/K), solved from y0 over [0, t_end]."""
    r, k, y0, t_end = p.get("r", 1.0), p.get("K", 1.0), p.get("y0", 0.01), p.get("t_end", 20.0)
    sol = solve_ivp(lambda _t, y: r * y * (1 - y / k), (0.0, t_end), [y0], dense_output=True,
                    rtol=1e-6, atol=1e-9)  # fmt: skip
    t = np.linspace(0.0, t_end, 400)
    y = sol.sol(t)[0]
    rate = r * y * (1 - y / k)
    above = np.flatnonzero(y >= k / 2)
    return {
        "final": float(y[-1]),
        "peak_rate": float(rate.max()),
        "t_half": float(t[above[0]]) if above.size else float(t_end),  # not reached: t_end
    }


def oscillator(p: dict[str, float]) -> dict[str, float]:
    """x'' + 2ζωx' + ω²x = 0 from x = 1, x' = 0 over [0, t_end]."""
    w, zeta, t_end = p.get("omega", 1.0), p.get("zeta", 0.1), p.get("t_end", 20.0)
    sol = solve_ivp(lambda _t, s: [s[1], -2 * zeta * w * s[1] - w * w * s[0]], (0.0, t_end),
                    [1.0, 0.0], dense_output=True, rtol=1e-6, atol=1e-9)  # fmt: skip
    x, v = sol.sol(np.linspace(0.0, t_end, 400))
    energy = 0.5 * (v * v + w * w * x * x)
    return {
        "final": float(x[-1]),
        "max_amplitude": float(np.abs(x).max()),
        "energy_left": float(energy[-1] / energy[0]),
    }


def monte_carlo_pi(p: dict[str, float]) -> dict[str, float]:
    rng = np.random.default_rng(int(p.get("seed", 0)))
    points = rng.random((int(p.get("samples", 100_000)), 2))
    estimate = 4.0 * float(np.mean(np.sum(points * points, axis=1) <= 1.0))
    return {"estimate": estimate, "error": abs(estimate - math.pi)}


def primes_below(n: float) -> int:
    if not 0 <= n <= 10**8:
        raise ValueError(f"n must be within 0..1e8, got {n}")
    size = int(n)
    if size < 3:
        return 0
    sieve = np.ones(size, dtype=bool)
    sieve[:2] = False
    for p in range(2, math.isqrt(size - 1) + 1):
        if sieve[p]:
            sieve[p * p :: p] = False
    return int(sieve.sum())


def _numbers(xs: list[Any]) -> np.ndarray:
    return np.asarray(xs, dtype=float)


def stats(xs: list[Any]) -> dict[str, float]:
    a = _numbers(xs)
    return {"count": int(a.size), "mean": float(a.mean()), "std": float(a.std()),
            "min": float(a.min()), "max": float(a.max())}  # fmt: skip


def _exact_sum(xs: list[Any]) -> Any:
    """Integers add exactly (a map-reduce over 200 items must give the exact total)."""
    return sum(xs) if all(isinstance(x, int) for x in xs) else math.fsum(xs)


def where(hold_s: float) -> dict[str, Any]:
    """Where this code runs, as Ray sees it: the node, the resources assigned to the agent
    running it (a task's own agent: its bundle's), GPU ids and ``CUDA_VISIBLE_DEVICES``."""
    time.sleep(min(max(float(hold_s), 0.0), 600.0))
    context = ray.get_runtime_context()
    assigned: dict[str, float] = context.get_assigned_resources()  # type: ignore[no-untyped-call]
    return {
        "node_id": context.get_node_id(),
        "resources": assigned,
        "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


SKILLS: dict[str, Skill] = {
    "math.square": lambda x: x * x,
    "math.sqrt": math.sqrt,
    "math.primes_below": primes_below,
    "text.clean": lambda s: re.sub(r"[^\w\s]", "", s.lower()),
    "text.tokens": lambda s: s.split(),
    "text.count": len,
    "sim.logistic": logistic,
    "sim.oscillator": oscillator,
    "sim.monte_carlo_pi": monte_carlo_pi,
    "reduce.sum": _exact_sum,
    "reduce.mean": lambda xs: float(_numbers(xs).mean()),
    "reduce.min": min,
    "reduce.max": max,
    "reduce.count": len,
    "reduce.stats": stats,
    "reduce.concat": lambda xss: [x for xs in xss for x in xs],
    "sys.where": where,
}
"""Every skill but ``llm.complete``, which needs its agent's model caller."""
