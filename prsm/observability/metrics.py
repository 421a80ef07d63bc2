"""Prometheus metrics of the gateway process (served on ``/metrics``)."""

from __future__ import annotations

import collections
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from prsm.domain.events import RecordedEvent

HTTP_REQUESTS = Counter(
    "prsm_http_requests_total",
    "HTTP requests by route, method and status",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "prsm_http_request_duration_seconds",
    "HTTP request latency by route",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TASKS_SUBMITTED = Counter("prsm_tasks_submitted_total", "Tasks accepted, by tenant", ["tenant"])
TASKS_CANCELLED = Counter("prsm_tasks_cancelled_total", "Tasks cancelled, by tenant", ["tenant"])
EVENTS_APPENDED = Counter(
    "prsm_events_appended_total",
    "Events appended to the event store by this process, by type and source component",
    ["type", "source"],
)


def count_appended(recorded: Iterable[RecordedEvent]) -> None:
    counts = collections.Counter((r.event.type_name(), r.metadata.source) for r in recorded)
    for (event_type, source), count in counts.items():
        EVENTS_APPENDED.labels(event_type, source).inc(count)


_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
INFERENCE_REQUESTS = Counter(
    "prsm_inference_requests_total",
    "Inference requests by model, version, endpoint and outcome (ok or an error code)",
    ["model", "version", "endpoint", "outcome"],
)
INFERENCE_LATENCY = Histogram(
    "prsm_inference_duration_seconds",
    "Inference request latency, to the last byte, by model and version",
    ["model", "version"],
    buckets=_LATENCY_BUCKETS,
)
TIME_TO_FIRST_TOKEN = Histogram(
    "prsm_inference_time_to_first_token_seconds",
    "Time to the first streamed token (whole response when not streaming)",
    ["model", "version"],
    buckets=_LATENCY_BUCKETS,
)
INFERENCE_TOKENS = Counter(
    "prsm_inference_tokens_total",
    "Tokens in (prompt) and out (generated), by model and version",
    ["model", "version", "direction"],
)
ROLLOUT_TRAFFIC = Gauge(
    "prsm_rollout_traffic_percent",
    "Share of a model's traffic the router sends to each version of its latest rollout",
    ["model", "version"],
)
ACCESS_DECISIONS = Counter(
    "prsm_access_decisions_total",
    "Authentication, authorisation and rate-limit decisions by stage and outcome",
    ["stage", "decision"],
)
RATE_LIMITER_ERRORS = Counter(
    "prsm_rate_limiter_errors_total",
    "Requests decided without the rate limiter's store, by how they were let go (open/closed)",
    ["failed"],
)
