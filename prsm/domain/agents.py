"""Agents and how work is assigned to them: capabilities, load, speed per task type as a
moving average, status, location, resource shape; ``can_handle``; the completion
estimate; and ``AgentPool``, which scores every agent by the five-factor suitability score and
picks the most suitable among thousands in one vectorised pass (the decision the orchestrator
makes for every subtask)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from prsm.domain.errors import AgentUnavailable, CapabilityMismatch, InvalidRequest


class AgentStatus(StrEnum):
    AVAILABLE = "AVAILABLE"
    BUSY = "BUSY"
    DRAINING = "DRAINING"
    OFFLINE = "OFFLINE"


@dataclass(frozen=True)
class Resources:
    cpu: float = 0.0
    gpu: float = 0.0
    memory_gb: float = 0.0


@dataclass(frozen=True)
class Location:
    region: str = ""
    zone: str = ""


@dataclass(frozen=True, kw_only=True)
class SuitabilityWeights:
    """The default weights; configurable."""

    capability: float = 0.40
    load: float = 0.25
    performance: float = 0.20
    resources: float = 0.10
    proximity: float = 0.05

    def validated(self) -> SuitabilityWeights:
        values = (self.capability, self.load, self.performance, self.resources, self.proximity)
        if any(v < 0 for v in values) or not 0.999 <= sum(values) <= 1.001:
            raise InvalidRequest("suitability weights must be >= 0 and sum to 1")
        return self


@dataclass(frozen=True, kw_only=True)
class SubtaskNeeds:
    task_type: str
    capabilities: frozenset[str] = frozenset()
    resources: Resources = Resources()
    complexity: float = 1.0


SPEED_ALPHA = 0.3  # weight of the newest observation in the moving average


@dataclass(kw_only=True)
class Agent:
    agent_id: str
    agent_type: str
    capabilities: frozenset[str]
    shape: Resources
    location: Location = Location()
    status: AgentStatus = AgentStatus.AVAILABLE
    load: float = 0.0  # 0..1
    used: Resources = Resources()
    speed: dict[str, float] = field(default_factory=dict)  # task type → performance factor

    def can_handle(self, needs: SubtaskNeeds) -> bool:
        return needs.capabilities <= self.capabilities

    def performance(self, task_type: str) -> float:
        """Observed speed relative to nominal (1.0 until observed)."""
        return self.speed.get(task_type, 1.0)

    def observe(self, task_type: str, speed: float) -> None:
        """Fold an observed speed (nominal duration / actual duration) into the average."""
        if speed <= 0:
            raise InvalidRequest("an observed speed must be positive")
        old = self.speed.get(task_type)
        self.speed[task_type] = speed if old is None else old + SPEED_ALPHA * (speed - old)

    def completion_estimate_s(self, needs: SubtaskNeeds) -> float:
        """``complexity × 60 s / performance × (1 + 0.5 × load)``."""
        return needs.complexity * 60.0 / self.performance(needs.task_type) * (1 + 0.5 * self.load)


class AgentPool:
    """The registered agents as columns (one row each), so that one decision scores every
    agent at once: capabilities as bit masks, load, status, per-task-type performance, free
    resources and zone. Updates are O(1); ``choose`` is a handful of vector operations.

    An agent's suitability for a subtask (0..1), by the weights:
    - capability × its *specialisation* for the subtask: wanted / held capabilities (only
      agents with every wanted capability are scored; one that holds exactly those scores
      1, a generalist less, so specialists take the work they fit and generalists stay free
      for what only they can do);
    - load × (1 − load);
    - performance × p / (p + 1) (``p`` the agent's observed speed for the task type, 1.0
      until observed: 0.5);
    - resources × the free share of the scarcest resource kind the subtask needs (its
      shape less what its running batches use; 1 when nothing is asked for);
    - proximity × 1 in the caller's zone, 0.5 in its region, 0 elsewhere (1 with no caller).
    """

    def __init__(self, weights: SuitabilityWeights = SuitabilityWeights()) -> None:
        self.weights = weights.validated()
        self.agents: list[Agent] = []
        self._row: dict[str, int] = {}
        self._bit: dict[str, int] = {}
        self._masks = np.zeros((0, 1), dtype=np.uint64)
        self._held = np.zeros(0)  # how many capabilities each agent has
        self._load = np.zeros(0)
        self._ok = np.zeros(0, dtype=bool)
        self._free = np.zeros((0, 3))
        self._zone = np.zeros(0, dtype=np.int64)
        self._region = np.zeros(0, dtype=np.int64)
        self._perf: dict[str, np.ndarray] = {}
        self._places: dict[str, int] = {"": 0}

    def __len__(self) -> int:
        return len(self.agents)

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._row

    def get(self, agent_id: str) -> Agent:
        return self.agents[self._row[agent_id]]

    # --- registry --------------------------------------------------------------------

    def add(self, agent: Agent) -> None:
        if agent.agent_id in self._row:
            raise InvalidRequest(f"agent {agent.agent_id} is already registered")
        for cap in agent.capabilities:
            self._bit.setdefault(cap, len(self._bit))
        words = max(1, (len(self._bit) + 63) // 64)
        if words > self._masks.shape[1]:
            self._masks = np.pad(self._masks, ((0, 0), (0, words - self._masks.shape[1])))
        self._row[agent.agent_id] = len(self.agents)
        self.agents.append(agent)
        self._masks = np.vstack([self._masks, self._mask(agent.capabilities)])
        self._held = np.append(self._held, float(max(1, len(agent.capabilities))))
        self._load = np.append(self._load, 0.0)
        self._ok = np.append(self._ok, False)
        self._free = np.vstack([self._free, np.zeros(3)])
        self._zone = np.append(self._zone, 0)
        self._region = np.append(self._region, 0)
        for column in self._perf.values():
            column.resize(len(self.agents), refcheck=False)
            column[-1] = 1.0
        self.update(agent)

    def add_many(self, agents: Iterable[Agent]) -> None:
        for agent in agents:
            self.add(agent)

    def update(self, agent: Agent) -> None:
        """Refresh an agent's row after its load, status, resources or speed changed."""
        row = self._row[agent.agent_id]
        self._load[row] = agent.load
        self._ok[row] = agent.status is AgentStatus.AVAILABLE and agent.load < 1.0
        self._free[row] = (
            agent.shape.cpu - agent.used.cpu,
            agent.shape.gpu - agent.used.gpu,
            agent.shape.memory_gb - agent.used.memory_gb,
        )
        self._zone[row] = self._place(f"z:{agent.location.region}/{agent.location.zone}")
        self._region[row] = self._place(f"r:{agent.location.region}")
        for task_type, factor in agent.speed.items():
            self._performance(task_type)[row] = factor

    def remove(self, agent_id: str) -> None:
        row = self._row.pop(agent_id)
        last = len(self.agents) - 1
        if row != last:  # move the last row into the hole
            moved = self.agents[last]
            self.agents[row] = moved
            self._row[moved.agent_id] = row
            for column in (self._masks, self._held, self._load, self._ok, self._free,
                           self._zone, self._region, *self._perf.values()):  # fmt: skip
                column[row] = column[last]
        self.agents.pop()
        self._masks, self._free, self._held = (
            self._masks[:last],
            self._free[:last],
            self._held[:last],
        )
        self._load, self._ok = self._load[:last], self._ok[:last]
        self._zone, self._region = self._zone[:last], self._region[:last]
        self._perf = {t: c[:last].copy() for t, c in self._perf.items()}

    # --- the decision ------------------------------------------------------------------

    def choose(
        self, needs: SubtaskNeeds, caller: Location | None = None, avoid: Collection[str] = ()
    ) -> Agent:
        """The most suitable available agent that can handle the subtask; one not in
        ``avoid`` (e.g. those a retried subtask already failed on) where there is one."""
        capable = self._capable(needs.capabilities)
        if not capable.any():
            raise CapabilityMismatch(
                f"no agent has {', '.join(sorted(needs.capabilities)) or 'any capability'}"
            )
        eligible = capable & self._ok
        if not eligible.any():
            raise AgentUnavailable(f"every agent able to run {needs.task_type} is busy or away")
        w = self.weights
        perf = self._perf.get(needs.task_type)
        performance = 0.5 if perf is None else perf / (perf + 1.0)
        wanted = len(needs.capabilities)  # (none: anyone can, no one is more specialised)
        specialisation = wanted / self._held if wanted else 1.0
        score = w.capability * specialisation + w.load * (1.0 - self._load)
        score = score + w.performance * performance
        score = score + w.resources * self._availability(needs.resources)
        if caller is not None:
            same_zone = self._zone == self._places.get(f"z:{caller.region}/{caller.zone}", -1)
            same_region = self._region == self._places.get(f"r:{caller.region}", -1)
            score = score + w.proximity * np.where(same_zone, 1.0, np.where(same_region, 0.5, 0.0))
        else:
            score = score + w.proximity
        if avoid:
            others = eligible.copy()
            others[[self._row[a] for a in avoid if a in self._row]] = False
            eligible = others if others.any() else eligible
        best = int(np.argmax(np.where(eligible, score, -np.inf)))
        return self.agents[best]

    def _capable(self, wanted: frozenset[str]) -> np.ndarray:
        if any(cap not in self._bit for cap in wanted):
            return np.zeros(len(self.agents), dtype=bool)
        mask = self._mask(wanted)
        return np.asarray(np.all((self._masks & mask) == mask, axis=1), dtype=bool)

    def _availability(self, want: Resources) -> np.ndarray | float:
        asked = np.array([want.cpu, want.gpu, want.memory_gb])
        if not asked.any():
            return 1.0
        dims = asked > 0
        shares = np.clip(self._free[:, dims] / asked[dims], 0.0, 1.0)
        return np.asarray(shares.min(axis=1))

    def _mask(self, caps: Iterable[str]) -> np.ndarray:
        words = max(1, self._masks.shape[1])
        mask = np.zeros(words, dtype=np.uint64)
        for cap in caps:
            bit = self._bit[cap]
            mask[bit // 64] |= np.uint64(1 << (bit % 64))
        return mask

    def _performance(self, task_type: str) -> np.ndarray:
        column = self._perf.get(task_type)
        if column is None:
            column = self._perf[task_type] = np.ones(len(self.agents))
        return column

    def _place(self, key: str) -> int:
        return self._places.setdefault(key, len(self._places))
