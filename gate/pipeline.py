"""The proxy's one handler: classify -> identify -> decide -> forward | answer -> record.

Pass-through calls (most traffic) are normalised, found to match no rule and
forwarded: no identity, no lookup, no log line. Gated calls have their body
read (bounded), identity and acceptance resolved, and exactly one decision
logged and counted.
"""

from __future__ import annotations

from aiohttp import web
from multidict import CIMultiDictProxy

from gate.core.classify import METHOD_OVERRIDE_HEADERS, Override, classify, normalize, split_target
from gate.errors import AmbiguousBody, AmbiguousMethod, GateError
from gate.gated import handle_gated
from gate.http.forward import DECISION_HEADER, forward
from gate.keys import METRICS, RUNTIME, UPSTREAM

__all__ = ["handle"]


async def handle(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME].current
    try:
        path, query = split_target(request.raw_path)
        path = normalize(path)
        headers = request.headers
        if "Transfer-Encoding" in headers:
            _check_transfer_coding(headers)
        overrides = (
            _overrides(headers)
            if "X-HTTP-Method-Override" in headers
            or ("X-HTTP-Method" in headers or "X-Method-Override" in headers)
            else ()
        )
        transaction = classify(runtime.rules, request.method, path, overrides)
        target = runtime.upstream_prefix + path + query
        if transaction is None:
            return await forward(request, request.app[UPSTREAM], target, request.app[METRICS])
        return await handle_gated(request, runtime, transaction, target, path)
    except AmbiguousMethod as error:  # raised only on gated paths: a refusal of a gated call
        error.headers.setdefault(DECISION_HEADER, "blocked")
        return _answer(error)
    except GateError as error:
        return _answer(error)


def _check_transfer_coding(headers: CIMultiDictProxy[str]) -> None:
    """Only plain chunking: the gate re-frames bodies and cannot carry other codings on."""
    codings = ",".join(headers.getall("Transfer-Encoding")).lower().replace(" ", "")
    if codings != "chunked":
        raise AmbiguousBody(
            "Only 'Transfer-Encoding: chunked' is accepted; other transfer codings would "
            "reach the upstream under a different framing than they were sent with.",
            [{"header": "Transfer-Encoding"}],
        )


def _overrides(headers: CIMultiDictProxy[str]) -> tuple[Override, ...]:
    return tuple(
        (name, value) for name in METHOD_OVERRIDE_HEADERS for value in headers.getall(name, ())
    )


def _answer(error: GateError) -> web.Response:
    return web.Response(status=error.status, body=error.body(), headers=error.response_headers())
