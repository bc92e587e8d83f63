"""``gate demo``: the sandbox upstream and the gate on loopback, block -> confirm -> allow.

It ends with an audit of partner A's customers (``gate audit``'s rows and summary).

Offline and self-checking: every step states what it expects, and the demo
exits non-zero if the gate did anything else. After the seed's walk, a
second gate with the Partner Center 2026 profile (``PROFILE_2026``, the
policy of ``config/partner-center-2026.toml``) in front of the same sandbox
shows today's rules: a customer who accepted in the Microsoft 365 admin
center buys at once; an acceptance dated before 2023-04-01 is refused with
that reason, for a purchase and for a term change.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Any, TextIO

import aiohttp
from aiohttp import web

from gate import sandbox
from gate.app import create_app, start_proxy
from gate.audit.progress import Progress
from gate.audit.report import CsvWriter
from gate.audit.run import Plan, audit
from gate.config import AcceptanceSettings, PolicySettings, Settings, UpstreamSettings
from gate.core.confirmation import MCA_TEMPLATE_ID
from gate.keys import LOGGER, STATE
from gate.logs import redact_library_logs

__all__ = ["PROFILE_2026", "run_demo"]

PARTNER_A = "11111111-aaaa-4aaa-8aaa-111111111111"
PARTNER_B = "22222222-bbbb-4bbb-8bbb-222222222222"
CUSTOMER = "c0ffee00-1234-4321-abcd-0123456789ab"
_ORDER = {"lineItems": [{"lineItemNumber": 0, "offerId": "CFQ7TTC0LH18:0001", "quantity": 5}]}
_CONFIRMATION = {
    "dateAgreed": date.today().isoformat(),  # today: never 'in the future', whenever it runs
    "primaryContact": {"firstName": "Ada", "lastName": "Lovelace", "email": "ada@contoso.example"},
    "templateId": MCA_TEMPLATE_ID,
    "type": "MicrosoftCloudAgreement",
}


async def _start(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site.port}"


class _Walkthrough:
    def __init__(self, out: TextIO, client: aiohttp.ClientSession, gate: str, logs: io.StringIO):
        self.out, self.client, self.gate, self.logs = out, client, gate, logs
        self.failures = 0
        self.step = 0

    async def call(
        self, title: str, method: str, path: str, partner: str, doc: Any, expect: int
    ) -> None:
        self.step += 1
        seen = self.logs.tell()
        headers = {"Authorization": f"Bearer {sandbox.make_token(partner)}"}
        async with self.client.request(method, self.gate + path, json=doc, headers=headers) as r:
            answer = await r.json(content_type=None)
            decision = r.headers.get("X-Gate-Decision", "(none: not a gated call)")
        ok = r.status == expect
        self.failures += not ok
        print(f"\n{self.step}. {title}", file=self.out)
        print(f"   {method} {path}", file=self.out)
        mark = "ok" if ok else f"UNEXPECTED, wanted {expect}"
        print(f"   -> {r.status} ({mark})   X-Gate-Decision: {decision}", file=self.out)
        if isinstance(answer, dict) and "errorName" in answer:
            print(f"   errorName: {answer['errorName']}", file=self.out)
            print(f"   {answer['description']}", file=self.out)
            for item in answer.get("data", [])[:4]:
                print(f"     - {json.dumps(item)}", file=self.out)
        self.logs.seek(seen)
        for line in self.logs.read().splitlines():
            entry = json.loads(line)
            if entry.get("event") == "decision":
                keys = ("transaction", "decision", "reason", "source", "cache", "latency_ms")
                shown = " ".join(f"{k}={entry[k]}" for k in keys if entry.get(k) is not None)
                print(f"   log: {shown}", file=self.out)


_ORDERS = f"/v1/customers/{CUSTOMER}/orders"
_AGREEMENTS = f"/v1/customers/{CUSTOMER}/agreements"
_SEATS = f"/v1/customers/{CUSTOMER}/subscriptions/sub-1"
_INCOMPLETE = {**_CONFIRMATION, "primaryContact": {"firstName": "Ada"}}
# (what a person should see, method, path, partner, body, expected status)
_STEPS: tuple[tuple[str, str, str, str, Any, int], ...] = (
    ("Partner A orders for a customer with no confirmed acceptance",
     "POST", _ORDERS, PARTNER_A, _ORDER, 403),
    ("A confirmation missing the email is refused, never forwarded",
     "POST", _AGREEMENTS, PARTNER_A, _INCOMPLETE, 400),
    ("Partner A confirms the customer's acceptance of the MCA",
     "POST", _AGREEMENTS, PARTNER_A, _CONFIRMATION, 201),
    ("Partner A orders again: allowed and forwarded", "POST", _ORDERS, PARTNER_A, _ORDER, 201),
    ("Partner B, same customer: each partner must confirm",
     "POST", _ORDERS, PARTNER_B, _ORDER, 403),
    ("Partner B renames the subscription (same quantity): not gated",
     "PATCH", _SEATS, PARTNER_B, {"quantity": 10, "nickname": "HQ"}, 200),
    ("Partner B raises the seat count: a seat change, blocked",
     "PATCH", _SEATS, PARTNER_B, {"quantity": 25}, 403),
    ("Reads pass untouched, with no acceptance lookup",
     "GET", f"/v1/customers/{CUSTOMER}", PARTNER_B, None, 200),
)  # fmt: skip


async def _audit(out: TextIO, sb: sandbox.Sandbox, settings: Settings) -> None:
    """``gate audit`` of partner A's customers: who would be blocked, and why."""
    sb.listing.add(PARTNER_A, CUSTOMER, "Contoso Ltd")  # confirmed in step 3
    sb.listing.add(PARTNER_A, "d1ec7000-5151-4a4a-9b9b-000000000002", "Fabrikam GmbH")
    sb.sign_directly("d1ec7000-5151-4a4a-9b9b-000000000002")  # accepted in the admin center
    sb.listing.add(PARTNER_A, "0ca11ed0-7777-4c4c-8d8d-000000000003", "Tailspin Toys")
    print("\nAudit: partner A's customers, as `gate audit` reports them", file=out)
    report = io.StringIO()
    plan = Plan(settings, sandbox.make_token(PARTNER_A), PARTNER_A, concurrency=1)
    writer = CsvWriter(report)
    result = await audit(plan, writer, Progress.off())
    writer.close()
    for line in report.getvalue().splitlines() + result.summary.lines():
        print(f"   {line}", file=out)


