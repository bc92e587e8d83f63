"""What the bench prints and draws: tables, target checks, the key=value line, the chart."""

from __future__ import annotations

import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

    from proxy_bench import Bench, Results, Sample

__all__ = ["chart", "describe", "header", "machine", "profile", "render"]

TITLES = {
    "reads": "reads: pass-through GET .../subscriptions (not gated)",
    "orders": "orders: gated POST .../orders, warm cache (one customer)",
    "mix": "mix: 90 % reads, 10 % gated orders (warm cache)",
    "cold": "cold: gated POST .../orders, a new customer per call (one lookup each)",
}
LABELS = {
    "direct": "direct (upstream)",
    "nginx": "nginx proxy_pass",
    "envoy": "envoy, 1 worker",
    "minimal": "minimal aiohttp",
    "gate": "gate",
    "gate-pure": "gate, pure Python",
    "nginx+gate": "nginx + gate authz",
    "gate-1w": "gate, 1 worker",
    "gate-2w": "gate, 2 workers",
}
# (key, op, limit, what): the project's targets for the gate (issue 27).
CHECKS = (
    ("reads_vs_nginx", ">=", 0.5, "pass-through reads, req/s vs nginx on one core"),
    ("orders_vs_nginx", ">=", 0.25, "gated orders (warm cache), req/s vs nginx"),
    ("reads_p99_added_ms", "<=", 0.3, "reads, p99 added over direct at 1000 req/s"),
    ("orders_p99_added_ms", "<=", 0.5, "gated orders, p99 added over direct at 1000 req/s"),
    ("authz_mix_vs_nginx", ">=", 0.7, "nginx + gate decision service, 90/10 mix, vs nginx alone"),
)
# Printed under a req/s target: the same comparison in CPU per call (nginx's / the gate's),
# which a load-bound nginx (wrk and the upstream saturating their core) does not understate.
CPU_BESIDE = {"reads_vs_nginx": "reads_cpu_vs_nginx", "orders_vs_nginx": "orders_cpu_vs_nginx"}
# Printed under a p99 target (from --latency-cpus both): the proxy alone on its own CPU.
SPLIT_BESIDE = {
    "reads_p99_added_ms": "reads_p99_added_split_ms",
    "orders_p99_added_ms": "orders_p99_added_split_ms",
}
LATENCY_BUSY = 0.4  # a CPU this busy during a latency run ran more than the bench's work
PLACEMENTS = {
    "paced-same": "every process on one CPU, the proxy beside wrk and the upstream",
    "paced": "the proxy alone on its own CPU, wrk and the upstream on another",
}
_TABLE = ("direct", "nginx", "envoy", "minimal", "gate", "gate-pure")


def _git(checkout: Path) -> str:
    def run(*argv: str) -> str:
        done = subprocess.run(["git", "-C", str(checkout), *argv], capture_output=True, text=True)
        return done.stdout.strip()

    dirty = "+dirty" if run("status", "--porcelain", "--untracked-files=no") else ""
    return (
        f"{run('rev-parse', '--abbrev-ref', 'HEAD')}@{run('rev-parse', '--short', 'HEAD')}{dirty}"
    )


def _version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "?"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else "?"


