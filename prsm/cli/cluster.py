"""``prsm agents`` and ``prsm cluster``: the orchestrator's agents and the cluster's nodes."""

from __future__ import annotations

from rich.table import Table

from prsm.cli.common import JsonFlag, client, console, print_json


def agents(as_json: JsonFlag = False) -> None:
    """The orchestrator's agents, with their status and load."""
    rows = client().agents()
    if as_json:
        print_json(rows)
        return
    table = Table("id", "type", "status", "load", "running", "done", "capabilities")
    for a in rows:
        table.add_row(a.id, a.type, a.status, f"{a.load:.0%}", str(a.running), str(a.done),
                      ", ".join(a.capabilities))  # fmt: skip
    console.print(table)


def cluster(as_json: JsonFlag = False) -> None:
    """The cluster's nodes: capacity, free resources, use; queued tasks and allocations."""
    view = client().cluster()
    if as_json:
        console.print_json(view.model_dump_json())
        return
    table = Table("node", "zone", "CPU free/total", "GPU free/total", "memory GiB free/total",
                  "CPU use (machine)", "allocations")  # fmt: skip
    for n in view.nodes:
        used = n.report.get("cpu_percent")
        table.add_row(n.node_id[:12], n.zone or "-", f"{n.free['CPU']:g}/{n.total['CPU']:g}",
                      f"{n.free['GPU']:g}/{n.total['GPU']:g}",
                      f"{n.free['memory'] / 2**30:.1f}/{n.total['memory'] / 2**30:.1f}",
                      "-" if used is None else f"{used:.0f}%", str(n.allocations))  # fmt: skip
    console.print(table)
    console.print(
        f"{len(view.nodes)} node(s), {view.free['CPU']:g} of {view.total['CPU']:g} "
        f"CPU free, {view.queued} task(s) queued, {view.allocations} allocation(s)"
    )
