"""gate.core.identity: the partner is the one string `tid` claim of the one bearer token."""

from __future__ import annotations

import base64

import pytest

from gate.core.identity import partner_from_header, partner_from_token
from gate.sandbox import make_token
from tests.support import PARTNER_A, PARTNER_B

HEADER = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()


def raw_token(payload: bytes | str) -> str:
    """A token whose payload segment is exactly these bytes, base64url-encoded without padding."""
    data = payload.encode() if isinstance(payload, str) else payload
    return f"{HEADER}.{base64.urlsafe_b64encode(data).rstrip(b'=').decode()}.sig"


def bearer(token: str) -> str:
    return f"Bearer {token}"


@pytest.mark.parametrize(
    ("authorizations", "expected"),
    [
        pytest.param([bearer(make_token(PARTNER_A))], PARTNER_A, id="tid-claim"),
        pytest.param([bearer(make_token(PARTNER_A.upper()))], PARTNER_A, id="uppercase-guid"),
        pytest.param([f"bearer {make_token(PARTNER_A)}"], PARTNER_A, id="lowercase-scheme"),
        pytest.param([f"BEARER {make_token(PARTNER_A)}"], PARTNER_A, id="uppercase-scheme"),
        pytest.param([f"  Bearer   {make_token(PARTNER_A)}  "], PARTNER_A, id="padded"),
        pytest.param(
            [bearer(make_token(PARTNER_A, oid="x", aud="https://api.partnercenter.microsoft.com"))],
            PARTNER_A,
            id="other-claims",
        ),
        pytest.param(
            [bearer(make_token(PARTNER_A, extra={"tid": PARTNER_B}))],
            PARTNER_A,
            id="nested-tid-not-counted",
        ),
    ],
)
def test_partner_from_token(authorizations: list[str], expected: str | None) -> None:
    """§2: the partner is the token's tid claim, decoded and lowercased (§1.1)."""
    assert partner_from_token(authorizations) == expected


@pytest.mark.parametrize(
    "authorizations",
    [
        pytest.param([], id="no-authorization"),
        pytest.param(
            [bearer(make_token(PARTNER_A)), bearer(make_token(PARTNER_A))],
            id="two-authorization-headers-same",
        ),
        pytest.param(
            [bearer(make_token(PARTNER_A)), bearer(make_token(PARTNER_B))],
            id="two-authorization-headers-different",
        ),
        pytest.param([""], id="empty-header"),
        pytest.param(["Bearer"], id="scheme-only"),
        pytest.param(["Bearer "], id="scheme-and-space"),
        pytest.param([f"Basic {make_token(PARTNER_A)}"], id="not-bearer"),
        pytest.param([make_token(PARTNER_A)], id="no-scheme"),
        pytest.param([f"Bearerx {make_token(PARTNER_A)}"], id="scheme-prefix"),
        pytest.param([bearer(make_token(PARTNER_A).rsplit(".", 1)[0])], id="two-part-token"),
        pytest.param([bearer(make_token(PARTNER_A) + ".more")], id="four-part-token"),
        pytest.param([bearer(f"{HEADER}.!!!!.sig")], id="bad-base64"),
        pytest.param([bearer(f"{HEADER}..sig")], id="empty-payload"),
        pytest.param([bearer(f"{HEADER}.a.sig")], id="bad-base64-length"),
        pytest.param([bearer(raw_token(b"\xff\xfe\x00"))], id="payload-not-utf8"),
        pytest.param([bearer(raw_token("not json"))], id="payload-not-json"),
        pytest.param([bearer(raw_token(f'["{PARTNER_A}"]'))], id="payload-json-array"),
        pytest.param([bearer(raw_token(f'[{{"tid":"{PARTNER_A}"}}]'))], id="payload-array-of-obj"),
        pytest.param([bearer(raw_token(f'"{PARTNER_A}"'))], id="payload-json-string"),
        pytest.param([bearer(raw_token("{}"))], id="no-tid"),
        pytest.param([bearer(make_token(123))], id="tid-number"),  # type: ignore[arg-type]
        pytest.param([bearer(make_token(None))], id="tid-null"),  # type: ignore[arg-type]
        pytest.param([bearer(make_token([PARTNER_A]))], id="tid-list"),  # type: ignore[arg-type]
        pytest.param([bearer(make_token(""))], id="tid-empty"),
        pytest.param([bearer(make_token("a b"))], id="tid-with-space"),
        pytest.param([bearer(make_token("../" + PARTNER_A))], id="tid-with-slash"),
        pytest.param([bearer(make_token("x" * 129))], id="tid-too-long"),
        pytest.param(
            [bearer(raw_token(f'{{"tid":"{PARTNER_A}","tid":"{PARTNER_B}"}}'))],
            id="two-tid-claims",
        ),
        pytest.param(
            [bearer(raw_token(f'{{"tid":"{PARTNER_A}","tid":"{PARTNER_A}"}}'))],
            id="two-tid-claims-same-value",
        ),
        pytest.param([bearer(raw_token(f'{{"TID":"{PARTNER_A}"}}'))], id="claim-TID"),
        pytest.param([bearer(raw_token(f'{{"Tid":"{PARTNER_A}"}}'))], id="claim-Tid"),
        pytest.param([bearer(raw_token(f'{{"tid ":"{PARTNER_A}"}}'))], id="claim-tid-space"),
        pytest.param([bearer(raw_token("[" * 100_000 + "]" * 100_000))], id="deeply-nested"),
    ],
)
def test_token_without_one_partner_names_none(authorizations: list[str]) -> None:
    """§2: a call without exactly one bearer token with exactly one string tid has no partner."""
    assert partner_from_token(authorizations) is None


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param([PARTNER_A], PARTNER_A, id="one"),
        pytest.param([PARTNER_A.upper()], PARTNER_A, id="uppercase-guid"),
        pytest.param([f"  {PARTNER_A}\t"], PARTNER_A, id="padded"),
        pytest.param(["contoso.onmicrosoft.com"], "contoso.onmicrosoft.com", id="domain-style"),
        pytest.param([], None, id="absent"),
        pytest.param([PARTNER_A, PARTNER_A], None, id="repeated"),
        pytest.param([PARTNER_A, PARTNER_B], None, id="two-partners"),
        pytest.param([""], None, id="empty"),
        pytest.param(["   "], None, id="blank"),
        pytest.param([f"{PARTNER_A},{PARTNER_B}"], None, id="comma-joined"),
        pytest.param([f"{PARTNER_A} {PARTNER_B}"], None, id="space-joined"),
        pytest.param(["x" * 129], None, id="too-long"),
    ],
)
def test_partner_from_header(values: list[str], expected: str | None) -> None:
    """§2: with identity.partner_header set, that header names the partner when it names one."""
    assert partner_from_header(values) == expected
