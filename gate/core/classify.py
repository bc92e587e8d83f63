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
from typing import NamedTuple

from yarl import URL

from gate.config import Rule
from gate.errors import AmbiguousMethod, AmbiguousPath

__all__ = [
    "METHOD_OVERRIDE_HEADERS",
    "Override",
    "RuleTable",
    "Transaction",
    "classify",
    "normalize",
    "split_target",
]

METHOD_OVERRIDE_HEADERS = ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override")

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT = re.compile(r"%(..)?", re.DOTALL)
_HEX = frozenset("0123456789abcdefABCDEF")
_REFUSED_ESCAPES = frozenset({"2F", "5C", "25", "00", "3B", "23"})  # / \ % NUL ; #
_UNSAFE = re.compile(r"[\\#\x00-\x20\x7f]")  # "#": upstreams cut the path there


class Transaction(NamedTuple):
    """A gated call: which rule matched, its kind, and whose customer it touches."""

    kind: str
    rule: str
    when: str
    customer: str


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
        absolute = URL(target, encoded=True)
        query = absolute.raw_query_string
        return absolute.raw_path, f"?{query}" if query else ""
    path, mark, query = target.partition("?")
    return path, mark + query


def normalize(path: str) -> str:
    """The canonical form of a request path (no query), or AmbiguousPath."""
    if not path.startswith("/"):
        raise AmbiguousPath("The request target must be an absolute path.", [])
    if _UNSAFE.search(path):
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
    """The transaction a normalised path and method make, or None (pass-through)."""
    if method not in table.methods:
        method = method.upper()
        if method not in table.methods and not overrides:
            return None
    lowered = path.lower()
    segments = lowered.strip("/").split("/")
    if not overrides:  # the usual call: only this method's rules can match
        hit = table.match_method(method, segments)
        if hit is None:
            if table.match(segments):  # another method's gated path: not a look-alike
                return None
            return _classify_lookalike(table, method, lowered, overrides)
        return _transaction(*hit)
    found = table.match(segments)
    if not found:
        return _classify_lookalike(table, method, lowered, overrides)
    if overrides:
        wanted = _override(overrides)
        if wanted != method and (method in found or wanted in found):
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
    if ";" in customer or customer.endswith(_TRIM_ENDS):
        raise AmbiguousPath(
            "A gated path carries a ';' parameter or a segment ending in '.' or a blank.", []
        )
    return Transaction(rule.transaction, rule.name, rule.when, customer)


_TRIMMED = re.compile(r"(?:\.|%20|%09)+(?=/|$)")  # trailing dots and blanks of a segment
_TRIM_ENDS = (".", "%20", "%09")


def _trimmed(path: str) -> bool:
    """``_TRIMMED.search(path)``, without the regex: some segment ends in '.' or a blank."""
    return path.endswith(_TRIM_ENDS) or "./" in path or "%20/" in path or "%09/" in path


def _classify_lookalike(
    table: RuleTable, method: str, lowered: str, overrides: Sequence[Override]
) -> Transaction | None:
    """Refuse a path that some upstream stack would read as a gated one.

    ASP.NET and IIS trim trailing dots and spaces from segments, Java stacks
    drop ';params': ``/orders.`` or ``/orders;x`` must not pass as ungated.
    """
    if ";" not in lowered and not _trimmed(lowered):
        return None
    stripped = "/".join(segment.partition(";")[0] for segment in lowered.split("/"))
    stripped = _TRIMMED.sub("", stripped)
    if stripped != lowered and classify(table, method, normalize(stripped or "/"), overrides):
        raise AmbiguousPath(
            "A gated path carries a ';' parameter or a segment ending in '.' or a blank.", []
        )
    return None
