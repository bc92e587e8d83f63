"""gate.core.body: gated JSON bodies, read case-insensitively; duplicates refused (§1.1, R1, R9)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gate.core.body import (
    NOT_JSON,
    UNKNOWN_QUANTITY,
    fold,
    is_cancel_only,
    parse,
    requested_quantity,
    resellers,
)
from gate.errors import AmbiguousBody
from tests.support import RESELLER

OTHER_RESELLER = "44444444-dddd-4ddd-8ddd-444444444444"


def doc(value: Any) -> Any:
    """A document as the gate reads it off the wire."""
    return parse(json.dumps(value).encode())


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        pytest.param(b'{"quantity": 1, "Quantity": 2}', "quantity", id="top-level-case"),
        pytest.param(b'{"quantity": 1, "quantity": 2}', "quantity", id="top-level-exact"),
        pytest.param(b'{"QUANTITY": 1, "quantity": 1}', "quantity", id="same-value"),
        pytest.param(
            b'{"lineItems": [{"offerId": "a", "quantity": 1, "Quantity": 50}]}',
            "quantity",
            id="nested-in-line-items",
        ),
        pytest.param(
            b'{"lineItems": [], "LineItems": [{"quantity": 9}]}', "lineitems", id="line-items-twice"
        ),
        pytest.param(
            b'{"a": {"b": {"c": {"status": "x", "STATUS": "y"}}}}', "status", id="deeply-nested"
        ),
        pytest.param(b'[{"id": 1, "ID": 2}]', "id", id="inside-top-level-array"),
        pytest.param(
            b'{"primaryContact": {"email": "a@b.example", "Email": "c@d.example"}}',
            "email",
            id="confirmation-contact",
        ),
    ],
)
def test_repeated_key_is_ambiguous(raw: bytes, key: str) -> None:
    """§1.1: one key twice at the same level, under any casing, makes the body ambiguous."""
    with pytest.raises(AmbiguousBody) as caught:
        parse(raw)
    assert caught.value.status == 400
    assert caught.value.data == [{"key": key}]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(b'{"Quantity": 3}', {"quantity": 3}, id="pascal-case-lowered"),
        pytest.param(
            b'{"LineItems": [{"OfferId": "x", "Quantity": 2}]}',
            {"lineitems": [{"offerid": "x", "quantity": 2}]},
            id="nested-lowered",
        ),
        pytest.param(
            b'{"quantity": 1, "item": {"quantity": 2}}',
            {"quantity": 1, "item": {"quantity": 2}},
            id="same-key-other-level",
        ),
        pytest.param(
            b'[{"quantity": 1}, {"Quantity": 2}]',
            [{"quantity": 1}, {"quantity": 2}],
            id="same-key-sibling-objects",
        ),
        pytest.param(b'\xef\xbb\xbf{"quantity": 4}', {"quantity": 4}, id="utf8-bom"),
        pytest.param(b'  {"a": "\\u00e9"}\n', {"a": "é"}, id="whitespace-and-escape"),
        pytest.param(b'{"Status": "Cancelled"}', {"status": "Cancelled"}, id="values-kept"),
        pytest.param(b"[1, 2]", [1, 2], id="array"),
        pytest.param(b"7", 7, id="scalar"),
    ],
)
def test_parse_lowercases_keys(raw: bytes, expected: Any) -> None:
    """§1.1: keys are compared case-insensitively, so they come back lowercased; values stay."""
    assert parse(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"  \r\n", id="whitespace"),
        pytest.param(b"quantity=5", id="form-encoded"),
        pytest.param(b'{"quantity": 5', id="truncated"),
        pytest.param(b"{'quantity': 5}", id="single-quotes"),
        pytest.param(b'{"quantity": 5} {}', id="two-documents"),
        pytest.param(b"\xff\xfe{\x00}\x00", id="utf16"),
        pytest.param(b'{"a": "\xff"}', id="invalid-utf8"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="too-deep"),
        # found by the body fuzzer: Decimal cannot hold the exponent (was a 500)
        pytest.param(b'{"Quant\xc4\xb1ty": 1e4555555555555555555500}', id="huge-exponent"),
        pytest.param(b"\x0b{}", id="vertical-tab-is-not-json-white-space"),
        pytest.param(b"{} \x0c", id="form-feed-after-the-document"),
    ],
)
def test_non_json_is_marked(raw: bytes) -> None:
    """§1.1: a body that is not JSON is reported as NOT_JSON, never guessed at."""
    assert parse(raw) is NOT_JSON


def test_a_byte_order_mark_and_json_white_space_are_allowed() -> None:
    """As json.loads(raw.decode("utf-8-sig")) reads them: one BOM, then space, tab, CR, LF."""
    assert parse(b'\xef\xbb\xbf \t\r\n{"Quantity": 2}\n ') == {"quantity": 2}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param({"status": "cancelled"}, True, id="cancelled"),
        pytest.param({"Status": "CANCELLED"}, True, id="pascal-and-upper"),
        pytest.param({"status": "cancelled", "lineItems": []}, True, id="empty-line-items"),
        pytest.param({"status": "cancelled", "lineItems": None}, True, id="null-line-items"),
        pytest.param(
            {"status": "cancelled", "lineItems": [{"quantity": 1}]}, False, id="with-line-items"
        ),
        pytest.param(
            {"Status": "Cancelled", "LineItems": [{"Quantity": 1}]}, False, id="pascal-line-items"
        ),
        pytest.param({"lineItems": [{"quantity": 1}]}, False, id="no-status"),
        pytest.param({"status": "active"}, False, id="other-status"),
        pytest.param({"status": 0}, False, id="status-not-a-string"),
        pytest.param({}, False, id="empty-object"),
        pytest.param([{"status": "cancelled"}], False, id="array"),
    ],
)
def test_is_cancel_only(value: Any, expected: bool) -> None:
    """R1: an order PATCH that only sets status cancelled, with no line items, adds nothing."""
    assert is_cancel_only(doc(value)) is expected


def test_is_cancel_only_on_non_json() -> None:
    """R1/§1.1: a body that is not JSON is never taken for a mere cancellation."""
    assert is_cancel_only(parse(b"status=cancelled")) is False


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param({"quantity": 10}, 10, id="int"),
        pytest.param({"Quantity": 10}, 10, id="pascal-case"),
        pytest.param({"quantity": 0}, 0, id="zero"),
        pytest.param({"quantity": 10.0}, 10, id="integral-float"),
        pytest.param({"quantity": "10"}, 10, id="numeric-string"),
        pytest.param({"quantity": " 10 "}, 10, id="padded-string"),
        pytest.param({"quantity": "-3"}, -3, id="negative-string"),
        pytest.param({"quantity": 10.5}, UNKNOWN_QUANTITY, id="fractional-float"),
        pytest.param({"quantity": True}, UNKNOWN_QUANTITY, id="bool"),
        pytest.param({"quantity": None}, UNKNOWN_QUANTITY, id="null"),
        pytest.param({"quantity": "ten"}, UNKNOWN_QUANTITY, id="word"),
        pytest.param({"quantity": ""}, UNKNOWN_QUANTITY, id="empty-string"),
        pytest.param({"quantity": "+-10"}, UNKNOWN_QUANTITY, id="two-signs"),
        pytest.param({"quantity": "²"}, UNKNOWN_QUANTITY, id="superscript-digit"),
        pytest.param({"quantity": "1" * 5000}, UNKNOWN_QUANTITY, id="huge-digit-string"),
        pytest.param({"quantity": [10]}, UNKNOWN_QUANTITY, id="list"),
        pytest.param({"quantity": {"value": 10}}, UNKNOWN_QUANTITY, id="object"),
        pytest.param({"status": "suspended"}, None, id="absent"),
        pytest.param({}, None, id="empty-object"),
        pytest.param([{"quantity": 10}], UNKNOWN_QUANTITY, id="array"),
        pytest.param(10, UNKNOWN_QUANTITY, id="scalar"),
    ],
)
def test_requested_quantity(value: Any, expected: object) -> None:
    """§1.1: a subscription PATCH names a seat count, names none, or one the gate cannot read."""
    assert requested_quantity(doc(value)) == expected


def test_requested_quantity_of_non_json_is_unknown() -> None:
    """§1.1: a body that is not JSON is treated as a seat change (quantity unknown)."""
    assert requested_quantity(parse(b"quantity=10")) is UNKNOWN_QUANTITY


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            {"lineItems": [{"offerId": "a", "partnerIdOnRecord": RESELLER}]},
            (RESELLER,),
            id="one",
        ),
        pytest.param(
            {"LineItems": [{"PartnerIdOnRecord": RESELLER.upper()}]},
            (RESELLER,),
            id="pascal-and-uppercase-guid",
        ),
        pytest.param(
            {
                "lineItems": [
                    {"partnerIdOnRecord": OTHER_RESELLER},
                    {"partnerIdOnRecord": RESELLER},
                    {"partnerIdOnRecord": RESELLER.upper()},
                ]
            },
            (RESELLER, OTHER_RESELLER),
            id="distinct-and-sorted",
        ),
        pytest.param({"lineItems": [{"offerId": "a"}]}, (), id="direct"),
        pytest.param({"lineItems": [{"partnerIdOnRecord": 7}, "x"]}, (), id="not-strings"),
        pytest.param({"lineItems": {"partnerIdOnRecord": RESELLER}}, (), id="not-a-list"),
        pytest.param({"partnerIdOnRecord": RESELLER}, (), id="outside-line-items"),
        pytest.param([{"partnerIdOnRecord": RESELLER}], (), id="array"),
    ],
)
def test_resellers(value: Any, expected: tuple[str, ...]) -> None:
    """R9: the indirect resellers an order names in its line items go to the decision log."""
    assert resellers(doc(value)) == expected


def test_resellers_of_non_json() -> None:
    """R9: a body that is not JSON names no reseller."""
    assert resellers(NOT_JSON) == ()


# -- keys folded as upper-casing (.NET) and lower-casing upstreams fold them (issue 28) --


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        pytest.param('{"quantity": 10, "quant\u0131ty": 50}', "quantity", id="dotless-i"),
        pytest.param('{"QUANT\u0130TY": 10, "quantity": 50}', "quantity", id="dotted-capital-i"),
        pytest.param('{"status": "active", "\u017ftatus": "x"}', "status", id="long-s"),
        pytest.param('{"kind": 1, "\u212aind": 2}', "kind", id="kelvin-sign"),
        pytest.param('{"lineItems": [], "L\u0131neItems": [1]}', "lineitems", id="line-items"),
        pytest.param('{"\u00df": 1, "\u1e9e": 2}', "ss", id="sharp-s-both-ways"),
        pytest.param('{"\u03c3": 1, "\u03c2": 2}', "\u03c3", id="final-sigma"),
    ],
)
def test_keys_that_fold_together_either_way_are_repeated(raw: str, key: str) -> None:
    """§1.1/issue 28: keys one upstream or the other takes for one key are ambiguous."""
    with pytest.raises(AmbiguousBody) as caught:
        parse(raw.encode())
    assert caught.value.data == [{"key": key}]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param('{"Quant\u0131ty": 5}', {"quantity": 5}, id="dotless-i-is-quantity"),
        pytest.param('{"L\u0131neItems": []}', {"lineitems": []}, id="dotless-i-line-items"),
        pytest.param('{"\u017ftatus": "x"}', {"status": "x"}, id="long-s-status"),
        pytest.param('{"caf\u00e9": 1}', {"caf\u00e9": 1}, id="other-letters-kept"),
    ],
)
def test_a_key_that_folds_to_a_known_key_is_that_key(raw: str, expected: Any) -> None:
    """§1.1/issue 28: ``quant\u0131ty`` is ``Quantity`` to .NET, so it is the gate's quantity."""
    assert parse(raw.encode()) == expected


def _simple_upper(char: str) -> str:
    upper = char.upper()
    return upper if len(upper) == 1 else char


def _simple_lower(char: str) -> str:
    if char == "\u0130":  # the simple mapping; str.lower gives "i" and a combining dot
        return "i"
    lower = char.lower()
    return lower if len(lower) == 1 else char


@pytest.mark.parametrize("mapping", [_simple_upper, _simple_lower], ids=["upper", "lower"])
def test_fold_joins_every_pair_one_upstream_joins(mapping: Any) -> None:
    """Issue 28: BMP chars equal under a per-char upper- or lower-case mapping fold as one."""
    classes: dict[str, set[str]] = {}
    for point in range(0x10000):
        if not 0xD800 <= point < 0xE000:
            classes.setdefault(mapping(chr(point)), set()).add(chr(point))
    split = {k: c for k, c in classes.items() if len({fold(char) for char in c}) > 1}
    assert split == {}