def machine(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    model = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.machine(),
    )
    if bench.pinned:
        pinning = (
            f"proxy alone on CPU {bench.proxy_cpus}; wrk, the upstream nginx and the "
            f"bench on CPU {bench.load_cpus}"
        )
    else:
        pinning = "none (fewer than 2 CPUs, or --no-pin): every process shares every core"
    return {
        "latency_cpus": bench.latency,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": f"{len(bench.cpus)} x {model}",
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "gate": f"{args.gate_checkout} {_git(args.gate_checkout)}",
        "nginx": _version(["nginx", "-v"]),
        "envoy": _version([str(Path(sys.executable).with_name("envoy")), "--version"]),
        "wrk": _version(["wrk", "-v"]),
        "pinning": pinning,
        "workers_pinning": f"gate-1w / gate-2w: the gate on CPUs {bench.all_cpus} (unpinned), "
        "wrk and the upstream still on their CPU",
        "seconds": args.seconds,
        "repeat": args.repeat,
        "gate_log_level": "info (decision logs to a file)" if args.info_logs else "warning",
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def header(meta: dict[str, Any]) -> str:
    keys = (
        "date",
        "cpu",
        "kernel",
        "python",
        "gate",
        "nginx",
        "envoy",
        "wrk",
        "pinning",
        "gate_log_level",
        "loadavg_at_start",
    )
    lines = [f"{key:>16}: {meta.get(key, '-')}" for key in keys]  # older results: no envoy
    lines.append(
        f"{'method':>16}: {meta['seconds']} s per run, medians of {meta['repeat']}, targets "
        "round-robin per repetition; req/s and CPU with wrk -t1 -c64; latency at a fixed "
        "1000 req/s (wrk -t1 -c10, Lua pacing)"
    )
    kinds = paced_kinds(meta)
    lines.append(f"{'latency':>16}: p50/p99/p99.9 and the targets: {_placement(meta, kinds[0])}")
    if len(kinds) > 1:
        lines.append(f"{'':>16}  'split +dir': p99 added with {PLACEMENTS[kinds[1]]}")
    return "\n".join(lines)


def _placement(meta: dict[str, Any], kind: str) -> str:
    """Where the latency runs of this kind ran: unpinned runs have one placement."""
    if str(meta.get("pinning", "")).startswith("none"):
        return "every process on every CPU (unpinned)"
    return PLACEMENTS[kind]


def paced_kinds(meta: dict[str, Any]) -> tuple[str, ...]:
    """The latency runs' kinds, the one the table and the targets use first.

    Results from before --latency-cpus have "paced" runs alone, the proxy on its own CPU.
    """
    return {"same": ("paced-same",), "both": ("paced-same", "paced")}.get(
        str(meta.get("latency_cpus")), ("paced",)
    )


def describe(sample: Sample, kind: str) -> str:
    errors = f" ERRORS={sample.errors}" if sample.errors else ""
    if kind != "rps":
        late = f" late={sample.late}" if sample.late else ""
        return (
            f"{sample.rps:.0f} req/s p50 {sample.p50_ms:.3f} p99 {sample.p99_ms:.3f} "
            f"p99.9 {sample.p999_ms:.3f} ms{late}{errors}"
        )
    return f"{sample.rps:.0f} req/s {sample.cpu_us:.1f} µs CPU/call{errors}"


# -- the figures ---------------------------------------------------------------


def _added(
    results: Results, target: str, workload: str, base: str = "direct", kind: str = ""
) -> float | None:
    """p99 over the base's, paired per repetition (the runs were back to back), median.

    ``kind``: the latency runs to compare, by default the first of ``paced_kinds``.
    """
    kind = kind or paced_kinds(results.meta)[0]
    mine, theirs = results.get(target, workload, kind), results.get(base, workload, kind)
    clean = results.clean(target, workload, kind) + results.clean(base, workload, kind)
    pairs = [
        a.p99_ms - b.p99_ms for a, b in zip(mine, theirs, strict=False) if a in clean and b in clean
    ]
    return statistics.median(pairs) if pairs else None


def _ratio(results: Results, target: str, base: str, workload: str) -> float | None:
    mine = results.median(target, workload, "rps", "rps")
    theirs = results.median(base, workload, "rps", "rps")
    return mine / theirs if mine and theirs else None


def figures(results: Results) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for workload in ("reads", "orders", "mix", "cold"):
        out[f"{workload}_vs_nginx"] = _ratio(results, "gate", "nginx", workload)
    for workload in ("reads", "orders", "mix", "cold"):
        out[f"{workload}_p99_added_ms"] = _added(results, "gate", workload)
    for workload in ("reads", "orders"):
        out[f"{workload}_p99_over_nginx_ms"] = _added(results, "gate", workload, "nginx")
    for workload in ("reads", "orders"):
        out[f"{workload}_p99_added_split_ms"] = _added(results, "gate", workload, kind="paced")
    for workload in ("reads", "orders"):
        nginx = results.median("nginx", workload, "rps", "cpu_us")
        gate = results.median("gate", workload, "rps", "cpu_us")
        out[f"{workload}_cpu_vs_nginx"] = nginx / gate if nginx and gate else None
    for workload in ("reads", "orders"):
        out[f"envoy_{workload}_vs_nginx"] = _ratio(results, "envoy", "nginx", workload)
        out[f"{workload}_vs_envoy"] = _ratio(results, "gate", "envoy", workload)
    out["envoy_reads_cpu_us"] = results.median("envoy", "reads", "rps", "cpu_us")
    out["reads_vs_minimal"] = _ratio(results, "gate", "minimal", "reads")
    out["orders_vs_minimal"] = _ratio(results, "gate", "minimal", "orders")
    out["reads_cpu_us"] = results.median("gate", "reads", "rps", "cpu_us")
    out["orders_cpu_us"] = results.median("gate", "orders", "rps", "cpu_us")
    out["workers2_vs_1"] = _ratio(results, "gate-2w", "gate-1w", "reads")
    out["authz_mix_vs_nginx"] = _ratio(results, "nginx+gate", "nginx", "mix")
    out["authz_mix_vs_gate"] = _ratio(results, "nginx+gate", "gate", "mix")
    return out


def _f(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _row(results: Results, target: str, workload: str) -> str | None:
    kinds = paced_kinds(results.meta)
    runs = _runs(results, target, workload, ("rps", *kinds))
    if not runs:
        return None
    med, first = results.median, kinds[0]
    rss = max((s.peak_rss for s in runs), default=-1)
    busy = [s.busy for s in results.clean(target, workload, "rps")]
    proxy_cpu, load_cpu = _cores(results)
    busy_p = statistics.median(b.get(proxy_cpu, 0) for b in busy) * 100 if busy else None
    busy_l = statistics.median(b.get(load_cpu, 0) for b in busy) * 100 if busy else None
    notes = _notes(results, target, workload, kinds)
    if target != "direct" and busy_l is not None and busy_l >= 95:
        notes.append("load-bound")  # wrk + upstream saturate their core: req/s a lower bound
    direct = target == "direct"
    added = [None if direct else _added(results, target, workload, kind=k) for k in kinds]
    return (
        f"{LABELS[target]:<18}{_f(med(target, workload, 'rps', 'rps'), ',.0f'):>9}"
        f"{_f(_ratio(results, target, 'nginx', workload), '.2f'):>8}"
        f"{_f(med(target, workload, 'rps', 'cpu_us'), '.1f'):>9}"
        f"{_f(_pct(med(target, workload, 'rps', 'sys_share')), '.0f'):>5}"
        f"{_f(med(target, workload, first, 'p50_ms'), '.3f'):>8}"
        f"{_f(med(target, workload, first, 'p99_ms'), '.3f'):>8}"
        f"{_f(med(target, workload, first, 'p999_ms'), '.3f'):>8}"
        + "".join(f"{_f(a, '+.3f'):>9}" for a in added[:1])
        + "".join(f"{_f(a, '+.3f'):>11}" for a in added[1:])
        + f"{_f(rss / 2**20 if rss >= 0 else None, '.1f'):>8}"
        f"{_f(busy_p, '.0f'):>6}/{_f(busy_l, '.0f'):<4}"
        f" {' '.join(notes)}"
    ).rstrip()


def _runs(results: Results, target: str, workload: str, kinds: tuple[str, ...]) -> list[Sample]:
    """The samples of these kinds, each once (direct's latency run stands for every placement)."""
    return list({id(s): s for k in kinds for s in results.get(target, workload, k)}.values())


def _notes(results: Results, target: str, workload: str, kinds: tuple[str, ...]) -> list[str]:
    """errors, runs left out, late sends and a missed rate, over every run of the cell."""
    runs = _runs(results, target, workload, ("rps", *kinds))
    kept = [s for k in ("rps", *kinds) for s in results.clean(target, workload, k)]
    paced = _runs(results, target, workload, kinds)
    notes = []
    if errors := sum(s.errors for s in runs):
        notes.append(f"errors={errors}")
    if dropped := len(runs) - len({id(s) for s in kept}):
        notes.append(f"{dropped} run(s) with > 1 % errors left out")
    if late := sum(s.late for s in paced):
        notes.append(f"late={late}")
    steady = [s for k in kinds for s in results.clean(target, workload, k)]
    if steady and min(s.rps for s in steady) < 950:
        notes.append(f"paced at {min(s.rps for s in steady):.0f}/s")
    # 1000 req/s keeps a CPU at most ~20 % busy (the gate's orders, wrk and the upstream on
    # one): more means other work shared it during the latency runs, and p99 is suspect
    proxy_cpu, load_cpu = _cores(results)
    alone = kinds[0] == "paced" and target != "direct"  # the proxy's CPU is in the path too
    cpus = {proxy_cpu, load_cpu} if alone else {load_cpu}
    if str(results.meta.get("pinning", "")).startswith("none"):
        cpus = set().union(*(s.busy for s in results.get(target, workload, kinds[0])))
    first = results.clean(target, workload, kinds[0])
    busiest = max((max(s.busy.get(c, 0) for c in cpus) for s in first), default=0)
    if busiest >= LATENCY_BUSY:
        notes.append(f"latency CPU {busiest * 100:.0f}% busy")
    return notes


def _pct(share: float | None) -> float | None:
    return None if share is None else share * 100


def _cores(results: Results) -> tuple[int, int]:
    pinning = str(results.meta.get("pinning", ""))
    words = pinning.split()
    if pinning.startswith("proxy alone on CPU"):
        return int(words[4].rstrip(";")), int(words[-1])
    return 1, 0


def _columns(meta: dict[str, Any]) -> str:
    split = f"{'split +dir':>11}" if len(paced_kinds(meta)) > 1 else ""
    return (
        f"{'target':<18}{'req/s':>9}{'xnginx':>8}{'CPU µs':>9}{'sys%':>5}"
        f"{'p50':>8}{'p99':>8}{'p99.9':>8}{'p99 +dir':>9}{split}{'RSS MB':>8}"
        f"{'busy%':>6}/{'load':<4}"
    )


def render(results: Results) -> str:
    lines = ["", header(results.meta), ""]
    for workload in ("reads", "orders", "mix", "cold"):
        rows = [_row(results, t, workload) for t in (*_TABLE, "nginx+gate")]
        if any(rows):
            lines += [TITLES[workload], _columns(results.meta), *(r for r in rows if r), ""]
    workers = [_row(results, t, "reads") for t in ("gate-1w", "gate-2w")]
    if any(workers):
        lines += ["workers: reads at 64 connections, " + str(results.meta["workers_pinning"])]
        lines += [_columns(results.meta), *(r for r in workers if r), ""]
    lines += _legend(results.meta)
    for note in results.meta.get("restarts") or ():
        lines.append(f"note: {note} (its runs were redone)")
    if profile := results.meta.get("profile"):
        lines += ["", str(profile)]
    values = figures(results)
    lines += ["", *_targets(results.meta, values)]
    lines.append("")
    lines.append(" ".join(f"{k}={_f(v, '.3f' if 'ms' in k else '.2f')}" for k, v in values.items()))
    return "\n".join(lines)


def _targets(meta: dict[str, Any], values: dict[str, float | None]) -> list[str]:
    """PASS/MISS per target; under it, the same comparison another way when it was measured."""
    kinds = paced_kinds(meta)
    lines = [f"targets (the gate; latency with {_placement(meta, kinds[0])}):"]
    for key, op, limit, what in CHECKS:
        value = values[key]
        if value is None:
            lines.append(f"  ----  {what}: not measured in this run")
            continue
        ok = value >= limit if op == ">=" else value <= limit
        lines.append(f"  {'PASS' if ok else 'MISS'}  {what}: {value:.3f} (target {op} {limit})")
        if (cpu := values.get(CPU_BESIDE.get(key, ""))) is not None:
            lines.append(f"        in CPU per call instead (nginx's µs / the gate's): {cpu:.3f}")
        split = values.get(SPLIT_BESIDE.get(key, ""))
        if split is not None and kinds[0] != "paced":
            lines.append(f"        with {PLACEMENTS['paced']} ('split'): {split:.3f}")
    return lines


def _legend(meta: dict[str, Any]) -> list[str]:
    kinds = paced_kinds(meta)
    split = (
        ["  split +dir = the same with the proxy alone on its own CPU (cross-CPU wake-ups);"]
        if len(kinds) > 1
        else []
    )
    where = _placement(meta, kinds[0]).split(",")[0]
    return [
        "columns: req/s = median throughput at 64 connections; xnginx = req/s / nginx's;",
        "  CPU µs = the proxy's CPU (utime+stime of its process tree) per completed call at",
        "  64 connections (direct: the upstream nginx's own); sys% = its kernel share (stime);",
        f"  p50/p99/p99.9 = latency in ms at a fixed 1000 req/s, {where};",
        "  p99 +dir = p99 minus direct's p99, paired per repetition, median;",
        *split,
        "  RSS MB = peak RSS (VmHWM, reset per run) of the proxy's tree, highest run;",
        "  busy%/load = share of the proxy's CPU / the load CPU busy (whole machine) at 64 conns;",
        "  errors = socket errors and non-2xx answers; a run with > 1 % is left out of medians;",
        "  late = paced sends that left > 1 ms after their slot (latency then under-reported);",
        "  load-bound = the load CPU was >= 95 % busy: that target's req/s is a lower bound;",
        "  latency CPU N% busy = a CPU was that busy in a latency run (the bench's own work is",
        "  ~20 % at most): other work shared it, that row's latency figures are suspect",
    ]


# -- the chart -----------------------------------------------------------------


def chart(results: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = [
        w
        for w in ("reads", "orders", "mix", "cold")
        if any(results.get(t, w, "rps") for t in LABELS)
    ]
    meta = results.meta
    targets = [
        t
        for t in (*_TABLE, "nginx+gate")
        if any(results.get(t, w, k) for w in workloads for k in ("rps", *paced_kinds(meta)))
    ]
    if not workloads or not targets:
        return
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    where = "all on one CPU" if paced_kinds(meta)[0] == "paced-same" else "proxy on its own CPU"
    width = 0.8 / len(targets)
    for ax, kind, what, unit in (
        (axes[0], "rps", "rps", "req/s at 64 connections, proxy on one core (log scale)"),
        (axes[1], paced_kinds(meta)[0], "p99_ms", "p99 latency at 1000 req/s, ms, " + where),
    ):
        for i, target in enumerate(targets):
            values = [results.median(target, w, kind, what) or 0.0 for w in workloads]
            xs = [j + (i - (len(targets) - 1) / 2) * width for j in range(len(workloads))]
            bars = ax.bar(xs, values, width, label=LABELS[target])
            for bar, w, value in zip(bars, workloads, values, strict=True):
                text = f"{value:,.0f}" if kind == "rps" else f"{value:.2f}"
                if (
                    target == "gate"
                    and kind == "rps"
                    and (r := _ratio(results, target, "nginx", w))
                ):
                    text += f"\n{r:.2f}x"
                ax.annotate(
                    text,
                    (bar.get_x() + width / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
        if kind == "rps":
            ax.set_yscale("log")
            ax.set_ylim(bottom=1000)
        ax.set_xticks(range(len(workloads)), workloads)
        ax.set_title(unit, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"gate bench, {meta['date']}, {meta['cpu']}; {meta['gate']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- py-spy --------------------------------------------------------------------


def profile(bench: Bench, out: Path) -> str:
    """Sample the gate under load with py-spy; a flame graph per workload and a summary."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return "profile: py-spy not found (pip install py-spy into the bench venv)"
    out.mkdir(parents=True, exist_ok=True)
    gate = bench.alive("gate")
    pid = gate.pid
    seconds = max(3, int(bench.args.seconds))
    lines = [f"profile: py-spy, {seconds} s per workload at 64 connections, gate pid {pid}"]
    for workload in ("reads", "orders", "cold"):
        raw = out / f"gate-{workload}.txt"
        for fmt, path in (("raw", raw), ("flamegraph", out / f"gate-{workload}.svg")):
            spy_argv = [
                spy,
                "record",
                "--pid",
                str(pid),
                "--format",
                fmt,
                "-o",
                str(path),
                "-d",
                str(seconds),
                "--rate",
                "250",
            ]
            load = subprocess.Popen(
                [
                    *(["taskset", "-c", bench.load_cpus] if bench.load_cpus else []),
                    "wrk",
                    "-t1",
                    "-c64",
                    f"-d{seconds + 2}s",
                    "-s",
                    str(bench._script(workload, False)),
                    gate.url(
                        "/v1/customers/x/orders"
                        if workload != "reads"
                        else "/v1/customers/x/subscriptions"
                    ),
                    "--",
                    "0",
                    "7",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                time.sleep(1)
                subprocess.run(spy_argv, capture_output=True, timeout=seconds + 60, check=True)
            finally:
                load.wait(timeout=seconds + 30)
        lines += [f"  {workload}:", *_summary(raw)]
    return "\n".join(lines)


def _summary(raw: Path, top: int = 12) -> list[str]:
    """Top functions by own time and by time including callees, from collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_frame(f) for f in stack.split(";")]
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return ["    no samples"]
    loop = "Runner.run (runners.py)"
    if loop in own:  # no Python frame below it: uvloop's C code and the syscalls it makes
        own["event loop: uvloop C code, epoll, reads (Runner.run)"] = own.pop(loop)
    lines = [f"    {total} samples; own time (the frame on top of the stack):"]
    lines += [f"      {n * 100 / total:5.1f} %  {f}" for f, n in own.most_common(top)]
    lines.append("    including callees (frames under every sample left out):")
    nested = [(f, n) for f, n in inclusive.most_common() if n < total * 0.995]
    lines += [f"      {n * 100 / total:5.1f} %  {f}" for f, n in nested[:top]]
    return lines


def _frame(frame: str) -> str:
    """``name (path/to/file.py:12)`` -> ``name (file.py)``: lines merged."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    parts = where.split("/")
    short = "/".join(parts[-2:]) if "site-packages" in where or "gate" in parts else parts[-1]
    return f"{name} ({short})" if where else name
