"""The decision logs a replay reads: files, gzip files, or ``-`` for standard input.

Every source is opened before the first line is read, so a missing or
unreadable file fails the command before it prints anything. Lines are
bytes: decoding is the line parser's business, so a non-UTF-8 line is one
skipped line, never a crash. A gzip stream is recognised by its magic bytes,
whatever the file is called.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import sys
import time
import zlib
from collections.abc import Iterator, Sequence
from typing import BinaryIO, TextIO

__all__ = ["LogSource", "Progress", "SourceError", "open_sources"]

_GZIP_MAGIC = b"\x1f\x8b"
_PROGRESS_EVERY_S = 0.2


class SourceError(Exception):
    """A log that cannot be read; the message names it and why."""


class LogSource:
    """One opened log: its lines, and how far into the underlying bytes they are."""

    def __init__(self, name: str, raw: BinaryIO, size: int | None) -> None:
        self.name = name
        self.size = size
        self._raw = raw
        peek = getattr(raw, "peek", None)
        head = peek(2)[:2] if peek is not None else b""
        self._stream: gzip.GzipFile | BinaryIO = (
            gzip.GzipFile(fileobj=raw, mode="rb") if head == _GZIP_MAGIC else raw
        )

    def position(self) -> int:
        """Bytes of the underlying file consumed so far (compressed bytes for gzip)."""
        try:
            return self._raw.tell()
        except OSError:
            return 0

    def lines(self) -> Iterator[bytes]:
        try:
            yield from self._stream
        except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
            raise SourceError(f"{self.name}: cannot read: {_why(error)}") from error

    def close(self) -> None:
        if self._stream is not self._raw:
            self._stream.close()
        if self._raw is not sys.stdin.buffer:
            self._raw.close()


def _why(error: BaseException) -> str:
    if isinstance(error, EOFError):
        return "the compressed stream ends early (truncated gzip)"
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


@contextlib.contextmanager
def open_sources(names: Sequence[str], stdin: BinaryIO | None = None) -> Iterator[list[LogSource]]:
    """Open every named log (``-``: standard input); SourceError names the first bad one."""
    opened: list[LogSource] = []
    try:
        for name in names:
            if name == "-":
                opened.append(LogSource("(stdin)", stdin or sys.stdin.buffer, None))
                continue
            try:
                raw = open(name, "rb")  # noqa: SIM115 - closed by LogSource.close
                opened.append(LogSource(name, raw, os.fstat(raw.fileno()).st_size))
            except OSError as error:
                raise SourceError(f"{name}: cannot read: {_why(error)}") from error
        yield opened
    finally:
        for source in opened:
            source.close()


class Progress:
    """A one-line progress bar on a terminal's stderr; silent anywhere else."""

    def __init__(self, stream: TextIO, total: int | None) -> None:
        self._stream = stream
        self._total = total
        self._on = stream.isatty()
        self._next = 0.0
        self._drawn = False

    def update(self, done: int, lines: int) -> None:
        if not self._on:
            return
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + _PROGRESS_EVERY_S
        if self._total:
            share = min(done / self._total, 1.0)
            bar = "#" * int(share * 30)
            text = f"\rreplay [{bar:<30}] {share:4.0%} {lines:,} lines"
        else:
            text = f"\rreplay {lines:,} lines"
        self._stream.write(text)
        self._stream.flush()
        self._drawn = True

    def finish(self) -> None:
        if self._drawn:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
