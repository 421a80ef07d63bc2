"""Leasing CPU cores to vLLM-CPU engines: free cores first, the least shared when none is
free, released when the holder's process ends; and the thread settings made of a lease."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

from prsm.adapters.inference.cpu_cores import lease_cores, omp_env, vllm_bind

CORES = {0, 1, 2, 3}


def machine(cores: set[int] = CORES) -> mock._patch:  # type: ignore[type-arg]
    return mock.patch.object(os, "sched_getaffinity", return_value=cores)


def test_engines_get_cores_nobody_holds_then_share_the_least_shared(tmp_path: Path) -> None:
    with machine():
        first, second = lease_cores(2, tmp_path), lease_cores(1, tmp_path)
        third = lease_cores(2, tmp_path)
    assert (first.cores, first.shared) == ([0, 1], False)
    assert (second.cores, second.shared) == ([2], False)
    # One core was free (3); the second shares the lowest of the least shared.
    assert (third.cores, third.shared) == ([0, 3], True)


def test_released_cores_are_free_again(tmp_path: Path) -> None:
    with machine():
        lease = lease_cores(4, tmp_path)
        lease.release()
        again = lease_cores(4, tmp_path)
    assert (again.cores, again.shared) == ([0, 1, 2, 3], False)


def test_an_engine_asking_more_than_the_machine_has_gets_every_core(tmp_path: Path) -> None:
    with machine({5, 7}):
        lease = lease_cores(8, tmp_path)
    assert lease.cores == [5, 7]


def test_a_lease_holds_across_processes_until_its_holder_ends(tmp_path: Path) -> None:
    holder = subprocess.Popen(  # leases every core it may run on, then waits for stdin
        [sys.executable, "-c",
         "import sys; from pathlib import Path; from prsm.adapters.inference.cpu_cores import "
         f"lease_cores; l = lease_cores(1024, Path({str(tmp_path)!r})); print(l.cores, "
         "flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None
    held = holder.stdout.readline()
    assert held.startswith("[")
    try:
        assert lease_cores(1, tmp_path).shared
    finally:
        holder.kill()  # the OS drops its locks however it ends
        holder.wait()
    assert not lease_cores(1, tmp_path).shared


def test_thread_settings_of_a_lease() -> None:
    assert omp_env([2, 3]) == {"OMP_NUM_THREADS": "2", "OMP_PLACES": "{2,3}",
                               "OMP_PROC_BIND": "true"}  # fmt: skip
    assert vllm_bind([0, 1, 2, 3], 2) == "0,1|2,3"
    assert vllm_bind([4], 2) == "4|4"


def test_sharing_follows_the_count_of_holders_not_the_order_they_came(tmp_path: Path) -> None:
    with machine({0, 1}):
        a, b = lease_cores(1, tmp_path), lease_cores(1, tmp_path)  # 0, 1
        c = lease_cores(1, tmp_path)  # shares 0
        a.release()  # core 0: one holder (c), core 1: one (b)
        d = lease_cores(1, tmp_path)
        e = lease_cores(1, tmp_path)
    assert [x.cores for x in (a, b, c, d, e)] == [[0], [1], [0], [0], [1]]
    assert (d.shared, e.shared) == (True, True)
