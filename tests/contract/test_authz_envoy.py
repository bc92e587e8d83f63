"""DESIGN §4 decision service as Envoy's ext_authz HTTP service, and the shipped Envoy/Istio files.

The check requests are shaped as Envoy's ext_authz filter sends them
(original method, path_prefix + path and query, the allowed headers, the body
and x-envoy-auth-partial-body) to a real `gate serve` process; deploy/envoy/
and deploy/istio/ are parsed and held to the same contract and to the gate
config they ship with. test_authz_envoy_real.py runs both Envoy files on a
real Envoy.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gate.config import Settings, load, parse_listen
from tests.conftest import Upstream
from tests.contract.conftest import Served, ServeGate, free_port
from tests.support import (
    CUSTOMER,
    PARTNER_A,
    agreements_path,
    auth,
    confirmation,
    order,
    orders_path,
    subscription_path,
)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ENVOY, GATE_CONFIG = DEPLOY / "envoy" / "envoy.yaml", DEPLOY / "envoy" / "gate-authz.toml"
ENVOY_HTTP = DEPLOY / "envoy" / "envoy-http.yaml"
BOTH = [pytest.param(ENVOY, id="grpc"), pytest.param(ENVOY_HTTP, id="http")]
ISTIO = DEPLOY / "istio"
PREFIX = "/authz"
# What the shipped files forward to the gate and back: DESIGN §4's contract.
CHECKED_HEADERS = {"authorization", "ms-correlationid", "content-type", "content-encoding",
                   "x-http-method-override", "x-http-method", "x-method-override"}  # fmt: skip
DENY_HEADERS = {"content-type", "x-gate-decision", "retry-after"}
_BOUND_S = 20.0


class Authz:
    """A running gate's decision service, asked the way Envoy's ext_authz filter asks."""

    def __init__(self, served: Served, port: int, upstream: Upstream) -> None:
        self.served, self.port, self.upstream = served, port, upstream

    async def check(
        self,
        method: str,
        path: str,
        body: bytes | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        *,
        partial: bool = False,
        prefix: str = PREFIX,
    ) -> tuple[int, Any, bytes]:
        """One check request: status, headers, body."""
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        sent = {"x-forwarded-proto": "https", **(headers or {})}
        if raw is not None:
            sent |= {"content-type": "application/json",
                     "x-envoy-auth-partial-body": "true" if partial else "false"}  # fmt: skip
        async with (
            aiohttp.ClientSession(skip_auto_headers={"User-Agent", "Content-Type"}) as session,
            asyncio.timeout(_BOUND_S),
            session.request(
                method, f"http://127.0.0.1:{self.port}{prefix}{path}", data=raw, headers=sent
            ) as response,
        ):
            return response.status, response.headers, await response.read()

    def decisions(self) -> list[dict[str, Any]]:
        return self.served.decisions()

    async def decided(self, count: int) -> list[dict[str, Any]]:
        return await self.served.decided(count)

    def lookups(self) -> int:
        return len(self.upstream.sandbox.calls("GET", agreements_path()))


@pytest.fixture
async def authz(serve_gate: ServeGate, upstream: Upstream) -> Authz:
    """`gate serve` with the decision service on a free port and Envoy's path_prefix."""
    port = free_port()
    served = await serve_gate(
        extra=f'[authz]\nlisten = "127.0.0.1:{port}"\npath_prefix = "{PREFIX}"\n'
    )
    return Authz(served, port, upstream)


