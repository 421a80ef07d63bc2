"""Structured (JSON) logs carrying the correlation id of the request being served."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

UNSET = "-"
correlation_id: ContextVar[str] = ContextVar("correlation_id", default=UNSET)


@contextmanager
def correlated(request_id: str) -> Iterator[None]:
    """Log lines written inside carry ``request_id``: the id of the request whose work this
    is (a task carries the one of the request that submitted it). An empty id changes
    nothing."""
    if not request_id:
        yield
        return
    token = correlation_id.set(request_id)
    try:
        yield
    finally:
        correlation_id.reset(token)


def current() -> str:
    """The id of the request being served here, or ``""`` outside any."""
    found = correlation_id.get()
    return "" if found == UNSET else found


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": correlation_id.get(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure(level: str) -> None:
    """Send PRSM's own logs, as JSON, to stderr."""
    logger = logging.getLogger("prsm")
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
