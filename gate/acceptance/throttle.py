"""Partner Center throttling: which partners answered 429, and until when no lookup is made.

Partner Center throttles per partner and says for how long in ``Retry-After``
(seconds, or an HTTP date). A lookup answered 429 holds back every further
lookup for that partner until then (DESIGN §2), so a storm of gated calls
never becomes a storm of lookups. The memory is bounded: partner ids come
from tokens the gate does not verify, so at most ``limit`` partners are held
at once (the soonest to expire go first), and no hold lasts longer than
``MAX_HOLD_S`` whatever the upstream says.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from email.utils import parsedate_to_datetime

__all__ = ["MAX_HOLD_S", "Throttle", "asked_wait", "retry_after_s"]

MAX_HOLD_S = 3600.0  # a Retry-After beyond an hour is a broken upstream, not a plan
_LIMIT = 4096  # partners held back at once


def retry_after_s(value: str | None, wall: float) -> float | None:
    """Seconds a ``Retry-After`` value asks for (delta-seconds or HTTP date), None if unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - wall)


def asked_wait(headers: Iterable[tuple[bytes, bytes]], wall: float) -> float | None:
    """Seconds an answer's ``Retry-After`` header asks for, None when it has none readable."""
    value = next((v for n, v in headers if n.lower() == b"retry-after"), None)
    return retry_after_s(value.decode("latin-1") if value is not None else None, wall)


class Throttle:
    """Per-partner "throttled until" times on the monotonic clock."""

    __slots__ = ("_clock", "_limit", "_until")

    def __init__(self, *, limit: int = _LIMIT, clock: Callable[[], float] = time.monotonic) -> None:
        self._until: dict[str, float] = {}
        self._limit = limit
        self._clock = clock

    def hold(self, partner: str, seconds: float) -> float:
        """Hold ``partner``'s lookups for ``seconds`` (capped); returns the hold applied."""
        seconds = min(max(seconds, 0.0), MAX_HOLD_S)
        now = self._clock()
        until = self._until
        if partner not in until and len(until) >= self._limit:
            for name in [name for name, end in until.items() if end <= now]:
                del until[name]
            if len(until) >= self._limit:
                del until[min(until, key=until.__getitem__)]  # the soonest over
        until[partner] = max(until.get(partner, 0.0), now + seconds)
        return until[partner] - now

    def remaining(self, partner: str) -> float:
        """Seconds left before ``partner`` may be looked up again; 0.0 when it may now."""
        end = self._until.get(partner)
        if end is None:
            return 0.0
        left = end - self._clock()
        if left <= 0:
            del self._until[partner]
            return 0.0
        return left

    def __len__(self) -> int:
        return len(self._until)