def _error(body: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(body)
    assert doc["source"] == "gate"
    return doc


# -- allow and deny shapes -----------------------------------------------------------------


async def test_unconfirmed_order_is_denied_with_the_proxys_403(authz: Authz) -> None:
    """R1 via §4: Envoy is told 403 13605 with the gate's JSON and X-Gate-Decision: blocked."""
    status, headers, body = await authz.check("POST", orders_path(), order(), auth())
    assert status == 403
    assert headers["X-Gate-Decision"] == "blocked"
    assert headers["Content-Type"].startswith("application/json")
    doc = _error(body)
    assert (doc["code"], doc["errorName"]) == (13605, "CustomerAcceptanceRequired")
    assert doc["data"][0]["transaction"] == "new_purchase"
    assert "X-Gate-Status" not in headers  # the nginx shape is for nginx only
    assert authz.upstream.sandbox.calls("POST", "/orders") == []


async def test_confirmed_order_is_allowed_with_an_empty_200(authz: Authz) -> None:
    """R4 via §4: a confirmed pair's order is answered 200, empty, X-Gate-Decision: allowed."""
    authz.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    status, headers, body = await authz.check("POST", orders_path(), order(), auth())
    assert (status, headers["X-Gate-Decision"], body) == (200, "allowed", b"")
    assert authz.lookups() == 1
    assert authz.upstream.sandbox.calls("POST", "/orders") == []  # Envoy forwards, not the gate


async def test_read_is_allowed_without_a_lookup_or_header(authz: Authz) -> None:
    """R2 via §4: a read is answered 200 with no X-Gate-Decision and no agreements lookup."""
    status, headers, body = await authz.check("GET", f"{orders_path()}?size=5", None, auth())
    assert (status, body) == (200, b"")
    assert "X-Gate-Decision" not in headers
    assert authz.lookups() == 0


async def test_check_path_without_the_prefix_is_refused(authz: Authz) -> None:
    """§4: authz.path_prefix is stripped; a check request outside it is refused, not allowed."""
    status, _, body = await authz.check("POST", orders_path(), order(), auth(), prefix="")
    assert status == 400
    assert "errorName" in _error(body)


async def test_order_without_a_token_is_401_partner_unknown(authz: Authz) -> None:
    """§2 via §4: a gated call with no partner is denied 401 PartnerUnknown."""
    status, headers, body = await authz.check("POST", orders_path(), order())
    assert (status, headers["X-Gate-Decision"]) == (401, "blocked")
    assert _error(body)["errorName"] == "PartnerUnknown"


async def test_encoded_slash_on_a_gated_path_is_400_ambiguous_path(authz: Authz) -> None:
    """§2 via §4: an order path with %2F is denied 400 AmbiguousPath."""
    status, _, body = await authz.check(
        "POST", f"/v1/customers/{CUSTOMER}%2Forders", order(), auth()
    )
    assert status == 400
    assert _error(body)["errorName"] == "AmbiguousPath"


async def test_method_override_naming_another_method_is_400(authz: Authz) -> None:
    """§2 via §4: X-HTTP-Method-Override naming POST on a GET to an order path is refused."""
    headers = {**auth(), "x-http-method-override": "POST"}
    status, _, body = await authz.check("GET", orders_path(), None, headers)
    assert status == 400
    assert _error(body)["errorName"] == "AmbiguousMethod"


async def test_failed_lookup_is_503_with_retry_after(authz: Authz) -> None:
    """§2 via §4: a failed lookup under fail-closed policy is 503 with Retry-After."""
    authz.upstream.sandbox.knobs.agreements_status = 500
    status, headers, body = await authz.check("POST", orders_path(), order(), auth())
    assert (status, headers["X-Gate-Decision"]) == (503, "blocked")
    assert int(headers["Retry-After"]) > 0
    assert _error(body)["errorName"] == "AcceptanceStatusUnavailable"


# -- the body-dependent rules, with the body Envoy sends -----------------------------------


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param({"status": "cancelled"}, id="camelCase"),
        pytest.param({"Status": "Cancelled"}, id="PascalCase"),
    ],
)
async def test_cancel_only_order_edit_is_not_gated(authz: Authz, doc: dict[str, Any]) -> None:
    """R1 via §4: an order PATCH that only cancels is allowed, no X-Gate-Decision, no lookup."""
    status, headers, _ = await authz.check("PATCH", f"{orders_path()}/order-1", doc, auth())
    assert status == 200
    assert "X-Gate-Decision" not in headers
    assert authz.lookups() == 0


async def test_pascal_case_line_items_are_a_purchase(authz: Authz) -> None:
    """§1.1 via §4: an order PATCH adding LineItems (the .NET SDK's casing) is gated."""
    doc = {"LineItems": [{"LineItemNumber": 0, "OfferId": "x", "Quantity": 1}]}
    status, headers, _ = await authz.check("PATCH", f"{orders_path()}/order-1", doc, auth())
    assert (status, headers["X-Gate-Decision"]) == (403, "blocked")


