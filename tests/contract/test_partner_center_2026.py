"""DESIGN §1.2, R1, R4, R6: Partner Center as it is today, under the defaults and the 2026 profile.

Every test runs a real gate on loopback in front of the sandbox Partner Center.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Gate, StartGate
from tests.support import (
    CUSTOMER,
    PARTNER_A,
    agreements_path,
    auth,
    confirmation,
    decisions,
    log_lines,
    metric,
    order,
    orders_path,
    subscription_path,
)

CLOUD, MCA = "MicrosoftCloudAgreement", "MicrosoftCustomerAgreement"
PROFILE = Path(__file__).resolve().parents[2] / "config" / "partner-center-2026.toml"
POLICY_2026: dict[str, Any] = tomllib.loads(PROFILE.read_text(encoding="utf-8"))["policy"]
PROFILES = [pytest.param({}, id="defaults"), pytest.param(POLICY_2026, id="2026")]


async def _order(gate: Gate, **claims: Any) -> Any:
    return await gate.client.post(orders_path(), json=order(), headers=auth(**claims))


def test_the_shipped_profile_says_what_the_readme_says() -> None:
    """§1.2: the profile counts the Customer Agreement only, from 2023-04-01, every edit field."""
    assert POLICY_2026["agreement_types"] == [MCA]
    assert POLICY_2026["accepted_since"].isoformat() == "2023-04-01T00:00:00+00:00"
    assert POLICY_2026["subscription_edits"] == [
        "quantity", "termDuration", "billingCycle", "scheduledNextTermInstructions",
    ]  # fmt: skip
    assert POLICY_2026["direct_acceptance"] is True


@pytest.mark.parametrize(
    ("policy", "kind", "date", "status", "why"),
    [
        pytest.param({}, CLOUD, "2019-01-01T00:00:00Z", 201, "", id="defaults-cloud-old"),
        pytest.param({}, MCA, "2020-05-01T00:00:00Z", 201, "", id="defaults-mca"),
        # The 2026 lookup asks for the Customer Agreement only: a Cloud Agreement is not listed.
        pytest.param(POLICY_2026, CLOUD, "2024-01-01T00:00:00Z", 403, "no_agreement",
                     id="2026-cloud-only"),
        pytest.param(POLICY_2026, MCA, "2023-03-31T23:59:59Z", 403, "before_accepted_since",
                     id="2026-mca-before-cutoff"),
        pytest.param(POLICY_2026, MCA, "2023-04-01T00:00:00Z", 201, "", id="2026-mca-at-cutoff"),
    ],
)  # fmt: skip
async def test_which_agreement_counts(
    start_gate: StartGate, policy: dict[str, Any], kind: str, date: str, status: int, why: str
) -> None:
    """R4: the agreement's type and date decide; a refusal says why and names both ways out."""
    gate = await start_gate(policy=policy)
    gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER, kind, date)
    response = await _order(gate)
    assert response.status == status
    [lookup] = gate.upstream.sandbox.calls("GET", agreements_path())
    assert lookup.query_string == ("agreementType=*" if not policy else f"agreementType={MCA}")
    if status == 403:
        refusal = await response.json()
        assert refusal["code"] == 13605
        assert refusal["data"][0]["reason"] == why
        assert decisions(gate.logs)[0]["why"] == why  # the operator sees it too
        assert "Microsoft 365 admin center" in refusal["description"]
        assert "/v1/attestations/enhanced" in refusal["description"]
        again = await _order(gate)  # from the cache now: the same reason, no second lookup
        assert (await again.json())["data"][0]["reason"] == why
        second = decisions(gate.logs)[1]
        assert (second["cache"], second["why"]) == ("hit", why)
        assert len(gate.upstream.sandbox.calls("GET", agreements_path())) == 1
        assert not gate.upstream.sandbox.calls("POST", "/orders")
    else:
        assert decisions(gate.logs)[0]["source"] == "agreement"


@pytest.mark.parametrize("policy", PROFILES)
async def test_the_customers_own_acceptance_counts(
    start_gate: StartGate, policy: dict[str, Any]
) -> None:
    """R4 b: a customer who accepted in the admin center buys at once; the log says direct."""
    gate = await start_gate(policy=policy)
    gate.upstream.sandbox.sign_directly(CUSTOMER)
    response = await _order(gate)
    assert (response.status, response.headers["X-Gate-Decision"]) == (201, "allowed")
    assert decisions(gate.logs)[0]["source"] == "direct"


