"""Every answer the gate gives in place of the upstream's, in Partner Center's error shape.

One class per row of DESIGN §2, so the status, errorName and code of each
refusal live in one place and clients can rely on them::

    GateError
    ├── InvalidAcceptance            400  a confirmation payload breaks R6
    ├── AmbiguousPath                400  a path the gate refuses to classify
    ├── AmbiguousBody                400  a gated body the gate and upstream could read differently
    ├── AmbiguousMethod              400  conflicting method-override headers on a gated path
    ├── PartnerUnknown               401  a gated call without one partner identity
    ├── CustomerAcceptanceRequired   403  the block itself (code 13605, as Partner Center)
    ├── MalformedRequest             400  not HTTP/1.1 the gate can parse strictly
    ├── RequestTimeout               408  a head or body slower than the front door's limits
    ├── BodyTooLarge                 413  a gated body too large to inspect
    ├── RequestTargetTooLong         414  a request target over server.max_target_bytes
    ├── RequestHeaderFieldsTooLarge  431  a request head over server.max_header_bytes
    ├── UpstreamUnavailable          502  the upstream cannot be reached
    ├── AcceptanceStatusUnavailable  503  lookup failed and policy is fail-closed
    └── UpstreamTimeout              504  the upstream did not answer in time

Descriptions and data never carry personal data or tokens.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

__all__ = [
    "AcceptanceStatusUnavailable",
    "AmbiguousBody",
    "AmbiguousMethod",
    "AmbiguousPath",
    "BodyTooLarge",
    "CustomerAcceptanceRequired",
    "GateError",
    "InvalidAcceptance",
    "MalformedRequest",
    "PartnerUnknown",
    "RequestHeaderFieldsTooLarge",
    "RequestTargetTooLong",
    "RequestTimeout",
    "UpstreamTimeout",
    "UpstreamUnavailable",
]

_JSON = "application/json; charset=utf-8"


class GateError(Exception):
    """A refusal or failure answered by the gate itself."""

    status: ClassVar[int] = 500
    error_name: ClassVar[str] = "GateError"
    code: ClassVar[int] = 900000

    def __init__(
        self,
        description: str,
        data: Sequence[Any] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(description)
        self.description = description
        self.data = list(data)
        self.headers = dict(headers or {})

    def body(self) -> bytes:
        """Partner Center's error shape, plus errorName and source."""
        return json.dumps(
            {
                "code": self.code,
                "errorName": self.error_name,
                "description": self.description,
                "data": self.data,
                "source": "gate",
            }
        ).encode()

    def response_headers(self) -> dict[str, str]:
        return {"Content-Type": _JSON, **self.headers}


class InvalidAcceptance(GateError):
    status, error_name, code = 400, "InvalidAcceptance", 900101


class AmbiguousPath(GateError):
    status, error_name, code = 400, "AmbiguousPath", 900102


class AmbiguousBody(GateError):
    status, error_name, code = 400, "AmbiguousBody", 900103


class AmbiguousMethod(GateError):
    status, error_name, code = 400, "AmbiguousMethod", 900104


class PartnerUnknown(GateError):
    status, error_name, code = 401, "PartnerUnknown", 900201


class CustomerAcceptanceRequired(GateError):
    status, error_name, code = 403, "CustomerAcceptanceRequired", 13605


class BodyTooLarge(GateError):
    status, error_name, code = 413, "BodyTooLarge", 900105


class MalformedRequest(GateError):
    status, error_name, code = 400, "MalformedRequest", 900106


class RequestTimeout(GateError):
    status, error_name, code = 408, "RequestTimeout", 900107


class RequestTargetTooLong(GateError):
    status, error_name, code = 414, "RequestTargetTooLong", 900108


class RequestHeaderFieldsTooLarge(GateError):
    status, error_name, code = 431, "RequestHeaderFieldsTooLarge", 900109


class UpstreamUnavailable(GateError):
    status, error_name, code = 502, "UpstreamUnavailable", 900302


class AcceptanceStatusUnavailable(GateError):
    status, error_name, code = 503, "AcceptanceStatusUnavailable", 900301


class UpstreamTimeout(GateError):
    status, error_name, code = 504, "UpstreamTimeout", 900303
