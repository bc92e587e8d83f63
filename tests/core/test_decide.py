"""gate.core.decide: route a request head, then decide a gated call once its body is in.

The real ``Decider`` over a ``Runtime`` compiled from settings; the acceptance
store is a small in-memory implementation of the core's ``Acceptance``
interface written here (it records what it was asked), and the subscription
reader a function returning a fixed document. No socket anywhere.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest

from gate.acceptance.lookup import LookupRules
from gate.acceptance.store import Outcome
from gate.config import Settings
from gate.core.action import Action, Answer, Forward, Gated
from gate.core.decide import Decider
from gate.core.policy import State
from gate.http.upstream import Fetched
from gate.runtime import RuntimeHolder, compile_settings
from gate.tasks import Step
from tests.support import (
    CUSTOMER,
    PARTNER_A,
    RESELLER,
    agreements_path,
    auth,
    confirmation,
    order,
    orders_path,
    subscription_path,
)


class Store:
    """An in-memory acceptance store: ``cached`` answers peek, ``found`` answers lookups."""

    def __init__(self, cached: State | None = None, found: Outcome | None = None) -> None:
        self.cached = cached
        self.found = found or Outcome(state=State.NOT_ACCEPTED, cache="miss", why="no_agreement")
        self.peeked: list[tuple[str, str]] = []
        self.lookups: list[tuple[str, str, str, str | None]] = []

    def peek(self, partner: str, customer: str) -> Outcome | None:
        self.peeked.append((partner, customer))
        return (
            None
            if self.cached is None
            else Outcome(state=self.cached, cache="hit", source="agreement")
        )

    async def lookup(
        self,
        partner: str,
        customer: str,
        authorization: str,
        correlation: str | None,
        rules: LookupRules,
    ) -> Outcome:
        self.lookups.append((partner, customer, authorization, correlation))
        await asyncio.sleep(0)  # a real lookup waits on the upstream
        return self.found


class Subscriptions:
    """The subscription reader: answers ``current`` and records which paths it read."""

    def __init__(self, current: Any = None) -> None:
        self.current = current
        self.read: list[str] = []

    async def __call__(self, path: str, authorization: str) -> Any:
        self.read.append(path)
        return self.current


class Head:
    """Request headers as the core reads them (``gate.core.action.Head``)."""

    def __init__(self, headers: dict[str, str] | None = None, **more: str) -> None:
        self.pairs = [*(headers or {}).items(), *more.items()]

    def getall(self, name: str) -> Sequence[str]:
        wanted = name.replace("_", "-")
        return [value for key, value in self.pairs if key.lower().replace("_", "-") == wanted]


def decider(
    store: Store | None = None, subscriptions: Subscriptions | None = None, **config: Any
) -> Decider:
    holder = RuntimeHolder(compile_settings(Settings(**config)))
    return Decider(holder, store or Store(), subscriptions or Subscriptions())


def body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def error_of(action: Answer) -> str:
    name: str = json.loads(action.body)["errorName"]
    return name


def header(action: Answer, name: bytes) -> bytes | None:
    found = [value for key, value in action.headers if key.lower() == name.lower()]
    return found[0] if found else None


async def later(step: Step[Action]) -> Action:
    """The Action of a step that had to wait (a lookup, a comparison): a coroutine, awaited."""
    assert asyncio.iscoroutine(step), "decided now, but this call needed the store"
    return await step


def gated(core: Decider, method: str = "POST", target: str | None = None, **head: str) -> Gated:
    routed = core.route(method, target or orders_path(), Head(auth(), **head))
    assert isinstance(routed, Gated)
    return routed


# -- route -----------------------------------------------------------------------


def test_a_read_is_forwarded_with_the_upstream_prefix_and_no_trace() -> None:
    """§2 pass-through: the normalised path under the upstream URL's path, query as sent."""
    core = decider(upstream={"url": "http://127.0.0.1:9/pc/"})
    routed = core.route("GET", "/v1//customers/./x/subscriptions?$filter=a%2Fb", Head())
    assert isinstance(routed, Forward)
    assert routed.target == "/pc/v1/customers/x/subscriptions?$filter=a%2Fb"
    assert (routed.decision, routed.trace, routed.body) == (None, None, None)


