"""PRSM's error hierarchy.

Every error carries a stable ``code`` that clients can match on; the gateway maps codes to
HTTP statuses in one table (``prsm.serve.errors``).

    PrsmError
    ├── InvalidRequest            bad input the caller can fix              (code invalid_request)
    │   ├── BadModelRequest       a model backend refused the input (e.g. prompt too long)
    │   └── CapabilityMismatch    no agent has what a subtask needs        (capability_mismatch)
    ├── NotFound                  no such resource, or not visible to you   (not_found)
    ├── Conflict                  the resource's state forbids the request  (conflict)
    │   ├── IllegalTransition     a task status change the machine refuses  (illegal_transition)
    │   ├── IdempotencyConflict   a key reused with a different request     (idempotency_conflict)
    │   ├── NotFinished           the task has no result yet                (not_finished)
    │   ├── ConcurrencyError      a stream moved past the expected version  (concurrency_conflict)
    │   ├── AgentUnavailable      the agent is busy, draining or offline    (agent_unavailable)
    │   └── InsufficientResources the cluster cannot hold the request now  (insufficient_resources)
    ├── AuthenticationError       no or invalid credentials                 (unauthenticated)
    ├── PermissionDenied          authenticated, but not allowed            (forbidden)
    ├── StoreUnavailable          the event store cannot be reached         (store_unavailable)
    ├── RateLimited               too many requests; retry later            (rate_limited)
    ├── RateLimiterUnavailable    no limiter, failing closed   (rate_limiter_unavailable)
    ├── RuntimeUnavailable        a runtime actor is not running            (runtime_unavailable)
    │   ├── OrchestratorUnavailable   the orchestrator   (orchestrator_unavailable)
    │   └── SchedulerUnavailable      the scheduler      (scheduler_unavailable)
    └── UpstreamError             a model backend failed                    (upstream_error)
        ├── UpstreamAuthFailed    the backend refused PRSM's credentials    (upstream_auth_failed)
        ├── UpstreamTimeout       the backend did not answer in time        (upstream_timeout)
        ├── ModelUnavailable      the model is deploying, failed or gone    (model_unavailable)
        └── InjectedFault         a fault injected on purpose (drills)      (injected_fault)

Errors raised from a foreign exception keep it as ``__cause__`` (``raise X(...) from exc``).
"""

from __future__ import annotations


class PrsmError(Exception):
    code = "prsm_error"
    recoverable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(PrsmError):
    code = "invalid_request"


class BadModelRequest(InvalidRequest):
    """A model backend refused the request as invalid (over-long prompt, bad parameter)."""

    code = "bad_request"


class NotFound(PrsmError):
    code = "not_found"


class CapabilityMismatch(InvalidRequest):
    code = "capability_mismatch"


class Conflict(PrsmError):
    code = "conflict"


class IllegalTransition(Conflict):
    code = "illegal_transition"


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"


class NotFinished(Conflict):
    code = "not_finished"


class ConcurrencyError(Conflict):
    """Raised by the event store when ``expected_version`` is stale; nothing was written."""

    code = "concurrency_conflict"
    recoverable = True

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream_id!r} is at version {actual}, expected {expected}")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class AgentUnavailable(Conflict):
    code = "agent_unavailable"


class AuthenticationError(PrsmError):
    code = "unauthenticated"


class PermissionDenied(PrsmError):
    code = "forbidden"


class InsufficientResources(Conflict):
    """No placement fits the request on the nodes there are; the message says what is
    missing and what the caller can change."""

    code = "insufficient_resources"


class StoreUnavailable(PrsmError):
    code = "store_unavailable"
    recoverable = True


class RateLimited(PrsmError):
    code = "rate_limited"
    recoverable = True

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimiterUnavailable(PrsmError):
    code = "rate_limiter_unavailable"
    recoverable = True


class RuntimeUnavailable(PrsmError):
    """A runtime actor the request needs is not running (or restarting); retry later."""

    code = "runtime_unavailable"
    recoverable = True


class OrchestratorUnavailable(RuntimeUnavailable):
    code = "orchestrator_unavailable"


class SchedulerUnavailable(RuntimeUnavailable):
    code = "scheduler_unavailable"


class UpstreamError(PrsmError):
    """A model backend (an engine, or an external provider) failed to answer."""

    code = "upstream_error"
    recoverable = True


class UpstreamAuthFailed(UpstreamError):
    code = "upstream_auth_failed"
    recoverable = False


class UpstreamTimeout(UpstreamError):
    code = "upstream_timeout"


class ModelUnavailable(UpstreamError):
    code = "model_unavailable"


class InjectedFault(UpstreamError):
    """A failure injected into a model version's traffic for a drill (``/faults``)."""

    code = "injected_fault"
