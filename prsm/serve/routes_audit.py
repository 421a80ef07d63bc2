"""``/v1/audit``: the authentication and authorisation decisions, for admins."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query

from prsm.api.audit import AuditEntry, AuditList
from prsm.api.errors import error_responses
from prsm.serve.deps import Auditor, Deps
from prsm.service_layer.audit import AuditQuery, read_audit

ERRORS = error_responses(401, 403, 422)
router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=ERRORS)


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
