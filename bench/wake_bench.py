"""What a hop between two CPUs costs on this machine, without any proxy.

Two processes play ping-pong with one byte, over a Unix socketpair or a loopback TCP
connection (``TCP_NODELAY``), either both on one CPU or one on each of two CPUs, and
either paced (one exchange per millisecond, the CPUs idle in between, as in the bench's
1000 req/s latency runs) or back to back. It prints the round trip's p50/p99/p99.9 in
µs per case. A round trip is two wake-ups: on one CPU each is a context switch; on two
CPUs each lands on a CPU that went idle, which a VM pays for with an inter-processor
interrupt to a halted vCPU (an exit to the hypervisor and a host thread woken).
That cost, times the hops a proxy adds, is what ``bench/run``'s ``split`` latency
placement charges to every proxy and not to ``direct`` (bench/README.md, "How it
measures").

    .venv/bin/python bench/wake_bench.py [--count 3000] [--cpus 0,1]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time


def _pair(transport: str) -> tuple[socket.socket, socket.socket]:
    if transport == "unix":
        return socket.socketpair()
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
    for sock in (client, peer):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client, peer


def _echo(sock: socket.socket, cpu: int) -> None:
    """The child: answer each byte until the parent closes its end."""
    os.sched_setaffinity(0, {cpu})
    while data := sock.recv(1):
        sock.sendall(data)


def _ping(sock: socket.socket, count: int, gap_s: float) -> list[float]:
    """Round trips in µs; with a gap, each exchange waits for its slot (the CPUs go idle)."""
    times = []
    slot = time.monotonic()
    for _ in range(count):
        if gap_s:
            slot += gap_s
            if (wait := slot - time.monotonic()) > 0:
                time.sleep(wait)
        start = time.perf_counter_ns()
        sock.sendall(b"x")
        sock.recv(1)
        times.append((time.perf_counter_ns() - start) / 1000)
    return times


def run(transport: str, mine: int, theirs: int, count: int, gap_s: float) -> list[float]:
    """One case: a forked echo child on CPU ``theirs``, this process on CPU ``mine``."""
    here, there = _pair(transport)
    pid = os.fork()
    if pid == 0:  # the child
        here.close()
        try:
            _echo(there, theirs)
        finally:
            os._exit(0)
    there.close()
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {mine})
        _ping(here, 200, gap_s)  # warm-up
        return _ping(here, count, gap_s)
    finally:
        os.sched_setaffinity(0, before)
        here.close()
        os.waitpid(pid, 0)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=3000, help="exchanges per case")
    parser.add_argument("--cpus", default="0,1", help="the two CPUs (default 0,1)")
    parser.add_argument("--transport", choices=("unix", "tcp", "both"), default="both")
    args = parser.parse_args(argv)
    first, second = (int(c) for c in args.cpus.split(","))
    transports = ("unix", "tcp") if args.transport == "both" else (args.transport,)
    print(f"{'transport':<10}{'placement':<11}{'pacing':<14}{'p50 µs':>8}{'p99 µs':>8}"
          f"{'p99.9 µs':>10}{'mean µs':>9}")  # fmt: skip
    for transport in transports:
        for placement, other in (("same CPU", first), ("two CPUs", second)):
            for pacing, gap in (("1 per ms", 0.001), ("back to back", 0.0)):
                rtt = run(transport, first, other, args.count, gap)
                print(
                    f"{transport:<10}{placement:<11}{pacing:<14}{_pct(rtt, 50):>8.1f}"
                    f"{_pct(rtt, 99):>8.1f}{_pct(rtt, 99.9):>10.1f}{statistics.fmean(rtt):>9.1f}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
