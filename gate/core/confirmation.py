"""The R6 check of a confirmation payload, before it may reach the upstream.

The document arrives with lowercased keys (``gate.core.body``), so the model's
fields are lowercase and errors are reported under the camelCase names of
the REST docs. Problems name fields, never values: the values are a
person's name, email and phone number.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
)
from pydantic import StrictStr as _StrictStr

__all__ = [
    "CUSTOMER_AGREEMENT_TEMPLATE_ID",
    "MCA_TEMPLATE_ID",
    "MCA_TYPE",
    "attestation_id",
    "problems",
]

MCA_TYPE = "MicrosoftCloudAgreement"  # the seed's name for the Cloud Agreement (absent: this)
MCA_TEMPLATE_ID = "998b88de-aa99-4388-a42c-1b3517d49490"
CUSTOMER_AGREEMENT_TEMPLATE_ID = "117a77b0-9360-443b-8795-c6dedc750cf9"
_TYPES = ("MicrosoftCloudAgreement", "MicrosoftCustomerAgreement")
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_PHONE = re.compile(r"[0-9+()\-. /x]{3,40}", re.I)
_CLOCK_SKEW = timedelta(minutes=5)  # the caller's clock may run a little ahead of ours
_ZONE_SLACK = timedelta(hours=14)  # 'today' somewhere on Earth may be tomorrow in UTC
_NAMES = {
    "dateagreed": "dateAgreed",
    "primarycontact": "primaryContact",
    "firstname": "firstName",
    "lastname": "lastName",
    "email": "email",
    "phonenumber": "phoneNumber",
    "templateid": "templateId",
    "type": "type",
}


def _date_agreed(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("must be a date string, e.g. 2024-05-01 or 2024-05-01T00:00:00Z")
    text = value.strip()
    try:
        moment = (
            datetime.combine(date.fromisoformat(text), datetime.min.time())
            if len(text) == 10
            else datetime.fromisoformat(text)
        )
    except ValueError:
        raise ValueError("must be an ISO 8601 date, e.g. 2024-05-01T00:00:00Z") from None
    if moment.tzinfo is not None:
        return moment
    # A date or time with no zone is local to someone, who may already be 14 hours ahead.
    try:
        return moment.replace(tzinfo=UTC) - _ZONE_SLACK
    except OverflowError:
        raise ValueError("must be a date within the calendar's range") from None


def _not_future(value: datetime, info: ValidationInfo) -> datetime:
    now: datetime = info.context["now"] if info.context else datetime.now(UTC)
    if value > now + _CLOCK_SKEW:
        raise ValueError("must not be in the future")
    return value


def _email(value: str) -> str:
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        raise ValueError("must be a well-formed email address") from None
    return value


def _name(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _phone(value: str | None) -> str | None:
    if value is not None and value.strip() and not _PHONE.fullmatch(value.strip()):
        raise ValueError("must be a phone number (digits, spaces, + - ( ) .)")
    return value


def _template(value: str) -> str:
    if not _GUID.fullmatch(value):
        raise ValueError(f"must be the agreement template id, e.g. {MCA_TEMPLATE_ID}")
    return value


def _mca(value: str) -> str:
    if value.lower() not in (kind.lower() for kind in _TYPES):
        raise ValueError(f"must be {' or '.join(_TYPES)}")
    return value


_Name = Annotated[_StrictStr, Field(max_length=256), AfterValidator(_name)]


class _Contact(BaseModel):
    model_config = ConfigDict(extra="allow")

    firstname: _Name
    lastname: _Name
    email: Annotated[_StrictStr, Field(max_length=320), AfterValidator(_email)]
    phonenumber: Annotated[_StrictStr | None, AfterValidator(_phone)] = None


class _Confirmation(BaseModel):
    model_config = ConfigDict(extra="allow")

    dateagreed: Annotated[datetime, BeforeValidator(_date_agreed), AfterValidator(_not_future)]
    primarycontact: _Contact
    templateid: Annotated[_StrictStr, AfterValidator(_template)]
    type: Annotated[_StrictStr, AfterValidator(_mca)] = MCA_TYPE


def _field(loc: tuple[int | str, ...]) -> str:
    return ".".join(_NAMES.get(str(part), str(part)) for part in loc)


def _message(kind: str, text: str) -> str:
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a JSON object"
    return text.removeprefix("Value error, ")


def attestation_id(doc: Any) -> str | None:
    """The attestation a confirmation names (the 2025-26 flow), or None when it names none."""
    value = doc.get("attestationid") if isinstance(doc, dict) else None
    return value if isinstance(value, str) and value.strip() else None


def problems(doc: Any, now: datetime) -> list[dict[str, str]]:
    """Each way the payload breaks R6, as ``{"field", "message"}``; empty when valid.

    A confirmation naming an attestation (a non-empty string ``attestationId``)
    needs nothing else here: the attestation holds the rest, and the upstream
    decides about it.
    """
    if not isinstance(doc, dict):
        return [{"field": "(body)", "message": "must be a JSON object"}]
    if attestation_id(doc) is not None:
        return []
    if "attestationid" in doc:
        return [{"field": "attestationId", "message": "must be a non-empty string"}]
    try:
        _Confirmation.model_validate(doc, context={"now": now})
    except ValidationError as exc:
        return [
            {"field": _field(err["loc"]), "message": _message(err["type"], err["msg"])}
            for err in exc.errors(include_url=False, include_input=False)
        ]
    return []
