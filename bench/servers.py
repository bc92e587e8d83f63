"""The bench's servers and what it reads about them from /proc.

Every server binds 127.0.0.1 on a free port, is started pinned (``taskset``)
when the machine has cores to spare, and is stopped by its PID. CPU and peak
RSS are read for a whole process tree: nginx's master and worker, the gate's
parent and its ``server.workers`` children.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ENVOY_PROXY_CONF",
    "NGINX_PROXY_CONF",
    "NGINX_UPSTREAM_CONF",
    "CoreClock",
    "Server",
    "free_port",
    "pin_tree",
    "tree_cpu_seconds",
    "tree_peak_rss",
    "tree_pids",
    "wait_ready",
]

_TICK = os.sysconf("SC_CLK_TCK")

# The upstream answers every call from memory. Agreements list an MCA for any customer, so
# the gate's first lookup for a pair confirms it (and each cold-cache call costs one lookup).
NGINX_UPSTREAM_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/upstream.pid;
error_log {tmp}/upstream-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_body_temp_path {tmp}/u-body;
    proxy_temp_path {tmp}/u-proxy;
    fastcgi_temp_path {tmp}/u-fcgi;
    uwsgi_temp_path {tmp}/u-uwsgi;
    scgi_temp_path {tmp}/u-scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        default_type application/json;
        location ~ /agreements$ {{
            return 200 '{{"totalCount":1,"items":[{{"type":"MicrosoftCloudAgreement"}}]}}';
        }}
        location / {{ return 200 '{{"id":"sub-1","quantity":10,"status":"active"}}'; }}
    }}
}}
"""

# nginx as the reverse proxy to beat: one worker, HTTP/1.1 keep-alive to the upstream.
NGINX_PROXY_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/proxy.pid;
error_log {tmp}/proxy-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_body_temp_path {tmp}/p-body;
    proxy_temp_path {tmp}/p-proxy;
    fastcgi_temp_path {tmp}/p-fcgi;
    uwsgi_temp_path {tmp}/p-uwsgi;
    scgi_temp_path {tmp}/p-scgi;
    upstream backend {{
        server 127.0.0.1:{upstream_port};
        keepalive 128;
        keepalive_requests 10000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""

# Envoy as the peer a user would pick: a plain HTTP/1.1 proxy (the defaults: request ids,
# stats, x-envoy-* headers), run with --concurrency 1 (one worker thread), keep-alive to the
# upstream by its own pool. No admin listener: nothing but the proxy port is opened.
ENVOY_PROXY_CONF = """
static_resources:
  listeners:
    - name: proxy
      address:
        socket_address: {{ address: 127.0.0.1, port_value: {port} }}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: proxy
                codec_type: HTTP1
                route_config:
                  virtual_hosts:
                    - name: upstream
                      domains: ["*"]
                      routes:
                        - match: {{ prefix: / }}
                          route: {{ cluster: upstream }}
                http_filters:
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
    - name: upstream
      type: STATIC
      connect_timeout: 5s
      load_assignment:
        cluster_name: upstream
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address: {{ address: 127.0.0.1, port_value: {upstream_port} }}
"""  # noqa: E501 - the type URL is one YAML token


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    """Poll ``url`` until it answers 2xx; fail if the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                answer.read()
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} not ready after {timeout:.0f} s: {url}")


@dataclass
class Server:
    """One started process, its log file, and how to stop it."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int
    stop_timeout: float = 10.0
    extra: dict[str, int] = field(default_factory=dict)
    also: list[Server] = field(default_factory=list)  # measured with it (nginx+gate's gate)

    @classmethod
    def start(
        cls, name: str, argv: Sequence[str], *, cpus: str | None, log: Path, port: int, **kw: object
    ) -> Server:
        cmd = [*(["taskset", "-c", cpus] if cpus else []), *argv]
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, **kw)  # type: ignore[call-overload]
        return cls(name, proc, log, port)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            for pid in reversed(tree_pids(self.pid)):  # children first, then the parent
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (field 3 onwards)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def tree_pids(root: int) -> list[int]:
    """The process and every live descendant, parents before children."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    found, todo = [], [root]
    while todo and len(found) < 10_000:  # bounded: a process tree this size is a bug
        pid = todo.pop(0)
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def pin_tree(root: int, cpus: str) -> None:
    """Move every thread of the process and its descendants onto ``cpus`` ("0" or "0,1").

    Per thread, because sched_setaffinity on a PID moves that thread alone; threads made
    later inherit their creator's set. The latency runs use it to put a running proxy
    beside wrk and the upstream, then back, without restarting it.
    """
    wanted = {int(cpu) for cpu in cpus.split(",")}
    for pid in tree_pids(root):
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError):  # a thread that ended meanwhile
                    os.sched_setaffinity(int(task.name), wanted)


def tree_cpu_seconds(root: int) -> tuple[float, float]:
    """(utime, stime) of the process and its live descendants (threads included), seconds."""
    user = system = 0
    for pid in tree_pids(root):
        with contextlib.suppress(OSError, IndexError):
            fields = _stat(pid)
            user += int(fields[11])
            system += int(fields[12])
    return user / _TICK, system / _TICK


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def tree_peak_rss(root: int, *, reset: bool = False) -> int:
    """Sum of VmHWM (peak RSS) over the tree, in bytes; ``reset`` restarts the peaks.

    Writing 5 to /proc/PID/clear_refs sets VmHWM back to the current RSS, so a
    peak can be read per run. Returns -1 when a reset was refused (then the
    peak is the process's since it started).
    """
    total = 0
    for pid in tree_pids(root):
        try:
            if reset:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            total += _status_kb(pid, "VmHWM") * 1024
        except PermissionError:
            return -1
        except OSError:
            continue
    return total


class CoreClock:
    """Busy share of each CPU between two reads of /proc/stat."""

    def __init__(self) -> None:
        self._last = self._read()

    @staticmethod
    def _read() -> dict[int, tuple[int, int]]:
        cores: dict[int, tuple[int, int]] = {}
        for line in Path("/proc/stat").read_text().splitlines():
            name, *values = line.split()
            if name.startswith("cpu") and name != "cpu":
                ticks = [int(v) for v in values]
                idle = ticks[3] + ticks[4]  # idle + iowait
                cores[int(name[3:])] = (sum(ticks[:8]), idle)
        return cores

    def busy(self) -> dict[int, float]:
        """Busy fraction of each CPU since the last call."""
        now = self._read()
        shares = {}
        for core, (total, idle) in now.items():
            last_total, last_idle = self._last.get(core, (0, 0))
            span = total - last_total
            shares[core] = 1 - (idle - last_idle) / span if span else 0.0
        self._last = now
        return shares
