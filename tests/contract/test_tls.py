"""DESIGN §3 upstream.url: the real Partner Center is https, so forwarding speaks verified TLS."""

from __future__ import annotations

import io
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient, AiohttpServer

from gate import sandbox
from gate.app import create_app
from gate.config import Settings
from tests.conftest import ServeApp
from tests.support import auth, order, orders_path

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def _tls_sandbox(aiohttp_server: AiohttpServer, cert: Path, key: str) -> str:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = await aiohttp_server(sandbox.create_app(), host="127.0.0.1", ssl=context)
    return f"https://127.0.0.1:{server.port}"


async def test_a_trusted_https_upstream_is_reached(
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    serve_app: ServeApp,
    certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Lookups and forwarded calls go over TLS to an upstream whose certificate is trusted."""
    cert, key = certificate
    url = await _tls_sandbox(aiohttp_server, cert, str(key))
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust exactly this certificate
    app = create_app(Settings(upstream={"url": url}), log_stream=io.StringIO())
    client = await serve_app(app)
    blocked = await client.post(orders_path(), json=order(), headers=auth())
    assert blocked.status == 403  # the agreements lookup went through over TLS
    passed = await client.get("/v1/customers")
    assert passed.status == 200


async def test_an_untrusted_certificate_is_refused(
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    serve_app: ServeApp,
    certificate: tuple[Path, Path],
) -> None:
    """A certificate the system does not trust is never talked to: 502, nothing forwarded."""
    cert, key = certificate
    url = await _tls_sandbox(aiohttp_server, cert, str(key))
    app = create_app(Settings(upstream={"url": url}), log_stream=io.StringIO())
    client = await serve_app(app)
    response = await client.get("/v1/customers")
    assert response.status == 502
    assert (await response.json())["errorName"] == "UpstreamUnavailable"
