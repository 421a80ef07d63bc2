"""No port of a model replica (or of the gateway's) answers without a credential, on `prsm up`.

Besides the gateway's port, each Serve replica listens on Ray's worker port and, in Serve's
throughput mode (which `prsm up` runs), on an inter-deployment gRPC port that takes the
gateway's calls to the model. Both refuse a caller without the cluster's Ray token: a model
request sent straight to any of them gets no answer, an inter-deployment call is refused as
unauthenticated, and the same call with the Ray token is let through (it then fails on its
empty body, so the refusal was the authentication's). PRSM's own HTTP ports answer, but
serve nothing without a credential: the model replica's server refuses a request without
the gateway's grant (401), and the gateway's routing port grants nothing to a caller
without a token (204) and knows no other route (404)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import httpx
import psutil
from ray.serve.generated import serve_pb2, serve_pb2_grpc

CHAT = {"model": "prsm-tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


def replica_ports() -> dict[str, list[tuple[str, int]]]:
    """The listening TCP addresses of each Serve replica process of this machine's PRSM."""
    found: dict[str, list[tuple[str, int]]] = {}
    for process in psutil.process_iter(["cmdline"]):
        title = " ".join(process.info["cmdline"] or [])
        if title.startswith("ray::ServeReplica:prsm"):
            listening = process.net_connections(kind="tcp")
            found[title] = sorted({(_host(c.laddr.ip), c.laddr.port) for c in listening
                                   if c.status == "LISTEN"})  # fmt: skip
    return found


def _host(ip: str) -> str:
    return "127.0.0.1" if ip in ("0.0.0.0", "::", "") else ip


def asgi_call(host: str, port: int,
              metadata: tuple[tuple[str, str], ...] = ()) -> grpc.StatusCode:  # fmt: skip
    """A Serve inter-deployment call to the port; the status it ends with."""
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        stub = serve_pb2_grpc.ASGIServiceStub(channel)
        try:
            stub.HandleRequest(serve_pb2.ASGIRequest(), timeout=10, metadata=metadata)
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_no_replica_port_answers_without_the_clusters_token(cluster: dict[str, Any]) -> None:
    ports = replica_ports()
    models = [title for title in ports if "prsm-model-" in title]
    assert models and any(":gateway" in title for title in ports), ports
    ray_token = Path(cluster["env"]["RAY_AUTH_TOKEN_PATH"]).read_text().strip()
    for title, listening in ports.items():
        assert listening, title
        refused, prsm_http = [], []
        for host, port in listening:
            try:
                answer = httpx.post(f"http://{host}:{port}/v1/chat/completions", json=CHAT,
                                    timeout=10)  # fmt: skip
            except httpx.HTTPError:
                answer = None  # not an HTTP server: no answer at all
            if answer is not None and answer.status_code in (401, 404):  # PRSM's own servers
                prsm_http.append(answer.status_code)
                routed = httpx.post(f"http://{host}:{port}/route/v1/chat/completions",
                                    json=CHAT, timeout=10)  # fmt: skip
                assert routed.status_code in (204, 404) and "grant" not in routed.text
                continue
            assert answer is None or not answer.is_success, (title, port, answer.text[:200])
            status = asgi_call(host, port)
            assert status in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNIMPLEMENTED), (
                title, port, status,
            )  # fmt: skip
            if status is grpc.StatusCode.UNAUTHENTICATED:
                refused.append(port)
                with_token = asgi_call(host, port, (("authorization", f"Bearer {ray_token}"),))
                assert with_token is not grpc.StatusCode.UNAUTHENTICATED, (title, port)
        assert refused, f"{title}: no inter-deployment port found among {listening}"
        # The model replica's own server (refuses without a grant), the gateway's routing port.
        assert prsm_http == ([401] if "prsm-model-" in title else [404]), (title, prsm_http)
