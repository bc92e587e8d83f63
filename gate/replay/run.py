"""``gate replay``: read decision logs, re-decide each gated call, report what changes.

Semantics (README "Tuning policy"):

- Every ``decision`` and ``not_gated`` line is one gated call; every other
  line (the gate's other events, foreign JSON, garbage, truncated or
  non-UTF-8 lines, decision lines missing a needed field) is counted and
  skipped.
- The old outcome is the logged one, or with ``--against OLD`` the outcome
  re-decided under OLD; the new one is re-decided under NEW
  (``gate.replay.redecide``): classification, exemptions, body rules, mode,
  enforcement date (against the logged timestamp), rollout share and
  per-partner overrides come from the config, the acceptance state and body
  facts from the log. Where the log lacks what the config needs, the
  outcome is ``needs-lookup``, never a guess.
- Exit status: 0 when no decision changes, 1 when some do, 2 on bad input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import BinaryIO, TextIO

from gate.replay.logline import LoggedCall, read_line
from gate.replay.redecide import Outcome, as_logged, redecide
from gate.replay.report import Tally, render_json, render_text
from gate.replay.source import Progress, SourceError, open_sources
from gate.runtime import Runtime

__all__ = ["replay", "tally_logs"]

_CHECK_EVERY = 4096  # lines between progress updates


def tally_logs(
    names: Sequence[str],
    new: Runtime,
    old: Runtime | None,
    progress_stream: TextIO,
    stdin: BinaryIO | None = None,
) -> Tally:
    """Replay every named log into one Tally; SourceError when one cannot be read."""
    tally = Tally()
    # The logging gate's subscription_edits is known only when OLD is given (taken
    # as the config the log was written under); otherwise the default is assumed.
    compared = old.seat_changes_only if old is not None else True
    with open_sources(names, stdin) as sources:
        sizes = [source.size for source in sources]
        total = None if None in sizes else sum(size or 0 for size in sizes)
        progress = Progress(progress_stream, total)
        done = 0
        try:
            for source in sources:
                for count, raw in enumerate(source.lines(), 1):
                    call = read_line(raw)
                    if isinstance(call, LoggedCall):
                        new_outcome = redecide(call, new, compared=compared)
                        tally.add(call, _old(call, old, compared), new_outcome)
                    else:
                        tally.skip(call)
                    if count % _CHECK_EVERY == 0:
                        progress.update(done + source.position(), tally.lines)
                done += source.size or 0
        finally:
            progress.finish()
    return tally


def _old(call: LoggedCall, old: Runtime | None, compared: bool) -> Outcome:
    return as_logged(call) if old is None else redecide(call, old, compared=compared)


def replay(
    names: Sequence[str],
    new: Runtime,
    old: Runtime | None,
    labels: tuple[str, str | None],
    *,
    as_json: bool,
    out: TextIO,
    err: TextIO,
    stdin: BinaryIO | None = None,
) -> int:
    """Run a replay and write its report; the exit status of ``gate replay``."""
    try:
        tally = tally_logs(names, new, old, err, stdin)
    except SourceError as error:
        err.write(f"gate replay: {error}\n")
        return 2
    render = render_json if as_json else render_text
    out.write(render(tally, *labels))
    return 1 if tally.changed else 0
