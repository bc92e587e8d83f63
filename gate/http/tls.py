"""TLS on the gate's own listeners: contexts from files, checked at load, rotated on reload.

A listener that speaks TLS gets one ``ssl.SSLContext`` for its whole life
(``loop.create_server(ssl=...)``, aiohttp's ``TCPSite(ssl_context=...)``).
Rotation never changes that context in place, because a half-loaded pair
would leave it without a certificate: a reload builds a whole new context
from the files (a broken or mismatched pair fails there and the old one
serves on), and the listener context's ``sni_callback`` hands each new
handshake the newest one (``SSLObject.context = ...``, the way a server
picks a certificate per name; OpenSSL calls it on every ClientHello, with
or without SNI). Open connections keep the certificate they shook hands
with. This works alike on asyncio's and uvloop's TLS, which both wrap the
listener's context per connection.

The certificate's notAfter is read from its DER with a short walk over the
X.509 structure (RFC 5280 §4.1): the ``ssl`` module decodes certificates
only through a private function, and ``cryptography`` is not a dependency
of the gate.
"""

from __future__ import annotations

import base64
import binascii
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import Gauge
from structlog.typing import FilteringBoundLogger

from gate.config import ConfigError, Settings, TlsSettings

__all__ = ["LISTENERS", "Certificate", "Certificates", "check", "facts", "load"]

