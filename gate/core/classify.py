"""Classify: (method, path) -> the gated Transaction, or None for pass-through.

Paths are normalised before matching so that case, dot segments, repeated
slashes, a trailing slash or percent-encoded unreserved characters cannot
hide a gated call; the normalised path is also what gets forwarded, so the
gate and the upstream always see the same call. Encodings the gate cannot
read the way every upstream would (an encoded ``/`` or ``\\``, a double
encoding, a raw backslash or control character) are refused outright.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

from yarl import URL

from gate.config import Rule
from gate.core.body import fold
from gate.errors import AmbiguousMethod, AmbiguousPath

__all__ = [
    "METHOD_OVERRIDE_HEADERS",
    "Override",
    "RuleTable",
    "Transaction",
    "classify",
    "liberal_readings",
    "normalize",
    "split_target",
]

METHOD_OVERRIDE_HEADERS = ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override")

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT = re.compile(r"%(..)?", re.DOTALL)
_HEX = frozenset("0123456789abcdefABCDEF")
_REFUSED_ESCAPES = frozenset({"2F", "5C", "25", "00", "3B", "23"})  # / \ % NUL ; #
_UNSAFE = re.compile(r"[\\#\x00-\x20\x7f]")  # "#": upstreams cut the path there


class Transaction:
    """A gated call: which rule matched, its kind, and whose customer it touches.

    A plain class (native when compiled): one is made per gated call, and a
    NamedTuple's constructor runs as interpreted Python. Compared by value.
    """

    __slots__ = ("customer", "kind", "rule", "when")

    def __init__(self, kind: str, rule: str, when: str, customer: str) -> None:
        self.kind = kind
        self.rule = rule
        self.when = when
        self.customer = customer

    def with_kind(self, kind: str) -> Transaction:
        """The same call as another kind (a term change, a seat change by its fields)."""
        return Transaction(kind, self.rule, self.when, self.customer)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Transaction):
            return NotImplemented
        return (self.kind, self.rule, self.when, self.customer) == (
            other.kind, other.rule, other.when, other.customer
        )  # fmt: skip

    def __hash__(self) -> int:
        return hash((self.kind, self.rule, self.when, self.customer))

    def __repr__(self) -> str:
        return (
            f"Transaction(kind={self.kind!r}, rule={self.rule!r}, when={self.when!r}, "
            f"customer={self.customer!r})"
        )


@dataclass(frozen=True, slots=True)
class _Template:
    literals: tuple[tuple[int, str], ...]  # (position, text) of each fixed segment
    customer_at: int
    by_method: dict[str, Rule]

    def fits(self, segments: Sequence[str]) -> bool:
        for at, text in self.literals:  # noqa: SIM110 - a loop beats all(genexpr) here
            if segments[at] != text:
                return False
        return True


class RuleTable:
    """Rules compiled once: templates grouped by segment count, and by method and count."""

    __slots__ = ("_by_length", "_by_method", "methods")

    def __init__(self, rules: Iterable[Rule]) -> None:
        grouped: dict[str, dict[str, Rule]] = {}
        for rule in rules:
            grouped.setdefault(rule.path, {})[rule.method] = rule
        self._by_length: dict[int, list[_Template]] = {}
        self._by_method: dict[tuple[str, int], list[tuple[_Template, Rule]]] = {}
        for path, by_method in grouped.items():
            parts = path.strip("/").split("/")
            literals = tuple((at, part) for at, part in enumerate(parts) if part[0] != "{")
            template = _Template(literals, parts.index("{customer}"), by_method)
            self._by_length.setdefault(len(parts), []).append(template)
            for method, rule in by_method.items():
                self._by_method.setdefault((method, len(parts)), []).append((template, rule))
        self.methods = frozenset(m for by_method in grouped.values() for m in by_method)

    def match(self, segments: Sequence[str]) -> dict[str, tuple[Rule, str]]:
        """Per method, the first rule (in file order) whose template these segments fill.

        Every fitting template counts, so a broad template never hides a later
        rule for another method on the same path. Values pair the rule with
        the customer segment its template names.
        """
        found: dict[str, tuple[Rule, str]] = {}
        for template in self._by_length.get(len(segments), ()):
            if template.fits(segments):
                customer = segments[template.customer_at]
                for method, rule in template.by_method.items():
                    found.setdefault(method, (rule, customer))
        return found

    def match_method(self, method: str, segments: Sequence[str]) -> tuple[Rule, str] | None:
        """``match(segments).get(method)``, without looking at other methods' rules."""
        for template, rule in self._by_method.get((method, len(segments)), ()):
            if template.fits(segments):
                return rule, segments[template.customer_at]
        return None


