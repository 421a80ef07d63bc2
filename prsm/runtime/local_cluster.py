"""The local Ray head that ``prsm up`` starts and ``prsm down`` stops.

The head runs as ``ray start --head --block`` in its own session; its pid is kept in the data
dir, so ``prsm down`` stops this cluster and no other Ray on the machine. Ray's token
authentication is on, with a token of PRSM's own in the data dir (not ``~/.ray/auth_token``,
which other Ray clusters on the machine may share or replace).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import ray

from prsm.adapters.ray_compat import reload_auth_config
from prsm.security.tokens import load_or_create_secret

# Ray Serve's throughput mode for every process of the cluster (Ray reads these when a
# process imports Serve, so they go into `ray start`'s environment): Serve handle calls and
# the proxy's calls to the gateway over gRPC instead of Ray's streaming-generator calls, and
# each replica's code on its main event loop instead of a second thread (one hop less per
# streamed chunk). Two parts of that mode stay off: direct ingress (a port of its own per
# ingress replica; clients reach the gateway only through Serve's proxy on PRSM's port) and
# buffered, file-only logs (an operator reads each line as it is written). On the 2-core
# machine, benchmarks/inference.py had PRSM's streamed tokens/s at concurrency 16 at 0.43x
# `vllm serve`'s before and 0.71x with it. A variable already set in the environment wins.
SERVE_THROUGHPUT_ENV = {
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0",
    "RAY_SERVE_PROXY_USE_GRPC": "1",
    "RAY_SERVE_LOG_TO_STDERR": "1",
    "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1",
}


def _ray_executable() -> str:
    beside = Path(sys.executable).parent / "ray"
    found = str(beside) if beside.exists() else shutil.which("ray")
    if not found:
        raise RuntimeError("the `ray` command is not installed beside this Python")
    return found


def _path_with_this_python() -> str:
    """PATH with this Python's folder first: `python` in a job's entrypoint (`ray job submit
    -- python jobs/…`) is then the Python PRSM runs in, with Ray and PRSM installed, even when
    `prsm up` was started by its full path from a virtual environment not activated."""
    here = str(Path(sys.executable).parent)
    return os.pathsep.join([here, *(p for p in os.environ.get("PATH", "").split(os.pathsep)
                                    if p and p != here)])  # fmt: skip


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class LocalCluster:
    run_dir: Path
    port: int
    dashboard_port: int
    num_cpus: int
    metrics_port: int | None = None  # Ray's metrics export (Prometheus); None: Ray picks one

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def _pid_file(self) -> Path:
        return self.run_dir / "ray-head.pid"

    def auth_env(self) -> dict[str, str]:
        """What a process needs in its environment to talk to this cluster."""
        token_file = self.run_dir / "ray_auth_token"
        load_or_create_secret(token_file)
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file)}

    def connect(self) -> None:
        if ray.is_initialized():
            return
        os.environ.update(self.auth_env())
        # Ray reads RAY_AUTH_MODE into its config once per process: make it read it again.
        reload_auth_config()
        ray.init(address=self.address, logging_level=logging.ERROR, log_to_driver=False)

    def _head(self) -> psutil.Process | None:
        """The running `ray start` of this cluster, if any. The pid file alone is not enough:
        after a reboot its pid may belong to another program."""
        try:
            process = psutil.Process(int(self._pid_file.read_text()))
            command = process.cmdline()
        except (FileNotFoundError, ValueError, psutil.Error):
            return None
        return process if "start" in command and f"--port={self.port}" in command else None

    def pid(self) -> int | None:
        head = self._head()
        return head.pid if head else None

    def start(self, timeout_s: float = 120.0) -> None:
        if self.pid() is not None:
            return
        if _port_open(self.port):
            raise RuntimeError(
                f"port {self.port} is taken by another process; set PRSM_RAY_PORT to a free port"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = (self.run_dir / "ray-head.log").open("ab")
        command = [
            _ray_executable(), "start", "--head", "--block", "--disable-usage-stats",
            f"--port={self.port}", f"--num-cpus={self.num_cpus}",
            "--include-dashboard=true", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            # Not Ray's fixed default (52365): another Ray on the machine may hold it.
            f"--dashboard-agent-listen-port={free_port()}",
        ]  # fmt: skip
        if self.metrics_port is not None:
            command.append(f"--metrics-export-port={self.metrics_port}")
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={
                **SERVE_THROUGHPUT_ENV,
                **os.environ,
                **self.auth_env(),
                "PATH": _path_with_this_python(),
            },
        )
        self._pid_file.write_text(str(process.pid))
        deadline = time.monotonic() + timeout_s
        while not _port_open(self.port):
            if process.poll() is not None:
                raise RuntimeError(f"ray start exited ({process.returncode}); see {log.name}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Ray head did not come up in {timeout_s:.0f} s")
            time.sleep(0.25)

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Stop the head and everything it started; False if it was not running."""
        head = self._head()
        if head is None:
            self._pid_file.unlink(missing_ok=True)
            return False
        head.terminate()  # `ray start --block` then stops the processes it started
        with contextlib.suppress(psutil.TimeoutExpired):
            head.wait(timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)  # whatever is left of this session
        self._pid_file.unlink(missing_ok=True)
        self._forget_current_cluster()
        return True

    def _forget_current_cluster(self) -> None:
        """Ray remembers the last cluster started on the machine for `ray.init()`; forget it
        when it is this one, as `ray stop` would."""
        marker = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        with contextlib.suppress(OSError):
            if marker.read_text().strip().endswith(f":{self.port}"):
                marker.unlink()


def disconnect() -> None:
    ray.shutdown()


async def check_ray() -> None:
    """Readiness: Ray answers from this process."""
    if not ray.is_initialized():
        raise RuntimeError("Ray is not initialised in this process")
    await asyncio.to_thread(ray.cluster_resources)
