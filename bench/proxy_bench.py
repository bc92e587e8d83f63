"""Throughput and CPU per request of the gate against a minimal aiohttp proxy and nginx.

Runs nginx as a fast upstream (it answers agreements with an MCA, so gated
calls are cache hits after the first), then drives each proxy with wrk and
reads the proxy process's own CPU time from /proc. Prints a table; asserts
nothing. Needs wrk and nginx (``apt-get install wrk nginx-light``).

    .venv/bin/python bench/proxy_bench.py [--seconds 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOKEN = "eyJhbGciOiAibm9uZSJ9.eyJ0aWQiOiAiMTExMTExMTEtYWFhYS00YWFhLThhYWEtMTExMTExMTExMTExIn0.sig"
NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream backend {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{upstream_port};
        default_type application/json;
        location ~ /agreements$ {{
            return 200 '{{"totalCount":1,"items":[{{"type":"MicrosoftCloudAgreement"}}]}}';
        }}
        location / {{ return 200 '{{"id":"sub-1","quantity":10,"status":"active"}}'; }}
    }}
    server {{
        listen 127.0.0.1:{proxy_port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""
POST_LUA = """
wrk.method = "POST"
wrk.body = '{"lineItems":[{"lineItemNumber":0,"offerId":"X","quantity":1}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
"""


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
        fields = _stat(one)
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_ready(url: str) -> None:
    for _ in range(200):
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"not ready: {url}")


def wrk(url: str, seconds: int, connections: int, script: Path | None) -> float:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url]
    if script:
        cmd[1:1] = ["-s", str(script)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"non-2xx answers from {url}:\n{out}")
    return float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]


def measure(name: str, pid: int, url: str, args: argparse.Namespace, script: Path | None) -> None:
    wrk(url, 1, args.connections, script)  # warm up pools and caches
    before = cpu_seconds(pid)
    requests = wrk(url, args.seconds, args.connections, script)
    used = cpu_seconds(pid) - before
    print(
        f"{name:<34} {requests / args.seconds:>9.0f} req/s {used * 1e6 / requests:>8.1f} µs CPU/req"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if not shutil.which("wrk") or not shutil.which("nginx"):
        raise SystemExit("needs wrk and nginx: apt-get install wrk nginx-light")
    tmp = Path(tempfile.mkdtemp(prefix="gate-bench-"))
    upstream_port, nginx_proxy_port = free_port(), free_port()
    (tmp / "nginx.conf").write_text(
        NGINX_CONF.format(tmp=tmp, upstream_port=upstream_port, proxy_port=nginx_proxy_port)
    )
    (tmp / "post.lua").write_text(POST_LUA % TOKEN)
    upstream = f"http://127.0.0.1:{upstream_port}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        nginx = subprocess.Popen(["nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp)])
        procs.append(nginx)
        wait_ready(upstream + "/")
        gate_port, admin_port, minimal_port = free_port(), free_port(), free_port()
        env = {
            **os.environ,
            "GATE_UPSTREAM__URL": upstream,
            "GATE_SERVER__LISTEN": f"127.0.0.1:{gate_port}",
            "GATE_ADMIN__LISTEN": f"127.0.0.1:{admin_port}",
            "GATE_LOG__LEVEL": "warning",
        }
        gate = subprocess.Popen([sys.executable, "-m", "gate", "serve"], env=env)
        minimal = subprocess.Popen(
            [sys.executable, str(HERE / "minimal_proxy.py"), str(minimal_port), upstream]
        )
        procs += [gate, minimal]
        path = "/v1/customers/c0ffee00-1234-4321-abcd-0123456789ab/subscriptions"
        order = "/v1/customers/c0ffee00-1234-4321-abcd-0123456789ab/orders"
        for port in (gate_port, minimal_port, nginx_proxy_port):
            wait_ready(f"http://127.0.0.1:{port}{path}")
        print(f"wrk -t1 -c{args.connections} -d{args.seconds}s; upstream: nginx; CPU of the proxy")
        measure("nginx proxy_pass, GET", nginx.pid, f"http://127.0.0.1:{nginx_proxy_port}{path}",
                args, None)  # fmt: skip
        measure("minimal aiohttp proxy, GET", minimal.pid,
                f"http://127.0.0.1:{minimal_port}{path}", args, None)  # fmt: skip
        measure("minimal aiohttp proxy, POST order", minimal.pid,
                f"http://127.0.0.1:{minimal_port}{order}", args, tmp / "post.lua")  # fmt: skip
        measure("gate, GET pass-through", gate.pid, f"http://127.0.0.1:{gate_port}{path}",
                args, None)  # fmt: skip
        measure("gate, POST order (cache hit)", gate.pid, f"http://127.0.0.1:{gate_port}{order}",
                args, tmp / "post.lua")  # fmt: skip
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
