"""The compiled form of the settings: the only config the hot path reads.

A reload builds a whole new ``Runtime`` and swaps it into the holder in one
assignment, so a request sees either the old config or the new, never a mix.
"""

from __future__ import annotations

from dataclasses import dataclass

from yarl import URL

from gate.acceptance.lookup import LookupRules, compile_rules
from gate.config import Settings
from gate.core.classify import RuleTable
from gate.core.policy import Policy

__all__ = ["Runtime", "RuntimeHolder", "compile_settings"]


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    rules: RuleTable
    policy: Policy
    upstream: URL
    upstream_prefix: str
    seat_changes_only: bool  # subscription edits are gated by their fields (not "all")
    edit_fields: tuple[str, ...] | None  # the fields that gate a subscription edit; None: all
    lookup_rules: LookupRules
    partner_header: str
    max_gated_body: int


class RuntimeHolder:
    """Holds the current Runtime under one AppKey of the (frozen) app."""

    __slots__ = ("current",)

    def __init__(self, current: Runtime) -> None:
        self.current = current


def compile_settings(settings: Settings) -> Runtime:
    upstream = URL(settings.upstream.url)
    return Runtime(
        settings=settings,
        rules=RuleTable(settings.rules),
        policy=Policy(
            settings.policy,
            cloud=settings.upstream.cloud,
            fail_open=settings.acceptance.on_lookup_error == "allow",
        ),
        upstream=upstream.with_path("/"),
        upstream_prefix=upstream.raw_path.rstrip("/"),
        seat_changes_only=settings.policy.subscription_edits != "all",
        edit_fields=settings.policy.edit_fields,
        lookup_rules=compile_rules(settings.policy),
        partner_header=settings.identity.partner_header,
        max_gated_body=settings.server.max_gated_body_bytes,
    )
