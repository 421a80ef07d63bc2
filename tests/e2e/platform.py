"""A local platform for the end-to-end modules: Ray, Serve with one gateway replica behind
PRSM's edge (as `prsm up` runs them), and the model controller, torn down in the right order
(controller before Serve)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import ray
from ray import serve

from prsm import bootstrap
from prsm.client import PrsmClient
from prsm.config import Settings
from prsm.runtime import model_controller
from prsm.serve.deployment import gateway_app


@contextmanager
def running(settings: Settings) -> Iterator[tuple[str, str, PrsmClient]]:
    """Yield the gateway URL, a token for ann of tenant lab, and an SDK client with it."""
    ray.init(address="local", num_cpus=8, include_dashboard=False, logging_level=logging.ERROR,
             _metrics_export_port=settings.metrics_port)  # fmt: skip
    settings = bootstrap.with_edge_ports(settings)
    edge = bootstrap.edge(settings)
    try:
        bootstrap.start_serve(settings)
        app = gateway_app(bootstrap.build_gateway, settings.for_replicas(), replicas=1)
        serve.run(app, name="prsm", route_prefix="/")
        edge.start()
        bootstrap.start_model_controller(settings)
        token = bootstrap.issue_token(settings, "ann", "lab")
        url = f"http://127.0.0.1:{settings.http_port}"
        client = PrsmClient(url, token, timeout=60)
        try:
            yield url, token, client
        finally:
            client.close()
    finally:
        model_controller.stop()
        edge.stop()
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()
