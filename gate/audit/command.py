"""``gate audit``: the command around ``gate.audit.run.audit``.

Reads the token file, opens the report (``--out FILE`` is written to
``FILE.partial`` and renamed when the run completes, so a broken run never
leaves a report that looks whole), joins the shared tier for ``--warm``,
runs the audit with a progress bar when stderr is a terminal, and prints
the summary on stderr. Exit 0: every customer confirmed; 1: some are not,
or unknown; 2: it could not run, with a line that says why (never the token).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

from gate import __version__
from gate.acceptance.cache import PairCache
from gate.acceptance.shared import SharedTier
from gate.audit.customers import ListError
from gate.audit.progress import Progress
from gate.audit.report import writer_for
from gate.audit.run import Plan, Result, audit
from gate.config import Settings, mask_url, read_token_file
from gate.logs import make_logger
from gate.metrics import Metrics

__all__ = ["DEFAULT_CONCURRENCY", "AuditArgs", "run_audit_command"]

DEFAULT_CONCURRENCY = 16  # capped by acceptance.max_concurrent_lookups


@dataclass(frozen=True, slots=True)
class AuditArgs:
    token_file: str
    out: str | None = None
    format: Literal["csv", "json"] = "csv"
    concurrency: int | None = None
    warm: bool = False


class _CannotRun(Exception):
    """The audit cannot start or finish: exit 2 with this message."""


async def run_audit_command(
    settings: Settings, args: AuditArgs, stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr
) -> int:
    try:
        plan = _plan(settings, args)
        shared = await _shared(settings, stderr) if args.warm else None
        try:
            with _report(args.out, stdout) as out:
                result = await _audit(plan, args, out, stderr, shared)
        finally:
            if shared is not None:
                await shared.close()
    except _CannotRun as error:
        stderr.write(f"gate audit: could not run: {error}\n")
        return 2
    _summarise(plan, args, result, stderr)
    return result.summary.exit_code()


def _plan(settings: Settings, args: AuditArgs) -> Plan:
    path = Path(args.token_file)
    try:
        empty = path.is_file() and not path.read_bytes().strip()
    except OSError:
        empty = False  # read_token_file says why
    if empty:
        raise _CannotRun(f"{str(path)!r} is empty: it must hold the partner's App+User token")
    try:
        token, partner = read_token_file(path)
    except ValueError as error:
        raise _CannotRun(str(error)) from None
    if args.warm and not settings.acceptance.shared_url:
        raise _CannotRun("--warm needs acceptance.shared_url (the shared tier to warm)")
    limit = settings.acceptance.max_concurrent_lookups
    concurrency = args.concurrency or min(DEFAULT_CONCURRENCY, limit)
    return Plan(settings, token, partner, concurrency)


async def _shared(settings: Settings, stderr: TextIO) -> SharedTier:
    acceptance = settings.acceptance
    logger = make_logger("warning", "console", stderr)  # says when Redis is unreachable
    shared = SharedTier(acceptance, Metrics(__version__), logger)
    cache = PairCache(
        1,  # the subscriber's events land here; the audit reads nothing from it
        positive_ttl_s=acceptance.positive_ttl_s,
        negative_ttl_s=acceptance.negative_ttl_s,
        stale_if_error_s=0,
        clock=time.monotonic,
        wall=time.time,
    )
    await shared.start(cache)
    return shared


@contextlib.contextmanager
def _report(out: str | None, stdout: TextIO) -> Iterator[TextIO]:
    """stdout, or ``out`` written whole: through ``out.partial``, renamed when done."""
    if out is None:
        yield stdout
        return
    final = Path(out)
    partial = final.with_name(f"{final.name}.partial")
    try:
        stream = partial.open("w", encoding="utf-8", newline="")
    except OSError as error:
        raise _CannotRun(f"cannot write {str(partial)!r}: {error.strerror}") from None
    try:
        with stream:
            yield stream
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, final)


async def _audit(
    plan: Plan, args: AuditArgs, out: TextIO, stderr: TextIO, shared: SharedTier | None
) -> Result:
    writer = writer_for(args.format, out)
    progress = Progress.on(stderr)
    try:
        result = await audit(plan, writer, progress, shared)
    except ListError as error:
        url = mask_url(plan.settings.upstream.url)
        raise _CannotRun(f"{error} (upstream {url})") from None
    finally:
        progress.close()
    writer.close()
    return result


def _summarise(plan: Plan, args: AuditArgs, result: Result, stderr: TextIO) -> None:
    lines = [
        f"gate audit: partner {plan.partner}, {plan.concurrency} lookups at once",
        *result.summary.lines(),
    ]
    if result.throttled:
        lines.append(f"throttled: {result.throttled} lookups answered 429, asked again after")
    if args.warm:
        lines.append(f"warmed the shared tier: {result.warmed} answers written")
        if result.not_warmed:
            lines.append(f"  {result.not_warmed} not written: the shared tier was unreachable")
    lines.append(f"MS-CorrelationId of its lookups: {result.correlation}")
    if args.out:
        lines.append(f"report: {args.out} ({args.format})")
    stderr.write("".join(line + "\n" for line in lines))