def _decode_unreserved(path: str) -> str:
    def replace(match: re.Match[str]) -> str:
        pair = match.group(1)
        if pair is None or not set(pair) <= _HEX:
            raise AmbiguousPath("The path has a malformed percent-encoding.", [{"path": path}])
        if pair.upper() in _REFUSED_ESCAPES:
            raise AmbiguousPath(
                "The path encodes a slash, backslash, percent sign, ';', '#' or NUL; "
                "the gate cannot know how the upstream would read it.",
                [{"escape": "%" + pair}],
            )
        char = chr(int(pair, 16))
        return char if char in _UNRESERVED else "%" + pair.upper()

    return _PERCENT.sub(replace, path)


def split_target(target: str) -> tuple[str, str]:
    """The path, and the query with its '?' byte for byte, of an origin- or absolute-form target."""
    if not target.startswith("/") and target[:8].lower().startswith(("http://", "https://")):
        try:
            absolute = URL(target, encoded=True)
            path, query = absolute.raw_path, absolute.raw_query_string
        except (ValueError, IndexError, TypeError):  # yarl on a malformed authority
            raise AmbiguousPath("The gate cannot read the request target.", []) from None
        return path, f"?{query}" if query else ""
    path, mark, query = target.partition("?")
    return path, mark + query


def _unsafe(path: str) -> bool:
    """``_UNSAFE.search``, with C string scans first (no control character: 3 characters left)."""
    if path.isprintable():  # no C0 control, no DEL
        return " " in path or "\\" in path or "#" in path
    return _UNSAFE.search(path) is not None


def normalize(path: str) -> str:
    """The canonical form of a request path (no query), or AmbiguousPath."""
    if not path.startswith("/"):
        raise AmbiguousPath("The request target must be an absolute path.", [])
    if _unsafe(path):
        raise AmbiguousPath("The path holds a backslash, #, space or control character.", [])
    if "%" in path:
        path = _decode_unreserved(path)
    if "//" not in path and "/." not in path and (path == "/" or path[-1] != "/"):
        return path
    resolved: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if resolved:
                resolved.pop()
        elif segment and segment != ".":
            resolved.append(segment)
    return "/" + "/".join(resolved)


Override = tuple[str, str]  # (header name, value)


def _override(overrides: Sequence[Override]) -> str:
    """The one overriding method; several override headers, or differing values, are refused."""
    names = {name.lower() for name, _ in overrides}
    wanted = {value.strip().upper() for _, value in overrides}
    if len(names) != 1 or len(wanted) != 1 or "" in wanted:
        raise AmbiguousMethod(
            "Method-override headers on a gated path disagree, repeat or are empty.",
            [{"headers": list(METHOD_OVERRIDE_HEADERS)}],
        )
    return wanted.pop()


def classify(
    table: RuleTable, method: str, path: str, overrides: Sequence[Override] = ()
) -> Transaction | None:
    """The transaction a normalised path and method make, or None (pass-through).

    A path that a liberal upstream could read as another call (see
    ``liberal_readings``) must classify as that call, or it is refused.
    """
    if method not in table.methods:
        method = method.upper()
        if method not in table.methods and not overrides:
            return None
    lowered = path.lower()
    found = _classify(table, method, lowered, overrides)
    if ";" in lowered or "%" in lowered or _trimmed(lowered) or not lowered.isascii():
        readings = liberal_readings(lowered)
        if not path.isascii():  # raw bytes (the front door reads them as latin-1) read as UTF-8
            readings |= liberal_readings(_escaped(path).lower())
        for reading in readings:
            if reading != lowered:
                theirs = _classify(table, method, reading, overrides)
                if theirs is not None and theirs != found:
                    raise AmbiguousPath(
                        "A liberal upstream (IIS, .NET, Java) could read this path as a gated "
                        "call: a ';' parameter, a segment ending in '.' or a blank, an encoded "
                        "blank or a letter that case-folds to ASCII. Send the plain path.",
                        [{"readAs": theirs.rule}],
                    )
    return found


