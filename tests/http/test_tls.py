"""gate.http.tls: pairs loaded from files, every unusable one named by key and reason."""

from __future__ import annotations

import base64
import io
import re
import ssl
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from gate.config import ConfigError, ServerSettings, Settings
from gate.http.tls import Certificates, check, facts, load
from gate.logs import make_logger
from gate.metrics import Metrics
from tests.certs import Authority, Pair


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return Authority(tmp_path)


def _files(pair: Pair, **changes: str) -> ServerSettings:
    return ServerSettings(**{**pair.settings(), **changes})


def _problem(files: ServerSettings) -> str:
    with pytest.raises(ConfigError) as caught:
        load("server", files)
    (problem,) = caught.value.problems
    return problem


@pytest.mark.parametrize(
    ("years", "key_type"),
    [
        pytest.param(1, trustme.KeyType.ECDSA, id="utctime-ecdsa"),
        pytest.param(1, trustme.KeyType.RSA, id="utctime-rsa"),
        pytest.param(40, trustme.KeyType.ECDSA, id="generalizedtime-after-2049"),
    ],
)
def test_facts_are_those_cryptography_reads(
    tmp_path: Path, years: int, key_type: trustme.KeyType
) -> None:
    """The DER walk reads the serial and notAfter cryptography reads, in both time encodings."""
    leaf = trustme.CA(key_type=key_type).issue_cert(
        "127.0.0.1",
        not_after=datetime.now(UTC) + timedelta(days=365 * years),
        key_type=key_type,
    )
    pem = leaf.cert_chain_pems[0].bytes()
    der = ssl.PEM_cert_to_DER_cert(pem.decode())
    pair = Pair(tmp_path / "c", tmp_path / "k", leaf)
    assert facts(der) == (pair.serial, pair.not_after)


def test_facts_refuse_what_is_not_a_certificate() -> None:
    """A truncated or foreign DER is a ValueError, not a wrong date."""
    der = ssl.PEM_cert_to_DER_cert(trustme.CA().cert_pem.bytes().decode())
    for broken in (der[:40], b"\x02\x01\x00", b""):
        with pytest.raises(ValueError):
            facts(broken)


def test_a_good_pair_loads_with_secure_defaults(authority: Authority) -> None:
    """TLS 1.2 at least, ALPN http/1.1, no client certificate asked for without a CA file."""
    pair = authority.issue()
    loaded = load("server", _files(pair))
    assert loaded.serial == pair.serial and loaded.not_after == pair.not_after
    assert loaded.context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert loaded.context.verify_mode == ssl.CERT_NONE


def test_a_client_ca_requires_client_certificates_from_it_alone(authority: Authority) -> None:
    """With tls_client_ca_file: CERT_REQUIRED, and only that CA (not the system's) is trusted."""
    pair = authority.issue()
    loaded = load("server", _files(pair, tls_client_ca_file=str(authority.ca_file)))
    assert loaded.context.verify_mode == ssl.CERT_REQUIRED
    assert loaded.context.cert_store_stats()["x509_ca"] == 1


def _encrypted(pair: Pair) -> None:
    key = serialization.load_pem_private_key(pair.key.read_bytes(), None)
    pair.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )


def _truncated_cert(pair: Pair) -> None:
    body = base64.b64encode(ssl.PEM_cert_to_DER_cert(pair.cert.read_text())[:60])
    pair.cert.write_bytes(b"-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n" % body)


BROKEN: list[tuple[str, Callable[[Pair, Pair, Path], dict[str, str] | None], str, str]] = [
    ("missing-cert", lambda p, o, d: {"tls_cert_file": str(d / "gone.pem")},
     "server.tls_cert_file", "cannot read: No such file or directory"),
    ("missing-key", lambda p, o, d: {"tls_key_file": str(d / "gone.key")},
     "server.tls_key_file", "cannot read: No such file or directory"),
    ("unreadable-cert", lambda p, o, d: {"tls_cert_file": str(d)},
     "server.tls_cert_file", "cannot read: Is a directory"),
    ("not-a-certificate", lambda p, o, d: {"tls_cert_file": str(p.key)},
     "server.tls_cert_file", "holds no PEM certificate"),
    ("truncated-certificate", lambda p, o, d: _truncated_cert(p),
     "server.tls_cert_file", "is not a readable X.509 certificate"),
    ("key-of-another-cert", lambda p, o, d: {"tls_key_file": str(o.key)},
     "server.tls_key_file", "does not match the certificate of server.tls_cert_file"),
    ("not-a-key", lambda p, o, d: {"tls_key_file": str(p.cert)},
     "server.tls_key_file", "is not a usable PEM private key"),
    ("encrypted-key", lambda p, o, d: _encrypted(p),
     "server.tls_key_file", "is encrypted"),
    ("missing-client-ca", lambda p, o, d: {"tls_client_ca_file": str(d / "gone-ca.pem")},
     "server.tls_client_ca_file", "cannot read: No such file or directory"),
    ("client-ca-without-a-ca", lambda p, o, d: {"tls_client_ca_file": str(p.key)},
     "server.tls_client_ca_file", "holds no usable CA certificate"),
]  # fmt: skip


