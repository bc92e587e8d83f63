"""Forward: stream a call to the upstream and its answer back, faithfully.

This module is the one boundary where upstream failures become gate errors
(``UpstreamUnavailable`` 502, ``UpstreamTimeout`` 504). Request headers are
relayed as the client sent them (raw bytes, order and repeats kept) minus
hop-by-hop ones; bodies are streamed both ways, so a 1 GB body costs what a
1 KB one does. Nothing is retried here; ``gate.http.upstream`` re-sends only an
idempotent call whose pooled connection turned out dead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDict

from gate.core.classify import METHOD_OVERRIDE_HEADERS
from gate.errors import GateError, UpstreamTimeout, UpstreamUnavailable
from gate.http.upstream import UpstreamClosed, UpstreamPool, UpstreamResponse
from gate.metrics import Metrics

__all__ = ["DECISION_HEADER", "Fetched", "fetch", "forward", "upstream_headers"]

DECISION_HEADER = "X-Gate-Decision"
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)
# Never forwarded: hop-by-hop, framing the client redoes, our own X-Forwarded-*,
# and URL overrides some upstream stacks honour (they could re-route a classified call).
_REQUEST_DROP = _HOP_BY_HOP | {
    b"host",
    b"expect",
    b"content-length",
    b"x-original-url",
    b"x-rewrite-url",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
}
_RESPONSE_DROP = _HOP_BY_HOP | {b"content-length"}
_OVERRIDE_NAMES = frozenset(name.lower().encode() for name in METHOD_OVERRIDE_HEADERS)
_BUFFER_LIMIT = 64 * 1024  # answers up to this size are relayed in one write
_INSPECT_LIMIT = 1024 * 1024  # gated answers up to this size are kept for inspection
_NO_BODY = frozenset({204, 304})


@dataclass(frozen=True, slots=True)
class Fetched:
    """A small upstream answer read whole (lookups, subscription reads)."""

    status: int
    reason: str
    headers: CIMultiDict[str]
    body: bytes


def _translated(exc: TimeoutError | UpstreamClosed, metrics: Metrics | None) -> GateError:
    """The gate's 504 or 502 for an upstream client failure (counted when ``metrics``)."""
    timed_out = isinstance(exc, TimeoutError)
    if metrics is not None:
        metrics.upstream_errors["timeout" if timed_out else "unavailable"].inc()
    if timed_out:
        return UpstreamTimeout("The upstream did not answer in time.")
    return UpstreamUnavailable("The upstream cannot be reached.")


@contextmanager
def _upstream_errors(metrics: Metrics | None) -> Iterator[None]:
    try:
        yield
    except (TimeoutError, UpstreamClosed) as exc:
        raise _translated(exc, metrics) from exc


def _dropped(headers: Sequence[tuple[bytes, bytes]], names: frozenset[bytes]) -> frozenset[bytes]:
    """``names`` plus whatever a ``Connection`` header lists (RFC 9110 §7.6.1)."""
    tokens = [
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    ]
    return names.union(tokens) if tokens else names


def _kept(name: bytes, drop: frozenset[bytes]) -> bool:
    lowered = name.lower()
    if b"_" in lowered:  # IIS reads X_Original_URL as X-Original-URL: drop the look-alikes
        lowered = lowered.replace(b"_", b"-")
        return lowered not in drop and lowered not in _OVERRIDE_NAMES
    return lowered not in drop


def upstream_headers(request: web.Request) -> list[tuple[bytes, bytes]]:
    """The client's raw headers minus hop-by-hop ones, plus X-Forwarded-*.

    Two passes: the first finds what ``Connection`` names and any earlier
    X-Forwarded-For (either may come after the headers it concerns).
    """
    raw = request.raw_headers
    tokens: list[bytes] = []
    forwarded: list[bytes] = []
    for name, value in raw:
        lowered = name.lower()
        if lowered == b"connection":
            tokens += (token.strip().lower() for token in value.split(b","))
        elif lowered == b"x-forwarded-for":
            forwarded.append(value)
    drop = _REQUEST_DROP.union(tokens) if tokens else _REQUEST_DROP
    headers = [(name, value) for name, value in raw if _kept(name, drop)]
    peer = (request.remote or "unknown").encode()
    headers.append((b"X-Forwarded-For", b", ".join([*forwarded, peer])))
    headers.append((b"X-Forwarded-Proto", request.scheme.encode()))
    if request.host:
        headers.append((b"X-Forwarded-Host", request.host.encode("utf-8", "surrogateescape")))
    return headers


