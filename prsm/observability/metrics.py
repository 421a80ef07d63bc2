"""PRSM's metrics, each defined once and recorded into two sinks:

- ``prometheus_client``, served on the gateway replica's own ``/metrics`` (the figures of the
  replica that answers the scrape: with several replicas, the Serve proxy picks one per
  scrape);
- Ray's metrics API (``ray.util.metrics``), which every Ray process (gateway replicas and the
  runtime actors alike) reports to its node's metrics agent; Ray exports them with a ``ray_``
  prefix (``ray_prsm_http_requests_total``) on each node's metrics export port. These cover
  every replica and every actor, and are what the Grafana dashboard and the alert rules query.

Outside a Ray process (unit tests, the CLI) the Ray sink records nothing.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import prometheus_client
from ray.util import metrics as ray_metrics

from prsm.domain import events as ev
from prsm.domain import registry_events as rev
from prsm.domain.agents import AgentStatus
from prsm.domain.rollouts import Rollout
from prsm.domain.scheduling import Queued
from prsm.domain.tasks import STATUS_AFTER
from prsm.service_layer.runtime_views import AgentView


class _Bound:
    """One metric with its label values: records into both sinks."""

    def __init__(self, metric: _Metric, values: tuple[str, ...]) -> None:
        self._prom: Any = metric.prom.labels(*values) if values else metric.prom
        self._ray: Any = metric.ray
        self._tags = dict(zip(metric.labelnames, values, strict=True)) or None

    def inc(self, amount: float = 1.0) -> None:
        if amount <= 0:  # Ray refuses an increment of 0
            return
        self._prom.inc(amount)
        self._ray.inc(amount, tags=self._tags)

    def observe(self, value: float) -> None:
        self._prom.observe(value)
        self._ray.observe(value, tags=self._tags)

    def set(self, value: float) -> None:
        self._prom.set(value)
        self._ray.set(value, tags=self._tags)


class _Metric:
    def __init__(self, prom: Any, ray: Any, labelnames: Sequence[str]) -> None:
        self.prom, self.ray, self.labelnames = prom, ray, tuple(labelnames)
        self._bound: dict[tuple[str, ...], _Bound] = {}  # label values are few (no ids)

    def labels(self, *values: str) -> _Bound:
        bound = self._bound.get(values)
        if bound is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"expected labels {self.labelnames}, got {values}")
            bound = self._bound[values] = _Bound(self, tuple(str(v) for v in values))
        return bound


def _counter(name: str, doc: str, labels: Sequence[str] = ()) -> _Metric:
    return _Metric(prometheus_client.Counter(name, doc, labels),
                   ray_metrics.Counter(name, doc, tuple(labels)), labels)  # fmt: skip


def _gauge(name: str, doc: str, labels: Sequence[str] = ()) -> _Metric:
    return _Metric(prometheus_client.Gauge(name, doc, labels),
                   ray_metrics.Gauge(name, doc, tuple(labels)), labels)  # fmt: skip


def _histogram(name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]) -> _Metric:
    prom = prometheus_client.Histogram(name, doc, labels, buckets=tuple(buckets))
    ray = ray_metrics.Histogram(name, doc, boundaries=list(buckets), tag_keys=tuple(labels))
    return _Metric(prom, ray, labels)


HTTP_REQUESTS = _counter(
    "prsm_http_requests_total",
    "HTTP requests by route, method and status",
    ["route", "method", "status"],
)
HTTP_LATENCY = _histogram(
    "prsm_http_request_duration_seconds",
    "HTTP request latency by route",
    ["route", "method"],
    (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TASKS_SUBMITTED = _counter("prsm_tasks_submitted_total", "Tasks accepted, by tenant", ["tenant"])
TASKS_CANCELLED = _counter("prsm_tasks_cancelled_total", "Tasks cancelled, by tenant", ["tenant"])
EVENTS_APPENDED = _counter(
    "prsm_events_appended_total",
    "Events appended to the event store by this process, by type and source component",
    ["type", "source"],
)


def count_appended(recorded: Iterable[ev.RecordedEvent], store: str, seconds: float) -> None:
    """An append of ``store`` that took ``seconds``: its events by type and source."""
    STORE_APPEND_LATENCY.labels(store).observe(seconds)
    counts = collections.Counter((r.event.type_name(), r.metadata.source) for r in recorded)
    for (event_type, source), count in counts.items():
        EVENTS_APPENDED.labels(event_type, source).inc(count)


_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
INFERENCE_REQUESTS = _counter(
    "prsm_inference_requests_total",
    "Inference requests by model, version, endpoint and outcome (ok or an error code)",
    ["model", "version", "endpoint", "outcome"],
)
INFERENCE_LATENCY = _histogram(
    "prsm_inference_duration_seconds",
    "Inference request latency, to the last byte, by model and version",
    ["model", "version"],
    _LATENCY_BUCKETS,
)
TIME_TO_FIRST_TOKEN = _histogram(
    "prsm_inference_time_to_first_token_seconds",
    "Time to the first streamed token (whole response when not streaming)",
    ["model", "version"],
    _LATENCY_BUCKETS,
)
INFERENCE_TOKENS = _counter(
    "prsm_inference_tokens_total",
    "Tokens in (prompt) and out (generated), by model and version",
    ["model", "version", "direction"],
)
ROLLOUT_TRAFFIC = _gauge(
    "prsm_rollout_traffic_percent",
    "Share of a model's traffic the router sends to each version of its latest rollout",
    ["model", "version"],
)
ACCESS_DECISIONS = _counter(
    "prsm_access_decisions_total",
    "Authentication, authorisation and rate-limit decisions by stage and outcome",
    ["stage", "decision"],
)
RATE_LIMITER_ERRORS = _counter(
    "prsm_rate_limiter_errors_total",
    "Requests decided without the rate limiter's store, by how they were let go (open/closed)",
    ["failed"],
)
INTER_TOKEN_LATENCY = _histogram(
    "prsm_inference_inter_token_latency_seconds",
    "Mean time between generated tokens of a streamed response (from the first token to the "
    "last, over the tokens after the first), one sample per response, by model and version; "
    "the model replica sends chunks after the first in batches (50 ms), which this includes",
    ["model", "version"],
    (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
READY = _gauge(
    "prsm_ready",
    "Readiness of the gateway replica's dependencies (1: answers, 0: failing), by check",
    ["check"],
)
STORE_APPEND_LATENCY = _histogram(
    "prsm_store_append_duration_seconds",
    "Time to append to the event store (the transaction, shared commits included), by store",
    ["store"],
    (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

# --- the runtime actors' (exported through Ray only: no one serves their prometheus_client) --

TASKS_FINISHED = _counter(
    "prsm_tasks_finished_total",
    "Tasks that ended, by type and status (SUCCEEDED, FAILED, CANCELLED), seen by the scheduler",
    ["type", "status"],
)
TASK_DURATION = _histogram(
    "prsm_task_duration_seconds",
    "Run time of tasks that ended, from their start to their end, by type and status",
    ["type", "status"],
    (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
QUEUE_DEPTH = _gauge("prsm_queue_depth", "Tasks queued, waiting to be scheduled")
OLDEST_QUEUED_AGE = _gauge(
    "prsm_queue_oldest_age_seconds", "Seconds since the oldest queued task was submitted (0: none)"
)
AGENTS = _gauge("prsm_agents", "Agents by type and status", ["type", "status"])
AGENT_LOAD = _gauge(
    "prsm_agent_load",
    "Mean load of the agents of a type (share of capacity in use, 0..1)",
    ["type"],
)
ROLLOUT_DECISIONS = _counter(
    "prsm_rollout_decisions_total",
    "Canary rollout decisions by model, decision (advance, hold, complete, rollback, abort) and "
    "who made it (controller, user)",
    ["model", "decision", "by"],
)

_TERMINAL = (ev.TaskSucceeded, ev.TaskFailed, ev.TaskCancelled)


def task_finished(event: ev.Event, task_type: str, started: datetime | None) -> None:
    """Count ``event`` if it ends a task; its run time too when the task had started."""
    if not isinstance(event, _TERMINAL):
        return
    status = STATUS_AFTER[type(event)].value
    TASKS_FINISHED.labels(task_type, status).inc()
    if started is not None:
        TASK_DURATION.labels(task_type, status).observe(
            max((event.at - started).total_seconds(), 0.0)
        )


def queue(waiting: Sequence[Queued], now: datetime) -> None:
    """The queue's depth and the age of its oldest task."""
    QUEUE_DEPTH.labels().set(len(waiting))
    oldest = min((q.submitted_at for q in waiting), default=now)
    OLDEST_QUEUED_AGE.labels().set(max((now - oldest).total_seconds(), 0.0))


