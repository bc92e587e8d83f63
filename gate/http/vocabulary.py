"""HTTP words the gate speaks: reason phrases, header kinds, hop-by-hop names.

One home for the vocabulary both directions share, so the request side
(``gate.http.cycle``), the answer side (``gate.http.connection``) and the
forwarding (``gate.http.forward``) agree on every name.
"""

from __future__ import annotations

from gate.core.policy import Verdict

__all__ = [
    "FORWARD",
    "HOP_BY_HOP",
    "KINDS",
    "NOT_FORWARDED",
    "OVERRIDES",
    "PLAIN_TOKENS",
    "READ",
    "READ_NAMES",
    "REASONS",
    "RESPONSE_DROP",
    "decision_line",
]

REASONS = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    499: b"Client Closed Request",
    500: b"Internal Server Error",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}

# -- request headers ------------------------------------------------------------

READ, FORWARD = 1, 2  # header kind bits: the gate reads it; it is forwarded
# Headers the gate reads (kept decoded by name) or never forwards; any other name is
# forwarded as it came. Never forwarded: hop-by-hop ones, framing the gate redoes, its own
# X-Forwarded-*, and URL overrides some upstream stacks honour (they could re-route a call).
KINDS = {
    b"authorization": READ | FORWARD,
    b"content-encoding": READ | FORWARD,
    b"ms-correlationid": READ | FORWARD,
    b"x-original-uri": READ | FORWARD,  # nginx auth_request (gate.authz)
    b"x-original-method": READ | FORWARD,
    b"x-envoy-auth-partial-body": READ | FORWARD,  # Envoy ext_authz
    b"x-http-method": READ | FORWARD,
    b"x-http-method-override": READ | FORWARD,
    b"x-method-override": READ | FORWARD,
    b"connection": READ,
    b"content-length": READ,
    b"expect": READ,
    b"host": READ,
    b"transfer-encoding": READ,
    b"x-forwarded-for": READ,
    b"proxy-connection": READ,  # llhttp keeps an HTTP/1.0 request alive by it too
    b"keep-alive": 0,
    b"te": 0,
    b"trailer": 0,
    b"upgrade": 0,
    b"proxy-authenticate": 0,
    b"proxy-authorization": 0,
    b"x-original-url": 0,
    b"x-rewrite-url": 0,
    b"x-forwarded-proto": 0,
    b"x-forwarded-host": 0,
}
NOT_FORWARDED = frozenset(name for name, kind in KINDS.items() if not kind & FORWARD)
OVERRIDES = frozenset({b"x-http-method", b"x-http-method-override", b"x-method-override"})
READ_NAMES = frozenset(name.decode() for name, kind in KINDS.items() if kind & READ)

# -- answer headers -------------------------------------------------------------

HOP_BY_HOP = frozenset(
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
RESPONSE_DROP = HOP_BY_HOP | {b"content-length"}  # the gate frames answers itself
PLAIN_TOKENS = frozenset({b"keep-alive", b"close", b""})
"""Connection header tokens that name no other header (anything else names one to drop)."""


# -- the gate's own header ------------------------------------------------------

_DECISION_LINES = {
    verdict.value: b"X-Gate-Decision: %s\r\n" % verdict.value.encode() for verdict in Verdict
}


def decision_line(decision: str | None) -> bytes:
    """The ``X-Gate-Decision`` header line for a verdict (empty for none), built once each."""
    if decision is None:
        return b""
    line = _DECISION_LINES.get(decision)
    return line if line is not None else b"X-Gate-Decision: %s\r\n" % decision.encode()