@pytest.mark.parametrize("policy", PROFILES)
async def test_direct_acceptance_off(start_gate: StartGate, policy: dict[str, Any]) -> None:
    """R4 b off: the direct status is never asked; the customer's own acceptance is not enough."""
    gate = await start_gate(policy={**policy, "direct_acceptance": False})
    gate.upstream.sandbox.sign_directly(CUSTOMER)
    assert (await _order(gate)).status == 403
    assert not gate.upstream.sandbox.calls("GET", "/directSignedMicrosoftCustomerAgreementStatus")


@pytest.mark.parametrize(
    ("on_error", "status", "verdict"),
    [("block", 503, "blocked"), ("allow", 201, "would-block")],
)
async def test_failing_direct_status_is_a_lookup_error(
    start_gate: StartGate, on_error: str, status: int, verdict: str
) -> None:
    """§1.1: a direct-status lookup that fails is handled by on_lookup_error, never cached."""
    gate = await start_gate(policy=POLICY_2026, acceptance={"on_lookup_error": on_error})
    gate.upstream.sandbox.knobs.direct_status = 500
    response = await _order(gate)
    assert (response.status, response.headers["X-Gate-Decision"]) == (status, verdict)
    await _order(gate)
    assert len(gate.upstream.sandbox.calls("GET", agreements_path())) == 2  # not cached


# -- attestations and confirmations ------------------------------------------------------


@pytest.mark.parametrize("policy", PROFILES)
async def test_attestation_flow(start_gate: StartGate, policy: dict[str, Any]) -> None:
    """R5/R6 §1.2: the attestation passes untouched; a confirmation with its id records the pair."""
    gate = await start_gate(policy=policy)
    attest = await gate.client.post(
        "/v1/attestations/enhanced", json={"country": "US"}, headers=auth(app_only=True)
    )
    assert attest.status == 201 and "X-Gate-Decision" not in attest.headers
    attestation = (await attest.json())["attestationId"]
    confirmed = await gate.client.post(
        agreements_path(), json={"AttestationId": attestation}, headers=auth()
    )
    assert (confirmed.status, confirmed.headers["X-Gate-Decision"]) == (201, "allowed")
    assert (await _order(gate)).status == 201
    assert gate.upstream.sandbox.calls("GET", agreements_path()) == []  # recorded: no lookup
    assert decisions(gate.logs)[-1]["source"] == "confirmation"


async def test_attestation_refused_upstream_records_nothing(gate: Gate) -> None:
    """R5: a confirmation whose attestation the upstream refuses does not make the pair accepted."""
    confirmed = await gate.client.post(
        agreements_path(), json={"attestationId": "never-issued"}, headers=auth()
    )
    assert confirmed.status == 400  # the upstream's answer, passed back
    assert (await _order(gate)).status == 403


@pytest.mark.parametrize(
    ("policy", "doc", "recorded"),
    [
        pytest.param({}, confirmation(), True, id="defaults-cloud"),
        pytest.param({}, confirmation(type=MCA), True, id="defaults-mca"),
        pytest.param(POLICY_2026, confirmation(), False, id="2026-cloud-not-counted"),
        pytest.param(POLICY_2026, confirmation(type=MCA, dateAgreed="2023-03-01T00:00:00Z"),
                     False, id="2026-before-cutoff"),
        pytest.param(POLICY_2026, confirmation(type=MCA, dateAgreed="2024-05-01T00:00:00Z"),
                     True, id="2026-mca-current"),
    ],
)  # fmt: skip
async def test_a_confirmation_records_only_what_counts(
    start_gate: StartGate, policy: dict[str, Any], doc: dict[str, Any], recorded: bool
) -> None:
    """R6: a confirmation is forwarded, and marks the pair accepted only if it counts under R4."""
    gate = await start_gate(policy=policy)
    confirmed = await gate.client.post(agreements_path(), json=doc, headers=auth())
    assert confirmed.status == 201
    gate.upstream.sandbox.agreements.clear()  # only the gate's record can let the order through
    assert (await _order(gate)).status == (201 if recorded else 403)


# -- subscription edits -------------------------------------------------------------------

