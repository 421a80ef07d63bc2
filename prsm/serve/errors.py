"""Errors as JSON with a stable code and the correlation id; never a stack trace."""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from prsm.domain import errors
from prsm.observability.logging import correlation_id

log = logging.getLogger("prsm.gateway")


STATUS: dict[type[errors.PrsmError], int] = {
    errors.BadModelRequest: 400,
    errors.InvalidRequest: 422,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.AuthenticationError: 401,
    errors.PermissionDenied: 403,
    errors.StoreUnavailable: 503,
    errors.RateLimited: 429,
    errors.RateLimiterUnavailable: 503,
    errors.RuntimeUnavailable: 503,
    errors.UpstreamAuthFailed: 502,
    errors.UpstreamTimeout: 504,
    errors.ModelUnavailable: 503,
    errors.InjectedFault: 503,
    errors.UpstreamError: 502,
}

HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    431: "headers_too_large",
    503: "unavailable",
}


# OpenAI's error ``type`` for each status, so that the ``openai`` client reads PRSM's errors.
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def error_body(status: int, code: str, message: str) -> dict[str, object]:
    """``{"error": {code, message, type, param, correlation_id}}``: PRSM's stable code, in a
    shape OpenAI clients also parse."""
    kind = _OPENAI_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {
        "error": {
            "code": code,
            "message": message,
            "type": kind,
            "param": None,
            "correlation_id": correlation_id.get(),
        }
    }


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(error_body(status, code, message), status_code=status, headers=headers)


def status_of(exc: errors.PrsmError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


async def _prsm_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.PrsmError)
    status = status_of(exc)
    if status >= 500:
        log.warning("request failed: %s", exc.message)
    headers = None
    if isinstance(exc, errors.RateLimited) and exc.retry_after_s is not None:
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    return error_response(status, exc.code, exc.message, headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
        for e in exc.errors()[:20]
    )
    return error_response(422, "invalid_request", problems or "invalid request")


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail))


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "internal error; quote the correlation id")


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.PrsmError, _prsm_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
