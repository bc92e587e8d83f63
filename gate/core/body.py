"""What a gated call's JSON body says, read the way the upstream would read it.

Keys are compared case-insensitively (the .NET SDK sends PascalCase, the REST
docs camelCase), so objects come back with folded keys (``fold``): lowercased,
and folded the way an upstream that upper-cases (.NET ``OrdinalIgnoreCase``:
``ı`` is ``I``, ``ſ`` is ``S``) or lower-cases (the Kelvin sign is ``k``)
would compare them. A key repeated at one level under any such folding makes
the body ambiguous: the gate and the upstream could each pick a different
copy, so it is refused, never guessed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final

from gate.errors import AmbiguousBody

__all__ = [
    "NOT_JSON",
    "UNKNOWN_QUANTITY",
    "fold",
    "is_cancel_only",
    "parse",
    "requested_quantity",
    "resellers",
]


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NOT_JSON: Final = _Marker("NOT_JSON")
UNKNOWN_QUANTITY: Final = _Marker("UNKNOWN_QUANTITY")
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")  # ASCII digits only: int() of "²" or "+-1" raises


class _Duplicate(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def fold(key: str) -> str:
    """A key as both kinds of case-insensitive upstream compare it, in one string.

    Two keys that an upstream comparing upper-cased (.NET) or lower-cased
    letters takes for one fold to the same string: ``quant\u0131ty`` and
    ``QUANTITY`` are ``quantity``. ``İ`` is ``i`` by its simple lower-case
    mapping (``str.lower`` would add a combining dot).
    """
    if key.isascii():
        return key.lower()
    return key.replace("\u0130", "i").lower().upper().lower()


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        folded = key.lower() if key.isascii() else fold(key)  # the call only off the ASCII path
        if folded in result:
            raise _Duplicate(folded)
        result[folded] = value
    return result


# json.loads would build a decoder per call. Numbers with a fraction or an exponent are read
# exactly (Decimal): as a float, 10.9999999999999999 would round to 11, which a decimal-reading
# upstream does not.
_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_float=Decimal)
# (text, index) -> (document, end), StopIteration when no document starts there
_SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]
_BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark, as utf-8-sig skips it
_BLANKS = " \t\n\r"  # JSON's white space (RFC 8259 §2), no other


def parse(raw: bytes) -> Any:
    """The decoded document with folded keys (``fold``), NOT_JSON, or AmbiguousBody.

    The decoder's C scanner is called directly: ``json.loads`` and
    ``JSONDecoder.decode`` add a Python-level wrapper (and a regex per call) around it.
    """
    try:
        text = raw[3:].decode() if raw.startswith(_BOM) else raw.decode()
    except UnicodeDecodeError:
        return NOT_JSON
    start = len(text) - len(text.lstrip(_BLANKS))
    if start == len(text):
        return NOT_JSON  # empty, or JSON white space only
    try:
        doc, end = _SCAN(text, start)
    except _Duplicate as dup:
        raise AmbiguousBody(
            "The JSON body repeats a key (keys are compared case-insensitively, "
            "folded as upper-casing and lower-casing upstreams fold them), "
            "so the gate and the upstream could read different values.",
            [{"key": dup.key}],
        ) from None
    except (StopIteration, ValueError, RecursionError, ArithmeticError):
        return NOT_JSON  # ArithmeticError: a number Decimal cannot hold (1e4555555555555555555)
    if end != len(text) and text[end:].strip(_BLANKS):
        return NOT_JSON  # more than white space after the document
    return doc


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def is_cancel_only(doc: Any) -> bool:
    """An order update that only sets status to cancelled adds nothing."""
    if not isinstance(doc, dict) or _lower(doc.get("status")) != "cancelled":
        return False
    return not doc.get("lineitems")


def requested_quantity(doc: Any) -> int | _Marker | None:
    """The seat count a subscription update asks for; None when it names none."""
    if not isinstance(doc, dict):
        return UNKNOWN_QUANTITY
    if "quantity" not in doc:
        return None
    value = doc["quantity"]
    if isinstance(value, bool):
        return UNKNOWN_QUANTITY
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value)
    return UNKNOWN_QUANTITY


def resellers(doc: Any) -> tuple[str, ...]:
    """Indirect resellers named by an order's line items (partnerIdOnRecord)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("lineitems"), list):
        return ()
    found = {
        item["partneridonrecord"].lower()
        for item in doc["lineitems"]
        if isinstance(item, dict) and isinstance(item.get("partneridonrecord"), str)
    }
    return tuple(sorted(found)) if found else ()  # most orders name none: no sort
