"""The package's platform: `prsm up` with the default model, its dashboard and Ray token
authentication on, as a user starts it; torn down after the package's last module."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.cli import platform_env, prsm


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("prsm-up")
    env = platform_env(
        tmp / "data",
        # Reads: 20/s after a burst of 300 (default 200/s, 400), so that a user flooding the
        # gateway meets its limit (test_observability) on a machine slower than 200 requests/s.
        PRSM_RATE_LIMITS="inference=100/200,tasks=100/200,reads=20/300",
        PRSM_AGENTS='{"compute": 1, "simulation": 1, "llm": 1}',
    )
    out = prsm(env, "up")
    found = re.search(r"export PRSM_TOKEN=(\S+)", out)
    assert found, out
    # What `prsm up` prints for `ray job submit`: the dashboard and the Ray token's file.
    address = f"http://127.0.0.1:{env['PRSM_DASHBOARD_PORT']}"
    token_path = re.search(r"RAY_AUTH_TOKEN_PATH=(\S+)", out)
    assert token_path and address in out, out
    ray_env = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": token_path.group(1)}
    try:
        yield {"env": ray_env, "address": address, "token": found.group(1), "tmp": tmp,
               "gateway": f"http://127.0.0.1:{env['PRSM_HTTP_PORT']}", "up_output": out,
               "metrics": f"127.0.0.1:{env['PRSM_METRICS_PORT']}"}  # fmt: skip
    finally:
        subprocess.run([sys.executable, "-m", "prsm", "down"], env=env, timeout=300, check=False)
