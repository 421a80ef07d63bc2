"""The SIR model of an epidemic: susceptible → infected → recovered,

    dS/dt = −β·S·I/N,   dI/dt = β·S·I/N − γ·I,   dR/dt = γ·I,

solved with SciPy's ``solve_ivp``. ``sir.simulate`` runs one parameter set; ``sir.peak``
summarises many runs (a reduce). Run as PRSM skills (installed, or shipped with a task),
or call them directly: they are plain functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.integrate import solve_ivp

from prsm.skill import skill

PARAMS = {
    "type": "object",
    "properties": {
        "beta": {"type": "number", "exclusiveMinimum": 0, "maximum": 10},
        "gamma": {"type": "number", "exclusiveMinimum": 0, "maximum": 10},
        "population": {"type": "number", "minimum": 1, "maximum": 1e10},
        "infected": {"type": "number", "minimum": 1},
        "days": {"type": "number", "exclusiveMinimum": 0, "maximum": 3650},
    },
    "required": ["beta", "gamma"],
    "additionalProperties": False,
}
FIGURES = {
    "type": "object",
    "properties": {
        "r0": {"type": "number"},
        "peak_infected": {"type": "number"},
        "peak_day": {"type": "number"},
        "attack_rate": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["r0", "peak_infected", "peak_day", "attack_rate"],
}


@skill("sir.simulate", capability="simulation", input_schema=PARAMS, output_schema=FIGURES,
       timeout_s=60, nominal_s=0.02)  # fmt: skip
def simulate(p: dict[str, float]) -> dict[str, float]:
    """One epidemic: β (contacts × transmission per day), γ (recoveries per day), population,
    initially infected, days → R0, the peak of infections and its day, the share ever infected"""
    beta, gamma = float(p["beta"]), float(p["gamma"])
    n, i0, days = float(p.get("population", 1e6)), float(p.get("infected", 10)), p.get("days", 365)

    def rates(_t: float, y: np.ndarray) -> list[float]:
        s, i, _r = y
        new = beta * s * i / n
        return [-new, new - gamma * i, gamma * i]

    t = np.linspace(0.0, float(days), 2000)
    sol = solve_ivp(rates, (0.0, float(days)), [n - i0, i0, 0.0], t_eval=t, rtol=1e-8, atol=1e-6)
    s, i, r = sol.y
    peak = int(np.argmax(i))
    return {
        "r0": beta / gamma,
        "peak_infected": float(i[peak]),
        "peak_day": float(t[peak]),
        "attack_rate": float(min(1.0, max(0.0, (r[-1] + i[-1]) / n))),
    }


@skill("sir.peak", kind="reduce", capability="simulation")
def peak(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the highest peak of infections, and how many runs there were"""
    worst = max(range(len(runs)), key=lambda k: runs[k]["peak_infected"])
    return {"runs": len(runs), "worst": worst, "peak_infected": runs[worst]["peak_infected"]}
