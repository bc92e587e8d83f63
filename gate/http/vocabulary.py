"""HTTP words the gate speaks: reason phrases, header kinds, hop-by-hop names.

One home for the vocabulary both directions share, so the request side
(``gate.http.cycle``), the answer side (``gate.http.connection``) and the
forwarding (``gate.http.forward``) agree on every name.
"""

from __future__ import annotations

__all__ = ["REASONS"]

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