def _text(value: bytes) -> str:
    """Header bytes as aiohttp will write them back (it encodes UTF-8)."""
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _response_headers(upstream: UpstreamResponse) -> CIMultiDict[str]:
    drop = _dropped(upstream.headers, _RESPONSE_DROP)
    return CIMultiDict(
        (_text(name), _text(value)) for name, value in upstream.headers if name.lower() not in drop
    )


async def forward(
    request: web.Request,
    pool: UpstreamPool,
    target: str,
    metrics: Metrics,
    *,
    body: bytes | None = None,
    decision: str | None = None,
    inspect: bool = False,
) -> web.StreamResponse:
    """Send the call upstream and relay the answer; ``body`` replaces a body already read.

    With ``inspect`` an answer up to 1 MiB is returned as a ``web.Response``
    whose body the caller may read (confirmations); larger ones are streamed.
    """
    headers = upstream_headers(request)
    if inspect:  # the gate reads this answer: ask for it unencoded
        headers = [(name, value) for name, value in headers if name.lower() != b"accept-encoding"]
    payload: bytes | AsyncIterable[bytes] = b""
    length = None
    if body is not None:
        payload = body
    elif request.body_exists:
        payload, length = request.content.iter_any(), request.content_length
    started = time.perf_counter()
    metrics.in_flight += 1
    try:
        try:
            upstream = await pool.request(
                request.method, target, headers, payload, length=length, retry=body is None
            )  # a gated call (its body already read) is never re-sent, whatever its method
        except (TimeoutError, UpstreamClosed) as exc:
            raise _translated(exc, metrics) from exc
        except ConnectionResetError:
            return web.Response(status=400)  # the client went away mid-upload; nobody reads this
        metrics.upstream_duration.observe(time.perf_counter() - started)
        try:
            return await _relay(request, upstream, metrics, decision, inspect)
        finally:
            upstream.release()
    finally:
        metrics.in_flight -= 1


async def _relay(
    request: web.Request,
    upstream: UpstreamResponse,
    metrics: Metrics,
    decision: str | None,
    inspect: bool,
) -> web.StreamResponse:
    headers = _response_headers(upstream)
    if decision is not None:
        headers[DECISION_HEADER] = decision
    status, reason, length = upstream.status, upstream.reason, upstream.content_length
    if request.method == "HEAD" or status in _NO_BODY or status < 200:
        response = web.StreamResponse(status=status, reason=reason, headers=headers)
        if length is not None and status not in _NO_BODY:
            response.content_length = length
        await response.prepare(request)
        await response.write_eof()
        return response
    limit = _INSPECT_LIMIT if inspect else _BUFFER_LIMIT
    chunks = upstream.chunks()
    kept: list[bytes] = []
    if length is None or length <= limit:
        size = 0
        with _upstream_errors(metrics):  # nothing sent yet: a failure can still be a 502
            async for chunk in chunks:
                kept.append(chunk)
                size += len(chunk)
                if size > limit:
                    break
            else:
                return web.Response(
                    status=status, reason=reason, headers=headers, body=b"".join(kept)
                )
    return await _stream(request, web.StreamResponse(status=status, reason=reason, headers=headers),
                         length, kept, chunks, metrics)  # fmt: skip


async def _stream(
    request: web.Request,
    response: web.StreamResponse,
    length: int | None,
    kept: list[bytes],
    chunks: AsyncIterable[bytes],
    metrics: Metrics,
) -> web.StreamResponse:
    if length is not None:
        response.content_length = length
    await response.prepare(request)
    try:
        for chunk in kept:
            await response.write(chunk)
        async for chunk in chunks:
            await response.write(chunk)
    except (UpstreamClosed, TimeoutError):
        # The status line is gone already: cut the connection so the client
        # sees a truncated response, never a short body that looks complete.
        # Return (not raise) the started response: a 502 could no longer be sent.
        metrics.upstream_errors["aborted"].inc()
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response


async def fetch(
    pool: UpstreamPool, target: str, headers: Mapping[str, str], limit_s: float
) -> Fetched:
    """GET a small resource for the gate's own use (never a caller's call)."""
    pairs = [
        (name.encode(), value.encode("utf-8", "surrogateescape")) for name, value in headers.items()
    ]
    with _upstream_errors(None):
        async with asyncio.timeout(limit_s):
            upstream = await pool.request("GET", target, pairs)
            try:
                body = await upstream.read(_INSPECT_LIMIT)
            finally:
                upstream.release()
    return Fetched(upstream.status, upstream.reason, _response_headers(upstream), body)
