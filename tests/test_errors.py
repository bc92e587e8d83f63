"""gate.errors: one class per DESIGN §2 row, rendered in Partner Center's error shape."""

from __future__ import annotations

import json

import pytest

from gate import errors
from gate.errors import GateError

# (class, status, errorName) for each row of DESIGN §2, plus the block itself (§1.1: 403 13605)
# and the 413 the gate gives for a gated body too large to inspect.
ROWS: list[tuple[type[GateError], int, str]] = [
    (errors.InvalidAcceptance, 400, "InvalidAcceptance"),
    (errors.AmbiguousPath, 400, "AmbiguousPath"),
    (errors.AmbiguousBody, 400, "AmbiguousBody"),
    (errors.AmbiguousMethod, 400, "AmbiguousMethod"),
    (errors.PartnerUnknown, 401, "PartnerUnknown"),
    (errors.CustomerAcceptanceRequired, 403, "CustomerAcceptanceRequired"),
    (errors.MalformedRequest, 400, "MalformedRequest"),
    (errors.RequestTimeout, 408, "RequestTimeout"),
    (errors.BodyTooLarge, 413, "BodyTooLarge"),
    (errors.RequestTargetTooLong, 414, "RequestTargetTooLong"),
    (errors.RequestHeaderFieldsTooLarge, 431, "RequestHeaderFieldsTooLarge"),
    (errors.UpstreamUnavailable, 502, "UpstreamUnavailable"),
    (errors.AcceptanceStatusUnavailable, 503, "AcceptanceStatusUnavailable"),
    (errors.UpstreamTimeout, 504, "UpstreamTimeout"),
]
TABLE = [pytest.param(cls, status, name, id=name) for cls, status, name in ROWS]


@pytest.mark.parametrize(("cls", "status", "name"), TABLE)
def test_status_and_error_name(cls: type[GateError], status: int, name: str) -> None:
    """§2: each refusal has the status and errorName of its row in the table."""
    error = cls("what happened", [{"field": "x"}])
    assert isinstance(error, GateError)
    assert (error.status, error.error_name) == (status, name)


@pytest.mark.parametrize(("cls", "status", "name"), TABLE)
def test_body_shape(cls: type[GateError], status: int, name: str) -> None:
    """§2: the body is Partner Center's error shape plus errorName and source "gate"."""
    error = cls("The gate refused this call.", [{"customer": "c1"}, {"partner": "p1"}])
    doc = json.loads(error.body())
    assert doc == {
        "code": cls.code,
        "errorName": name,
        "description": "The gate refused this call.",
        "data": [{"customer": "c1"}, {"partner": "p1"}],
        "source": "gate",
    }
    assert isinstance(doc["code"], int)


@pytest.mark.parametrize(("cls", "status", "name"), TABLE)
def test_response_headers(cls: type[GateError], status: int, name: str) -> None:
    """§2: the answer is JSON, and carries the extra headers the error was given."""
    plain = cls("x")
    assert plain.response_headers()["Content-Type"].startswith("application/json")
    with_retry = cls("x", headers={"Retry-After": "5"})
    assert with_retry.response_headers()["Retry-After"] == "5"
    assert with_retry.response_headers()["Content-Type"].startswith("application/json")


def test_block_uses_partner_centers_code() -> None:
    """§1.1: the block is 403 with code 13605, as Partner Center's own rejection."""
    assert errors.CustomerAcceptanceRequired.status == 403
    assert errors.CustomerAcceptanceRequired.code == 13605


def test_table_covers_every_subclass() -> None:
    """§2: every GateError subclass is in the table above, so none escapes these checks."""
    tabled = {cls for cls, _, _ in ROWS}
    assert set(GateError.__subclasses__()) == tabled


def test_codes_are_distinct() -> None:
    """§2: each errorName has a code of its own, so clients can tell them apart."""
    codes = [cls.code for cls, _, _ in ROWS]
    assert len(set(codes)) == len(codes)


def test_defaults_and_copies() -> None:
    """§2: data defaults to an empty list; data and headers are copied, not shared."""
    data = [{"a": 1}]
    headers = {"Retry-After": "1"}
    error = errors.AcceptanceStatusUnavailable("x", data, headers=headers)
    data.append({"b": 2})
    headers["X"] = "y"
    assert error.data == [{"a": 1}]
    assert error.headers == {"Retry-After": "1"}
    assert json.loads(errors.PartnerUnknown("x").body())["data"] == []
    assert str(errors.PartnerUnknown("who are you")) == "who are you"
