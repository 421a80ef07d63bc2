"""PRSM's edge, a real HAProxy with its Lua routing script, in front of three small HTTP
servers standing in for the gateway's routing port, Serve's proxy and a model replica."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from prsm.runtime.edge import Edge
from tests.support import free_port

CHAT = "/v1/chat/completions"
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}


class Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, answer: Any) -> None:
        self.seen: list[dict[str, Any]] = []
        self.answer = answer
        super().__init__(("127.0.0.1", port), Handler)


class Handler(BaseHTTPRequestHandler):
    server: Recorder
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.do_POST()

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        seen = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": self.rfile.read(length)}  # fmt: skip
        self.server.seen.append(seen)
        status, headers, body = self.server.answer(seen)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[tuple[str, dict[str, Recorder]]]:
    replica_port = free_port()

    def route(seen: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        if seen["headers"].get("authorization") != "Bearer good":
            return 204, {}, b""
        answer = {"dst": f"127.0.0.1:{replica_port}", "grant": "the-grant"}
        return 200, {"content-type": "application/json"}, json.dumps(answer).encode()

    def echo(via: str) -> Any:
        def answer(seen: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
            body = {"via": via, "grant": seen["headers"].get("x-prsm-grant")}
            return 200, {"content-type": "application/json"}, json.dumps(body).encode()

        return answer

    servers = {"route": Recorder(free_port(), route), "serve": Recorder(free_port(), echo("serve")),
               "replica": Recorder(replica_port, echo("replica"))}  # fmt: skip
    for server in servers.values():
        threading.Thread(target=server.serve_forever, daemon=True).start()
    port = free_port()
    the_edge = Edge(run_dir=tmp_path, host="127.0.0.1", port=port,
                    serve_port=servers["serve"].server_address[1],
                    route_port=servers["route"].server_address[1])  # fmt: skip
    the_edge.start()
    try:
        yield f"http://127.0.0.1:{port}", servers
    finally:
        the_edge.stop()
        for server in servers.values():
            server.shutdown()
            server.server_close()
    assert the_edge.pid() is None


def post(url: str, token: str, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", **kw.pop("headers", {})}
    return httpx.post(url, json=kw.pop("json", BODY), timeout=10, headers=headers)


def test_a_granted_chat_request_goes_to_the_replica_with_the_gateways_grant(
    edge: tuple[str, dict[str, Recorder]],
) -> None:
    url, servers = edge
    answer = post(url + CHAT, "good", headers={"X-Request-ID": "req-7"})
    assert answer.json() == {"via": "replica", "grant": "the-grant"}
    [asked] = servers["route"].seen
    assert asked["path"] == "/route" + CHAT
    assert asked["headers"]["authorization"] == "Bearer good"
    assert asked["headers"]["x-request-id"] == "req-7"
    assert json.loads(asked["body"]) == BODY
    [served] = servers["replica"].seen
    assert json.loads(served["body"]) == BODY and not servers["serve"].seen


def test_a_request_the_gateway_keeps_goes_to_serve_without_any_grant(
    edge: tuple[str, dict[str, Recorder]],
) -> None:
    url, servers = edge
    kept = post(url + "/v1/completions", "refused", headers={"x-prsm-grant": "forged"})
    assert kept.json() == {"via": "serve", "grant": None}
    assert len(servers["route"].seen) == 1
    other = httpx.get(url + "/v1/models", headers={"x-prsm-grant": "forged"}, timeout=10)
    assert other.json() == {"via": "serve", "grant": None}
    assert len(servers["route"].seen) == 1  # only chat and completion requests are routed


def test_a_body_too_large_to_route_goes_to_serve(edge: tuple[str, dict[str, Recorder]]) -> None:
    url, servers = edge
    large = {**BODY, "messages": [{"role": "user", "content": "x" * 300_000}]}
    assert post(url + CHAT, "good", json=large).json()["via"] == "serve"
    assert not servers["route"].seen


def test_without_the_routing_port_requests_go_to_serve(
    edge: tuple[str, dict[str, Recorder]],
) -> None:
    url, servers = edge
    servers["route"].shutdown()
    servers["route"].server_close()
    assert post(url + CHAT, "good").json()["via"] == "serve"


def test_a_replica_that_is_gone_leaves_the_request_to_serve(
    edge: tuple[str, dict[str, Recorder]],
) -> None:
    """The gateway named a replica that died since: the edge cannot connect to it, and the
    request takes the gateway's route (no grant) instead of failing."""
    url, servers = edge
    servers["replica"].shutdown()
    servers["replica"].server_close()
    assert post(url + CHAT, "good").json() == {"via": "serve", "grant": None}
    assert len(servers["route"].seen) == 1


def test_the_edge_ends_tls_with_the_configured_certificate(tmp_path: Path) -> None:
    from tests.integration.test_gateway_serve import self_signed

    certfile, keyfile = self_signed(tmp_path)
    serve = Recorder(free_port(), lambda seen: (200, {}, b'{"via": "serve"}'))
    threading.Thread(target=serve.serve_forever, daemon=True).start()
    port = free_port()
    edge = Edge(run_dir=tmp_path, host="127.0.0.1", port=port, route_port=free_port(),
                serve_port=serve.server_address[1], tls_certfile=str(certfile),
                tls_keyfile=str(keyfile))  # fmt: skip
    edge.start()
    try:
        verify = ssl.create_default_context(cafile=str(certfile))
        answer = httpx.get(f"https://127.0.0.1:{port}/v1/models", verify=verify, timeout=10)
        assert answer.json() == {"via": "serve"}
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5)
    finally:
        edge.stop()
        serve.shutdown()
        serve.server_close()


class Streaming(BaseHTTPRequestHandler):
    """A replica that streams three events 150 ms apart."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for i in range(3):
            event = f"data: {i}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
            time.sleep(0.15)
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args: Any) -> None:
        pass


def test_a_streamed_answer_reaches_the_client_event_by_event(tmp_path: Path) -> None:
    replica = ThreadingHTTPServer(("127.0.0.1", free_port()), Streaming)
    answer = {"dst": f"127.0.0.1:{replica.server_address[1]}", "grant": "g"}
    route = Recorder(free_port(), lambda seen: (200, {}, json.dumps(answer).encode()))
    for server in (replica, route):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    port = free_port()
    edge = Edge(run_dir=tmp_path, host="127.0.0.1", port=port, serve_port=free_port(),
                route_port=route.server_address[1])  # fmt: skip
    edge.start()
    try:
        arrivals = []
        with httpx.stream("POST", f"http://127.0.0.1:{port}{CHAT}", json=BODY,
                          headers={"Authorization": "Bearer x"}, timeout=10) as stream:  # fmt: skip
            for _ in stream.iter_raw():
                arrivals.append(time.monotonic())
        assert len(arrivals) == 3  # one read per event: none held back to merge with the next
        assert arrivals[2] - arrivals[0] > 0.25
    finally:
        edge.stop()
        for server in (replica, route):
            server.shutdown()
            server.server_close()
