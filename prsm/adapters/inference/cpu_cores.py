"""The CPU cores a vLLM-CPU engine runs on: as many as its worker bundles reserve, and other
engines' cores as little as possible.

Ray counts CPUs but does not pin processes to cores, and vLLM-CPU picks its cores without
regard to other engines on the machine (its automatic binding takes the first NUMA node's
cores for every engine). So each model replica leases its cores before its engine starts.
A lease is a set of ``flock`` locks in a directory of the machine, lock files per core
(one per engine on it): a replica takes the cores nobody holds first, and only when every
core is taken does it share the least shared ones. The operating system drops the locks
when the replica's process ends, however it ends, so a lease cannot leak. Engines of
separate Ray clusters on one machine share its cores, so the directory is the machine's,
not the cluster's.
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
    fewer): the least shared first, lowest numbers first. One lease is made at a time on
    the machine, so two engines starting together do not pick the same free core."""
    lock_dir = lock_dir or LOCK_DIR
    lock_dir.mkdir(parents=True, exist_ok=True)
    allowed = sorted(os.sched_getaffinity(0))
    count = max(1, min(count, len(allowed)))
    with open(lock_dir / "lease.lock", "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        holders = {core: _holders(lock_dir, core) for core in allowed}
        chosen = sorted(allowed, key=lambda core: (holders[core], core))[:count]
        locks = [_free_slot(lock_dir, core) for core in chosen]
    return CoreLease(sorted(chosen), shared=any(holders[c] for c in chosen), _locks=locks)


def _holders(lock_dir: Path, core: int) -> int:
    """How many leases hold ``core``: its slot files whose lock is taken (a lock of this
    process's own leases counts too: ``flock`` locks belong to an open file, not a
    process)."""
    held = 0
    for slot in itertools.count():
        path = lock_dir / f"core{core}.{slot}"
        if not path.exists():
            return held
        with open(path, "a") as probe:
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held += 1
    raise AssertionError("unreachable")


def _free_slot(lock_dir: Path, core: int) -> IO[str]:
    for slot in itertools.count():
        lock = open(lock_dir / f"core{core}.{slot}", "a")  # noqa: SIM115 (held until release)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock
        except BlockingIOError:
            lock.close()
    raise AssertionError("unreachable")


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
