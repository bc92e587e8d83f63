"""The decision service: the second front door, for Envoy ext_authz and nginx auth_request.

A C/C++ proxy moves the bytes and asks the gate only whether a call may
pass. The check request is read by the same front door (``gate.http.server``:
llhttp, limits, timeouts) and decided by the same core as the proxy mode
(``gate.core.decide``): one classification, one policy, one cache, one log.

- Envoy (ext_authz HTTP service) sends the original method, ``path_prefix``
  plus the original path, the headers it is told to, and the body with
  ``with_request_body``. Allowed: 200. Refused: the proxy mode's own status,
  JSON body and headers, which Envoy hands to the client.
- nginx (``auth_request``) sends a subrequest with ``X-Original-Method`` and
  ``X-Original-URI`` and the original headers, without the body. nginx relays
  only 401 and 403 from it, so every refusal is a 403 (401 stays 401) that
  carries the real status in ``X-Gate-Status`` and the JSON in
  ``X-Gate-Error``, for the nginx config to give back (deploy/nginx/).

A call whose body the gate does not see is decided by the strict reading: a
subscription edit is a seat change, an order edit adds line items. A
confirmation cannot be checked without its body (R6), so it is refused:
route confirmations through the proxy listener, which also records them at
once (a decision service never sees the upstream's answer, so a
confirmation that passes Envoy is only seen on the next lookup, within
``acceptance.negative_ttl_s``).
"""

from __future__ import annotations

import functools
import json

from gate.core.action import Action, Answer, Forward, Gated, answer_error
from gate.core.decide import Decider
from gate.decision_log import finish
from gate.errors import BodyTooLarge, GateError, InvalidAcceptance, MalformedRequest
from gate.http.cycle import ClientGone, Cycle
from gate.http.vocabulary import decision_line
from gate.logs import HotLines
from gate.metrics import Metrics
from gate.tasks import Later, then

__all__ = ["DecisionService", "cut_short", "logged"]

_RELAYED_TO_NGINX = frozenset({b"x-gate-decision", b"retry-after"})


class DecisionService:
    """Answers check requests with the core's Action: 200 to allow, a refusal otherwise."""

    __slots__ = ("_decider", "_lines", "_metrics", "_prefix", "_under")

    def __init__(self, decider: Decider, prefix: str, metrics: Metrics, lines: HotLines) -> None:
        self._decider = decider
        self._prefix = prefix.rstrip("/")
        self._under = self._prefix + "/"  # what a check's path starts with, when prefixed
        self._metrics = metrics
        self._lines = lines

    def start(self, cycle: Cycle) -> Later:
        """Route a check request; a coroutine only when its body must be read or a lookup made."""
        nginx = bool(cycle.head.getall("x-original-uri"))
        try:
            method, target = self._original(cycle, nginx)
        except GateError as error:
            return self._reply(cycle, nginx, answer_error(error))
        action = self._decider.route(method, target, cycle.head)
        if not isinstance(action, Gated):
            return self._reply(cycle, nginx, action)
        if nginx and not cycle.has_body and action.transaction.kind == "confirmation":
            return self._reply(cycle, nginx, answer_error(_unread_confirmation(), action.trace))
        partial = cycle.head.getall("x-envoy-auth-partial-body")
        if len(partial) == 1 and partial[0] == "true":
            return self._reply(cycle, nginx, cut_short(action))
        return cycle.body_then(action.runtime.max_gated_body, _Check(self, cycle, action, nginx))

    def body_in(
        self, cycle: Cycle, gated: Gated, nginx: bool, raw: bytes | GateError | ClientGone
    ) -> Later:
        """The whole body has arrived (or failed): decide, at once from a cached pair."""
        if isinstance(raw, ClientGone):
            self._gone(gated)
            cycle.done()
            return None
        if isinstance(raw, GateError):
            return self._reply(cycle, nginx, answer_error(raw, gated.trace))
        decided = self._decider.decide(gated, cycle.head, raw)
        if isinstance(decided, (Forward, Answer)):  # decided now: no then(), no coroutine test
            return self._reply(cycle, nginx, decided)
        return then(decided, functools.partial(self._reply, cycle, nginx))

    def _original(self, cycle: Cycle, nginx: bool) -> tuple[str, str]:
        """The method and request target of the call being checked."""
        if nginx:
            methods = cycle.head.getall("x-original-method")
            if len(methods) != 1 or not methods[0].strip().isalpha():
                raise MalformedRequest("An auth_request subrequest needs one X-Original-Method.")
            return methods[0].strip().upper(), cycle.head.getall("x-original-uri")[0].strip()
        target = cycle.target
        if self._prefix:
            if not target.startswith(self._under):
                raise MalformedRequest(f"A check request's path must start with {self._under}.")
            target = target[len(self._prefix) :]
        return cycle.method, target

    def _reply(self, cycle: Cycle, nginx: bool, action: Action) -> Later:
        """Allow or refuse, and end the check; a gated call's decision is logged and counted."""
        if isinstance(action, Forward):  # allowed: a bodiless 200, its header line built once
            if action.trace is not None:
                finish(action.trace, 200, None, self._metrics, self._lines)
            cycle.answer_bare(200, decision_line(action.decision))
            return None  # the check is over
        logged(action, self._metrics, self._lines)
        cycle.answer(_for_nginx(action) if nginx else action)
        return None

    def _gone(self, gated: Gated) -> None:
        """The client left before its body was in: a 499 line, as the proxy writes."""
        trace = gated.trace
        trace.client_gone()
        finish(trace, 499, None, self._metrics, self._lines)


