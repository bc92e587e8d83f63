"""Structured logs: JSON lines (or a console rendering) written straight to a stream.

A logger is made per app and stored on it, so nothing is configured
globally and tests read the exact lines an operator would see. Callers log
ids, verdicts and reasons only: never names, emails, phone numbers or tokens.
"""

from __future__ import annotations

import json
import logging
from typing import TextIO

import structlog
from structlog.typing import FilteringBoundLogger, Processor

__all__ = ["make_logger", "redact_library_logs"]


def make_logger(level: str, fmt: str, stream: TextIO) -> FilteringBoundLogger:
    renderer: Processor = (
        structlog.processors.JSONRenderer(serializer=json.dumps)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    processors: list[Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        renderer,
    ]
    logger: FilteringBoundLogger = structlog.wrap_logger(
        structlog.WriteLogger(stream),
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        cache_logger_on_first_use=True,
    )
    return logger


class _Redacted(logging.Handler):
    """Re-logs a library record as its kind alone: aiohttp's own messages quote raw bytes.

    A malformed request is logged by aiohttp with the offending header line or
    body bytes in it, which can be a bearer token or a contact's email.
    """

    def __init__(self, logger: FilteringBoundLogger) -> None:
        super().__init__(logging.WARNING)
        self._logger = logger

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        self._logger.warning(
            "library_error",
            source=record.name,
            error=type(error).__name__ if error is not None else None,
            status=getattr(error, "code", None),
        )


def redact_library_logs(logger: FilteringBoundLogger) -> None:
    """Send aiohttp's and asyncio's log records through ``logger``, stripped of their text."""
    for name in ("aiohttp", "asyncio"):
        library = logging.getLogger(name)
        library.handlers[:] = [_Redacted(logger)]
        library.propagate = False
