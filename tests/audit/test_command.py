"""`gate audit` as a user runs it: the installed console script, its exit codes and output."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from gate.sandbox import MCA, make_token
from tests.conftest import Upstream
from tests.support import CONTACT_EMAIL, GATE_COMMAND, PARTNER_A

_BOUND_S = 120.0


@dataclass
class Ran:
    code: int
    out: str
    err: str


async def _run(*argv: str) -> Ran:
    """Run a command to its end (stopped by its PID if it outlives the bound)."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(_BOUND_S):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


def _config(directory: Path, url: str) -> str:
    path = directory / "gate.toml"
    path.write_text(f'[upstream]\nurl = "{url}"\n', encoding="utf-8")
    return str(path)


def _token(directory: Path, text: str, name: str = "token") -> str:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return str(path)


async def test_exit_0_when_every_customer_is_confirmed(upstream: Upstream, tmp_path: Path) -> None:
    """Exit 0; rows on stdout; no progress bar when stderr is not a terminal."""
    for customer in upstream.sandbox.listing.add_many(PARTNER_A, 150):
        upstream.sandbox.accept(PARTNER_A, customer, MCA)
    token = make_token(PARTNER_A)
    ran = await _run(
        *GATE_COMMAND, "audit", "--config", _config(tmp_path, upstream.url),
        "--token-file", _token(tmp_path, token),
    )  # fmt: skip
    assert ran.code == 0, ran.err
    rows = list(csv.DictReader(io.StringIO(ran.out)))
    assert len(rows) == 150 and {row["state"] for row in rows} == {"confirmed"}
    assert ran.err.startswith("gate audit: partner ")
    assert "150 customers: 150 confirmed, 0 not_confirmed, 0 unknown" in ran.err
    assert "\r" not in ran.err and "it/s" not in ran.err and "customers/s" not in ran.err
    assert token not in ran.out + ran.err


async def test_exit_1_when_some_are_not(upstream: Upstream, tmp_path: Path) -> None:
    """Exit 1 when a customer is not confirmed; no contact in the output."""
    upstream.sandbox.listing.add_many(PARTNER_A, 3)
    ran = await _run(
        *GATE_COMMAND, "audit", "--config", _config(tmp_path, upstream.url),
        "--token-file", _token(tmp_path, make_token(PARTNER_A)), "--format", "json",
    )  # fmt: skip
    assert ran.code == 1
    assert "3 not_confirmed" in ran.err and '"reason": "no_agreement"' in ran.out
    assert CONTACT_EMAIL not in ran.out + ran.err and "Hopper" not in ran.out + ran.err


async def test_exit_2_when_it_cannot_run(upstream: Upstream, tmp_path: Path) -> None:
    """Exit 2 with a line saying why: no token file, an empty one, 401 on the list (an
    expired token), an unreachable upstream; the token is never printed."""
    config = _config(tmp_path, upstream.url)
    token = make_token(PARTNER_A)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    cases = [
        (["--token-file", str(tmp_path / "missing")], "cannot read"),
        (["--token-file", _token(tmp_path, "  \n", "empty")], "is empty"),
        (["--token-file", _token(tmp_path, make_token(PARTNER_A, exp=1), "expired")], "(401)"),
        (["--token-file", _token(tmp_path, token)], "cannot reach the upstream"),
    ]
    for n, (args, why) in enumerate(cases):
        if why.startswith("cannot reach"):
            args = [*args, "--config", _config(tmp_path, closed)]
        else:
            args = [*args, "--config", config]
        ran = await _run(*GATE_COMMAND, "audit", *args)
        assert ran.code == 2, (n, ran.err)
        assert ran.err.startswith("gate audit: could not run: ") and why in ran.err, ran.err
        assert token not in ran.err and ran.out == ""


_TRACED = """
import sys, tracemalloc
import gate.audit.command, gate.cli  # imported before tracing: the run itself is measured
tracemalloc.start()
code = gate.cli.main(sys.argv[1:])
sys.stderr.write(f"traced peak: {tracemalloc.get_traced_memory()[1]}\\n")
sys.exit(code)
"""


async def _peak(upstream: Upstream, directory: Path, customers: int) -> int:
    sandbox = upstream.sandbox
    sandbox.listing.customers.clear()
    sandbox.knobs.agreements_delay_s = 0.001  # each answer yields: lookups overlap
    for customer in sandbox.listing.add_many(PARTNER_A, customers):
        sandbox.accept(PARTNER_A, customer, MCA)
    out = directory / f"report-{customers}.csv"
    ran = await _run(
        sys.executable, "-c", _TRACED, "audit", "--config", _config(directory, upstream.url),
        "--token-file", _token(directory, make_token(PARTNER_A)), "--out", str(out),
    )  # fmt: skip
    assert ran.code == 0, ran.err
    assert f"{customers} customers: {customers} confirmed" in ran.err
    assert len(out.read_text(encoding="utf-8").splitlines()) == customers + 1
    match = re.search(r"traced peak: (\d+)", ran.err)
    assert match is not None
    return int(match.group(1))


async def test_a_large_partner_in_bounded_memory_and_concurrency(
    upstream: Upstream, tmp_path: Path
) -> None:
    """Thousands of customers: at most 16 lookups at once (the default), and the memory a
    customer adds is no more than the id remembered to skip repeats: rows are not held."""
    small, large = 300, 3000
    small_peak = await _peak(upstream, tmp_path, small)
    upstream.sandbox.agreements_peak = 0
    large_peak = await _peak(upstream, tmp_path, large)
    assert 1 < upstream.sandbox.agreements_peak <= 16
    per_customer = (large_peak - small_peak) / (large - small)
    print(
        f"traced peak: {small} -> {small_peak}, {large} -> {large_peak}: "
        f"{per_customer:.0f} B/customer"
    )
    assert per_customer < 400, (small_peak, large_peak)  # a Row alone would be ~600 bytes
