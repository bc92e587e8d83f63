"""Structured logs: JSON lines (or a console rendering) written straight to a stream.

A logger is made per app and stored on it, so nothing is configured
globally and tests read the exact lines an operator would see. Callers log
ids, verdicts and reasons only: never names, emails, phone numbers or tokens.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, TextIO

import orjson
import structlog
from mypy_extensions import mypyc_attr
from structlog.typing import FilteringBoundLogger, Processor

__all__ = ["HotLines", "encode_line", "make_logger", "redact_library_logs"]

_COMPACT = json.JSONEncoder(separators=(",", ":"))  # ensure_ascii: the escaping of every line


def encode_line(fields: dict[str, Any]) -> str:
    """One JSON object, compact and ASCII-only, as ``json.dumps`` with compact separators.

    orjson encodes in ~0.6 µs what ``json.dumps`` takes ~4 µs for (``bench/log_bench.py``).
    It writes non-ASCII and DEL as they are and refuses lone surrogates; the stdlib
    encoder, which escapes them all, writes those lines instead, so every line is the
    stdlib's byte for byte: a hostile value can neither break a line nor smuggle a
    character a terminal or a line splitter (U+2028, U+0085) acts on.
    """
    try:
        line = orjson.dumps(fields).decode()
    except orjson.JSONEncodeError:  # a lone surrogate, an int past 64 bits, a foreign type
        return _COMPACT.encode(fields)
    if line.isascii() and "\x7f" not in line:
        return line
    return _COMPACT.encode(fields)


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


class HotLines:
    """Info lines for the hot path (one per gated decision), in the logger's own JSON shape.

    Cheaper than the structlog chain by precomputing what it recomputes per
    line: the level check happens before any field is built, the timestamp
    reuses its formatted second, the fields are encoded by orjson (``encode_line``),
    and the line goes to the stream in one write.
    The console format (for a person) keeps the structlog rendering.
    """

    __slots__ = ("_logger", "_second", "_stamp", "_stream", "enabled", "json")

    def __init__(self, level: str, fmt: str, stream: TextIO, logger: FilteringBoundLogger) -> None:
        self.enabled = getattr(logging, level.upper()) <= logging.INFO
        self.json = fmt == "json"
        self._stream = stream
        self._logger = logger
        self._second = -1
        self._stamp = ""

    def info(self, event: str, fields: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if not self.json:
            self._logger.info(event, **fields)
            return
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        fields["event"] = event
        fields["level"] = "info"
        fields["timestamp"] = f"{self._stamp}.{int((now - second) * 1e6):06d}Z"
        self._stream.write(encode_line(fields) + "\n")


@mypyc_attr(native_class=False)  # a Handler has a __dict__ and weak references: a plain class
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
