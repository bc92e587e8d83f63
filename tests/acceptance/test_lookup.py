"""R4 and DESIGN §1.2: the acceptance lookup on its own, judged and over sockets to the sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from yarl import URL

from gate.acceptance.lookup import Finding, LookupRules, compile_rules, judge, look_up
from gate.config import PolicySettings
from gate.core.policy import State
from gate.http.upstream import UpstreamPool
from tests.conftest import Upstream
from tests.support import CUSTOMER, PARTNER_A, auth

CLOUD, MCA = "MicrosoftCloudAgreement", "MicrosoftCustomerAgreement"
SINCE = "2023-04-01T00:00:00Z"


def _rules(**policy: Any) -> LookupRules:
    return compile_rules(PolicySettings(**policy))


def _doc(*items: tuple[str, str]) -> dict[str, Any]:
    return {"items": [{"type": kind, "dateAgreed": date} for kind, date in items]}


DEFAULTS = _rules()
PROFILE_2026 = _rules(agreement_types=[MCA], accepted_since=SINCE)


@pytest.mark.parametrize(
    ("doc", "direct", "rules", "expected"),
    [
        pytest.param(_doc(), None, DEFAULTS, Finding(State.NOT_ACCEPTED, reason="no_agreement"),
                     id="empty"),
        pytest.param(_doc((CLOUD, "2019-01-01T00:00:00Z")), None, DEFAULTS,
                     Finding(State.ACCEPTED, "agreement", CLOUD, "2019-01-01T00:00:00Z"),
                     id="defaults-cloud-any-date"),
        pytest.param(_doc((MCA, "2021-05-01T00:00:00Z")), None, DEFAULTS,
                     Finding(State.ACCEPTED, "agreement", MCA, "2021-05-01T00:00:00Z"),
                     id="defaults-mca"),
        pytest.param(_doc((CLOUD, "2024-01-01T00:00:00Z")), None, PROFILE_2026,
                     Finding(State.NOT_ACCEPTED, "none", CLOUD, "2024-01-01T00:00:00Z",
                             "type_not_counted"),
                     id="2026-cloud-only"),
        pytest.param(_doc((MCA, "2023-03-31T23:59:59Z")), None, PROFILE_2026,
                     Finding(State.NOT_ACCEPTED, "none", MCA, "2023-03-31T23:59:59Z",
                             "before_accepted_since"),
                     id="2026-before-cutoff"),
        pytest.param(_doc((MCA, "2023-04-01T00:00:00Z")), None, PROFILE_2026,
                     Finding(State.ACCEPTED, "agreement", MCA, "2023-04-01T00:00:00Z"),
                     id="2026-at-cutoff"),
        pytest.param(_doc((MCA, "2020-01-01T00:00:00Z"), (MCA, "2024-02-02T00:00:00"),
                          (CLOUD, "2025-01-01T00:00:00Z")), None, PROFILE_2026,
                     Finding(State.ACCEPTED, "agreement", MCA, "2024-02-02T00:00:00"),
                     id="2026-newest-that-counts-naive-is-utc"),
        pytest.param(_doc((MCA, "someday")), None, PROFILE_2026,
                     Finding(State.NOT_ACCEPTED, "none", MCA, "someday", "before_accepted_since"),
                     id="2026-unreadable-date-does-not-count"),
        pytest.param({"Items": [{"AgreementType": MCA, "DateAgreed": "2024-01-01"}]}, None,
                     PROFILE_2026, Finding(State.ACCEPTED, "agreement", MCA, "2024-01-01"),
                     id="pascal-case"),
        pytest.param(_doc(), {"isSigned": True}, DEFAULTS,
                     Finding(State.ACCEPTED, "direct", MCA, ""), id="direct-signed"),
        pytest.param(_doc((MCA, "2020-01-01T00:00:00Z")), {"IsSigned": False}, PROFILE_2026,
                     Finding(State.NOT_ACCEPTED, "none", MCA, "2020-01-01T00:00:00Z",
                             "before_accepted_since"),
                     id="direct-unsigned-keeps-reason"),
        pytest.param(_doc(), {"isSigned": "yes"}, DEFAULTS,
                     Finding(State.UNKNOWN, reason="lookup_error"), id="direct-wrong-shape"),
        pytest.param({"items": "none"}, None, DEFAULTS,
                     Finding(State.UNKNOWN, reason="lookup_error"), id="agreements-wrong-shape"),
    ],
)  # fmt: skip
def test_judge(doc: Any, direct: Any, rules: LookupRules, expected: Finding) -> None:
    """R4: which agreement counts, and why not when none does."""
    assert judge(doc, direct, rules) == expected


def test_rules_compile_the_query_and_direct() -> None:
    """R4: agreementType=* for several types, the one type alone; the direct status is an MCA."""
    assert DEFAULTS.query == "*" and DEFAULTS.direct and DEFAULTS.accepted_since is None
    assert PROFILE_2026.query == MCA
    assert PROFILE_2026.accepted_since == datetime(2023, 4, 1, tzinfo=UTC)
    assert not _rules(direct_acceptance=False).direct
    assert not _rules(agreement_types=[CLOUD]).direct  # the direct status is a Customer Agreement


@pytest.fixture
async def pool(upstream: Upstream) -> AsyncIterator[UpstreamPool]:
    made = UpstreamPool(URL(upstream.url), limit=4, connect_timeout=2, read_timeout=2)
    yield made
    made.close()


async def _look(pool: UpstreamPool, rules: LookupRules = DEFAULTS, **claims: Any) -> Finding:
    authorization = auth(PARTNER_A, **claims)["Authorization"]
    return await look_up(pool, "", CUSTOMER, authorization, rules, 2.0, "corr-1")


async def test_look_up_asks_every_type_then_the_direct_status(
    upstream: Upstream, pool: UpstreamPool
) -> None:
    """R4: agreementType=*; the direct status only because the agreements did not confirm."""
    upstream.sandbox.sign_directly(CUSTOMER)
    found = await _look(pool)
    assert (found.state, found.source) == (State.ACCEPTED, "direct")
    asked = [(r.path.rsplit("/", 1)[1], r.query_string) for r in upstream.sandbox.received]
    assert asked == [
        ("agreements", "agreementType=*"),
        ("directSignedMicrosoftCustomerAgreementStatus", ""),
    ]
    assert all(r.headers["MS-CorrelationId"] == "corr-1" for r in upstream.sandbox.received)


async def test_look_up_stops_at_a_confirming_agreement(
    upstream: Upstream, pool: UpstreamPool
) -> None:
    """R4: a counting agreement confirms; the direct status is not asked."""
    upstream.sandbox.accept(PARTNER_A, CUSTOMER, MCA, "2024-06-01T00:00:00Z")
    found = await _look(pool, PROFILE_2026)
    assert found == Finding(State.ACCEPTED, "agreement", MCA, "2024-06-01T00:00:00Z")
    [asked] = upstream.sandbox.received
    assert asked.query_string == f"agreementType={MCA}"


async def test_look_up_without_direct_acceptance_never_asks_it(
    upstream: Upstream, pool: UpstreamPool
) -> None:
    """R4 b off: the customer's own acceptance is not asked and does not count."""
    upstream.sandbox.sign_directly(CUSTOMER)
    found = await _look(pool, _rules(direct_acceptance=False))
    assert (found.state, found.reason) == (State.NOT_ACCEPTED, "no_agreement")
    assert len(upstream.sandbox.received) == 1