@pytest.mark.parametrize(("break_", "key", "reason"), [b[1:] for b in BROKEN],
                         ids=[b[0] for b in BROKEN])  # fmt: skip
def test_an_unusable_pair_is_named_by_key_and_reason(
    authority: Authority,
    tmp_path: Path,
    break_: Callable[[Pair, Pair, Path], dict[str, str] | None],
    key: str,
    reason: str,
) -> None:
    """Each way a pair cannot serve is one problem line: the key, the file, and why."""
    pair, other = authority.issue(), authority.issue()
    changes = break_(pair, other, tmp_path) or {}
    problem = _problem(_files(pair, **changes))
    assert problem.startswith(f"{key}: "), problem
    assert reason in problem, problem


def test_an_expired_certificate_is_refused(authority: Authority) -> None:
    """A certificate whose notAfter has passed never starts serving."""
    pair = authority.issue(days=-1, ago=3)
    problem = _problem(_files(pair))
    assert re.fullmatch(
        rf"server\.tls_cert_file: {re.escape(str(pair.cert))}: the certificate expired at "
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
        problem,
    ), problem


def test_check_looks_at_every_listener_that_serves(authority: Authority, tmp_path: Path) -> None:
    """check() names each listener's problem; authz only when its listener is on."""
    good, other = authority.issue(), authority.issue()
    wrong = {"tls_cert_file": str(good.cert), "tls_key_file": str(other.key)}
    settings = Settings(server=good.settings(), admin=wrong, authz=wrong)
    assert [p.split(":")[0] for p in check(settings)] == ["admin.tls_key_file"]
    with_authz = Settings(
        server=good.settings(), admin=wrong, authz={**wrong, "listen": "127.0.0.1:1"}
    )
    assert [p.split(":")[0] for p in check(with_authz)] == [
        "admin.tls_key_file",
        "authz.tls_key_file",
    ]


def _certificates() -> tuple[Certificates, Metrics]:
    metrics = Metrics("test")
    return Certificates(metrics.tls_expiry, make_logger("info", "json", io.StringIO())), metrics


async def test_prepare_refuses_turning_tls_or_mutual_tls_on_or_off(authority: Authority) -> None:
    """A listener opened plain stays plain, a TLS one stays TLS, mutual stays mutual: restart."""
    pair = authority.issue()
    certificates, _ = _certificates()
    assert certificates.context("proxy", ServerSettings()) is None
    assert certificates.context("admin", _files(pair)) is not None
    turned = Settings(server=pair.settings(), admin=pair.settings(authority.ca_file))
    with pytest.raises(ConfigError) as caught:
        certificates.prepare(turned)
    assert caught.value.problems == [
        "server.tls_cert_file: turning TLS on or off needs a restart",
        "admin.tls_client_ca_file: turning mutual TLS on or off needs a restart",
    ]


async def test_prepare_changes_nothing_until_committed(authority: Authority) -> None:
    """A prepared rotation is invisible (gauge, context) until its commit runs."""
    first, second = authority.issue(days=10), authority.issue(days=20)
    certificates, metrics = _certificates()
    certificates.context("proxy", _files(first))

    def expiry() -> float | None:
        return metrics.registry.get_sample_value(
            "gate_tls_certificate_expiry_timestamp_seconds", {"listener": "proxy"}
        )

    assert expiry() == first.not_after
    commit = certificates.prepare(Settings(server=second.settings()))
    assert expiry() == first.not_after
    commit()
    assert expiry() == second.not_after
