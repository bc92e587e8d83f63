"""gate.core.confirmation: the R6 check of a confirmation, field by field, never echoing values."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from gate.core import body
from gate.core.confirmation import CUSTOMER_AGREEMENT_TEMPLATE_ID as CA_TEMPLATE_ID
from gate.core.confirmation import MCA_TEMPLATE_ID, MCA_TYPE, problems
from tests.support import (
    CONTACT_EMAIL,
    CONTACT_FIRST,
    CONTACT_LAST,
    CONTACT_PHONE,
    confirmation,
)

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
CONTACT: dict[str, Any] = {
    "firstName": CONTACT_FIRST,
    "lastName": CONTACT_LAST,
    "email": CONTACT_EMAIL,
    "phoneNumber": CONTACT_PHONE,
}


def check(doc: Any) -> list[dict[str, str]]:
    """The problems of a payload as it arrives: serialised, then parsed by gate.core.body."""
    return problems(body.parse(json.dumps(doc).encode()), NOW)


def contact(**changes: Any) -> dict[str, Any]:
    merged = {**CONTACT, **changes}
    return {key: value for key, value in merged.items() if value is not ...}


def without(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != key}


def fields(found: list[dict[str, str]]) -> list[str]:
    return [problem["field"] for problem in found]


PASCAL = {
    "DateAgreed": "2024-05-01T00:00:00Z",
    "PrimaryContact": {
        "FirstName": CONTACT_FIRST,
        "LastName": CONTACT_LAST,
        "Email": CONTACT_EMAIL,
        "PhoneNumber": CONTACT_PHONE,
    },
    "TemplateId": MCA_TEMPLATE_ID,
    "Type": MCA_TYPE,
}


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(confirmation(), id="camel-case"),
        pytest.param(PASCAL, id="pascal-case-sdk"),
        pytest.param(without(confirmation(), "type"), id="type-defaults-to-mca"),
        pytest.param(confirmation(type="microsoftcloudagreement"), id="type-any-case"),
        pytest.param(
            confirmation(type="MicrosoftCustomerAgreement", templateId=CA_TEMPLATE_ID),
            id="customer-agreement",
        ),
        pytest.param({"attestationId": "att-1"}, id="attestation-alone"),
        pytest.param({"AttestationID": "att-1", "templateId": "x"}, id="attestation-any-casing"),
        pytest.param(confirmation(primaryContact=contact(phoneNumber=...)), id="no-phone"),
        pytest.param(confirmation(primaryContact=contact(phoneNumber=None)), id="null-phone"),
        pytest.param(confirmation(primaryContact=contact(phoneNumber="")), id="empty-phone"),
        pytest.param(
            confirmation(primaryContact=contact(phoneNumber="(425) 555-0100 x12")),
            id="phone-with-extension",
        ),
        pytest.param(confirmation(dateAgreed="2024-05-01"), id="date-only"),
        pytest.param(confirmation(dateAgreed="2024-05-01T10:00:00"), id="naive-datetime"),
        pytest.param(confirmation(dateAgreed="2024-05-01T10:00:00+05:30"), id="offset-datetime"),
        pytest.param(confirmation(dateAgreed="2018-11-07T00:00:00Z"), id="years-old"),
        pytest.param(confirmation(dateAgreed="2024-06-01T12:00:00Z"), id="now"),
        pytest.param(confirmation(dateAgreed="2024-06-02"), id="tomorrow-in-utc-today-in-kiribati"),
        pytest.param(confirmation(dateAgreed="2024-06-02T01:00:00+14:00"), id="kiribati-offset"),
        pytest.param(confirmation(templateId=MCA_TEMPLATE_ID.upper()), id="template-id-uppercase"),
        pytest.param(confirmation(agreementLink="https://example.invalid"), id="extra-field"),
        pytest.param(
            confirmation(primaryContact=contact(middleName="Augusta")), id="extra-contact-field"
        ),
    ],
)
def test_valid_confirmation(doc: dict[str, Any]) -> None:
    """R6: a payload with date, names, email, template and type passes; phone is optional."""
    assert check(doc) == []


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        pytest.param(without(confirmation(), "dateAgreed"), ["dateAgreed"], id="no-date"),
        pytest.param(
            without(confirmation(), "primaryContact"), ["primaryContact"], id="no-contact"
        ),
        pytest.param(without(confirmation(), "templateId"), ["templateId"], id="no-template"),
        pytest.param(
            confirmation(primaryContact=contact(firstName=...)),
            ["primaryContact.firstName"],
            id="no-first-name",
        ),
        pytest.param(
            confirmation(primaryContact=contact(lastName=...)),
            ["primaryContact.lastName"],
            id="no-last-name",
        ),
        pytest.param(
            confirmation(primaryContact=contact(email=...)),
            ["primaryContact.email"],
            id="no-email",
        ),
        pytest.param(
            {},
            ["dateAgreed", "primaryContact", "templateId"],
            id="empty-object",
        ),
        pytest.param(
            confirmation(primaryContact={}),
            ["primaryContact.firstName", "primaryContact.lastName", "primaryContact.email"],
            id="empty-contact",
        ),
    ],
)
def test_missing_fields_are_named(doc: dict[str, Any], expected: list[str]) -> None:
    """R6: each missing field is reported under its camelCase name."""
    assert fields(check(doc)) == expected
    assert all(problem["message"] == "Field required" for problem in check(doc))


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        pytest.param(confirmation(dateAgreed="2024-06-05T00:00:00Z"), "dateAgreed", id="future"),
        pytest.param(
            confirmation(dateAgreed="2024-06-01T13:00:00Z"), "dateAgreed", id="an-hour-ahead-in-utc"
        ),
        pytest.param(confirmation(dateAgreed="2024-06-03"), "dateAgreed", id="future-date-only"),
        pytest.param(confirmation(dateAgreed="yesterday"), "dateAgreed", id="not-a-date"),
        pytest.param(confirmation(dateAgreed="2024-13-01"), "dateAgreed", id="month-13"),
        pytest.param(confirmation(dateAgreed="2024-02-30"), "dateAgreed", id="february-30"),
        pytest.param(confirmation(dateAgreed=""), "dateAgreed", id="empty-date"),
        pytest.param(confirmation(dateAgreed=20240501), "dateAgreed", id="number-date"),
        pytest.param(confirmation(dateAgreed=None), "dateAgreed", id="null-date"),
        pytest.param(confirmation(primaryContact="Ada"), "primaryContact", id="contact-string"),
        pytest.param(confirmation(primaryContact=[CONTACT]), "primaryContact", id="contact-list"),
        pytest.param(
            confirmation(primaryContact=contact(firstName="")),
            "primaryContact.firstName",
            id="empty-first-name",
        ),
        pytest.param(
            confirmation(primaryContact=contact(firstName="  ")),
            "primaryContact.firstName",
            id="blank-first-name",
        ),
        pytest.param(
            confirmation(primaryContact=contact(firstName=7)),
            "primaryContact.firstName",
            id="number-first-name",
        ),
        pytest.param(
            confirmation(primaryContact=contact(lastName="")),
            "primaryContact.lastName",
            id="empty-last-name",
        ),
        pytest.param(
            confirmation(primaryContact=contact(lastName="L" * 257)),
            "primaryContact.lastName",
            id="long-last-name",
        ),
        pytest.param(
            confirmation(primaryContact=contact(email="ada.lovelace")),
            "primaryContact.email",
            id="email-without-at",
        ),
        pytest.param(
            confirmation(primaryContact=contact(email="ada@@contoso.example")),
            "primaryContact.email",
            id="email-two-ats",
        ),
        pytest.param(
            confirmation(primaryContact=contact(email="ada@contoso")),
            "primaryContact.email",
            id="email-without-dot-domain",
        ),
        pytest.param(
            confirmation(primaryContact=contact(email="")),
            "primaryContact.email",
            id="empty-email",
        ),
        pytest.param(
            confirmation(primaryContact=contact(email=None)),
            "primaryContact.email",
            id="null-email",
        ),
        pytest.param(
            confirmation(primaryContact=contact(phoneNumber="call me")),
            "primaryContact.phoneNumber",
            id="phone-words",
        ),
        pytest.param(
            confirmation(primaryContact=contact(phoneNumber=4255550100)),
            "primaryContact.phoneNumber",
            id="phone-number-type",
        ),
        pytest.param(confirmation(templateId="latest"), "templateId", id="template-not-guid"),
        pytest.param(confirmation(templateId=""), "templateId", id="template-empty"),
        pytest.param(confirmation(templateId=None), "templateId", id="template-null"),
        pytest.param(confirmation(type="MicrosoftPartnerAgreement"), "type", id="other-type"),
        pytest.param(confirmation(attestationId=""), "attestationId", id="attestation-empty"),
        pytest.param(confirmation(AttestationId=7), "attestationId", id="attestation-number"),
        pytest.param(confirmation(type=""), "type", id="empty-type"),
        pytest.param(confirmation(type=1), "type", id="number-type"),
    ],
)
def test_bad_field_is_named(doc: dict[str, Any], field: str) -> None:
    """R6: each bad field is reported once, under its camelCase name, with a reason."""
    found = check(doc)
    assert fields(found) == [field]
    assert found[0]["message"]


def test_pascal_case_problems_use_camel_case_names() -> None:
    """R6/§1.1: an SDK payload in PascalCase gets its problems named the REST way."""
    doc = {**PASCAL, "PrimaryContact": {"FirstName": CONTACT_FIRST, "Email": "nope"}}
    assert fields(check(doc)) == ["primaryContact.lastName", "primaryContact.email"]


def test_every_problem_is_reported_at_once() -> None:
    """R6: `data` lists each bad field, not only the first."""
    doc = {
        "dateAgreed": "2099-01-01",
        "primaryContact": {"firstName": "", "lastName": CONTACT_LAST, "email": "x"},
        "templateId": "t",
        "type": "Other",
    }
    assert fields(check(doc)) == [
        "dateAgreed",
        "primaryContact.firstName",
        "primaryContact.email",
        "templateId",
        "type",
    ]


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"dateAgreed=2024-05-01", id="form-encoded"),
        pytest.param(b"[]", id="array"),
        pytest.param(b'"confirm"', id="string"),
        pytest.param(b"null", id="null"),
    ],
)
def test_body_that_is_not_an_object(raw: bytes) -> None:
    """R6: a payload that is not a JSON object is refused as a whole."""
    assert problems(body.parse(raw), NOW) == [
        {"field": "(body)", "message": "must be a JSON object"}
    ]


def test_now_is_a_parameter() -> None:
    """R6: 'not in the future' is judged against the clock the caller passes."""
    doc = body.parse(json.dumps(confirmation(dateAgreed="2030-01-01")).encode())
    assert fields(problems(doc, NOW)) == ["dateAgreed"]
    assert problems(doc, datetime(2030, 1, 2, tzinfo=UTC)) == []


PERSONAL = [CONTACT_FIRST, CONTACT_LAST, CONTACT_EMAIL, "ada.lovelace", "contoso", CONTACT_PHONE]


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(
            confirmation(primaryContact=contact(email="ada.lovelace@@contoso.example")),
            id="bad-email",
        ),
        pytest.param(
            confirmation(primaryContact=contact(firstName="Ada" * 100)), id="long-first-name"
        ),
        pytest.param(
            confirmation(primaryContact=contact(lastName=["Lovelace"])), id="last-name-list"
        ),
        pytest.param(
            confirmation(primaryContact=contact(phoneNumber="Ada Lovelace")), id="name-as-phone"
        ),
        pytest.param(
            confirmation(primaryContact=contact(email={"address": CONTACT_EMAIL})),
            id="email-object",
        ),
        pytest.param(confirmation(dateAgreed="Ada Lovelace"), id="name-as-date"),
        pytest.param(confirmation(templateId=CONTACT_EMAIL), id="email-as-template"),
        pytest.param(confirmation(type=CONTACT_LAST), id="name-as-type"),
        pytest.param(confirmation(primaryContact=f"{CONTACT_FIRST} {CONTACT_EMAIL}"), id="flat"),
    ],
)
def test_problems_never_echo_submitted_values(doc: dict[str, Any]) -> None:
    """R6/§5: problems name fields and reasons, never the names, emails or phones submitted."""
    found = check(doc)
    assert found, "the payload should have been refused"
    text = json.dumps(found).lower()
    for value in PERSONAL:
        assert value.lower() not in text


def test_a_little_clock_skew_is_not_the_future() -> None:
    """R6: a timestamp a minute ahead of the gate's clock is skew; an hour ahead is the future."""
    assert check(confirmation(dateAgreed="2024-06-01T12:01:00Z")) == []
    assert fields(check(confirmation(dateAgreed="2024-06-01T13:00:00Z"))) == ["dateAgreed"]
