"""The error body every failing request gets, and the OpenAPI ``responses`` that name it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable error code")
    message: str
    correlation_id: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a router or route whose errors have these statuses."""
    return {status: {"model": ErrorResponse} for status in statuses}