async def test_app_only_token_is_denied_and_relayed(upstream: Upstream, pool: UpstreamPool) -> None:
    """§1.2: agreements take App+User credentials only; the 403 is kept for the caller."""
    found = await _look(pool, app_only=True)
    assert found.state is State.UNKNOWN
    assert found.denied is not None and found.denied.status == 403


@pytest.mark.parametrize("status", [500, 404])
async def test_failing_direct_status(upstream: Upstream, pool: UpstreamPool, status: int) -> None:
    """§1.1: a direct status answered 5xx is a lookup error; 404 means not signed."""
    upstream.sandbox.knobs.direct_status = status
    found = await _look(pool)
    expected = State.UNKNOWN if status == 500 else State.NOT_ACCEPTED
    assert found.state is expected


async def test_throttled_lookup_reports_retry_after(upstream: Upstream, pool: UpstreamPool) -> None:
    """§2: a 429 is a lookup error that carries the upstream's Retry-After for the caller."""
    upstream.sandbox.knobs.agreements_status = 429
    upstream.sandbox.knobs.agreements_retry_after = "17"
    found = await _look(pool)
    assert (found.state, found.throttled, found.retry_after) == (State.UNKNOWN, True, 17.0)


async def test_timeout_is_a_lookup_error(upstream: Upstream, pool: UpstreamPool) -> None:
    """§1.1: a lookup slower than its timeout is a lookup error."""
    upstream.sandbox.knobs.agreements_delay_s = 0.5
    authorization = auth(PARTNER_A)["Authorization"]
    found = await look_up(pool, "", CUSTOMER, authorization, DEFAULTS, 0.1)
    assert (found.state, found.reason) == (State.UNKNOWN, "lookup_error")
