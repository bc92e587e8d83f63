"""What TLS on the listener costs: the gate and nginx, each in plain HTTP and in TLS, one run.

An nginx of its own is the fast upstream (plain HTTP, keep-alive). In front
of it: the gate twice (one process plain, one with server.tls_cert_file and
tls_key_file) and a second nginx with a plain and a TLS server block
(``ssl_session_cache`` and tickets on, keep-alive to the upstream; there is no
upstream TLS, so ``proxy_ssl_session_reuse`` has nothing to reuse). wrk drives
each with keep-alive connections, then with ``Connection: close`` (a TLS
handshake per call; wrk does not resume sessions). CPU is the proxy process's
own (nginx: master and worker) from /proc. Prints a table; asserts nothing.
Needs wrk, nginx and openssl (``scripts/ensure-debian wrk nginx-light``).

    .venv/bin/python bench/tls_bench.py [--seconds 5] [--connections 32]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

UPSTREAM_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/upstream.pid;
error_log {tmp}/upstream.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/u-body;
    proxy_temp_path {tmp}/u-proxy;
    fastcgi_temp_path {tmp}/u-fcgi;
    uwsgi_temp_path {tmp}/u-uwsgi;
    scgi_temp_path {tmp}/u-scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        default_type application/json;
        location / {{ return 200 '{{"id":"sub-1","quantity":10,"status":"active"}}'; }}
    }}
}}
"""
PROXY_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/proxy.pid;
error_log {tmp}/proxy.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/p-body;
    proxy_temp_path {tmp}/p-proxy;
    fastcgi_temp_path {tmp}/p-fcgi;
    uwsgi_temp_path {tmp}/p-uwsgi;
    scgi_temp_path {tmp}/p-scgi;
    keepalive_requests 1000000;
    upstream backend {{ server 127.0.0.1:{upstream}; keepalive 64; }}
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;
    server {{
        listen 127.0.0.1:{plain};
        listen 127.0.0.1:{tls} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""
PATH = "/v1/customers/c0ffee00-1234-4321-abcd-0123456789ab/subscriptions"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """CPU of a process and its direct children (nginx's worker is a child)."""
    pids = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat(int(entry.name))[1]) == pid:
                    pids.append(int(entry.name))
            except (OSError, IndexError):
                continue
    ticks = 0
    for one in pids:
        try:
            fields = _stat(one)
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_ready(url: str) -> None:
    insecure = ssl.create_default_context()
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
    for _ in range(200):
        try:
            urllib.request.urlopen(url, timeout=1, context=insecure).read()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"not ready: {url}")


def wrk(url: str, seconds: int, connections: int, close: bool) -> float:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url]
    if close:
        cmd[1:1] = ["-H", "Connection: close"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        print(f"  (wrk reported errors for {url}:\n{out})")
    found = re.search(r"(\d+) requests in", out)
    assert found is not None, out
    return float(found.group(1))


def measure(pid: int, url: str, args: argparse.Namespace, close: bool) -> tuple[float, float]:
    """(requests per second, CPU microseconds per request) of the process at ``pid``."""
    wrk(url, 1, args.connections, close)  # warm up pools, caches and session caches
    before = cpu_seconds(pid)
    requests = wrk(url, args.seconds, args.connections, close)
    used = cpu_seconds(pid) - before
    return requests / args.seconds, used * 1e6 / requests


def certificate(tmp: Path) -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate for 127.0.0.1, as cert-manager would issue one."""
    cert, key = tmp / "tls.crt", tmp / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
         "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def start_gate(upstream: str, port: int, tls: tuple[Path, Path] | None) -> subprocess.Popen[bytes]:
    admin = free_port()
    env = {
        **os.environ,
        "GATE_UPSTREAM__URL": upstream,
        "GATE_SERVER__LISTEN": f"127.0.0.1:{port}",
        "GATE_ADMIN__LISTEN": f"127.0.0.1:{admin}",
        "GATE_LOG__LEVEL": "warning",
    }
    if tls is not None:
        env["GATE_SERVER__TLS_CERT_FILE"], env["GATE_SERVER__TLS_KEY_FILE"] = map(str, tls)
    process = subprocess.Popen([sys.executable, "-P", "-m", "gate", "serve"], env=env)
    wait_ready(f"http://127.0.0.1:{admin}/readyz")
    return process


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    for tool in ("wrk", "nginx", "openssl"):
        if not shutil.which(tool):
            raise SystemExit("needs wrk, nginx and openssl: scripts/ensure-debian wrk nginx-light")
    tmp = Path(tempfile.mkdtemp(prefix="gate-tls-bench-"))
    cert, key = certificate(tmp)
    upstream_port, nginx_plain, nginx_tls = free_port(), free_port(), free_port()
    gate_plain, gate_tls = free_port(), free_port()
    (tmp / "upstream.conf").write_text(UPSTREAM_CONF.format(tmp=tmp, port=upstream_port))
    ports = {"upstream": upstream_port, "plain": nginx_plain, "tls": nginx_tls}
    (tmp / "proxy.conf").write_text(PROXY_CONF.format(tmp=tmp, cert=cert, key=key, **ports))
    upstream = f"http://127.0.0.1:{upstream_port}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for conf in ("upstream.conf", "proxy.conf"):
            procs.append(subprocess.Popen(["nginx", "-c", str(tmp / conf), "-p", str(tmp)]))
        nginx = procs[1]
        wait_ready(upstream + "/")
        plain = start_gate(upstream, gate_plain, None)
        procs.append(plain)
        tls = start_gate(upstream, gate_tls, (cert, key))
        procs.append(tls)
        targets = [
            ("nginx", nginx.pid, f"http://127.0.0.1:{nginx_plain}", f"https://127.0.0.1:{nginx_tls}"),
            ("gate", plain.pid, f"http://127.0.0.1:{gate_plain}", ""),
            ("gate", tls.pid, "", f"https://127.0.0.1:{gate_tls}"),
        ]  # fmt: skip
        for _, _, http_url, https_url in targets:
            for base in filter(None, (http_url, https_url)):
                wait_ready(base + PATH)
        print(f"wrk -t1 -c{args.connections} -d{args.seconds}s GET {PATH}; upstream: nginx;")
        print("CPU of the proxy process. 'close': Connection: close, one TLS handshake per call.")
        print(f"{'target':<28} {'req/s':>9} {'µs CPU/call':>12} {'TLS costs/call':>15}")
        for close in (False, True):
            figures: dict[tuple[str, str], float] = {}
            for name, pid, http_url, https_url in targets:
                for scheme, url in (("http", http_url), ("https", https_url)):
                    if not url:
                        continue
                    rate, cpu = measure(pid, url + PATH, args, close)
                    figures[(name, scheme)] = cpu
                    cost = ""
                    if scheme == "https":
                        cost = f"{cpu - figures[(name, 'http')]:>+12.1f} µs"
                    label = f"{name} {scheme}{', close' if close else ', keep-alive'}"
                    print(f"{label:<28} {rate:>9.0f} {cpu:>12.1f} {cost:>15}")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