@pytest.mark.parametrize(
    ("doc", "status"),
    [
        pytest.param({"quantity": 10, "friendlyName": "x"}, 200, id="same-quantity"),
        pytest.param({"Quantity": 10}, 200, id="same-quantity-PascalCase"),
        pytest.param({"friendlyName": "renamed"}, 200, id="no-quantity"),
        pytest.param({"quantity": 11}, 403, id="seat-change"),
    ],
)
async def test_subscription_edit_is_gated_only_when_seats_change(
    authz: Authz, doc: dict[str, Any], status: int
) -> None:
    """R1 seat_change via §4: an unconfirmed subscription PATCH is held only if quantity changes."""
    answered, headers, body = await authz.check("PATCH", subscription_path(), doc, auth())
    assert answered == status
    if status == 200:
        assert "X-Gate-Decision" not in headers
    else:
        assert headers["X-Gate-Decision"] == "blocked"
        assert _error(body)["data"][0]["transaction"] == "seat_change"


async def test_repeated_key_is_400_ambiguous_body(authz: Authz) -> None:
    """§1.1 via §4: a gated body that repeats a key under any casing is denied 400."""
    raw = b'{"quantity": 10, "Quantity": 50}'
    status, headers, body = await authz.check("PATCH", subscription_path(), raw, auth())
    assert (status, headers["X-Gate-Decision"]) == (400, "blocked")
    assert _error(body)["errorName"] == "AmbiguousBody"


async def test_body_envoy_cut_short_is_413(authz: Authz) -> None:
    """§4: a gated call whose body Envoy cut (x-envoy-auth-partial-body: true) is denied 413."""
    raw = json.dumps(order()).encode()[:20]
    status, headers, body = await authz.check("POST", orders_path(), raw, auth(), partial=True)
    assert (status, headers["X-Gate-Decision"]) == (413, "blocked")
    assert _error(body)["errorName"] == "BodyTooLarge"


async def test_confirmation_payload_is_checked_with_its_body(authz: Authz) -> None:
    """R6 via §4: a valid confirmation is allowed; one without contact is denied 400."""
    status, headers, _ = await authz.check("POST", agreements_path(), confirmation(), auth())
    assert (status, headers["X-Gate-Decision"]) == (200, "allowed")
    bad = confirmation(primaryContact=None)
    status, headers, body = await authz.check("POST", agreements_path(), bad, auth())
    assert (status, headers["X-Gate-Decision"]) == (400, "blocked")
    assert _error(body)["errorName"] == "InvalidAcceptance"


# -- one decision log --------------------------------------------------------------------


async def test_decision_line_is_the_proxys(authz: Authz) -> None:
    """§5 via §4: a check writes the decision line the proxy writes for the same call."""
    headers = {**auth(), "MS-CorrelationId": "call-1"}
    await authz.check("POST", orders_path(), order(), headers)
    async with aiohttp.ClientSession() as session:
        url = f"{authz.served.proxy_url}{orders_path()}"
        async with session.post(url, json=order(), headers={**headers, "MS-CorrelationId": "c2"}):
            pass
    via_authz, via_proxy = await authz.decided(2)
    varying = {"timestamp", "latency_ms", "correlation_id", "cache"}
    assert via_authz["path"] == orders_path()  # the prefix is not part of the call
    assert (via_authz["correlation_id"], via_proxy["correlation_id"]) == ("call-1", "c2")
    assert via_authz.keys() == via_proxy.keys()
    assert {k: v for k, v in via_authz.items() if k not in varying} == {
        k: v for k, v in via_proxy.items() if k not in varying
    }


# -- the shipped files ---------------------------------------------------------------------


def _gate_settings() -> Settings:
    return load(GATE_CONFIG)


def _ext_authz(path: Path = ENVOY_HTTP) -> dict[str, Any]:
    filters = _hcm(path)["http_filters"]
    assert filters[-1]["name"] == "envoy.filters.http.router"
    (found,) = [f for f in filters if f["name"] == "envoy.filters.http.ext_authz"]
    config: dict[str, Any] = found["typed_config"]
    return config


def _envoy(path: Path = ENVOY_HTTP) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return doc


