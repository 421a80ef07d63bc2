"""Grants: the gateway's signed word to one model replica that one request may be served.

A vLLM model replica answers HTTP itself on a port of its own (``direct_http``): PRSM's edge
sends it the client's request, and the replica streams the answer back with no other PRSM
process on the way. The gateway still decides everything about the request before that
(who calls, with which rights and rate limit, which version serves it, injected faults);
the edge adds the gateway's grant to the request as a header, and the replica serves only
requests that carry a valid grant for its own application: its port answers nothing to a
caller that did not pass the gateway.

A grant is ``<payload>.<signature>``: the payload is URL-safe base64 of JSON (the version's
application, its labels, the tenants, the request id, an expiry a few seconds away), the
signature an HMAC-SHA256 of it with a key derived from the platform's token secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import asdict, dataclass

HEADER = "x-prsm-grant"
TTL_S = 30.0  # from the gateway's decision to the replica's first look at the request


class GrantRefused(Exception):
    """No grant, or one this replica may not honour."""


@dataclass(frozen=True)
class Grant:
    app: str  # the Serve application of the version that serves the request
    model: str
    version: str
    tenant: str  # the version's owner
    caller_tenant: str
    in_rollout: bool
    request_id: str
    expires: float  # Unix time


def grant_key(secret: bytes) -> bytes:
    """The key of grants, derived from the platform's token secret (never the secret
    itself, which signs tokens)."""
    return hmac.new(secret, b"prsm model grant v1", hashlib.sha256).digest()


def mint(key: bytes, grant: Grant) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(asdict(grant)).encode()).rstrip(b"=")
    signature = hmac.new(key, payload, hashlib.sha256).hexdigest()
    return f"{payload.decode()}.{signature}"


def verify(key: bytes, text: str | None, app: str, now: float | None = None) -> Grant:
    """The grant in ``text`` if it is signed with ``key``, is for ``app`` and has not
    expired; otherwise ``GrantRefused``."""
    if not text:
        raise GrantRefused("this port serves only requests routed by the PRSM gateway")
    payload, _, signature = text.partition(".")
    expected = hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise GrantRefused("the request's grant is not valid")
    try:
        fields = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        grant = Grant(**fields)
    except (ValueError, TypeError) as exc:
        raise GrantRefused("the request's grant is not valid") from exc
    if grant.app != app:
        raise GrantRefused("the request's grant is for another model version")
    if grant.expires < (time.time() if now is None else now):
        raise GrantRefused("the request's grant has expired")
    return grant
