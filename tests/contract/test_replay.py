"""DESIGN §4 `gate replay`: a replayed log gives the decisions of a live gate under the new config.

One set of calls (orders, seat changes, cancel-only edits, confirmations, several partners
and customers, accepted and unaccepted pairs, a lookup error, a denied lookup, refusals) runs
through a gate with the default policy; its log is replayed under config B; then the same
calls run through a fresh gate under B, against an upstream in the same starting state, and
the two are compared call by call.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gate.cli import main
from gate.config import Settings
from gate.replay.logline import LoggedCall, read_line
from gate.replay.redecide import NEEDS_LOOKUP, as_logged, redecide
from gate.runtime import compile_settings
from tests.conftest import Gate, MakeSettings, StartGate, Upstream
from tests.support import (
    CUSTOMER,
    PARTNER_A,
    PARTNER_B,
    RESELLER,
    agreements_path,
    auth,
    confirmation,
    log_lines,
    order,
    orders_path,
    subscription_path,
)

PARTNER_C = "44444444-dddd-4ddd-8ddd-444444444444"
C2, C3, C4, C5 = (f"c{n}000000-0000-4000-8000-00000000000{n}" for n in (2, 3, 4, 5))
MANY = [f"d{n:07d}-0000-4000-8000-000000000000" for n in range(12)]


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: Any = None  # JSON-encoded unless bytes
    partner: str | None = PARTNER_A
    knob: int | None = None  # agreements status forced for this call (500: error, 403: denied)


CALLS = [
    Call("POST", orders_path(), order()),  # accepted pair
    Call("POST", orders_path(C2), order()),  # unaccepted
    Call("POST", orders_path(), order(), PARTNER_B),  # accepted for A only (R3)
    Call("PATCH", f"{orders_path(C2)}/o1", {"status": "cancelled"}),  # cancel-only
    Call("PATCH", f"{orders_path(C2)}/o1", {"Status": "Cancelled", "LineItems": []}),
    Call("PATCH", f"{orders_path(C2)}/o2", order()),  # adds line items
    Call("PATCH", subscription_path(C2), {"quantity": 10}),  # the current quantity
    Call("PATCH", subscription_path(C2), {"quantity": 12}),  # a seat change
    Call("PATCH", subscription_path(C2), {"nickname": "x"}),  # no quantity
    Call("PATCH", subscription_path(), {"Quantity": 3}),  # PascalCase, accepted pair
    Call("PATCH", subscription_path(C5), {"quantity": 10}, PARTNER_C),
    Call("POST", agreements_path(C2), confirmation(dateAgreed="2999-01-01"), PARTNER_B),
    Call("POST", agreements_path(C2), confirmation(), PARTNER_B),
    Call("POST", orders_path(C2), order(), PARTNER_B),  # now confirmed (R5)
    Call("POST", orders_path(), order(), None),  # no partner
    Call("PATCH", f"{orders_path()}/o3", {"status": "cancelled"}, None),  # no partner, ungated
    Call("POST", orders_path(C3), b'{"lineItems": [], "LINEITEMS": []}'),  # repeated key
    Call("POST", orders_path(C3), b'{"a": 1, "A": 2}', PARTNER_C),
    Call("POST", orders_path(C4), order(), knob=500),  # lookup error
    Call("POST", orders_path(C5), order(), knob=403),  # denied
    Call("POST", orders_path(C5), order(RESELLER)),  # on behalf of a reseller (R9)
    Call("POST", orders_path(), order(), PARTNER_C),
    Call("POST", agreements_path(C3), {"type": "nope"}, PARTNER_C),
    *(Call("POST", orders_path(customer), order()) for customer in MANY),
    *(Call("PATCH", subscription_path(customer), {"quantity": 7}) for customer in MANY[:4]),
]

RULES_WITHOUT_CREATE_ORDER = [
    {**rule.model_dump(), **({"when": "always"} if rule.name == "add-order-line-items" else {})}
    for rule in Settings().rules
    if rule.name != "create-order"
]
B_ROLLOUT = {
    "policy": {
        "enforce_percent": 50,
        "subscription_edits": "all",
        "partners": {PARTNER_B: {"mode": "observe"}, PARTNER_C: {"mode": "off"}},
    },
    "acceptance": {"on_lookup_error": "allow"},
}
B_RULES = {"policy": {"enforce_from": "2999-01-01T00:00:00Z"}, "rules": RULES_WITHOUT_CREATE_ORDER}
B_ONE_PARTNER = {"policy": {"mode": "off", "partners": {PARTNER_A: {"mode": "enforce"}}}}
B_OBSERVE = {"policy": {"mode": "observe", "enforce_percent": 0}}
# Under subscription_edits = "all" the logging gate never compares quantities, so the
# unconfirmed seat changes of its log stay open under a config that compares.
_UNCOMPARED = {"call-6", "call-7", *(f"call-{n}" for n in range(35, 39))}
# Partner C is off under B_ROLLOUT: its calls were forwarded unread.
_UNREAD = {"call-10", "call-17", "call-21"}
# (config that writes the log, config replayed and run live, calls the log cannot decide)
PAIRS = [
    pytest.param({}, B_ROLLOUT, {"call-8"}, id="rollout-overrides-all-edits"),
    pytest.param({}, B_RULES, {"call-3", "call-4"}, id="future-date-changed-rules"),
    pytest.param({}, B_ONE_PARTNER, set(), id="off-but-one-partner"),
    pytest.param({}, {"policy": {"mode": "off"}}, set(), id="off"),
    pytest.param({}, {"upstream": {"cloud": "usgov"}}, set(), id="national-cloud"),
    pytest.param({}, B_OBSERVE, set(), id="observe"),
    pytest.param(B_ROLLOUT, {}, _UNREAD | _UNCOMPARED, id="back-from-rollout"),
    pytest.param(B_OBSERVE, B_ROLLOUT, {"call-8"}, id="observe-to-rollout"),
    pytest.param(B_ROLLOUT, B_ONE_PARTNER, _UNCOMPARED, id="rollout-to-one-partner"),
]


def _settings(upstream: Upstream, config: dict[str, Any]) -> Settings:
    """Config B, pointed at the sandbox (``rules`` is a list, so not through make_settings)."""
    sections = {**config, "upstream": {"url": upstream.url, **config.get("upstream", {})}}
    return Settings(**sections)


def _reset(upstream: Upstream) -> None:
    """The sandbox as each run starts: A has confirmed CUSTOMER, nobody else anything."""
    sb = upstream.sandbox
    sb.agreements.clear()
    sb.quantities.clear()
    sb.received.clear()
    sb.knobs.agreements_status = None
    sb.accept(PARTNER_A, CUSTOMER)


async def _drive(gate: Gate) -> None:
    _reset(gate.upstream)
    for index, call in enumerate(CALLS):
        headers = {"MS-CorrelationId": f"call-{index}", "Content-Type": "application/json"}
        if call.partner:
            headers.update(auth(call.partner))
        data = call.body if isinstance(call.body, bytes) else json.dumps(call.body).encode()
        gate.upstream.sandbox.knobs.agreements_status = call.knob
        response = await gate.client.request(call.method, call.path, data=data, headers=headers)
        await response.read()
    gate.upstream.sandbox.knobs.agreements_status = None


def _live(gate: Gate) -> dict[str, tuple[str, str]]:
    """Per call, what the live gate logged: its decision and reason, or pass (no line)."""
    found = {f"call-{index}": ("pass", "") for index in range(len(CALLS))}
    for line in log_lines(gate.logs):
        if line.get("event") in ("decision", "not_gated"):
            found[line["correlation_id"]] = (line["decision"] or "not-gated", line["reason"])
    return found


def _logged(gate: Gate) -> list[LoggedCall]:
    calls = [read_line(line.encode()) for line in gate.logs.getvalue().splitlines()]
    return [call for call in calls if isinstance(call, LoggedCall)]


@pytest.fixture
def recorded(start_gate: StartGate, upstream: Upstream) -> Callable[..., Any]:
    """Drive CALLS through a gate under a config (default: the built-ins); return the gate."""

    async def record(config: dict[str, Any] | None = None) -> Gate:
        gate = await start_gate(_settings(upstream, config or {}))
        await _drive(gate)
        return gate

    return record


async def test_replay_under_the_logging_config_changes_nothing(
    recorded: Callable[..., Any], make_settings: MakeSettings
) -> None:
    """§4: replayed under the config that wrote it, every call gets its logged decision back."""
    gate = await recorded()
    calls = _logged(gate)
    assert len(calls) == len(CALLS)  # every call is gated under the defaults
    runtime = compile_settings(make_settings())
    assert [(o.decision, o.reason) for o in map(as_logged, calls)] == [
        (o.decision, o.reason) for o in (redecide(call, runtime) for call in calls)
    ]
    kinds = {(call.decision, call.reason) for call in calls}
    assert {("blocked", "not_accepted"), ("allowed", "accepted"), (None, "")} <= kinds
    assert {("blocked", "lookup_error"), ("blocked", "upstream_denied")} <= kinds


@pytest.mark.parametrize(("logged_under", "config", "open_calls"), PAIRS)
async def test_replay_matches_a_live_gate_under_the_new_config(
    recorded: Callable[..., Any],
    start_gate: StartGate,
    upstream: Upstream,
    logged_under: dict[str, Any],
    config: dict[str, Any],
    open_calls: set[str],
) -> None:
    """§4: replay under B gives, call by call, the decision and reason a live gate under B gives."""
    logging_gate = await recorded(logged_under)
    settings = _settings(upstream, config)
    runtime = compile_settings(settings)
    compared = compile_settings(_settings(upstream, logged_under)).seat_changes_only
    replayed = {
        call.correlation_id: redecide(call, runtime, compared=compared)
        for call in _logged(logging_gate)
    }
    live_gate = await start_gate(settings)
    await _drive(live_gate)
    live = _live(live_gate)
    expected = {cid: live[cid] for cid in live if cid not in open_calls}
    # A call the logging gate passed through has no line; the replay cannot see it.
    unseen = {cid for cid in live if cid not in replayed}
    assert unseen <= open_calls
    outcomes = {cid: (o.decision, o.reason) for cid, o in replayed.items()}
    assert {cid: outcomes[cid] for cid in expected} == expected
    assert {cid for cid, o in replayed.items() if o.decision == NEEDS_LOOKUP} == open_calls - unseen


async def test_replay_under_b_sees_changes_and_open_calls(
    recorded: Callable[..., Any], upstream: Upstream
) -> None:
    """§4: the rollout B changes decisions and leaves exactly the unlooked-up call open."""
    gate = await recorded()
    runtime = compile_settings(_settings(upstream, B_ROLLOUT))
    outcomes = {call.correlation_id: redecide(call, runtime) for call in _logged(gate)}
    decisions = {(o.decision, o.reason) for o in outcomes.values()}
    assert {("would-block", "rollout_observed"), ("blocked", "not_accepted")} <= decisions
    assert {("exempt", "policy_off"), ("would-block", "observe_mode")} <= decisions
    assert ("would-block", "lookup_error") in decisions
    # The edit without a quantity was never looked up; under "all" it needs a lookup.
    assert {cid for cid, o in outcomes.items() if o.decision == NEEDS_LOOKUP} == {"call-8"}


async def test_replay_command_over_the_recorded_log(
    recorded: Callable[..., Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    upstream: Upstream,
) -> None:
    """§4: `gate replay --json` over the written log counts every call and exits 1 on changes."""
    gate = await recorded()
    log = tmp_path / "gate.log"
    log.write_text(gate.logs.getvalue(), encoding="utf-8")
    config = tmp_path / "b.toml"
    config.write_text(
        f'[upstream]\nurl = "{upstream.url}"\n[policy]\nenforce_percent = 50\n', encoding="utf-8"
    )
    assert main(["replay", "--config", str(config), "--json", str(log)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["replayed"] == len(CALLS)
    assert sum(cell["calls"] for cell in report["cells"]) == len(CALLS)
    changed = [cell for cell in report["cells"] if cell["changed"]]
    assert changed and all(c["old"] == "blocked" and c["new"] == "would-block" for c in changed)