def _hcm(path: Path = ENVOY_HTTP) -> dict[str, Any]:
    (listener,) = _envoy(path)["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (hcm,) = chain["filters"]
    config: dict[str, Any] = hcm["typed_config"]
    return config


def _cluster_port(name: str, path: Path = ENVOY_HTTP) -> int:
    clusters = _envoy(path)["static_resources"]["clusters"]
    (cluster,) = [c for c in clusters if c["name"] == name]
    (endpoints,) = cluster["load_assignment"]["endpoints"]
    (endpoint,) = endpoints["lb_endpoints"]
    port: int = endpoint["endpoint"]["address"]["socket_address"]["port_value"]
    return port


def _patterns(matcher: dict[str, Any]) -> set[str]:
    return {pattern["exact"] for pattern in matcher["patterns"]}


@pytest.mark.parametrize("path", BOTH)
def test_envoy_ext_authz_fails_closed_and_sends_the_body(path: Path) -> None:
    """§4: failure_mode_allow is false and the body up to the gate's limit goes to the check."""
    config = _ext_authz(path)
    assert config["failure_mode_allow"] is False
    body = config["with_request_body"]
    assert body["max_request_bytes"] == _gate_settings().server.max_gated_body_bytes
    assert body["allow_partial_message"] is True  # so the gate answers 413 in its own JSON


def test_envoy_http_service_agrees_with_the_gate_config() -> None:
    """§4: Envoy asks the gate's authz.listen with its authz.path_prefix; confirmations go to
    server.listen."""
    settings, service = _gate_settings(), _ext_authz()["http_service"]
    _, authz_port = parse_listen(settings.authz.listen)
    _, proxy_port = parse_listen(settings.server.listen)
    assert service["path_prefix"] == settings.authz.path_prefix == "/authz"
    assert service["server_uri"]["cluster"] == "gate_authz"
    assert service["server_uri"]["uri"].endswith(f":{authz_port}")
    assert _cluster_port("gate_authz") == authz_port
    assert _cluster_port("gate_proxy") == proxy_port


@pytest.mark.parametrize("path", BOTH)
def test_envoy_sends_the_headers_the_gate_decides_on(path: Path) -> None:
    """§4: the check carries the token and overrides (ExtAuthz.allowed_headers, not deprecated)."""
    sent = _patterns(_ext_authz(path)["allowed_headers"])
    assert sent >= CHECKED_HEADERS
    assert not {"x-original-uri", "x-original-method"} & sent  # nginx's shape, never Envoy's


def test_envoy_grpc_service_agrees_with_the_gate_config() -> None:
    """§4: envoy.yaml asks the gate's authz.grpc_listen over HTTP/2, the body as bytes."""
    config = _ext_authz(ENVOY)
    assert "http_service" not in config
    assert config["grpc_service"]["envoy_grpc"]["cluster_name"] == "gate_authz"
    assert config["with_request_body"]["pack_as_bytes"] is True
    settings = _gate_settings()
    assert _cluster_port("gate_authz", ENVOY) == parse_listen(settings.authz.grpc_listen)[1]
    assert _cluster_port("gate_proxy", ENVOY) == parse_listen(settings.server.listen)[1]


def test_envoy_http_answers_carry_the_gates_headers_back() -> None:
    """§4: the HTTP service's answers carry the gate's headers to the client and upstream."""
    response = _ext_authz()["http_service"]["authorization_response"]
    assert _patterns(response["allowed_client_headers"]) >= DENY_HEADERS
    assert "x-gate-decision" in _patterns(response["allowed_upstream_headers"])
    assert "x-gate-decision" in _patterns(response["allowed_client_headers_on_success"])


@pytest.mark.parametrize("path", BOTH)
def test_envoy_routes_confirmations_to_the_gate_and_reads_around_it(path: Path) -> None:
    """§4: POST .../agreements goes to the gate's proxy, reads skip the check, the rest is
    checked."""
    (host,) = _hcm(path)["route_config"]["virtual_hosts"]
    routes = {route["name"]: route for route in host["routes"]}
    assert list(routes) == ["confirmation", "read", "checked"]
    disabled = "envoy.filters.http.ext_authz"
    assert routes["confirmation"]["route"]["cluster"] == "gate_proxy"
    assert routes["confirmation"]["typed_per_filter_config"][disabled]["disabled"] is True
    overrides = {h["name"] for h in routes["read"]["match"]["headers"] if h.get("invert_match")}
    assert overrides == {"x-http-method-override", "x-http-method", "x-method-override"}
    assert routes["checked"]["route"]["cluster"] == "partner_center"
    assert "typed_per_filter_config" not in routes["checked"]


@pytest.mark.parametrize("path", BOTH)
def test_envoy_reaches_partner_center_over_verified_tls(path: Path) -> None:
    """§4: the upstream cluster speaks TLS with Partner Center's name and verifies it."""
    (cluster,) = [
        c for c in _envoy(path)["static_resources"]["clusters"] if c["name"] == "partner_center"
    ]
    tls = cluster["transport_socket"]["typed_config"]
    assert tls["sni"] == "api.partnercenter.microsoft.com"
    assert _cluster_port("partner_center", path) == 443
    assert "trusted_ca" in tls["common_tls_context"]["validation_context"]
    assert _gate_settings().upstream.url == "https://api.partnercenter.microsoft.com"


def _istio(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ISTIO / name).read_text(encoding="utf-8"))
    return doc