CURRENT = {
    "quantity": 10,
    "termDuration": "P1Y",
    "billingCycle": "monthly",
    "scheduledNextTermInstructions": None,
}


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        pytest.param("quantity", 11, "seat_change", id="quantity-changed"),
        pytest.param("quantity", 10, None, id="quantity-same"),
        pytest.param("termDuration", "P1M", "term_change", id="term-changed"),
        pytest.param("termDuration", "p1y", None, id="term-same-any-case"),
        pytest.param("billingCycle", "annual", "term_change", id="billing-changed"),
        pytest.param("billingCycle", "Monthly", None, id="billing-same"),
        pytest.param("scheduledNextTermInstructions", {"product": {"skuId": "0002"}},
                     "term_change", id="next-term-set"),
        pytest.param("scheduledNextTermInstructions", None, None, id="next-term-null"),
    ],
)  # fmt: skip
async def test_each_edit_field_under_the_2026_profile(
    start_gate: StartGate, field: str, value: Any, kind: str | None
) -> None:
    """R1 §1.2: an edit changing a listed field is gated: quantity a seat_change, else term."""
    gate = await start_gate(policy=POLICY_2026)
    response = await gate.client.patch(
        subscription_path(), json={**CURRENT, field: value}, headers=auth()
    )
    if kind is None:
        assert response.status == 200 and "X-Gate-Decision" not in response.headers
        return
    assert (response.status, response.headers["X-Gate-Decision"]) == (403, "blocked")
    refusal = await response.json()
    assert refusal["data"][0]["transaction"] == kind
    assert decisions(gate.logs)[0]["transaction"] == kind
    text = await gate.metrics()
    assert metric(text, "gate_decisions_total", transaction=kind, decision="blocked") == 1


async def test_term_change_passes_under_the_defaults(gate: Gate) -> None:
    """R1 defaults (seat_changes): a term or billing change alone is not gated."""
    doc = {**CURRENT, "termDuration": "P1M", "billingCycle": "annual"}
    response = await gate.client.patch(subscription_path(), json=doc, headers=auth())
    assert response.status == 200 and "X-Gate-Decision" not in response.headers


async def test_confirmed_term_change_is_allowed_and_counted(start_gate: StartGate) -> None:
    """R1: a confirmed customer's term change is allowed and counted as term_change."""
    gate = await start_gate(policy=POLICY_2026)
    gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER, MCA, "2024-01-01T00:00:00Z")
    response = await gate.client.patch(
        subscription_path(), json={"billingCycle": "annual"}, headers=auth()
    )
    assert (response.status, response.headers["X-Gate-Decision"]) == (200, "allowed")
    text = await gate.metrics()
    assert metric(text, "gate_decisions_total", transaction="term_change", decision="allowed") == 1


# -- App-only callers ---------------------------------------------------------------------


async def test_app_only_caller_without_token_file_gets_the_upstreams_denial(gate: Gate) -> None:
    """§1.2: an App-only token cannot ask for agreements; the upstream's 403 is relayed."""
    gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    response = await _order(gate, app_only=True)
    assert (response.status, response.headers["X-Gate-Decision"]) == (403, "blocked")
    assert (await response.json())["code"] == 900415  # the sandbox's own answer, as it came
    assert not gate.upstream.sandbox.calls("POST", "/orders")


async def test_app_only_caller_with_token_file(start_gate: StartGate, tmp_path: Path) -> None:
    """§1.2: lookups for the token file's own partner use its token; it is never logged."""
    from gate.sandbox import make_token

    token = make_token(PARTNER_A, marker="lookup-token-secret")
    path = tmp_path / "token"
    path.write_text(token, encoding="utf-8")
    gate = await start_gate(acceptance={"lookup_token_file": str(path)})
    gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    response = await _order(gate, app_only=True)
    assert (response.status, response.headers["X-Gate-Decision"]) == (201, "allowed")
    [lookup] = gate.upstream.sandbox.calls("GET", agreements_path())
    assert lookup.headers["Authorization"] == f"Bearer {token}"
    [placed] = gate.upstream.sandbox.calls("POST", "/orders")
    assert placed.headers["Authorization"] != f"Bearer {token}"  # the caller's own, forwarded
    assert token not in gate.logs.getvalue()
    assert all("secret" not in str(line) for line in log_lines(gate.logs))


