"""Compute-node actors: one per Ray node, pinned to it, reporting what the machine itself
measures — CPU and memory use (psutil) and, where GPUs exist, their use and memory (NVML
through nvidia-ml-py). ``NodeMonitors`` follows nodes that join and leave."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import psutil
from ray.exceptions import RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from prsm.runtime import actors
from prsm.service_layer.runtime_views import GpuReport, NodeReport

log = logging.getLogger("prsm.nodes")
REPORT_TIMEOUT_S = 5.0


def actor_name(node_id: str) -> str:
    return f"prsm-node-{node_id[:16]}"


class NodeMonitor:
    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        psutil.cpu_percent(interval=None)  # the first call only starts the measurement

    def report(self) -> NodeReport:
        memory = psutil.virtual_memory()
        return NodeReport(
            node_id=self.node_id,
            cpu_percent=psutil.cpu_percent(interval=None),
            cpu_count=psutil.cpu_count(),
            memory_used_gb=(memory.total - memory.available) / 2**30,
            memory_total_gb=memory.total / 2**30,
            load_1m=psutil.getloadavg()[0],
            gpus=_gpus(),
            at=time.time(),
        )


def _gpus() -> tuple[GpuReport, ...]:
    try:
        import pynvml
    except ImportError:
        return ()
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return ()  # no NVIDIA driver: no GPUs to report
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            use = pynvml.nvmlDeviceGetUtilizationRates(handle)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            out.append(GpuReport(index=i, util_percent=float(use.gpu),
                                 memory_used_gb=float(mem.used) / 2**30,
                                 memory_total_gb=float(mem.total) / 2**30))  # fmt: skip
        return tuple(out)
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


class NodeMonitors:
    """One monitor per live node: started for nodes that join, dropped for nodes that
    leave; ``reports`` holds each node's latest report."""

    def __init__(self) -> None:
        self.handles: dict[str, Any] = {}
        self.reports: dict[str, NodeReport] = {}

    def follow(self, node_ids: set[str]) -> None:
        for gone in set(self.handles) - node_ids:
            del self.handles[gone]
            self.reports.pop(gone, None)
        for node_id in node_ids - set(self.handles):
            strategy = NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
            self.handles[node_id] = actors.pinned(
                NodeMonitor, actor_name(node_id), strategy, node_id
            )

    async def refresh(self) -> None:
        ids = list(self.handles)
        got: list[NodeReport | BaseException] = await asyncio.gather(
            *(asyncio.wait_for(self.handles[n].report.remote(), REPORT_TIMEOUT_S) for n in ids),
            return_exceptions=True,
        )
        for node_id, report in zip(ids, got, strict=True):
            if isinstance(report, NodeReport):
                self.reports[node_id] = report
            elif isinstance(report, RayActorError):
                self.handles.pop(node_id, None)  # started again on the next follow()
            else:
                log.debug("node %s did not report: %r", node_id[:8], report)
