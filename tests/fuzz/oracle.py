"""The fuzzers' judge: how a liberal upstream (IIS, .NET, Java) reads a call.

Written apart from gate.core (no import of its folding or readings), so the
fuzzers check the gate against a second implementation, not against itself.
Such an upstream percent-decodes the path (UTF-8), drops each segment's
``;params`` (Java) or keeps them (IIS), trims trailing dots and blanks of a
segment (IIS/.NET) or not, resolves dot segments, folds case both ways per
character (``ı``->``I``, ``ſ``->``S``, Kelvin sign->``k``, ``İ``->``i``),
honours a method-override header, and matches JSON keys case-insensitively
under upper-casing (.NET) and lower-casing.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote

_C = r"/v1/customers/(?P<customer>[^/]+)"
# The default rules of DESIGN R1, as the upstream routes them (method, pattern, rule name).
GATED: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (method, re.compile(_C + tail), name)
    for method, tail, name in (
        ("POST", "/orders", "create-order"),
        ("PATCH", "/orders/[^/]+", "add-order-line-items"),
        ("POST", "/carts/[^/]+/checkout", "cart-checkout"),
        ("POST", "/subscriptions/[^/]+/upgrades", "subscription-upgrade"),
        ("POST", "/subscriptions/[^/]+/transitions", "subscription-transition"),
        ("POST", "/subscriptions/[^/]+/conversions", "trial-conversion"),
        ("POST", "/migrations/newcommerce", "migrate-new-commerce"),
        ("PATCH", "/subscriptions/[^/]+", "subscription-edit"),
        ("POST", "/agreements", "confirm-acceptance"),
    )
)
OVERRIDE_HEADERS = ("x-http-method-override", "x-http-method", "x-method-override")
_BLANK = "".join(chr(c) for c in range(0x21))


def _char_fold(char: str) -> str:
    """One character as both kinds of case-insensitive comparison see it (a set of spellings)."""
    if char == "\u0130":
        return "i"
    upper, lower = char.upper(), char.lower()
    if len(upper) == 1 and upper.isascii():
        return upper.lower()
    if len(lower) == 1 and lower.isascii():
        return lower
    return char.lower() if len(lower) == 1 else char


def fold_text(text: str) -> str:
    return "".join(_char_fold(char) for char in text)


def readings(path: str) -> set[str]:
    """Every path a liberal upstream could route ``path`` (no query) to, lowercased."""
    found: set[str] = set()
    for cut in (False, True):
        segments = [
            fold_text(unquote(s.split(";")[0] if cut else s, errors="replace"))
            for s in path.split("/")
        ]
        for trim in ("none", "dots-first", "trim-first"):
            out: list[str] = []
            for segment in segments:
                if trim == "trim-first":
                    segment = segment.rstrip(_BLANK + ".").lstrip(_BLANK)
                bare = segment.strip(_BLANK) if trim == "dots-first" else segment
                if bare == "..":
                    if out:
                        out.pop()
                    continue
                if bare == ".":
                    continue
                if trim == "dots-first":
                    segment = segment.rstrip(_BLANK + ".").lstrip(_BLANK)
                if segment:
                    out.append(segment)
            found.add("/" + "/".join(out))
    return found


def gated_readings(method: str, path: str) -> set[tuple[str, str]]:
    """(rule, customer) of each reading that is a gated call for ``method``."""
    hits = set()
    for reading in readings(path):
        for want, pattern, name in GATED:
            match = pattern.fullmatch(reading)
            if match and want == method.upper():
                hits.add((name, match["customer"]))
    return hits


def effective_methods(method: str, headers: list[tuple[str, str]]) -> set[str]:
    """The request's method and every override an upstream could honour."""
    methods = {method.upper()}
    for name, value in headers:
        if name.lower() in OVERRIDE_HEADERS and value.strip():
            methods.add(value.strip().upper())
    return methods


class Duplicate(Exception):
    pass


def _folds(key: str) -> tuple[str, str]:
    upper = "".join(c.upper() if len(c.upper()) == 1 else c for c in key)
    lower = "".join(
        "i" if c == "\u0130" else (c.lower() if len(c.lower()) == 1 else c) for c in key
    )
    return upper, lower


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    uppers: set[str] = set()
    lowers: set[str] = set()
    for key, _ in pairs:
        upper, lower = _folds(key)
        if upper in uppers or lower in lowers:
            raise Duplicate(key)
        uppers.add(upper)
        lowers.add(lower)
    return {_folds(key)[0]: value for key, value in pairs}  # keys upper-cased, as .NET


def read_body(raw: bytes) -> Any:
    """The body as an upper-casing upstream reads it (keys upper-cased), Duplicate, or None."""
    try:
        return json.loads(raw.decode("utf-8-sig"), object_pairs_hook=_strict_object)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


def body_gates(rule: str, raw: bytes, current_quantity: int = 10) -> bool:
    """Whether the body makes a call of this rule a gated one (R1, §1.1), read the .NET way."""
    try:
        doc = read_body(raw)
    except Duplicate:
        return True  # ambiguous: some upstream reads a gated body
    if rule == "add-order-line-items":
        if not isinstance(doc, dict):
            return True
        status = doc.get("STATUS")
        return not (isinstance(status, str) and status.lower() == "cancelled") or bool(
            doc.get("LINEITEMS")
        )
    if rule == "subscription-edit":
        if not isinstance(doc, dict):
            return True
        if "QUANTITY" not in doc:
            return False
        value = doc["QUANTITY"]
        try:
            return isinstance(value, bool) or float(str(value).strip()) != current_quantity
        except ValueError:
            return True
    return True
