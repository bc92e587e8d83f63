"""``gate health``: ask the running gate's admin listener for ``/healthz``, as its config says.

The container's HEALTHCHECK (and any probe that runs a command) calls this
instead of a hard-coded URL, so moving ``admin.listen`` (in the file or with
``GATE_ADMIN__LISTEN``) or turning admin TLS on keeps the probe right:

- the address is ``admin.listen``; a wildcard host (``0.0.0.0``, ``::``) is
  asked on its loopback;
- with ``admin.tls_cert_file`` set the probe speaks TLS. It checks that the
  listener answers, not who it is (it is the gate's own listener on this
  host), so the server certificate is not verified;
- with ``admin.tls_client_ca_file`` set (mutual TLS) it presents a client
  pair: ``--cert``/``--key`` when given, else the admin listener's own pair
  (right when one CA issues both, as cert-manager set-ups usually do).

The answer is one line saying why, and an exit status: 0 healthy, 1 not.
"""

from __future__ import annotations

import http.client
import ipaddress
import ssl
from dataclasses import dataclass

from gate.config import AdminSettings, parse_listen

__all__ = ["Probe", "probe", "target"]

_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1"}


@dataclass(frozen=True, slots=True)
class Probe:
    """What ``gate health`` found: healthy or not, and one line saying why."""

    healthy: bool
    line: str


def target(admin: AdminSettings) -> str:
    """The URL the probe asks: the admin listener's /healthz (wildcards on their loopback)."""
    host, port = parse_listen(admin.listen)
    host = _WILDCARDS.get(host, host)
    with_brackets = f"[{host}]" if _is_v6(host) else host
    scheme = "https" if admin.tls_cert_file else "http"
    return f"{scheme}://{with_brackets}:{port}/healthz"


def probe(admin: AdminSettings, cert: str = "", key: str = "", timeout_s: float = 3.0) -> Probe:
    """GET /healthz once on the admin listener; healthy on 200 only."""
    url = target(admin)
    host, port = parse_listen(admin.listen)
    host = _WILDCARDS.get(host, host)
    try:
        connection = _connection(admin, host, port, cert, key, timeout_s)
    except (OSError, ssl.SSLError) as error:
        return Probe(False, f"unhealthy: cannot use the client certificate: {error}")
    try:
        connection.request("GET", "/healthz", headers={"Connection": "close"})
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException) as error:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        return Probe(False, f"unhealthy: GET {url}: {reason}")
    finally:
        connection.close()
    if status != 200:
        return Probe(False, f"unhealthy: GET {url} answered {status}")
    return Probe(True, f"healthy: GET {url} answered 200")


def _connection(
    admin: AdminSettings, host: str, port: int, cert: str, key: str, timeout_s: float
) -> http.client.HTTPConnection:
    if not admin.tls_cert_file:
        return http.client.HTTPConnection(host, port, timeout=timeout_s)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # our own listener on this host: is it up, not who
    if admin.tls_client_ca_file:
        if cert:
            context.load_cert_chain(cert, key or None)
        else:
            context.load_cert_chain(admin.tls_cert_file, admin.tls_key_file)
    return http.client.HTTPSConnection(host, port, timeout=timeout_s, context=context)


def _is_v6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False
