"""Certificates made by the tests (trustme): CAs, server and client pairs written to files."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trustme
from cryptography import x509


@dataclass
class Pair:
    """A certificate and its key as files, with the facts a test compares against."""

    cert: Path
    key: Path
    leaf: trustme.LeafCert

    @property
    def x509(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.leaf.cert_chain_pems[0].bytes())

    @property
    def serial(self) -> int:
        return self.x509.serial_number

    @property
    def not_after(self) -> float:
        return self.x509.not_valid_after_utc.timestamp()

    def toml(self, ca: Path | None = None) -> str:
        """The [server]/[admin]/[authz] keys that serve this pair (and verify clients by ``ca``)."""
        lines = f'tls_cert_file = "{self.cert}"\ntls_key_file = "{self.key}"\n'
        return lines + (f'tls_client_ca_file = "{ca}"\n' if ca else "")

    def settings(self, ca: Path | None = None) -> dict[str, str]:
        keys = {"tls_cert_file": str(self.cert), "tls_key_file": str(self.key)}
        return keys | ({"tls_client_ca_file": str(ca)} if ca else {})

    def write_over(self, other: Pair) -> None:
        """Replace this pair's files with ``other``'s, in place, as cert-manager does."""
        self.cert.write_bytes(other.cert.read_bytes())
        self.key.write_bytes(other.key.read_bytes())


class Authority:
    """A CA that issues pairs into a folder; ``ca_file`` is its certificate as PEM."""

    def __init__(self, folder: Path, name: str = "ca") -> None:
        self.ca = trustme.CA(organization_name=name)
        self.folder = folder
        self.name = name
        self.ca_file = folder / f"{name}.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self._issued = 0

    def issue(self, *identities: str, days: float = 30, ago: float = 1) -> Pair:
        """A pair valid from ``ago`` days back for ``days`` days from now (negative: lapsed)."""
        self._issued += 1
        now = datetime.now(UTC)
        leaf = self.ca.issue_cert(
            *(identities or ("127.0.0.1", "localhost")),
            not_before=now - timedelta(days=ago),
            not_after=now + timedelta(days=days),
        )
        stem = self.folder / f"{self.name}-{self._issued}"
        cert, key = stem.with_suffix(".crt"), stem.with_suffix(".key")
        for blob in leaf.cert_chain_pems:
            blob.write_to_path(str(cert), append=True)
        leaf.private_key_pem.write_to_path(str(key))
        return Pair(cert, key, leaf)

    def client_context(self, client: Pair | None = None) -> ssl.SSLContext:
        """A client that trusts this CA (and presents ``client`` when given)."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        if client is not None:
            context.load_cert_chain(client.cert, client.key)
        return context


def peer_serial(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> int:
    """The serial number of the certificate the server presented on a connection."""
    der = ssl_object.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number
