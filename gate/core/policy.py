"""Decide: mode, enforcement date, cloud and rollout turn an acceptance state into a verdict.

Pure and synchronous: the caller passes the acceptance state it found and the
current time, so every branch is a table test. A block is a value here, and
the pipeline renders it.
"""

from __future__ import annotations

import zlib
from enum import StrEnum
from typing import NamedTuple

from gate.config import PolicySettings

__all__ = ["Decision", "Policy", "Reason", "State", "Verdict"]


class Verdict(StrEnum):
    """The ``X-Gate-Decision`` header values, which double as metric labels."""

    ALLOWED = "allowed"
    BLOCKED = "blocked"
    WOULD_BLOCK = "would-block"
    EXEMPT = "exempt"


class State(StrEnum):
    """What the acceptance store knows about a (partner, customer) pair."""

    ACCEPTED = "accepted"
    NOT_ACCEPTED = "not_accepted"
    UNKNOWN = "unknown"  # the lookup failed and nothing usable was cached


class Reason(StrEnum):
    ACCEPTED = "accepted"
    NOT_ACCEPTED = "not_accepted"
    LOOKUP_ERROR = "lookup_error"
    NATIONAL_CLOUD = "national_cloud"
    POLICY_OFF = "policy_off"
    OBSERVE_MODE = "observe_mode"
    BEFORE_ENFORCEMENT = "before_enforcement"
    ROLLOUT = "rollout_observed"
    CONFIRMATION = "confirmation"
    UPSTREAM_DENIED = "upstream_denied"  # the lookup was refused the caller's own credentials


class Decision(NamedTuple):
    verdict: Verdict
    reason: Reason


_EXEMPT_CLOUD = Decision(Verdict.EXEMPT, Reason.NATIONAL_CLOUD)
_EXEMPT_OFF = Decision(Verdict.EXEMPT, Reason.POLICY_OFF)
_ALLOWED = Decision(Verdict.ALLOWED, Reason.ACCEPTED)


class Policy:
    """The policy section compiled for the hot path."""

    __slots__ = ("_enforce_from", "_mode", "_partners", "_percent", "fail_open", "national_cloud")

    def __init__(self, settings: PolicySettings, *, cloud: str, fail_open: bool) -> None:
        self._mode = settings.mode
        self._enforce_from = settings.enforce_from.timestamp()
        self._percent = settings.enforce_percent
        self._partners = {tid: p.mode for tid, p in settings.partners.items()}
        self.national_cloud = cloud != "public"
        self.fail_open = fail_open

    def mode_for(self, partner: str) -> str:
        return self._partners.get(partner, self._mode)

    def blanket_exemption(self) -> Decision | None:
        """Exempt whoever calls: a national cloud, or mode off with no partner turned on."""
        if self.national_cloud:
            return _EXEMPT_CLOUD
        if self._mode == "off" and all(mode == "off" for mode in self._partners.values()):
            return _EXEMPT_OFF
        return None

    def exemption(self, partner: str) -> Decision | None:
        """A verdict reached without any lookup: national cloud or policy off."""
        if self.national_cloud:
            return _EXEMPT_CLOUD
        if self.mode_for(partner) == "off":
            return _EXEMPT_OFF
        return None

    def in_rollout(self, partner: str, customer: str) -> bool:
        """A stable share of pairs, so a customer is enforced or observed every time."""
        if self._percent >= 100:
            return True
        bucket = zlib.crc32(f"{partner}/{customer}".encode()) % 100
        return bucket < self._percent

    def decide(self, partner: str, customer: str, state: State, now: float) -> Decision:
        exempt = self.exemption(partner)
        if exempt is not None:
            return exempt
        if state is State.ACCEPTED:
            return _ALLOWED
        reason = Reason.NOT_ACCEPTED if state is State.NOT_ACCEPTED else Reason.LOOKUP_ERROR
        if self.mode_for(partner) == "observe":
            return Decision(Verdict.WOULD_BLOCK, Reason.OBSERVE_MODE)
        if now < self._enforce_from:
            return Decision(Verdict.WOULD_BLOCK, Reason.BEFORE_ENFORCEMENT)
        if not self.in_rollout(partner, customer):
            return Decision(Verdict.WOULD_BLOCK, Reason.ROLLOUT)
        if reason is Reason.LOOKUP_ERROR and self.fail_open:
            return Decision(Verdict.WOULD_BLOCK, reason)
        return Decision(Verdict.BLOCKED, reason)