async def test_token_file_is_reread_and_kept_to_its_partner(
    start_gate: StartGate, tmp_path: Path
) -> None:
    """§1.2: a refreshed file is used at once; another partner's lookups keep their own token."""
    from gate.sandbox import make_token
    from tests.support import PARTNER_B

    path = tmp_path / "token"
    path.write_text(make_token(PARTNER_A, v=1), encoding="utf-8")
    gate = await start_gate(acceptance={"lookup_token_file": str(path), "negative_ttl_s": 0})
    fresh = make_token(PARTNER_A, v=2, padding="x" * 8)  # another size: seen as changed
    path.write_text(fresh, encoding="utf-8")
    await _order(gate, app_only=True)
    await gate.client.post(orders_path(), json=order(), headers=auth(PARTNER_B))
    first, second = gate.upstream.sandbox.calls("GET", agreements_path())
    assert first.headers["Authorization"] == f"Bearer {fresh}"
    assert second.headers["Authorization"] == auth(PARTNER_B)["Authorization"]


async def test_a_forged_token_never_has_the_token_file_look_up_for_it(
    start_gate: StartGate, tmp_path: Path
) -> None:
    """§1.2, SECURITY: a token naming the file's partner must first be taken by the upstream
    (GET /v1/customers/{c}, which App-only tokens may make); a forged one gets the upstream's
    401 and the partner's own token asks nothing for it."""
    from gate.sandbox import make_token

    path = tmp_path / "token"
    path.write_text(make_token(PARTNER_A), encoding="utf-8")
    gate = await start_gate(acceptance={"lookup_token_file": str(path)})
    forged = make_token(PARTNER_A, app_only=True, forged=True)
    gate.upstream.sandbox.knobs.rejected_tokens = frozenset({forged})
    gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    response = await gate.client.post(
        orders_path(), json=order(), headers={"Authorization": f"Bearer {forged}"}
    )
    assert (response.status, response.headers["X-Gate-Decision"]) == (401, "blocked")
    assert gate.upstream.sandbox.calls("GET", agreements_path()) == []
    assert gate.upstream.sandbox.calls("GET", "directSignedMicrosoftCustomerAgreementStatus") == []
    assert not gate.upstream.sandbox.calls("POST", "/orders")


async def test_a_genuine_app_only_token_is_proven_once(
    start_gate: StartGate, tmp_path: Path
) -> None:
    """§1.2: the caller's token is shown to the upstream once, then trusted until it expires."""
    from gate.sandbox import make_token

    path = tmp_path / "token"
    path.write_text(make_token(PARTNER_A), encoding="utf-8")
    gate = await start_gate(acceptance={"lookup_token_file": str(path)})
    other = "c0ffee00-1234-4321-abcd-0123456789ac"
    for customer in (CUSTOMER, other):
        gate.upstream.sandbox.accept(PARTNER_A, customer)
        response = await gate.client.post(
            orders_path(customer), json=order(), headers=auth(app_only=True)
        )
        assert response.status == 201
    proofs = [
        r
        for r in gate.upstream.sandbox.received
        if r.method == "GET" and r.path.rstrip("/").lower() == f"/v1/customers/{CUSTOMER}"
    ]
    assert [p.headers["Authorization"] for p in proofs] == [auth(app_only=True)["Authorization"]]
    assert len(gate.upstream.sandbox.calls("GET", "/agreements")) == 2


@pytest.mark.parametrize(
    "policy",
    [
        pytest.param({"direct_acceptance": False}, id="direct-off"),
        pytest.param({"agreement_types": [CLOUD]}, id="cloud-only"),
    ],
)
async def test_the_refusal_names_the_admin_center_only_when_it_counts(
    start_gate: StartGate, policy: dict[str, Any]
) -> None:
    """§2: the customer's own acceptance is named as a way out only when the gate counts it."""
    gate = await start_gate(policy=policy)
    response = await _order(gate)
    assert response.status == 403
    refusal = await response.json()
    assert "admin center" not in refusal["description"]
    assert "resolveByCustomer" not in refusal["data"][0]
    assert "/v1/attestations/enhanced" in refusal["description"]
    assert gate.upstream.sandbox.calls("GET", "directSignedMicrosoftCustomerAgreementStatus") == []
