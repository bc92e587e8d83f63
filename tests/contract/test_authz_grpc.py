"""DESIGN §4 gRPC ext_authz service (gate/authz_grpc.py), asked over real gRPC as Envoy asks.

A grpcio client sends ``envoy.service.auth.v3.Authorization/Check`` to a real
`gate serve` process (authz.grpc_listen) in front of the sandbox: what Envoy
itself does with the answers is in tests/contract/test_authz_envoy_real.py.
Here: the shapes Envoy cannot easily be made to send (repeated header lines,
an upstream denial that is not JSON), TLS on the listener, and workers.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse

from tests.conftest import Upstream
from tests.contract.conftest import ServeGate, free_port
from tests.support import (
    CUSTOMER,
    GATE_COMMAND,
    PARTNER_A,
    agreements_path,
    auth,
    order,
    orders_path,
)

_METHOD = "/envoy.service.auth.v3.Authorization/Check"
_BOUND_S = 20.0


def _request(
    method: str, path: str, headers: dict[str, str], body: bytes = b"", *, raw: bool = False
) -> Any:
    """A CheckRequest as Envoy builds it (``raw``: every header line in header_map)."""
    request = CheckRequest()
    http = request.attributes.request.http
    http.method, http.path, http.raw_body = method, path, body
    for name, value in headers.items():
        if raw:
            line = http.header_map.headers.add()
            line.key, line.raw_value = name.lower(), value.encode()
        else:
            http.headers[name.lower()] = value
    return request


def _order() -> Any:
    return _request("POST", orders_path(), auth(), json.dumps(order()).encode())


async def _check(port: int, request: Any, credentials: Any = None) -> Any:
    target = f"127.0.0.1:{port}"
    channel = (
        grpc.aio.secure_channel(target, credentials)
        if credentials is not None
        else grpc.aio.insecure_channel(target)
    )
    async with channel, asyncio.timeout(_BOUND_S):
        call = channel.unary_unary(
            _METHOD,
            request_serializer=CheckRequest.SerializeToString,
            response_deserializer=CheckResponse.FromString,
        )
        return await call(request, timeout=_BOUND_S)


def _headers(response: Any) -> dict[str, str]:
    return {h.header.key.lower(): h.header.value for h in response.denied_response.headers}


async def _grpc_gate(serve_gate: ServeGate, extra: str = "", server: str = "") -> int:
    port = free_port()
    await serve_gate(extra=f'[authz]\ngrpc_listen = "127.0.0.1:{port}"\n{extra}', server=server)
    return port


async def test_unconfirmed_order_is_denied_with_the_proxys_answer(
    serve_gate: ServeGate, upstream: Upstream
) -> None:
    """R1 via §4: DeniedHttpResponse carries 403, the gate's JSON and its headers."""
    port = await _grpc_gate(serve_gate)
    response = await _check(port, _order())
    assert response.status.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert response.denied_response.status.code == 403
    headers = _headers(response)
    assert headers["x-gate-decision"] == "blocked"
    assert headers["content-type"].startswith("application/json")
    assert json.loads(response.denied_response.body)["code"] == 13605
    assert upstream.sandbox.calls("POST", "/orders") == []


async def test_allowed_order_sends_the_decision_both_ways(
    serve_gate: ServeGate, upstream: Upstream
) -> None:
    """R4 via §4: OkHttpResponse puts X-Gate-Decision on the upstream call and the answer."""
    upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    port = await _grpc_gate(serve_gate)
    response = await _check(port, _order())
    assert response.status.code == 0
    ok = response.ok_response
    assert [(h.header.key, h.header.value) for h in ok.headers] == [("X-Gate-Decision", "allowed")]
    assert [h.header.value for h in ok.response_headers_to_add] == ["allowed"]
    read = await _check(port, _request("GET", orders_path(), auth()))
    assert read.status.code == 0
    assert list(read.ok_response.headers) == []  # not gated: no header


async def test_repeated_override_lines_are_ambiguous(serve_gate: ServeGate) -> None:
    """§2 via §4: two method-override lines (header_map, encode_raw_headers) are refused 400."""
    port = await _grpc_gate(serve_gate)
    request = _request(
        "POST", orders_path(), {**auth(), "x-http-method-override": "POST"}, raw=True
    )
    line = request.attributes.request.http.header_map.headers.add()
    line.key, line.raw_value = "x-http-method-override", b"PATCH"
    response = await _check(port, request)
    assert response.denied_response.status.code == 400
    assert json.loads(response.denied_response.body)["errorName"] == "AmbiguousMethod"


async def test_body_over_the_limit_is_413(serve_gate: ServeGate) -> None:
    """§2 via §4: a whole body over server.max_gated_body_bytes is refused 413 BodyTooLarge."""
    port = await _grpc_gate(serve_gate, server="max_gated_body_bytes = 1024\n")
    body = json.dumps({**order(), "pad": "x" * 2000}).encode()
    response = await _check(port, _request("POST", orders_path(), auth(), body))
    assert response.denied_response.status.code == 413
    assert json.loads(response.denied_response.body)["errorName"] == "BodyTooLarge"


async def test_an_upstream_denial_that_is_not_json_is_relayed(
    serve_gate: ServeGate, upstream: Upstream
) -> None:
    """§1.1 via §4: a lookup denied with an HTML page is the denial, its type kept."""
    upstream.sandbox.knobs.agreements_status = 403
    upstream.sandbox.knobs.agreements_body = b"<html>denied by a front door</html>"
    port = await _grpc_gate(serve_gate)
    response = await _check(port, _order())
    assert response.denied_response.status.code == 403
    assert response.denied_response.body == "<html>denied by a front door</html>"
    headers = _headers(response)
    assert headers["content-type"].startswith("text/html")
    assert "content-length" not in headers  # Envoy frames the answer it writes
    assert len(upstream.sandbox.calls("GET", agreements_path())) == 1


async def test_tls_listener_uses_the_authz_files(serve_gate: ServeGate, tmp_path: Path) -> None:
    """§4: with authz.tls_cert_file/tls_key_file the gRPC listener speaks TLS only."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    leaf.private_key_pem.write_to_path(str(key))
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    port = await _grpc_gate(serve_gate, extra=f'tls_cert_file = "{cert}"\ntls_key_file = "{key}"\n')
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.cert_pem.bytes())
    response = await _check(port, _request("GET", orders_path(), auth()), credentials)
    assert response.status.code == 0
    with pytest.raises(grpc.aio.AioRpcError):
        await _check(port, _request("GET", orders_path(), auth()))


async def test_workers_share_the_grpc_port(serve_gate: ServeGate, upstream: Upstream) -> None:
    """§5 via §4: with server.workers = 2 every worker answers checks on the one port."""
    port = await _grpc_gate(serve_gate, server="workers = 2\n")
    answers = await asyncio.gather(
        *(_check(port, _order())
          for _ in range(8))
    )  # fmt: skip
    assert {answer.denied_response.status.code for answer in answers} == {403}


def test_check_config_checks_the_grpc_listeners_tls_files(tmp_path: Path) -> None:
    """§4: with only authz.grpc_listen set, check-config still names an unusable TLS file."""
    config = tmp_path / "gate.toml"
    missing = tmp_path / "missing.pem"
    config.write_text(
        f'[authz]\ngrpc_listen = "127.0.0.1:9192"\n'
        f'tls_cert_file = "{missing}"\ntls_key_file = "{missing}"\n'
    )
    result = subprocess.run(
        [*GATE_COMMAND, "check-config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "authz.tls_cert_file" in result.stdout + result.stderr
