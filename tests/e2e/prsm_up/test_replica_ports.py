"""No port of a model replica (or of the gateway's) answers without a credential, on `prsm up`.

Besides the gateway's port, each Serve replica listens on Ray's worker port and, in Serve's
throughput mode (which `prsm up` runs), on an inter-deployment gRPC port that takes the
gateway's calls to the model. Both refuse a caller without the cluster's Ray token: a model
request sent straight to any of them gets no answer, an inter-deployment call is refused as
unauthenticated, and the same call with the Ray token is let through (it then fails on its
empty body, so the refusal was the authentication's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import httpx
import psutil
from ray.serve.generated import serve_pb2, serve_pb2_grpc

CHAT = {"model": "prsm-tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


def replica_ports() -> dict[str, list[int]]:
    """The listening TCP ports of each Serve replica process of this machine's PRSM."""
    found: dict[str, list[int]] = {}
    for process in psutil.process_iter(["cmdline"]):
        title = " ".join(process.info["cmdline"] or [])
        if title.startswith("ray::ServeReplica:prsm"):
            listening = process.net_connections(kind="tcp")
            found[title] = sorted({c.laddr.port for c in listening if c.status == "LISTEN"})
    return found


def asgi_call(port: int, metadata: tuple[tuple[str, str], ...] = ()) -> grpc.StatusCode:
    """A Serve inter-deployment call to the port; the status it ends with."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
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
        refused = []
        for port in listening:
            try:
                answer = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=CHAT,
                                    timeout=10)  # fmt: skip
                assert not answer.is_success, (title, port, answer.text[:200])
            except httpx.HTTPError:
                pass  # not an HTTP server: no answer at all
            status = asgi_call(port)
            assert status in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNIMPLEMENTED), (
                title, port, status,
            )  # fmt: skip
            if status is grpc.StatusCode.UNAUTHENTICATED:
                refused.append(port)
                with_token = asgi_call(port, (("authorization", f"Bearer {ray_token}"),))
                assert with_token is not grpc.StatusCode.UNAUTHENTICATED, (title, port)
        assert refused, f"{title}: no inter-deployment port found among {listening}"