def test_a_post_order_is_gated_with_its_transaction_and_trace() -> None:
    """R1: POST .../orders matches create-order; the body decides the rest."""
    routed = decider().route("POST", orders_path(), Head({"MS-CorrelationId": "corr-1"}))
    assert isinstance(routed, Gated)
    assert (routed.transaction.kind, routed.transaction.rule) == ("new_purchase", "create-order")
    assert routed.transaction.customer == CUSTOMER
    assert routed.target == orders_path()
    assert (routed.trace.method, routed.trace.correlation) == ("POST", "corr-1")
    assert routed.trace.verdict is None and routed.exemptable


@pytest.mark.parametrize(
    ("method", "target", "headers", "status", "name", "decision"),
    [
        pytest.param("POST", orders_path(), {"X-HTTP-Method-Override": "GET"}, 400,
                     "AmbiguousMethod", b"blocked", id="override-on-gated-path"),
        pytest.param("GET", f"/v1/customers/{CUSTOMER}%2Forders", {}, 400, "AmbiguousPath",
                     None, id="encoded-slash"),
        pytest.param("POST", orders_path(), {"Transfer-Encoding": "gzip, chunked"}, 400,
                     "AmbiguousBody", None, id="transfer-coding"),
        pytest.param("GET", "/v1/x", {"Transfer-Encoding": "chunked, chunked"}, 400,
                     "AmbiguousBody", None, id="chunked-twice-on-a-read"),
        pytest.param("POST", orders_path(), {"Content-Encoding": "gzip"}, 400, "AmbiguousBody",
                     b"blocked", id="encoded-gated-body"),
    ],
)  # fmt: skip
def test_route_refuses_what_it_cannot_read_one_way(
    method: str,
    target: str,
    headers: dict[str, str],
    status: int,
    name: str,
    decision: bytes | None,
) -> None:
    """§2: override headers, ambiguous paths, other transfer codings and encoded gated bodies."""
    routed = decider().route(method, target, Head(headers))
    assert isinstance(routed, Answer)
    assert (routed.status, routed.error, error_of(routed)) == (status, name, name)
    assert header(routed, b"X-Gate-Decision") == decision


def test_plain_chunking_and_identity_encoding_are_accepted() -> None:
    """Only what the gate cannot carry on faithfully is refused."""
    head = {"Transfer-Encoding": "Chunked", "Content-Encoding": "identity"}
    assert isinstance(decider().route("POST", orders_path(), Head(head)), Gated)


def test_mode_off_forwards_gated_paths_exempt_without_reading_them() -> None:
    """R8: policy off forwards as sent (the body streamed), flagged exempt."""
    routed = decider(policy={"mode": "off"}).route("POST", orders_path(), Head())
    assert isinstance(routed, Forward)
    assert (routed.decision, routed.body) == ("exempt", None)
    assert routed.trace is not None and routed.trace.verdict == "exempt"


# -- decide: the acceptance store ------------------------------------------------


def test_a_cached_accepted_pair_is_forwarded_now_without_a_lookup() -> None:
    """R3: a cache hit is decided synchronously (no coroutine) and allowed."""
    store = Store(cached=State.ACCEPTED)
    core = decider(store)
    raw = body(order(RESELLER))
    action = core.decide(gated(core), Head(auth()), raw)
    assert isinstance(action, Forward)
    assert (action.decision, action.body, action.record) == ("allowed", raw, None)
    assert action.trace is not None
    assert (action.trace.verdict, action.trace.reason) == ("allowed", "accepted")
    assert (action.trace.partner, action.trace.resellers) == (PARTNER_A, (RESELLER,))
    assert (action.trace.cache, action.trace.acceptance) == ("hit", "accepted")
    assert store.peeked == [(PARTNER_A, CUSTOMER)] and store.lookups == []


def test_a_cached_refusal_is_the_403_13605_answered_now() -> None:
    """R3: not accepted under enforce: 403 with Partner Center's 13605 body, never forwarded."""
    core = decider(Store(cached=State.NOT_ACCEPTED))
    action = core.decide(gated(core), Head(auth()), body(order()))
    assert isinstance(action, Answer)
    doc = json.loads(action.body)
    assert (action.status, doc["code"], doc["errorName"]) == (
        403,
        13605,
        "CustomerAcceptanceRequired",
    )
    assert header(action, b"X-Gate-Decision") == b"blocked"
    assert action.trace is not None
    assert (action.trace.verdict, action.trace.reason) == ("blocked", "not_accepted")