_AGENT_TYPES: set[str] = set()  # every type reported in this process: gone ones go to 0


def agents(views: Iterable[AgentView], types: Iterable[str]) -> None:
    """How many agents of each type are in each status (0 included), and their mean load."""
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    _AGENT_TYPES.update(types)
    loads: dict[str, list[float]] = {t: [] for t in _AGENT_TYPES}
    for a in views:
        counts[a.type, a.status] += 1
        loads.setdefault(a.type, []).append(a.load)
        _AGENT_TYPES.add(a.type)
    for kind, values in loads.items():
        for status in AgentStatus:
            AGENTS.labels(kind, status.value).set(counts[kind, status.value])
        AGENT_LOAD.labels(kind).set(sum(values) / len(values) if values else 0.0)


_DECISIONS: dict[type, str] = {
    rev.RolloutAdvanced: "advance",
    rev.RolloutHeld: "hold",
    rev.RolloutCompleted: "complete",
    rev.RolloutRolledBack: "rollback",
    rev.RolloutAborted: "abort",
}


def rollout_decided(rollout: Rollout, by: str) -> None:
    """Count the latest decision of ``rollout`` (made by ``controller`` or ``user``)."""
    decision = _DECISIONS.get(type(rollout.history[-1])) if rollout.history else None
    if decision is not None:
        ROLLOUT_DECISIONS.labels(rollout.model, decision, by).inc()
