"""``/v1/audit``: the authentication and authorisation decisions, for admins."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from prsm.serve.deps import Auditor, Deps
from prsm.serve.schemas import ErrorResponse
from prsm.service_layer.audit import AuditQuery, read_audit

ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": ErrorResponse} for s in (401, 403, 422)}
router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=ERRORS)


class AuditEntry(BaseModel):
    at: datetime
    allowed: bool
    stage: str
    reason: str
    method: str
    route: str
    scope: str
    user_id: str | None
    tenant_id: str | None
    credential: str | None
    correlation_id: str
    client: str | None


class AuditList(BaseModel):
    entries: list[AuditEntry]


@router.get(
    "",
    response_model=AuditList,
    summary="Audit entries, newest first",
    description="Every authentication, authorisation and rate-limit decision of every gateway "
    "replica (each appends its entries within half a second).",
)
async def audit(
    principal: Auditor,
    deps: Deps,
    user_id: str | None = Query(default=None, max_length=256),
    tenant_id: str | None = Query(default=None, max_length=256),
    allowed: bool | None = None,
    route: str | None = Query(default=None, max_length=256),
    since: datetime | None = None,
    limit: int = Query(default=100, ge=1, le=10_000),
) -> AuditList:
    await deps.audit.flush()  # this replica's own entries, up to this request
    query = AuditQuery(user_id, tenant_id, allowed, route, since, limit)
    entries = await read_audit(deps.store, query)
    return AuditList(entries=[AuditEntry.model_validate(vars(e)) for e in entries])