async def test_an_unknown_pair_is_a_coroutine_that_looks_it_up() -> None:
    """A miss returns a coroutine (the front door runs it) that asks the store's lookup once."""
    store = Store(found=Outcome(state=State.ACCEPTED, cache="miss", source="direct"))
    core = decider(store)
    head = Head(auth(), **{"MS-CorrelationId": "corr-9"})
    step = core.decide(gated(core, **{"MS-CorrelationId": "corr-9"}), head, body(order()))
    assert asyncio.iscoroutine(step)
    assert store.lookups == []  # nothing is asked before the coroutine runs
    action = await step
    assert isinstance(action, Forward) and action.decision == "allowed"
    assert store.lookups == [(PARTNER_A, CUSTOMER, auth()["Authorization"], "corr-9")]
    assert action.trace is not None
    assert (action.trace.cache, action.trace.source) == ("miss", "direct")


async def test_a_lookup_not_accepted_is_refused_with_its_reason() -> None:
    """R4: the lookup's reason (no agreement) is in the 13605 and in the trace."""
    core = decider(Store())
    action = await later(core.decide(gated(core), Head(auth()), body(order())))
    assert isinstance(action, Answer) and action.status == 403
    assert json.loads(action.body)["data"][0]["reason"] == "no_agreement"
    assert action.trace is not None and action.trace.why == "no_agreement"


async def test_a_failed_lookup_fails_closed_with_retry_after() -> None:
    """§2: a lookup error under on_lookup_error = block is a 503 with Retry-After."""
    store = Store(found=Outcome(state=State.UNKNOWN, cache="throttled", retry_after=30.0))
    core = decider(store)
    action = await later(core.decide(gated(core), Head(auth()), body(order())))
    assert isinstance(action, Answer)
    assert (action.status, action.error) == (503, "AcceptanceStatusUnavailable")
    assert header(action, b"Retry-After") == b"30"
    assert header(action, b"X-Gate-Decision") == b"blocked"


async def test_a_failed_lookup_fails_open_as_would_block_when_configured() -> None:
    """on_lookup_error = allow: forwarded, flagged would-block."""
    store = Store(found=Outcome(state=State.UNKNOWN, cache="error"))
    core = decider(store, acceptance={"on_lookup_error": "allow"})
    action = await later(core.decide(gated(core), Head(auth()), body(order())))
    assert isinstance(action, Forward)
    assert action.decision == "would-block"


async def test_a_denied_lookup_is_relayed_as_the_upstream_answered() -> None:
    """The lookup's 401 (the caller's own token refused) reaches the caller as it came."""
    denied = Fetched(
        status=401,
        reason="Unauthorized",
        headers=((b"WWW-Authenticate", b"Bearer"),),
        body=b'{"no": 1}',
    )
    core = decider(Store(found=Outcome(state=State.UNKNOWN, cache="miss", denied=denied)))
    action = await later(core.decide(gated(core), Head(auth()), body(order())))
    assert isinstance(action, Answer)
    assert (action.status, action.body, action.reason, action.own) == (
        401,
        b'{"no": 1}',
        "Unauthorized",
        False,
    )
    assert header(action, b"WWW-Authenticate") == b"Bearer"
    assert header(action, b"X-Gate-Decision") == b"blocked"
    assert action.trace is not None and action.trace.reason == "upstream_denied"


# -- decide: what the body says --------------------------------------------------


def test_a_cancel_only_order_patch_is_not_gated() -> None:
    """§1.1: a PATCH that only cancels line items adds nothing: forwarded, no identity asked."""
    store = Store()
    core = decider(store)
    patch = gated(core, "PATCH", f"{orders_path()}/order-1")
    cancel = {"status": "cancelled"}
    action = core.decide(patch, Head(), body(cancel))  # no token: identity is never needed
    assert isinstance(action, Forward)
    assert action.decision is None
    assert action.trace is not None and not action.trace.gated
    assert action.trace.facts == "cancel_only"
    assert store.peeked == []


def test_a_repeated_key_in_a_gated_body_is_refused() -> None:
    """§1.1: a body the gate and the upstream could read differently: 400 AmbiguousBody."""
    core = decider(Store(cached=State.ACCEPTED))
    raw = b'{"lineItems": [], "lineItems": [{"quantity": 1}]}'
    action = core.decide(gated(core), Head(auth()), raw)
    assert isinstance(action, Answer)
    assert (action.status, action.error) == (400, "AmbiguousBody")
    assert header(action, b"X-Gate-Decision") == b"blocked"


