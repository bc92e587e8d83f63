"""The process's own cache of acceptance: one small int per pair, least recently used out first.

A million cached pairs must fit in well under 256 MB, and a hit is on every
gated call, so an entry is packed into one int (when it was stored, on the
monotonic clock in milliseconds, plus three flag bits: accepted, learnt
from a confirmation, learnt from the customer's own (direct) acceptance)
under one ``"partner/customer"`` string key in a plain dict, whose
insertion order is the LRU order. Freshness and expiry follow from the
stored time and the TTLs, which are the same for every entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

from gate.core.policy import State

__all__ = ["ACCEPTED", "Entry", "PairCache", "source_of", "source_of_flags", "why_of_flags"]

_ACCEPTED, _CONFIRMED, _DIRECT = 1, 2, 4
ACCEPTED = _ACCEPTED  # the flag bit that marks an accepted pair (``fresh_flags``)
_SHIFT = 3  # the flag bits below the stored time
_FLAG_BITS = (1 << _SHIFT) - 1


_FLAGS = {"confirmation": _CONFIRMED, "direct": _DIRECT}
# A pair not accepted keeps why in the two bits an accepted one uses for its source.
_WHY = ("", "no_agreement", "type_not_counted", "before_accepted_since")
_WHY_CODES = {why: code << 1 for code, why in enumerate(_WHY) if why}


def why_of_flags(flags: int) -> str:
    """What a lookup found missing for a pair not accepted, by its flag bits ("" unknown)."""
    return "" if flags & _ACCEPTED else _WHY[(flags >> 1) & 3]


def source_of_flags(flags: int) -> str:
    """What confirmed an accepted pair, by its flag bits (a confirmation wins)."""
    return "confirmation" if flags & _CONFIRMED else "direct" if flags & _DIRECT else "agreement"


def source_of(value: object) -> str:
    """A stored source read back (snapshots, Redis): the current release wrote ``lookup``."""
    return value if isinstance(value, str) and value in ("confirmation", "direct") else "agreement"


class Entry(NamedTuple):
    """One cached pair as operators see it."""

    state: State
    source: str  # what confirmed: "agreement" | "direct" | "confirmation"; "lookup" if not
    cached_at: float  # wall clock
    ttl: float
    fresh_until: float  # monotonic
    keep_until: float  # monotonic


class PairCache:
    """A bounded LRU of pair states with per-state TTLs (and stale-if-error for accepted)."""

    __slots__ = ("_clock", "_data", "_keep", "_limit", "_negative_ms", "_positive_ms", "_wall")

    def __init__(
        self,
        limit: int,
        *,
        positive_ttl_s: float,
        negative_ttl_s: float,
        stale_if_error_s: float,
        clock: Callable[[], float],
        wall: Callable[[], float],
    ) -> None:
        self._data: dict[str, int] = {}
        self._limit = limit
        self._positive_ms = int(positive_ttl_s * 1000)
        self._negative_ms = int(negative_ttl_s * 1000)
        self._keep = int(stale_if_error_s * 1000)  # accepted pairs only
        self._clock = clock
        self._wall = wall

    def fresh(self, key: str) -> State | None:
        """The state of a pair still within its TTL."""
        flags = self.fresh_flags(key)
        if flags < 0:
            return None
        return State.ACCEPTED if flags & _ACCEPTED else State.NOT_ACCEPTED

    def fresh_flags(self, key: str) -> int:
        """A pair still within its TTL as its flag bits (``source_of_flags``); -1 when not.

        The hot path's one question: one dict read, and a move to the LRU's end on a hit.
        """
        packed = self._data.get(key)
        if packed is None:
            return -1
        age = int(self._clock() * 1000) - (packed >> _SHIFT)
        if packed & _ACCEPTED:
            if age < self._positive_ms:
                self._data[key] = self._data.pop(key)  # most recently used: last out
                return packed & _FLAG_BITS
            return -1
        return packed & _FLAG_BITS if age < self._negative_ms else -1

    def get(self, key: str) -> Entry | None:
        """The entry while it is kept (fresh, or accepted and within stale-if-error)."""
        packed = self._data.get(key)
        if packed is None:
            return None
        entry = self._entry(packed)
        if self._clock() >= entry.keep_until:
            del self._data[key]
            return None
        return entry

    def put(self, key: str, state: State, source: str, age_s: float = 0.0, why: str = "") -> None:
        """Store a pair's state as learnt ``age_s`` seconds ago (a snapshot's pairs are older).

        ``why``: for a pair not accepted, what its lookup found missing (kept for cache hits).
        """
        if state is State.ACCEPTED:
            if self._positive_ms + self._keep <= 0:
                return
            flags = _ACCEPTED | _FLAGS.get(source, 0)
        elif self._negative_ms <= 0:
            return  # never trusted: not worth a slot
        else:
            flags = _WHY_CODES.get(why, 0)
        stored = int((self._clock() - age_s) * 1000)
        data = self._data
        data.pop(key, None)
        if len(data) >= self._limit:
            del data[next(iter(data))]  # the least recently used
        data[key] = stored << _SHIFT | flags

    def pop(self, key: str) -> bool:
        return self._data.pop(key, None) is not None

    def __len__(self) -> int:
        return len(self._data)

    def items(self) -> Iterator[tuple[str, Entry]]:
        """Every kept entry (a snapshot of the dict: safe while it changes)."""
        now = self._clock()
        for key, packed in list(self._data.items()):
            entry = self._entry(packed)
            if now < entry.keep_until:
                yield key, entry

    def _entry(self, packed: int) -> Entry:
        stored = (packed >> _SHIFT) / 1000
        accepted = bool(packed & _ACCEPTED)
        ttl = (self._positive_ms if accepted else self._negative_ms) / 1000
        keep = self._keep / 1000 if accepted else 0.0
        cached_at = self._wall() - (self._clock() - stored)
        state = State.ACCEPTED if accepted else State.NOT_ACCEPTED
        source = source_of_flags(packed) if accepted else "lookup"
        return Entry(state, source, cached_at, ttl, stored + ttl, stored + ttl + keep)
