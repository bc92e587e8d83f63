"""gate.core.policy: mode, enforcement date, cloud, rollout and lookup errors -> verdict."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from gate.config import PolicySettings
from gate.core.policy import Decision, Policy, Reason, State, Verdict
from tests.support import CUSTOMER, PARTNER_A, PARTNER_B

NOW = datetime(2024, 6, 1, tzinfo=UTC).timestamp()  # after the default enforce_from (2018)
FUTURE = "2030-01-01T00:00:00Z"

ACCEPTED, NOT_ACCEPTED, UNKNOWN = State.ACCEPTED, State.NOT_ACCEPTED, State.UNKNOWN
ALLOWED = (Verdict.ALLOWED, Reason.ACCEPTED)
BLOCKED = (Verdict.BLOCKED, Reason.NOT_ACCEPTED)
BLOCKED_LOOKUP = (Verdict.BLOCKED, Reason.LOOKUP_ERROR)
WOULD_BLOCK_LOOKUP = (Verdict.WOULD_BLOCK, Reason.LOOKUP_ERROR)
OBSERVED = (Verdict.WOULD_BLOCK, Reason.OBSERVE_MODE)
EARLY = (Verdict.WOULD_BLOCK, Reason.BEFORE_ENFORCEMENT)
ROLLOUT = (Verdict.WOULD_BLOCK, Reason.ROLLOUT)


def make_policy(cloud: str = "public", fail_open: bool = False, **settings: Any) -> Policy:
    return Policy(PolicySettings(**settings), cloud=cloud, fail_open=fail_open)


@pytest.mark.parametrize(
    ("settings", "fail_open", "partner", "state", "expected"),
    [
        pytest.param({}, False, PARTNER_A, ACCEPTED, ALLOWED, id="enforce-accepted"),
        pytest.param({}, False, PARTNER_A, NOT_ACCEPTED, BLOCKED, id="enforce-not-accepted"),
        pytest.param({}, False, PARTNER_A, UNKNOWN, BLOCKED_LOOKUP, id="lookup-error-fail-closed"),
        pytest.param({}, True, PARTNER_A, UNKNOWN, WOULD_BLOCK_LOOKUP, id="lookup-error-fail-open"),
        pytest.param({}, True, PARTNER_A, NOT_ACCEPTED, BLOCKED, id="fail-open-still-blocks"),
        pytest.param({"mode": "observe"}, False, PARTNER_A, ACCEPTED, ALLOWED, id="observe-ok"),
        pytest.param({"mode": "observe"}, False, PARTNER_A, NOT_ACCEPTED, OBSERVED, id="observe"),
        pytest.param({"mode": "observe"}, False, PARTNER_A, UNKNOWN, OBSERVED, id="observe-error"),
        pytest.param(
            {"enforce_from": FUTURE}, False, PARTNER_A, NOT_ACCEPTED, EARLY, id="before-date"
        ),
        pytest.param(
            {"enforce_from": FUTURE}, False, PARTNER_A, UNKNOWN, EARLY, id="before-date-error"
        ),
        pytest.param(
            {"enforce_from": FUTURE}, False, PARTNER_A, ACCEPTED, ALLOWED, id="before-date-ok"
        ),
        pytest.param(
            {"enforce_from": "2024-06-01T00:00:00Z"},
            False,
            PARTNER_A,
            NOT_ACCEPTED,
            BLOCKED,
            id="exactly-at-enforce-from",
        ),
        pytest.param(
            {"enforce_from": "2024-06-01T02:00:00+02:00"},
            False,
            PARTNER_A,
            NOT_ACCEPTED,
            BLOCKED,
            id="enforce-from-other-zone-same-instant",
        ),
        pytest.param(
            {"enforce_from": "2024-06-01T00:00:01Z"},
            False,
            PARTNER_A,
            NOT_ACCEPTED,
            EARLY,
            id="one-second-before",
        ),
        pytest.param(
            {"partners": {PARTNER_A: {"mode": "observe"}}},
            False,
            PARTNER_A,
            NOT_ACCEPTED,
            OBSERVED,
            id="partner-observe-override",
        ),
        pytest.param(
            {"partners": {PARTNER_A: {"mode": "observe"}}},
            False,
            PARTNER_B,
            NOT_ACCEPTED,
            BLOCKED,
            id="other-partner-not-overridden",
        ),
        pytest.param(
            {"partners": {PARTNER_A.upper(): {"mode": "observe"}}},
            False,
            PARTNER_A,
            NOT_ACCEPTED,
            OBSERVED,
            id="override-key-case-insensitive",
        ),
        pytest.param(
            {"mode": "observe", "partners": {PARTNER_A: {"mode": "enforce"}}},
            False,
            PARTNER_A,
            NOT_ACCEPTED,
            BLOCKED,
            id="partner-enforce-override",
        ),
        pytest.param(
            {"mode": "observe", "partners": {PARTNER_A: {"mode": "enforce"}}},
            False,
            PARTNER_B,
            NOT_ACCEPTED,
            OBSERVED,
            id="others-observed",
        ),
        pytest.param(
            {"enforce_percent": 0}, False, PARTNER_A, NOT_ACCEPTED, ROLLOUT, id="percent-0"
        ),
        pytest.param(
            {"enforce_percent": 0}, False, PARTNER_A, UNKNOWN, ROLLOUT, id="percent-0-err"
        ),
        pytest.param(
            {"enforce_percent": 0}, False, PARTNER_A, ACCEPTED, ALLOWED, id="percent-0-ok"
        ),
        pytest.param(
            {"enforce_percent": 100}, False, PARTNER_A, NOT_ACCEPTED, BLOCKED, id="percent-100"
        ),
        pytest.param(
            {"mode": "observe", "enforce_percent": 0},
            False,
            PARTNER_A,
            NOT_ACCEPTED,
            OBSERVED,
            id="observe-before-rollout",
        ),
        pytest.param(
            {"enforce_from": FUTURE, "enforce_percent": 0},
            False,
            PARTNER_A,
            NOT_ACCEPTED,
            EARLY,
            id="date-before-rollout",
        ),
    ],
)
def test_decide(
    settings: dict[str, Any],
    fail_open: bool,
    partner: str,
    state: State,
    expected: tuple[Verdict, Reason],
) -> None:
    """R7/§3: mode, per-partner override, enforce_from, rollout and on_lookup_error decide."""
    policy = make_policy(fail_open=fail_open, **settings)
    assert policy.decide(partner, CUSTOMER, state, NOW) == Decision(*expected)


@pytest.mark.parametrize(
    ("cloud", "settings", "partner", "expected"),
    [
        pytest.param("public", {}, PARTNER_A, None, id="public-enforce"),
        pytest.param("public", {"mode": "observe"}, PARTNER_A, None, id="public-observe"),
        pytest.param("usgov", {}, PARTNER_A, Reason.NATIONAL_CLOUD, id="usgov"),
        pytest.param("germany", {}, PARTNER_A, Reason.NATIONAL_CLOUD, id="germany"),
        pytest.param("china", {}, PARTNER_A, Reason.NATIONAL_CLOUD, id="china"),
        pytest.param(
            "china", {"mode": "off"}, PARTNER_A, Reason.NATIONAL_CLOUD, id="cloud-before-off"
        ),
        pytest.param("public", {"mode": "off"}, PARTNER_A, Reason.POLICY_OFF, id="off"),
        pytest.param(
            "public",
            {"partners": {PARTNER_A: {"mode": "off"}}},
            PARTNER_A,
            Reason.POLICY_OFF,
            id="partner-off",
        ),
        pytest.param(
            "public",
            {"partners": {PARTNER_A: {"mode": "off"}}},
            PARTNER_B,
            None,
            id="other-partner-on",
        ),
        pytest.param(
            "public",
            {"mode": "off", "partners": {PARTNER_A: {"mode": "enforce"}}},
            PARTNER_A,
            None,
            id="partner-enforced-while-off",
        ),
        pytest.param(
            "public",
            {"mode": "off", "partners": {PARTNER_A: {"mode": "enforce"}}},
            PARTNER_B,
            Reason.POLICY_OFF,
            id="others-off",
        ),
    ],
)
def test_exemption(
    cloud: str, settings: dict[str, Any], partner: str, expected: Reason | None
) -> None:
    """R8/§2: a national cloud, or policy off for the partner, exempts a call before any lookup."""
    exemption = make_policy(cloud=cloud, **settings).exemption(partner)
    if expected is None:
        assert exemption is None
    else:
        assert exemption == Decision(Verdict.EXEMPT, expected)


@pytest.mark.parametrize(
    ("cloud", "national"),
    [
        pytest.param("public", False, id="public"),
        pytest.param("usgov", True, id="usgov"),
        pytest.param("germany", True, id="germany"),
        pytest.param("china", True, id="china"),
    ],
)
def test_national_cloud_flag(cloud: str, national: bool) -> None:
    """R8: only the public cloud is gated."""
    assert make_policy(cloud=cloud).national_cloud is national


@pytest.mark.parametrize(
    ("settings", "partner", "mode"),
    [
        pytest.param({}, PARTNER_A, "enforce", id="default"),
        pytest.param({"mode": "observe"}, PARTNER_A, "observe", id="global"),
        pytest.param({"partners": {PARTNER_A: {"mode": "off"}}}, PARTNER_A, "off", id="override"),
        pytest.param({"partners": {PARTNER_A: {"mode": "off"}}}, PARTNER_B, "enforce", id="other"),
    ],
)
def test_mode_for(settings: dict[str, Any], partner: str, mode: str) -> None:
    """§3: a per-partner override replaces the global mode for that partner only."""
    assert make_policy(**settings).mode_for(partner) == mode


CUSTOMERS = [str(uuid.UUID(int=n * 7919 + 1)) for n in range(2000)]


def enforced(percent: int, partner: str = PARTNER_A) -> set[str]:
    policy = make_policy(enforce_percent=percent)
    return {customer for customer in CUSTOMERS if policy.in_rollout(partner, customer)}


@pytest.mark.parametrize(
    ("percent", "low", "high"),
    [
        pytest.param(0, 0, 0, id="none"),
        pytest.param(10, 150, 250, id="ten"),
        pytest.param(50, 900, 1100, id="half"),
        pytest.param(90, 1750, 1850, id="ninety"),
        pytest.param(100, 2000, 2000, id="all"),
    ],
)
def test_rollout_share(percent: int, low: int, high: int) -> None:
    """§3: enforce_percent enforces about that share of customers (2000 fixed ids)."""
    assert low <= len(enforced(percent)) <= high


def test_rollout_is_stable_across_instances() -> None:
    """§3: the rollout hash is stable, so a customer is enforced or observed every time."""
    assert enforced(37) == enforced(37)
    policy = make_policy(enforce_percent=37)
    first = [policy.in_rollout(PARTNER_A, customer) for customer in CUSTOMERS[:50]]
    assert [policy.in_rollout(PARTNER_A, customer) for customer in CUSTOMERS[:50]] == first


def test_rollout_bucket_is_pinned() -> None:
    """§3: the hash does not vary per process or release (crc32 of "partner/customer" mod 100).

    Replicas share nothing, so they must agree on each pair; changing the hash
    would silently move customers between enforced and observed.
    """
    assert not make_policy(enforce_percent=39).in_rollout(PARTNER_A, CUSTOMER)
    assert make_policy(enforce_percent=40).in_rollout(PARTNER_A, CUSTOMER)


def test_rollout_grows_monotonically() -> None:
    """§3: raising enforce_percent only adds customers; none flips back to observed."""
    shares = [enforced(percent) for percent in (0, 5, 25, 50, 75, 99, 100)]
    for smaller, larger in itertools.pairwise(shares):
        assert smaller <= larger
        assert smaller != larger


def test_rollout_hashes_the_pair() -> None:
    """R3/§3: the bucket depends on the partner as well as the customer."""
    assert enforced(50, PARTNER_A) != enforced(50, PARTNER_B)
