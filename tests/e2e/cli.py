"""The `prsm` command as the e2e tests run it, and the environment of a platform of a test's
own: its data dir, free ports, 8 logical CPUs and no inherited token."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import free_port


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "prsm", *args], env=env, capture_output=True,
                          text=True, timeout=600, check=False)  # fmt: skip


def prsm(env: dict[str, str], *args: str) -> str:
    """Its output; a failure fails the test with what it printed."""
    done = run(env, *args)
    assert done.returncode == 0, f"prsm {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def platform_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """This process's environment for a platform in ``data_dir`` on free ports, with
    ``settings`` (``PRSM_*`` variables) on top."""
    env = {
        **os.environ,
        "PRSM_DATA_DIR": str(data_dir),
        "PRSM_HTTP_PORT": str(free_port()),
        "PRSM_RAY_PORT": str(free_port()),
        "PRSM_DASHBOARD_PORT": str(free_port()),
        "PRSM_METRICS_PORT": str(free_port()),
        "PRSM_RAY_NUM_CPUS": "8",
        **settings,
    }
    env.pop("PRSM_TOKEN", None)
    return env
