"""The audit log on the wire: what ``/v1/audit`` answers."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


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
