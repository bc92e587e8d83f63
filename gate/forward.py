"""Forward: stream a call to the upstream and its answer back, faithfully.

This module is the one boundary where aiohttp client exceptions become gate
errors (``UpstreamUnavailable``, ``UpstreamTimeout``). Pass-through calls
are streamed both ways, so a 1 GB body costs what a 1 KB one does; nothing
is ever retried here (aiohttp itself only retries idempotent methods on a
stale pooled connection).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gate.errors import UpstreamTimeout, UpstreamUnavailable
from gate.metrics import Metrics

__all__ = ["DECISION_HEADER", "Fetched", "fetch", "forward", "upstream_headers"]

DECISION_HEADER = "X-Gate-Decision"
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    }
)
# Never forwarded: hop-by-hop, framing the client session redoes, and URL overrides
# some upstream stacks honour (they could re-route a classified call).
_REQUEST_DROP = _HOP_BY_HOP | {
    "host",
    "expect",
    "x-original-url",
    "x-rewrite-url",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
}
_BUFFER_LIMIT = 64 * 1024
_NO_BODY = frozenset({204, 304})
_FETCH_LIMIT = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Fetched:
    """A small upstream answer read whole (lookups, subscription reads)."""

    status: int
    reason: str
    headers: CIMultiDictProxy[str]
    body: bytes


@contextmanager
def _upstream_errors(metrics: Metrics | None) -> Iterator[None]:
    """Translate aiohttp's client failures into the gate's 502 and 504."""
    try:
        yield
    except TimeoutError as exc:
        if metrics is not None:
            metrics.upstream_errors["timeout"].inc()
        raise UpstreamTimeout("The upstream did not answer in time.") from exc
    except aiohttp.ClientError as exc:
        if metrics is not None:
            metrics.upstream_errors["unavailable"].inc()
        raise UpstreamUnavailable("The upstream cannot be reached.") from exc


def _without(headers: CIMultiDict[str], names: frozenset[str]) -> CIMultiDict[str]:
    """Drop ``names`` and whatever ``Connection`` lists: one C-level copy, then pops."""
    connection = headers.getall("Connection", ())
    for token in ",".join(connection).split(",") if connection else ():
        headers.popall(token.strip(), None)
    for name in names:
        if name in headers:
            del headers[name]
    return headers


def upstream_headers(request: web.Request, *, drop_length: bool) -> CIMultiDict[str]:
    """The client's headers minus hop-by-hop ones, plus X-Forwarded-*."""
    incoming = request.headers
    headers = _without(CIMultiDict(incoming), _REQUEST_DROP)
    if drop_length:
        headers.popall("Content-Length", None)
    forwarded_for = ", ".join(incoming.getall("X-Forwarded-For", ()))
    peer = request.remote or "unknown"
    headers["X-Forwarded-For"] = f"{forwarded_for}, {peer}" if forwarded_for else peer
    headers["X-Forwarded-Proto"] = request.scheme
    if request.host:
        headers["X-Forwarded-Host"] = request.host
    return headers


def _response_headers(upstream: aiohttp.ClientResponse) -> CIMultiDict[str]:
    return _without(CIMultiDict(upstream.headers), _HOP_BY_HOP)


async def forward(
    request: web.Request,
    session: aiohttp.ClientSession,
    url: URL,
    metrics: Metrics,
    *,
    body: bytes | None = None,
    decision: str | None = None,
    buffer: bool = False,
) -> web.StreamResponse:
    """Send the call upstream and relay the answer; ``body`` replaces a body already read.

    With ``buffer`` the answer is read whole (gated calls, whose answers are
    small and may be inspected); otherwise it is streamed.
    """
    headers = upstream_headers(request, drop_length=body is not None)
    data: Any = body if body is not None else (request.content if request.body_exists else None)
    started = time.perf_counter()
    metrics.in_flight.inc()
    try:
        with _upstream_errors(metrics):
            async with session.request(
                request.method, url, headers=headers, data=data, allow_redirects=False
            ) as upstream:
                metrics.upstream_duration.observe(time.perf_counter() - started)
                return await _relay(request, upstream, metrics, decision, buffer)
    finally:
        metrics.in_flight.dec()


async def _relay(
    request: web.Request,
    upstream: aiohttp.ClientResponse,
    metrics: Metrics,
    decision: str | None,
    buffer: bool,
) -> web.StreamResponse:
    headers = _response_headers(upstream)
    if decision is not None:
        headers[DECISION_HEADER] = decision
    length = upstream.content_length
    bodiless = request.method == "HEAD" or upstream.status in _NO_BODY or upstream.status < 200
    if not bodiless and (buffer or (length is not None and length <= _BUFFER_LIMIT)):
        payload = await upstream.read()
        headers.popall("Content-Length", None)
        return web.Response(
            status=upstream.status, reason=upstream.reason, headers=headers, body=payload
        )
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
    await response.prepare(request)
    if bodiless:
        await response.write_eof()
        return response
    try:
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
    except (aiohttp.ClientError, TimeoutError):
        # The status line is gone already: cut the connection so the client
        # sees a truncated response, never a short body that looks complete.
        # Return (not raise) the started response: a 502 could no longer be
        # sent, and it would count the one failure a second time.
        metrics.upstream_errors["aborted"].inc()
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response


async def fetch(
    session: aiohttp.ClientSession, url: URL, headers: Mapping[str, str], limit_s: float
) -> Fetched:
    """GET a small resource for the gate's own use (never a caller's call)."""
    with _upstream_errors(None):
        async with session.get(
            url,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=limit_s),
        ) as upstream:
            body = await upstream.content.read(_FETCH_LIMIT + 1)
            while len(body) <= _FETCH_LIMIT and not upstream.content.at_eof():
                chunk = await upstream.content.read(_FETCH_LIMIT + 1 - len(body))
                if not chunk:
                    break
                body += chunk
            if len(body) > _FETCH_LIMIT:
                raise UpstreamUnavailable("The upstream's answer is too large to inspect.")
            return Fetched(upstream.status, upstream.reason or "", upstream.headers, body)