class _Check:
    """A gated check waiting for its body (``Cycle.body_then``): one object, no partial."""

    __slots__ = ("_cycle", "_gated", "_nginx", "_service")

    def __init__(self, service: DecisionService, cycle: Cycle, gated: Gated, nginx: bool) -> None:
        self._service = service
        self._cycle = cycle
        self._gated = gated
        self._nginx = nginx

    def __call__(self, raw: bytes | GateError | ClientGone) -> Later:
        return self._service.body_in(self._cycle, self._gated, self._nginx, raw)


def logged(action: Action, metrics: Metrics, lines: HotLines) -> None:
    """A gated call's decision is logged and counted like the proxy's (a check's 200: allowed)."""
    if action.trace is not None:
        error = action.error if isinstance(action, Answer) else None
        status = action.status if isinstance(action, Answer) else 200
        finish(action.trace, status, error, metrics, lines)


def cut_short(gated: Gated) -> Answer:
    """The refusal of a gated call whose body the proxy in front cut at its limit: 413."""
    limit = gated.runtime.max_gated_body
    error = BodyTooLarge(
        "The proxy in front of the gate cut this call's body, so it cannot be decided; "
        f"raise its limit (with_request_body.max_request_bytes) to {limit} bytes.",
        [{"limit": limit}],
    )
    return answer_error(error, gated.trace)


def _for_nginx(answer: Answer) -> Answer:
    """A refusal nginx will relay: 403 (or 401), the real answer in X-Gate-* headers."""
    status = 401 if answer.status == 401 else 403
    kept = tuple(pair for pair in answer.headers if pair[0].lower() in _RELAYED_TO_NGINX)
    types = [value for name, value in answer.headers if name.lower() == b"content-type"]
    try:
        error = json.dumps(json.loads(answer.body)) if answer.body else "{}"  # one line, ASCII
    except ValueError:  # an upstream denial that is not JSON (a WAF page): escaped to ASCII
        error = json.dumps(answer.body.decode("utf-8", "replace"))
    headers = (
        (b"Content-Type", types[0] if types else b"application/json"),
        (b"X-Gate-Status", str(answer.status).encode()),
        (b"X-Gate-Error", error.encode()),
        *kept,
    )
    return Answer(
        status, answer.body, headers, reason="", error=answer.error, trace=answer.trace,
        own=answer.own,
    )  # fmt: skip


def _unread_confirmation() -> InvalidAcceptance:
    return InvalidAcceptance(
        "The decision service cannot check a confirmation it cannot read (nginx does not pass "
        "the body): route POST /v1/customers/{customer}/agreements through the gate's proxy "
        "listener, which checks it, forwards it and records the acceptance at once.",
        [{"field": "(body)", "message": "not available to the decision service"}],
    )
