"""The decision service as Envoy's gRPC ext_authz service (``envoy.service.auth.v3``).

``Authorization/Check`` carries the original call (method, path with query,
headers, and the body with ``with_request_body``; raw bytes with
``pack_as_bytes``). It is decided by the same core as the proxy and the HTTP
decision service (``gate.core.decide``), and answered:

- allowed: ``OkHttpResponse``; on a gated call ``X-Gate-Decision`` goes to
  the upstream (``headers``) and to the client (``response_headers_to_add``);
- refused: ``DeniedHttpResponse`` with the proxy's own status (403, 400,
  401, 413, 503 ...), JSON body and headers (``Content-Type``,
  ``Retry-After``, ``X-Gate-Decision``). Unlike the HTTP service's 5xx,
  which Envoy turns into its own bodiless error, a gRPC denial reaches the
  client as it is.

The server is grpcio's asyncio server (C-core HTTP/2) on the gate's event
loop; the messages are ``xds-protos``' generated classes, which carry no
types: they are read and built here only, behind typed functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.service.auth.v3.external_auth_pb2 import (
    CheckRequest,
    CheckResponse,
    DeniedHttpResponse,
    OkHttpResponse,
)
from envoy.type.v3.http_status_pb2 import HttpStatus
from google.rpc.status_pb2 import Status

from gate.authz import cut_short, logged
from gate.config import ConfigError, TlsSettings
from gate.core.action import Action, Answer, Forward, Gated, answer_error
from gate.core.decide import Decider
from gate.errors import BodyTooLarge
from gate.http import tls
from gate.logs import HotLines
from gate.metrics import Metrics
from gate.tasks import resolved

__all__ = ["SERVICE", "CheckHead", "GrpcDecisionService", "server_credentials"]

SERVICE = "envoy.service.auth.v3.Authorization"
_OK, _PERMISSION_DENIED = 0, 7  # google.rpc.Code
_OVERWRITE = HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD
# Framing is Envoy's to set on the answer it writes; the rest of a refusal's headers go as they are.
_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection", b"keep-alive"})
_MIN_MESSAGE = 4 * 1024 * 1024  # grpcio's default limit on a received message


class CheckHead:
    """A check request's headers as the core reads them (``gate.core.action.Head``).

    Envoy sends ``headers`` (one value per name, repeated ones joined with
    commas) or, with ``encode_raw_headers``, ``header_map`` (every line).
    """

    __slots__ = ("_found",)

    def __init__(self, http: Any) -> None:
        found: dict[str, list[str]] = {}
        for header in http.header_map.headers:
            value = header.raw_value.decode("latin-1") if header.raw_value else header.value
            found.setdefault(header.key.lower(), []).append(value)
        if not found:
            for name, value in http.headers.items():
                found.setdefault(name.lower(), []).append(value)
        self._found = found

    def getall(self, name: str) -> list[str]:
        return self._found.get(name, [])


class GrpcDecisionService:
    """Answers ``Authorization/Check`` with the core's Action; one grpcio server per process."""

    def __init__(self, decider: Decider, metrics: Metrics, lines: HotLines) -> None:
        self._decider = decider
        self._metrics = metrics
        self._lines = lines
        self._server: Any = None

    async def check(self, request: Any, _context: Any) -> Any:
        """One check: the core's Action as an ext_authz CheckResponse."""
        action = await self.decide(request.attributes.request.http)
        logged(action, self._metrics, self._lines)
        return _response(action)

    async def decide(self, http: Any) -> Action:
        """The Action for the call a check request describes."""
        head = CheckHead(http)
        routed = self._decider.route(http.method, http.path, head)
        if not isinstance(routed, Gated):
            return routed
        if head.getall("x-envoy-auth-partial-body") == ["true"]:
            return cut_short(routed)
        raw: bytes = http.raw_body or http.body.encode("utf-8")
        limit = routed.runtime.max_gated_body
        if len(raw) > limit:
            return answer_error(_too_large(limit), routed.trace)
        return await resolved(self._decider.decide(routed, head, raw))

    async def start(
        self,
        host: str,
        port: int,
        *,
        reuse_port: bool = False,
        credentials: grpc.ServerCredentials | None = None,
        max_body: int = 0,
    ) -> int:
        """Listen on host:port (0: any free port); returns the bound port. OSError if it cannot."""
        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Check": grpc.unary_unary_rpc_method_handler(
                    self.check,
                    request_deserializer=CheckRequest.FromString,
                    response_serializer=CheckResponse.SerializeToString,
                )
            },
        )
        size = max(_MIN_MESSAGE, max_body + 1024 * 1024)  # the body and the headers around it
        server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 1 if reuse_port else 0),
                ("grpc.max_receive_message_length", size),
            ]
        )
        server.add_generic_rpc_handlers((handler,))
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            if credentials is None:
                bound: int = server.add_insecure_port(address)
            else:
                bound = server.add_secure_port(address, credentials)
        except RuntimeError as error:  # grpcio's way of saying the address is taken
            raise OSError(f"{address}: {error}") from error
        await server.start()
        self._server = server
        return bound

    async def drain(self, grace: float) -> None:
        """Stop taking checks; those in flight get ``grace`` seconds to be answered."""
        if self._server is not None:
            await self._server.stop(grace)


def server_credentials(files: TlsSettings) -> Any:
    """grpcio's TLS from the ``[authz]`` files, or None for plaintext; ConfigError if unusable.

    The files are checked as the other listeners' are (``gate.http.tls.load``)
    and read once: a reload does not rotate this listener's pair (restart it).
    """
    if not files.tls_cert_file:
        return None
    tls.load("authz", files)
    try:
        pair = (Path(files.tls_key_file).read_bytes(), Path(files.tls_cert_file).read_bytes())
        ca = files.tls_client_ca_file
        root = Path(ca).read_bytes() if ca else None
    except OSError as error:
        raise ConfigError([f"authz: {error}"]) from error
    return grpc.ssl_server_credentials(
        [pair], root_certificates=root, require_client_auth=root is not None
    )


def _too_large(limit: int) -> BodyTooLarge:
    return BodyTooLarge(f"A gated call's body may be at most {limit} bytes.", [{"limit": limit}])


def _response(action: Action) -> Any:
    if isinstance(action, Forward):
        return _allowed(action)
    return _denied(action)


def _allowed(forward: Forward) -> Any:
    ok = OkHttpResponse()
    if forward.decision is not None:
        decision = _header(b"X-Gate-Decision", forward.decision.encode())
        ok.headers.append(decision)
        ok.response_headers_to_add.append(decision)
    return CheckResponse(status=Status(code=_OK), ok_response=ok)


def _denied(answer: Answer) -> Any:
    denied = DeniedHttpResponse(
        status=HttpStatus(code=answer.status),
        headers=[_header(n, v) for n, v in answer.headers if n.lower() not in _FRAMING],
        body=answer.body.decode("utf-8", "replace"),
    )
    message = answer.error or f"refused with {answer.status}"
    return CheckResponse(
        status=Status(code=_PERMISSION_DENIED, message=message), denied_response=denied
    )


def _header(name: bytes, value: bytes) -> Any:
    return HeaderValueOption(
        header=HeaderValue(key=name.decode("latin-1"), value=value.decode("latin-1")),
        append_action=_OVERWRITE,
    )