LISTENERS = {"proxy": "server", "admin": "admin", "authz": "authz"}
"""Each listener's name (the metric's label) and its config section."""
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\s*([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----")
_READS = 3  # a file replaced while it is loaded is read again, this many times in all


@dataclass(frozen=True, slots=True)
class Certificate:
    """A loaded pair: the context to serve it and its leaf certificate's facts."""

    context: ssl.SSLContext
    serial: int
    not_after: float  # seconds since the epoch


class _Encrypted(Exception):
    """The key asks for a password (raised instead of prompting on a terminal)."""


def _no_password() -> bytes:
    raise _Encrypted()


def _read(key: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError([f"{key}: {path}: cannot read: {exc.strerror or exc}"]) from exc


def _element(der: bytes, at: int) -> tuple[int, int, int]:
    """(tag, first byte of the value, end of the value) of the DER element at ``at``."""
    tag, size = der[at], der[at + 1]
    at += 2
    if size & 0x80:
        count = size & 0x7F
        if not 1 <= count <= 4:
            raise ValueError("unsupported DER length")
        size, at = int.from_bytes(der[at : at + count], "big"), at + count
    if at + size > len(der):
        raise ValueError("truncated DER")
    return tag, at, at + size


def _expect(der: bytes, at: int, tag: int) -> tuple[int, int]:
    found, start, end = _element(der, at)
    if found != tag:
        raise ValueError(f"DER tag {found:#x} where {tag:#x} belongs")
    return start, end


def _time(tag: int, text: str) -> float:
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ: 50-99 are 19xx (RFC 5280 §4.1.2.5.1)
        text = ("19" if int(text[:2]) >= 50 else "20") + text
    elif tag != 0x18:  # GeneralizedTime YYYYMMDDHHMMSSZ
        raise ValueError("validity is not a time")
    return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC).timestamp()


def facts(der: bytes) -> tuple[int, float]:
    """The serial number and notAfter of a DER certificate (ValueError when it is not one)."""
    try:
        start, _ = _expect(der, 0, 0x30)  # Certificate
        at, _ = _expect(der, start, 0x30)  # tbsCertificate
        tag, _, end = _element(der, at)
        if tag == 0xA0:  # [0] version
            at = end
        start, end = _expect(der, at, 0x02)
        serial = int.from_bytes(der[start:end], "big", signed=True)
        _, end = _element(der, end)[1:]  # signature algorithm
        _, end = _element(der, end)[1:]  # issuer
        start, _ = _expect(der, end, 0x30)  # validity
        _, end = _element(der, start)[1:]  # notBefore
        tag, start, end = _element(der, end)  # notAfter
        return serial, _time(tag, der[start:end].decode("ascii"))
    except (IndexError, UnicodeDecodeError) as exc:
        raise ValueError("truncated certificate") from exc


def _leaf(key: str, path: str, pem: bytes) -> tuple[int, float]:
    """The facts of the first certificate of a PEM file: the one a TLS server presents."""
    found = _PEM.search(pem)
    if found is None:
        raise ConfigError([f"{key}: {path}: holds no PEM certificate"])
    try:
        return facts(base64.b64decode(b"".join(found[1].split()), validate=True))
    except (ValueError, binascii.Error) as exc:
        raise ConfigError([f"{key}: {path}: is not a readable X.509 certificate ({exc})"]) from exc


def _context(section: str, files: TlsSettings) -> ssl.SSLContext:
    """The ssl module's secure server defaults, TLS 1.2 at least, HTTP/1.1 by ALPN."""
    cert_key, key_key = f"{section}.tls_cert_file", f"{section}.tls_key_file"
    ca_key, ca = f"{section}.tls_client_ca_file", files.tls_client_ca_file
    if ca:
        _read(ca_key, ca)
    try:  # with cafile given, the system's CAs are not loaded: only this CA's clients pass
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca or None)
    except ssl.SSLError as exc:
        raise ConfigError(
            [f"{ca_key}: {ca}: holds no usable CA certificate ({exc.reason})"]
        ) from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    if ca:
        context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_cert_chain(files.tls_cert_file, files.tls_key_file, password=_no_password)
    except _Encrypted:
        raise ConfigError(
            [f"{key_key}: {files.tls_key_file}: is encrypted; the gate reads an unencrypted key"]
        ) from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            why = f"does not match the certificate of {cert_key}"
        else:  # the certificate parsed (see _leaf), so the key is what OpenSSL refused
            why = f"is not a usable PEM private key ({exc.reason or exc.library or exc})"
        raise ConfigError([f"{key_key}: {files.tls_key_file}: {why}"]) from exc
    return context


def load(section: str, files: TlsSettings, now: float | None = None) -> Certificate:
    """Build a listener's context from its files; ConfigError names the key and the reason."""
    cert_key, path = f"{section}.tls_cert_file", files.tls_cert_file
    for _ in range(_READS):
        pem = _read(cert_key, path)
        _read(f"{section}.tls_key_file", files.tls_key_file)
        serial, not_after = _leaf(cert_key, path, pem)
        context = _context(section, files)
        if _read(cert_key, path) == pem:  # the facts are those of the certificate loaded
            break
    else:
        raise ConfigError([f"{cert_key}: {path}: keeps changing while it is read; try again"])
    if not_after <= (time.time() if now is None else now):
        lapsed = datetime.fromtimestamp(not_after, UTC).isoformat().replace("+00:00", "Z")
        raise ConfigError([f"{cert_key}: {path}: the certificate expired at {lapsed}"])
    return Certificate(context, serial, not_after)


def _sections(settings: Settings) -> dict[str, TlsSettings]:
    """The listeners `gate serve` opens for these settings, by name."""
    sections: dict[str, TlsSettings] = {"proxy": settings.server, "admin": settings.admin}
    if settings.authz.listen or settings.authz.grpc_listen:  # both use the [authz] files
        sections["authz"] = settings.authz
    return sections


def check(settings: Settings) -> list[str]:
    """What keeps the TLS files of these settings from serving, one line per problem."""
    problems: list[str] = []
    for name, files in _sections(settings).items():
        if files.tls_cert_file:
            try:
                load(LISTENERS[name], files)
            except ConfigError as error:
                problems += error.problems
    return problems


class _Listener:
    """One listener's TLS: the context it was opened with, and the newest one to hand out."""

    __slots__ = ("current", "mutual", "name", "opened")

    def __init__(self, name: str, certificate: Certificate, mutual: bool) -> None:
        self.name, self.mutual = name, mutual
        self.opened = self.current = certificate.context
        self.opened.sni_callback = self._pick

    def _pick(self, conn: ssl.SSLObject, _name: str | None, given: ssl.SSLContext) -> None:
        current = self.current
        if current is not given:
            conn.context = current  # this handshake goes on with the newest pair


class Certificates:
    """The TLS listeners of one process: their contexts, rotation, and the expiry gauge."""

    def __init__(self, expiry: Gauge, logger: FilteringBoundLogger) -> None:
        self._expiry = expiry
        self._logger = logger
        self._listeners: dict[str, _Listener | None] = {}  # None: a plain-HTTP listener

    def context(self, name: str, files: TlsSettings) -> ssl.SSLContext | None:
        """The context a listener opens with (None: plain HTTP); ConfigError when unusable."""
        if not files.tls_cert_file:
            self._listeners[name] = None
            return None
        certificate = load(LISTENERS[name], files)
        listener = _Listener(name, certificate, bool(files.tls_client_ca_file))
        self._listeners[name] = listener
        self._loaded(listener, certificate)
        return listener.opened

    def prepare(self, settings: Settings) -> Callable[[], None]:
        """Load every TLS listener's files anew; returns what puts them in use at once.

        ConfigError when a pair is unusable, or when TLS or mutual TLS would be
        turned on or off (the listener was opened with or without it: a restart).
        """
        problems: list[str] = []
        loaded: list[tuple[_Listener, Certificate]] = []
        for name, listener in self._listeners.items():
            section = LISTENERS[name]
            files: TlsSettings = getattr(settings, section)
            if bool(files.tls_cert_file) != (listener is not None):
                problems.append(f"{section}.tls_cert_file: turning TLS on or off needs a restart")
            elif listener is not None and bool(files.tls_client_ca_file) != listener.mutual:
                problems.append(
                    f"{section}.tls_client_ca_file: turning mutual TLS on or off needs a restart"
                )
            elif listener is not None:
                try:
                    loaded.append((listener, load(section, files)))
                except ConfigError as error:
                    problems += error.problems
        if problems:
            raise ConfigError(problems)

        def commit() -> None:
            for listener, certificate in loaded:
                listener.current = certificate.context
                self._loaded(listener, certificate)

        return commit

    def _loaded(self, listener: _Listener, certificate: Certificate) -> None:
        self._expiry.labels(listener.name).set(certificate.not_after)
        not_after = datetime.fromtimestamp(certificate.not_after, UTC)
        self._logger.info(
            "tls_certificate",
            listener=listener.name,
            serial=f"{certificate.serial:x}",
            not_after=not_after.isoformat().replace("+00:00", "Z"),
            mutual=listener.mutual,
        )
