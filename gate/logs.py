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

__all__ = ["make_logger"]


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
