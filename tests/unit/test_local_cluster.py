"""The local cluster's pid file: only a `ray start` of this cluster counts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil

from prsm.runtime.local_cluster import LocalCluster


def cluster(tmp_path: Path, port: int = 6399) -> LocalCluster:
    return LocalCluster(run_dir=tmp_path, port=port, dashboard_port=8299, num_cpus=1)


def test_a_stale_pid_naming_another_program_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "ray-head.pid").write_text(str(os.getpid()))  # this test process
    local = cluster(tmp_path)
    assert local.pid() is None
    assert local.stop() is False  # and nothing was signalled: we are still here
    assert not (tmp_path / "ray-head.pid").exists()


def test_a_head_of_this_cluster_is_found_and_stopped(tmp_path: Path) -> None:
    # A stand-in process whose command line looks like this cluster's `ray start`.
    fake = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "start", "--port=6399"],
        start_new_session=True,
    )
    try:
        (tmp_path / "ray-head.pid").write_text(str(fake.pid))
        assert cluster(tmp_path).pid() == fake.pid
        assert cluster(tmp_path, port=6400).pid() is None  # another cluster's port
        assert cluster(tmp_path).stop(timeout_s=10) is True
        assert not psutil.pid_exists(fake.pid)
    finally:
        fake.kill()
