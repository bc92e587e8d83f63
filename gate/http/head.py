"""A request's headers: the raw pairs in order, the few the gate reads, and the lines to forward.

Built in one pass as llhttp delivers the head (``gate.http.protocol``), so
the pipeline never walks the headers again to find the ones it reads or to
render the ones it forwards; ``gate.http.vocabulary`` says which are which.
"""

from __future__ import annotations

from collections.abc import Sequence

from gate.http.vocabulary import FORWARD, KINDS, NOT_FORWARDED, OVERRIDES, READ, READ_NAMES

__all__ = ["RequestHead"]


class RequestHead:
    """A request's headers: raw pairs in order, the few the gate reads, and the lines to forward.

    One pass as llhttp delivers them: each name is lowered once, and the
    header lines for the upstream are built on the way.
    """

    __slots__ = ("forwards", "found", "lines", "raw")

    def __init__(self, forwards: bool = True) -> None:
        self.raw: list[tuple[bytes, bytes]] = []
        self.found: dict[str, list[str]] = {}
        self.lines: list[bytes] = []  # forwardable header lines, as sent
        # False on the decision service's door: nothing is forwarded, so no lines are built
        self.forwards = forwards

    def add(self, name: bytes, value: bytes) -> None:
        self.raw.append((name, value))
        kind, lowered = _kind_of(name)
        if kind & READ:
            self.found.setdefault(lowered, []).append(value.decode("latin-1"))
        if kind & FORWARD and self.forwards:
            self.lines += (name, b": ", value, b"\r\n")

    def forwardable(self, extra: set[bytes]) -> bytes:
        """The forwarded lines less ``extra`` names too (what a Connection header lists)."""
        kept = []
        for name, value in self.raw:
            lowered = name.lower()
            kind = KINDS.get(lowered)
            if kind is None and b"_" in lowered and _lookalike(lowered):
                continue
            dropped = lowered in extra or lowered.replace(b"_", b"-") in extra
            if (kind is None or kind & FORWARD) and not dropped:
                kept.append(b"%s: %s\r\n" % (name, value))
        return b"".join(kept)

    def getall(self, name: str) -> Sequence[str]:
        """Every value of ``name`` (lowercase), in order."""
        found = self.found.get(name)
        if found is not None or name in READ_NAMES:
            return found or ()
        wanted = name.encode("latin-1")  # a configured name (identity.partner_header)
        return [value.decode("latin-1") for key, value in self.raw if key.lower() == wanted]


_SPELLINGS: dict[bytes, tuple[int, str]] = {}  # a header name as sent -> (kind, lowercase)
_SPELLINGS_KEPT = 1024  # clients send the same few spellings; a flood of new ones is not kept
_SPELLING_BYTES = 64  # a longer name is sorted every time, never kept (at most ~200 KB kept)


def _kind_of(name: bytes) -> tuple[int, str]:
    """What the gate does with a header (``KINDS``' bits), and its lowercase name.

    Remembered per spelling: lowering, decoding and the look-alike check run
    once per name a client uses, not once per header line.
    """
    known = _SPELLINGS.get(name)
    if known is None:
        lowered = name.lower()
        kind = KINDS.get(lowered)
        if kind is None:  # not one the gate knows: forwarded, unless it poses as a dropped one
            kind = 0 if b"_" in lowered and _lookalike(lowered) else FORWARD
        known = (kind, lowered.decode("latin-1"))
        if len(name) <= _SPELLING_BYTES and len(_SPELLINGS) < _SPELLINGS_KEPT:
            _SPELLINGS[name] = known
    return known


def _lookalike(lowered: bytes) -> bool:
    """IIS reads X_Original_URL as X-Original-URL: underscore spellings of dropped headers."""
    dashed = lowered.replace(b"_", b"-")
    return dashed in NOT_FORWARDED or dashed in OVERRIDES
