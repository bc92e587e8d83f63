"""DESIGN §1 R5-R6 and §5 logs: confirming acceptance through the gate."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gate.core.confirmation import MCA_TEMPLATE_ID
from tests.conftest import Gate
from tests.support import (
    CONTACT_EMAIL,
    CONTACT_FIRST,
    CONTACT_LAST,
    CONTACT_PHONE,
    CUSTOMER,
    PARTNER_A,
    PARTNER_B,
    agreements_path,
    auth,
    confirmation,
    decisions,
    order,
    orders_path,
)


def _lookups(gate: Gate) -> int:
    return len(gate.upstream.sandbox.calls("GET", agreements_path()))


def _confirmations(gate: Gate) -> int:
    return len(gate.upstream.sandbox.calls("POST", agreements_path()))


def _contact(**changes: Any) -> dict[str, Any]:
    contact: dict[str, Any] = dict(confirmation()["primaryContact"])
    contact.update(changes)
    return {k: v for k, v in contact.items() if v is not None}


def _without(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != key}


# -- R5: a confirmation is forwarded and records the pair -------------------------


async def test_valid_confirmation_is_forwarded_byte_for_byte(gate: Gate) -> None:
    """R5: a valid confirmation reaches the upstream with exactly the bytes the caller sent."""
    raw = json.dumps(confirmation(), indent=1).encode() + b"\n"
    response = await gate.client.post(
        agreements_path(),
        data=raw,
        headers={**auth(), "Content-Type": "application/json", "MS-CorrelationId": "corr-1"},
    )
    assert response.status == 201
    [received] = gate.upstream.sandbox.calls("POST", agreements_path())
    assert received.body == raw
    assert received.headers["Authorization"] == auth()["Authorization"]
    assert received.headers["MS-CorrelationId"] == "corr-1"


async def test_confirmation_makes_the_pair_accepted_at_once(gate: Gate) -> None:
    """R5: after a 2xx confirmation the next order is allowed without asking the upstream again."""
    blocked = await gate.client.post(orders_path(), json=order(), headers=auth())
    assert blocked.status == 403  # and 'not confirmed' is now cached
    confirmed = await gate.client.post(agreements_path(), json=confirmation(), headers=auth())
    assert confirmed.status == 201
    allowed = await gate.client.post(orders_path(), json=order(), headers=auth())
    assert allowed.status == 201
    assert allowed.headers["X-Gate-Decision"] == "allowed"
    assert _lookups(gate) == 1  # only the first, blocked, order asked


async def test_confirmation_records_only_the_confirming_partner(gate: Gate) -> None:
    """R3/R5: partner A's confirmation does not make partner B's orders pass."""
    await gate.client.post(agreements_path(), json=confirmation(), headers=auth(PARTNER_A))
    response = await gate.client.post(orders_path(), json=order(), headers=auth(PARTNER_B))
    assert response.status == 403


async def test_reconfirming_is_forwarded_each_time(gate: Gate) -> None:
    """R5: partners may confirm again as often as they like, and each confirmation is forwarded."""
    for _ in range(3):
        response = await gate.client.post(agreements_path(), json=confirmation(), headers=auth())
        assert response.status == 201
    assert _confirmations(gate) == 3
    assert [line["transaction"] for line in decisions(gate.logs)] == ["confirmation"] * 3


async def test_already_exists_conflict_is_relayed_and_proves_acceptance(gate: Gate) -> None:
    """§1.1: a 409 600061 'already exists' is relayed as is and still marks the pair accepted."""
    gate.upstream.sandbox.knobs.already_exists_conflict = True
    gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    response = await gate.client.post(agreements_path(), json=confirmation(), headers=auth())
    assert response.status == 409
    assert await response.json() == {
        "code": 600061,
        "description": "PartnerConfirmedAgreementAlreadyExists: confirmed before",
        "errorName": "PartnerConfirmedAgreementAlreadyExists",
    }
    gate.upstream.sandbox.knobs.agreements_status = 500  # a lookup now would fail closed
    allowed = await gate.client.post(orders_path(), json=order(), headers=auth())
    assert allowed.status == 201
    assert _lookups(gate) == 0


@pytest.mark.parametrize("status", [500, 400, 409])
async def test_failed_confirmation_does_not_mark_accepted(gate: Gate, status: int) -> None:
    """R5: a confirmation the upstream refuses (not 2xx, not 600061) leaves the pair unconfirmed."""
    gate.upstream.sandbox.knobs.confirm_status = status
    response = await gate.client.post(agreements_path(), json=confirmation(), headers=auth())
    assert response.status == status
    assert _confirmations(gate) == 1
    blocked = await gate.client.post(orders_path(), json=order(), headers=auth())
    assert blocked.status == 403
    assert _lookups(gate) == 1  # the order had to ask: nothing was recorded


# -- R6: what a confirmation must carry --------------------------------------------


@pytest.mark.parametrize(
    ("doc", "fields"),
    [
        pytest.param(_without(confirmation(), "dateAgreed"), {"dateAgreed"}, id="no-date"),
        pytest.param(confirmation(dateAgreed="2999-01-01T00:00:00Z"), {"dateAgreed"},
                     id="future-date"),
        pytest.param(confirmation(dateAgreed="yesterday"), {"dateAgreed"}, id="bad-date"),
        pytest.param(_without(confirmation(), "primaryContact"), {"primaryContact"},
                     id="no-contact"),
        pytest.param(confirmation(primaryContact=_contact(firstName=None)),
                     {"primaryContact.firstName"}, id="no-first-name"),
        pytest.param(confirmation(primaryContact=_contact(lastName=None)),
                     {"primaryContact.lastName"}, id="no-last-name"),
        pytest.param(confirmation(primaryContact=_contact(firstName="  ")),
                     {"primaryContact.firstName"}, id="blank-first-name"),
        pytest.param(confirmation(primaryContact=_contact(email=None)),
                     {"primaryContact.email"}, id="no-email"),
        pytest.param(confirmation(primaryContact=_contact(email="ada.lovelace@")),
                     {"primaryContact.email"}, id="bad-email"),
        pytest.param(confirmation(type="MicrosoftPartnerAgreement"), {"type"}, id="wrong-type"),
        pytest.param(_without(confirmation(), "templateId"), {"templateId"}, id="no-template"),
        pytest.param(confirmation(templateId="mca"), {"templateId"}, id="bad-template"),
        pytest.param(
            confirmation(dateAgreed=None, primaryContact=_contact(email=None, lastName=None)),
            {"dateAgreed", "primaryContact.email", "primaryContact.lastName"},
            id="several",
        ),
        pytest.param([confirmation()], {"(body)"}, id="not-an-object"),
    ],
)  # fmt: skip
async def test_invalid_confirmation_is_refused_and_never_forwarded(
    gate: Gate, doc: Any, fields: set[str]
) -> None:
    """R6: a payload missing or breaking a required field is answered 400 listing each bad field."""
    response = await gate.client.post(agreements_path(), json=doc, headers=auth())
    assert response.status == 400
    body = await response.json()
    assert body["errorName"] == "InvalidAcceptance"
    assert body["source"] == "gate"
    assert {item["field"] for item in body["data"]} == fields
    assert _confirmations(gate) == 0


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"dateAgreed=2024-05-01", id="form"),
        pytest.param(b"{not json", id="broken"),
        pytest.param(b"", id="empty"),
    ],
)
async def test_non_json_confirmation_is_refused(gate: Gate, raw: bytes) -> None:
    """R6: a confirmation whose body is not JSON is answered 400 and never forwarded."""
    response = await gate.client.post(
        agreements_path(), data=raw, headers={**auth(), "Content-Type": "application/json"}
    )
    assert response.status == 400
    assert (await response.json())["errorName"] == "InvalidAcceptance"
    assert _confirmations(gate) == 0


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(
            {
                "DateAgreed": "2024-05-01T00:00:00Z",
                "PrimaryContact": {
                    "FirstName": CONTACT_FIRST,
                    "LastName": CONTACT_LAST,
                    "Email": CONTACT_EMAIL,
                },
                "TemplateId": MCA_TEMPLATE_ID.upper(),
                "Type": "MICROSOFTCLOUDAGREEMENT",
            },
            id="PascalCase",
        ),
        pytest.param(_without(confirmation(), "type"), id="type-defaults-to-mca"),
        pytest.param(confirmation(primaryContact=_contact(phoneNumber=None)), id="no-phone"),
        pytest.param(confirmation(dateAgreed="2024-05-01"), id="date-only"),
    ],
)
async def test_acceptable_confirmation_variants_are_forwarded(gate: Gate, doc: Any) -> None:
    """R6/§1.1: PascalCase keys, an absent type or phone, and a plain date are all valid."""
    response = await gate.client.post(agreements_path(), json=doc, headers=auth())
    assert response.status == 201
    assert _confirmations(gate) == 1
    allowed = await gate.client.post(orders_path(), json=order(), headers=auth())
    assert allowed.status == 201


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(
            b'{"dateAgreed": "2024-05-01", "DateAgreed": "2999-01-01", "templateId": "%s",'
            b' "primaryContact": {"firstName": "A", "lastName": "B", "email": "a@b.example"}}',
            id="top-level",
        ),
        pytest.param(
            b'{"dateAgreed": "2024-05-01", "templateId": "%s", "primaryContact": {"firstName":'
            b' "A", "lastName": "B", "email": "a@b.example", "Email": "c@d.example"}}',
            id="nested",
        ),
    ],
)
async def test_confirmation_with_repeated_key_is_ambiguous(gate: Gate, raw: bytes) -> None:
    """§1.1: a confirmation repeating a key (in any casing) is refused with 400 AmbiguousBody."""
    response = await gate.client.post(
        agreements_path(),
        data=raw % MCA_TEMPLATE_ID.encode(),
        headers={**auth(), "Content-Type": "application/json"},
    )
    assert response.status == 400
    assert (await response.json())["errorName"] == "AmbiguousBody"
    assert _confirmations(gate) == 0


# -- §5: logs carry no personal data ---------------------------------------------------


async def test_logs_and_refusals_never_carry_personal_data_or_tokens(gate: Gate) -> None:
    """§5: decision logs and 400 answers never hold the contact's name, email, phone or token."""
    token = auth()["Authorization"].removeprefix("Bearer ")
    ok = await gate.client.post(agreements_path(), json=confirmation(), headers=auth())
    bad_phone = confirmation(primaryContact=_contact(phoneNumber="call " + CONTACT_PHONE))
    bad = await gate.client.post(agreements_path(), json=bad_phone, headers=auth())
    future = confirmation(dateAgreed="2999-01-01")
    refused = await gate.client.post(agreements_path(), json=future, headers=auth())
    assert (ok.status, bad.status, refused.status) == (201, 400, 400)
    answers = (await bad.text()) + (await refused.text())
    logged = gate.logs.getvalue()
    assert len(decisions(gate.logs)) == 3
    for secret in (CONTACT_FIRST, CONTACT_LAST, CONTACT_EMAIL, CONTACT_PHONE, token):
        assert secret not in logged
        assert secret not in answers


async def test_a_confirmation_asks_the_upstream_for_an_unencoded_answer(gate: Gate) -> None:
    """R5/§1.1: the gate must read a 600061 answer, so it never lets it come back compressed."""
    headers = {**auth(), "Accept-Encoding": "gzip, br"}
    response = await gate.client.post(agreements_path(), json=confirmation(), headers=headers)
    assert response.status == 201
    [received] = gate.upstream.sandbox.calls("POST", "/agreements")
    assert "Accept-Encoding" not in received.headers
