"""The cluster on the wire: what ``/v1/cluster`` answers."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class NodeOut(BaseModel):
    node_id: str
    address: str | None = None
    zone: str
    region: str
    total: dict[str, float] = Field(description="CPU, GPU, memory (bytes) the node has")
    free: dict[str, float] = Field(description="What Ray has free on it now")
    utilisation: dict[str, float] = Field(description="Share in use, 0..1, per resource")
    allocations: int = Field(description="Task allocations with a bundle on this node")
    report: dict[str, Any] = Field(description="Its compute-node actor's measurements "
                                   "(psutil; GPUs through NVML where present)")  # fmt: skip


class ClusterOut(BaseModel):
    nodes: list[NodeOut]
    total: dict[str, float]
    free: dict[str, float]
    queued: int = Field(description="Tasks waiting in the queue")
    allocations: int = Field(description="Placement groups held by scheduled and running tasks")
    dashboard_port: int | None = Field(
        default=None, description="The Ray dashboard's port, on the gateway's host (operators)"
    )
    grafana_url: str | None = Field(
        default=None, description="Grafana, where one is set up (operators)"
    )