def _classify(
    table: RuleTable, method: str, lowered: str, overrides: Sequence[Override]
) -> Transaction | None:
    """The plain reading: a lowercased normalised path against the rules, nothing dropped."""
    segments = lowered.strip("/").split("/")
    if not overrides:  # the usual call: only this method's rules can match
        hit = table.match_method(method, segments)
        return None if hit is None else _transaction(*hit)
    found = table.match(segments)
    if not found:
        return None
    wanted = _override(overrides)
    if wanted != method:
        # The gate forwards the method it was sent; an upstream that honours the
        # override would run another one, which then was never checked (or the
        # reverse). Refuse rather than guess which method the upstream obeys.
        raise AmbiguousMethod(
            "A method-override header on a gated path names another method than "
            "the request's own; send the call with its real method.",
            [{"headers": list(METHOD_OVERRIDE_HEADERS)}],
        )
    if method not in found:
        return None
    return _transaction(*found[method])


def _transaction(rule: Rule, customer: str) -> Transaction:
    return Transaction(rule.transaction, rule.name, rule.when, customer)


# What an upstream may trim from a segment's ends: Java's trim() drops every char up to U+0020;
# .NET's Trim() and Java's strip() drop Unicode white space too (Char.IsWhiteSpace).
_BLANKS = "".join(map(chr, range(0x21))) + (
    "\x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)
_TRAILING = _BLANKS + "."  # IIS and .NET also drop a segment's trailing dots
_TRIM_ENDS = (".", "%20", "%09")


def _trimmed(path: str) -> bool:
    """Some segment ends in '.' or an encoded blank (a cheap test before the full reading)."""
    return path.endswith(_TRIM_ENDS) or "./" in path or "%20/" in path or "%09/" in path


def _fold(text: str) -> str:
    """A path segment with its letters folded as upper- and lower-casing upstreams compare them.

    ``body.fold`` (``ı`` is ``I``, ``ſ`` is ``S``, the Kelvin sign is ``k``), and
    the ``i`` plus combining dot that ``str.lower`` made of an ``İ`` is ``i``.
    """
    return text.lower() if text.isascii() else fold(text.replace("i\u0307", "i"))


def _escaped(path: str) -> str:
    """Non-ASCII characters percent-encoded: their byte when they are one (latin-1), else UTF-8."""
    return "".join(
        char if char.isascii() else quote(char, encoding="latin-1" if char <= "\xff" else "utf-8")
        for char in path
    )


def _resolve(segments: Sequence[str], trim: int) -> str:
    """Dot segments resolved after trimming: 0 none, 1 dots first, 2 trailing dots/blanks first."""
    kept: list[str] = []
    for segment in segments:
        bare = segment.strip(_BLANKS) if trim == 1 else segment
        if trim < 2 and bare in (".", ".."):
            if bare == ".." and kept:
                kept.pop()
            continue
        if trim:
            segment = segment.rstrip(_TRAILING).lstrip(_BLANKS)
        if segment:
            kept.append(segment)
    return "/" + "/".join(kept)


def liberal_readings(lowered: str) -> set[str]:
    """Every path a liberal upstream could make of a lowercased normalised path.

    Such an upstream percent-decodes, drops ``;params`` from each segment
    (Java) or not (IIS), drops trailing dots and blanks of a segment (IIS,
    .NET) before or after resolving dot segments, or not at all, and folds
    case both ways (``_fold``). Each combination is one reading.
    """
    readings: set[str] = set()
    for cut in (True, False):
        segments = [
            _fold(unquote(segment.partition(";")[0] if cut else segment))
            for segment in lowered.split("/")
        ]
        readings.update(_resolve(segments, trim) for trim in (0, 1, 2))
    return readings