# -- Partner Center as it is today (DESIGN §1.2) ------------------------------

PROFILE_2026 = PolicySettings(
    agreement_types=("MicrosoftCustomerAgreement",),
    accepted_since=datetime(2023, 4, 1, tzinfo=UTC),
    subscription_edits=(
        "quantity",
        "termDuration",
        "billingCycle",
        "scheduledNextTermInstructions",
    ),
    direct_acceptance=True,
)
"""The policy of ``config/partner-center-2026.toml`` (the demo runs without the file)."""
_SIGNED = "5160ed00-0000-4000-8000-000000000001"  # accepted in the Microsoft 365 admin center
_OLD = "01d00000-0000-4000-8000-000000000002"  # Partner A's Customer Agreement of 2021
_STEPS_2026: tuple[tuple[str, str, str, str, Any, int], ...] = (
    ("Partner A orders for a customer who accepted in the Microsoft 365 admin center: "
     "allowed at once (source direct)",
     "POST", f"/v1/customers/{_SIGNED}/orders", PARTNER_A, _ORDER, 201),
    ("Partner A orders for a customer whose acceptance dates from 2021: refused "
     "(before_accepted_since)",
     "POST", f"/v1/customers/{_OLD}/orders", PARTNER_A, _ORDER, 403),
    ("Partner A moves that customer to monthly terms: a term_change, refused too",
     "PATCH", f"/v1/customers/{_OLD}/subscriptions/sub-2", PARTNER_A, {"termDuration": "P1M"},
     403),
)  # fmt: skip


@asynccontextmanager
async def _gate(settings: Settings, logs: io.StringIO) -> AsyncIterator[str]:
    """A gate on a free loopback port for the block's duration; yields its base URL."""
    app = create_app(settings, log_stream=logs)
    redact_library_logs(app[LOGGER])
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    door, port = await start_proxy(app, "127.0.0.1", 0)
    app[STATE].listening = True
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await door.drain(0)
        await runner.cleanup()


async def _walk_2026(walk: _Walkthrough, upstream: sandbox.Sandbox, url: str) -> None:
    """The same sandbox behind a second gate with the 2026 profile (its failures count too)."""
    upstream.sign_directly(_SIGNED)
    upstream.accept(PARTNER_A, _OLD, "MicrosoftCustomerAgreement", "2021-06-01T00:00:00Z")
    logs = io.StringIO()
    settings = Settings.model_construct(
        upstream=UpstreamSettings(url=url),
        acceptance=AcceptanceSettings(negative_ttl_s=0),
        policy=PROFILE_2026,
    )
    print(
        "\n-- Partner Center today: a second gate with the 2026 profile "
        "(config/partner-center-2026.toml) --\n"
        f"   in the sandbox: customer {_SIGNED} accepted in the Microsoft 365 admin center;\n"
        f"   customer {_OLD} has a Customer Agreement of 2021-06-01 from partner A",
        file=walk.out,
    )
    async with _gate(settings, logs) as gate:
        walk.gate, walk.logs = gate, logs
        for step in _STEPS_2026:
            await walk.call(*step)


async def run_demo(out: TextIO) -> int:
    upstream_app = sandbox.create_app()
    upstream_runner, upstream = await _start(upstream_app)
    sb = upstream_app[sandbox.SANDBOX]
    logs = io.StringIO()
    settings = Settings.model_construct(  # the demo's own settings: no file, no GATE_* variables
        upstream=UpstreamSettings(url=upstream), acceptance=AcceptanceSettings(negative_ttl_s=0)
    )
    try:
        async with _gate(settings, logs) as gate, aiohttp.ClientSession() as client:
            print(f"sandbox Partner Center: {upstream}\ngate (enforce mode):    {gate}", file=out)
            walk = _Walkthrough(out, client, gate, logs)
            for step in _STEPS:
                await walk.call(*step)
            await _walk_2026(walk, sb, upstream)
        await _audit(out, sb, settings)
    finally:
        await upstream_runner.cleanup()
    verdict = "all steps behaved as expected" if not walk.failures else f"{walk.failures} failed"
    print(f"\ndemo finished: {verdict}", file=out)
    return 0 if not walk.failures else 1