def test_istio_providers_agree_with_the_gate_and_the_policy() -> None:
    """§4: the policy's provider is the gRPC one; both fail closed and match the gate."""
    providers = _istio("meshconfig.yaml")["spec"]["meshConfig"]["extensionProviders"]
    by_name = {provider["name"]: provider for provider in providers}
    policy, service = _istio("authorizationpolicy.yaml"), _istio("authz-service.yaml")
    settings = _gate_settings()
    assert policy["spec"]["action"] == "CUSTOM"
    grpc, http = by_name["gate"]["envoyExtAuthzGrpc"], by_name["gate-http"]["envoyExtAuthzHttp"]
    assert policy["spec"]["provider"]["name"] == "gate"
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    ports = {port["name"]: port["port"] for port in service["spec"]["ports"]}
    assert ports == {
        "grpc-authz": parse_listen(settings.authz.grpc_listen)[1],
        "http-authz": parse_listen(settings.authz.listen)[1],
    }
    assert (grpc["port"], http["port"]) == (ports["grpc-authz"], ports["http-authz"])
    for provider in (grpc, http):
        assert provider["failOpen"] is False
        assert provider["service"] == f"{name}.{namespace}.svc.cluster.local"
        body = provider["includeRequestBodyInCheck"]
        assert body["maxRequestBytes"] == settings.server.max_gated_body_bytes
        assert body["allowPartialMessage"] is True
    assert grpc["includeRequestBodyInCheck"]["packAsBytes"] is True
    assert http["pathPrefix"] == settings.authz.path_prefix
    assert set(http["includeRequestHeadersInCheck"]) >= CHECKED_HEADERS
    assert set(http["headersToDownstreamOnDeny"]) >= DENY_HEADERS
    assert "x-gate-decision" in http["headersToUpstreamOnAllow"]


def test_istio_policy_checks_every_call_but_plain_reads() -> None:
    """§4: the CUSTOM policy covers every method but GET/HEAD/OPTIONS, and any method override."""
    rules = _istio("authorizationpolicy.yaml")["spec"]["rules"]
    operations = [rule["to"][0]["operation"] for rule in rules]
    assert operations[0]["notMethods"] == ["GET", "HEAD", "OPTIONS"]
    keys = {rule["when"][0]["key"] for rule in rules if "when" in rule}
    assert keys == {f"request.headers[{h}]" for h in
                    ("x-http-method-override", "x-http-method", "x-method-override")}  # fmt: skip


async def test_an_upstream_denial_that_is_not_json_reaches_nginx_intact(authz: Authz) -> None:
    """§1.1 + §4: a lookup denied with an HTML page is relayed for nginx, escaped, not a 500."""
    authz.upstream.sandbox.knobs.agreements_status = 403
    authz.upstream.sandbox.knobs.agreements_body = b"<html>denied by a front door</html>\r\n"
    status, headers, body = await authz.check(
        "GET",
        "/_gate",
        headers={
            "x-original-uri": orders_path(),
            "x-original-method": "POST",
            **auth(),
        },
        prefix="",
    )
    assert status == 403
    assert headers["X-Gate-Status"] == "403"
    assert headers["Content-Type"].startswith("text/html")
    assert json.loads(headers["X-Gate-Error"]) == "<html>denied by a front door</html>\r\n"
    assert headers["X-Gate-Decision"] == "blocked"
    assert body == b"<html>denied by a front door</html>\r\n"
