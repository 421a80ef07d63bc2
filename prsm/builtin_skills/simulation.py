"""Built-in simulation skills: ODEs solved with SciPy's ``solve_ivp``, and π by Monte Carlo.
Each takes an object of parameters within the bounds its input schema gives."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.integrate import solve_ivp

from prsm.skill import skill


def _params(bounds: dict[str, tuple[float, float]]) -> dict[str, Any]:
    props = {k: {"type": "number", "minimum": lo, "maximum": hi} for k, (lo, hi) in bounds.items()}
    return {"type": "object", "properties": props, "additionalProperties": False}


def _figures(*names: str) -> dict[str, Any]:
    return {"type": "object", "required": list(names),
            "properties": {n: {"type": "number"} for n in names}}  # fmt: skip


@skill("sim.logistic", capability="simulation", nominal_s=0.02,
       input_schema=_params({"r": (1e-6, 100), "K": (1e-6, 1e12), "y0": (1e-9, 1e12),
                             "t_end": (1e-3, 1e4)}),
       output_schema=_figures("final", "peak_rate", "t_half"))  # fmt: skip
def logistic(p: dict[str, float]) -> dict[str, float]:
    """logistic growth dy/dt = r·y·(1 − y/K) solved with SciPy's solve_ivp; params r, K, y0,
    t_end → final, peak_rate, t_half"""
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


@skill("sim.oscillator", capability="simulation", nominal_s=0.02,
       input_schema=_params({"omega": (1e-6, 1e4), "zeta": (0, 100), "t_end": (1e-3, 1e4)}),
       output_schema=_figures("final", "max_amplitude", "energy_left"))  # fmt: skip
def oscillator(p: dict[str, float]) -> dict[str, float]:
    """damped oscillator x'' + 2ζωx' + ω²x = 0 solved with solve_ivp; params omega, zeta,
    t_end → final, max_amplitude, energy_left"""
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


@skill("sim.monte_carlo_pi", capability="simulation", nominal_s=0.01,
       input_schema=_params({"samples": (1, 1e7), "seed": (0, 2**32 - 1)}),
       output_schema=_figures("estimate", "error"))  # fmt: skip
def monte_carlo_pi(p: dict[str, float]) -> dict[str, float]:
    """π estimated from `samples` random points (NumPy, seeded by `seed`) → estimate, error"""
    rng = np.random.default_rng(int(p.get("seed", 0)))
    points = rng.random((int(p.get("samples", 100_000)), 2))
    estimate = 4.0 * float(np.mean(np.sum(points * points, axis=1) <= 1.0))
    return {"estimate": estimate, "error": abs(estimate - math.pi)}
