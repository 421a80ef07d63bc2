"""Agents on the wire: what ``/v1/agents`` answers."""

from __future__ import annotations

from pydantic import BaseModel, Field


class AgentOut(BaseModel):
    id: str
    type: str
    status: str = Field(description="AVAILABLE, BUSY, DRAINING or OFFLINE")
    load: float = Field(description="Share of its capacity in use, 0..1")
    capabilities: list[str]
    running: int = Field(description="Batches of subtasks running now")
    done: int = Field(description="Subtasks run since the agent started")
    speed: dict[str, float] = Field(description="Observed speed per skill (1.0: nominal)")
    last_heartbeat_s: float | None = Field(description="Seconds since its last heartbeat")
    node_id: str | None = None


class AgentList(BaseModel):
    agents: list[AgentOut]
