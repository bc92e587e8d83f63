"""gate.authz_grpc: a CheckRequest in, the core's Action as a CheckResponse out.

The real ``GrpcDecisionService`` over the real ``Decider`` (a Runtime from
settings, the in-memory acceptance store of tests/core/test_decide.py), its
``check`` called with protobuf messages as grpcio hands them over; the
server itself (grpcio, TLS, real Envoy) is proven in tests/contract.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest

from gate.authz_grpc import CheckHead, GrpcDecisionService
from gate.core.policy import State
from gate.logs import HotLines, make_logger
from gate.metrics import Metrics
from tests.core.test_decide import Store, body, decider
from tests.support import CUSTOMER, auth, order, orders_path

_OK, _PERMISSION_DENIED = 0, 7


def service(store: Store, **config: Any) -> tuple[GrpcDecisionService, io.StringIO]:
    stream = io.StringIO()
    lines = HotLines("info", "json", stream, make_logger("info", "json", stream))
    return GrpcDecisionService(decider(store, **config), Metrics("0"), lines), stream


def check_request(
    method: str, path: str, headers: dict[str, str], raw: bytes = b"", *, raw_headers: bool = False
) -> Any:
    request = CheckRequest()
    http = request.attributes.request.http
    http.method, http.path = method, path
    if raw_headers:  # Envoy's encode_raw_headers: every line, values as bytes
        for name, value in headers.items():
            http.header_map.headers.add(key=name.lower(), raw_value=value.encode())
    else:
        for name, value in headers.items():
            http.headers[name.lower()] = value
    if raw:
        http.raw_body = raw
    return request


def headers_of(options: Any) -> dict[str, str]:
    return {option.header.key: option.header.value for option in options}


async def test_a_read_is_allowed_without_a_decision() -> None:
    grpc_service, _ = service(Store())
    answer = await grpc_service.check(
        check_request("GET", f"/v1/customers/{CUSTOMER}/subscriptions", auth()), None
    )
    assert answer.status.code == _OK
    assert answer.WhichOneof("http_response") == "ok_response"
    assert headers_of(answer.ok_response.headers) == {}


@pytest.mark.parametrize("raw_headers", [False, True], ids=["headers", "header_map"])
async def test_a_cached_accepted_order_is_allowed_with_its_decision_both_ways(
    raw_headers: bool,
) -> None:
    """§2: X-Gate-Decision to the upstream (headers) and to the client (response_headers_to_add)."""
    grpc_service, stream = service(Store(cached=State.ACCEPTED))
    request = check_request("POST", orders_path(), auth(), body(order()), raw_headers=raw_headers)
    answer = await grpc_service.check(request, None)
    assert answer.status.code == _OK
    ok = answer.ok_response
    assert headers_of(ok.headers) == {"X-Gate-Decision": "allowed"}
    assert headers_of(ok.response_headers_to_add) == {"X-Gate-Decision": "allowed"}
    [line] = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert (line["decision"], line["status"], line["cache"]) == ("allowed", 200, "hit")


async def test_a_refusal_is_denied_with_the_proxys_status_body_and_headers() -> None:
    """§3: the 403 13605 reaches the client as the proxy would answer it; no framing headers."""
    grpc_service, _ = service(Store(cached=State.NOT_ACCEPTED))
    answer = await grpc_service.check(
        check_request("POST", orders_path(), auth(), body(order())), None
    )
    assert answer.status.code == _PERMISSION_DENIED
    denied = answer.denied_response
    assert denied.status.code == 403
    assert json.loads(denied.body)["code"] == 13605
    sent = headers_of(denied.headers)
    assert sent["X-Gate-Decision"] == "blocked"
    assert sent["Content-Type"].startswith("application/json")
    assert not {"Content-Length", "Transfer-Encoding", "Connection"} & set(sent)
    assert answer.status.message == "CustomerAcceptanceRequired"


async def test_a_body_cut_by_envoy_or_over_the_limit_is_413() -> None:
    """A partial body (Envoy's max_request_bytes) cannot be decided; nor can one over the limit."""
    grpc_service, _ = service(Store(cached=State.ACCEPTED), server={"max_gated_body_bytes": 1024})
    cut = check_request(
        "POST", orders_path(), {**auth(), "x-envoy-auth-partial-body": "true"}, body(order())
    )
    big = check_request("POST", orders_path(), auth(), b" " * 1025 + body(order()))
    for request in (cut, big):
        answer = await grpc_service.check(request, None)
        assert answer.denied_response.status.code == 413
        assert json.loads(answer.denied_response.body)["errorName"] == "BodyTooLarge"


def test_check_head_reads_either_header_form_lowercased() -> None:
    raw = check_request("GET", "/", {"X-A": "1", "Authorization": "B"}, raw_headers=True)
    plain = check_request("GET", "/", {"X-A": "1", "Authorization": "B"})
    for request in (raw, plain):
        head = CheckHead(request.attributes.request.http)
        assert (head.getall("x-a"), head.getall("authorization")) == (["1"], ["B"])
        assert head.getall("absent") == []