def test_a_gated_call_without_a_partner_is_refused_401() -> None:
    """§2: no bearer token with one tid: 401 PartnerUnknown, nothing asked."""
    store = Store(cached=State.ACCEPTED)
    core = decider(store)
    routed = core.route("POST", orders_path(), Head())
    assert isinstance(routed, Gated)
    action = core.decide(routed, Head({"Authorization": "Bearer not-a-jwt"}), body(order()))
    assert isinstance(action, Answer)
    assert (action.status, action.error) == (401, "PartnerUnknown")
    assert store.peeked == []


def test_the_partner_header_names_the_partner_when_configured() -> None:
    """identity.partner_header: a trusted hop names the partner; the token is not read."""
    store = Store(cached=State.ACCEPTED)
    core = decider(store, identity={"partner_header": "X-Partner"})
    routed = core.route("POST", orders_path(), Head())
    assert isinstance(routed, Gated)
    action = core.decide(routed, Head({"X-Partner": PARTNER_A.upper()}), body(order()))
    assert isinstance(action, Forward) and action.decision == "allowed"
    assert store.peeked == [(PARTNER_A, CUSTOMER)]


def test_an_exempt_partner_is_forwarded_without_body_rules() -> None:
    """R8 per partner: mode off for this partner forwards even an ambiguous body, exempt."""
    store = Store()
    core = decider(store, policy={"partners": {PARTNER_A: {"mode": "off"}}})
    raw = b'{"a": 1, "a": 2}'
    action = core.decide(gated(core), Head(auth()), raw)
    assert isinstance(action, Forward)
    assert (action.decision, action.body) == ("exempt", raw)
    assert store.peeked == []


# -- decide: confirmations and subscription edits --------------------------------


def test_a_valid_confirmation_is_forwarded_to_be_recorded() -> None:
    """R5: a confirmation is allowed and carries the caller to record on a 2xx."""
    store = Store()
    core = decider(store)
    routed = gated(core, target=agreements_path())
    assert routed.transaction.kind == "confirmation"
    raw = body(confirmation())
    action = core.decide(routed, Head(auth()), raw)
    assert isinstance(action, Forward)
    assert (action.decision, action.body) == ("allowed", raw)
    assert action.record is not None
    assert (action.record.partner, action.record.customer) == (PARTNER_A, CUSTOMER)
    assert action.trace is not None and action.trace.reason == "confirmation"
    assert store.peeked == []  # a confirmation is never held back by the store


def test_a_confirmation_missing_fields_is_refused_400() -> None:
    """R6: a confirmation without its primary contact is not forwarded."""
    core = decider()
    action = core.decide(
        gated(core, target=agreements_path()), Head(auth()), body(confirmation(primaryContact={}))
    )
    assert isinstance(action, Answer)
    assert (action.status, action.error) == (400, "InvalidAcceptance")


def test_a_confirmation_of_an_agreement_that_does_not_count_is_not_recorded() -> None:
    """R4: a confirmation dated before accepted_since is forwarded but records nothing."""
    core = decider(policy={"accepted_since": "2025-01-01T00:00:00Z"})
    routed = gated(core, target=agreements_path())
    action = core.decide(routed, Head(auth()), body(confirmation()))  # dated 2024-05-01
    assert isinstance(action, Forward)
    assert (action.decision, action.record) == ("allowed", None)
    assert action.trace is not None and action.trace.facts == "not_counted"


async def test_a_seat_edit_is_compared_with_the_current_subscription() -> None:
    """§1.1: an unconfirmed edit that keeps the quantity changes nothing gated: forwarded."""
    subscriptions = Subscriptions(current={"quantity": 5})
    core = decider(Store(), subscriptions)
    routed = gated(core, "PATCH", subscription_path())
    step = core.decide(routed, Head(auth()), body({"quantity": 5}))
    assert asyncio.iscoroutine(step)
    action = await step
    assert isinstance(action, Forward)
    assert action.decision is None
    assert action.trace is not None and action.trace.facts == "same_quantity"
    assert subscriptions.read == [subscription_path()]


async def test_a_seat_edit_that_adds_seats_is_refused_when_not_accepted() -> None:
    """R1: more seats for a customer without acceptance is blocked like an order."""
    subscriptions = Subscriptions(current={"quantity": 5})
    core = decider(Store(), subscriptions)
    routed = gated(core, "PATCH", subscription_path())
    action = await later(core.decide(routed, Head(auth()), body({"quantity": 6})))
    assert isinstance(action, Answer) and action.status == 403
    assert json.loads(action.body)["data"][0]["transaction"] == "seat_change"
