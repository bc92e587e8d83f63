"""Values and small helpers shared by the tests: tokens, payloads, metric and log readers."""

from __future__ import annotations

import io
import json
import os
import random
import socket
import sys
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from gate.core.confirmation import MCA_TEMPLATE_ID
from gate.sandbox import make_token

PARTNER_A = "11111111-aaaa-4aaa-8aaa-111111111111"
PARTNER_B = "22222222-bbbb-4bbb-8bbb-222222222222"
CUSTOMER = "c0ffee00-1234-4321-abcd-0123456789ab"
RESELLER = "33333333-cccc-4ccc-8ccc-333333333333"
CONTACT_FIRST, CONTACT_LAST = "Ada", "Lovelace"
CONTACT_EMAIL, CONTACT_PHONE = "ada.lovelace@contoso.example", "+1 425 555 0100"
# The installed console script beside this interpreter: what a user runs, never the checkout
# (`python -m gate` from the repository root would import the source tree instead).
GATE_COMMAND = (str(Path(sys.executable).with_name("gate")),)
# The build under test: compiled with mypyc unless the run asked for pure Python
# (GATE_PURE_PYTHON=1 scripts/test); read once at import, before any fixture clears GATE_*.
BUILD = "pure" if os.environ.get("GATE_PURE_PYTHON") == "1" else "mypyc"


def auth(partner: str = PARTNER_A, **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(partner, **claims)}"}


def orders_path(customer: str = CUSTOMER) -> str:
    return f"/v1/customers/{customer}/orders"


def agreements_path(customer: str = CUSTOMER) -> str:
    return f"/v1/customers/{customer}/agreements"


def subscription_path(customer: str = CUSTOMER, subscription: str = "sub-1") -> str:
    return f"/v1/customers/{customer}/subscriptions/{subscription}"


def order(reseller: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"lineItemNumber": 0, "offerId": "CFQ7TTC0LH18:0001", "quantity": 5}
    if reseller:
        item["partnerIdOnRecord"] = reseller
    return {"lineItems": [item]}


def confirmation(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "dateAgreed": "2024-05-01T00:00:00Z",
        "primaryContact": {
            "firstName": CONTACT_FIRST,
            "lastName": CONTACT_LAST,
            "email": CONTACT_EMAIL,
            "phoneNumber": CONTACT_PHONE,
        },
        "templateId": MCA_TEMPLATE_ID,
        "type": "MicrosoftCloudAgreement",
    }
    doc.update(changes)
    return doc


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text, or 0.0 when it is absent."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def log_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def decisions(stream: io.StringIO) -> list[dict[str, Any]]:
    return [line for line in log_lines(stream) if line.get("event") == "decision"]


_PICK = random.Random()  # its own: a test seeding the random module must not repeat ports


def free_port() -> int:
    """A loopback port nobody listens on right now, below the kernel's ephemeral range.

    A port the kernel hands out (bind to 0) comes from the range outgoing
    connections take their local ports from: between this check and the
    server's bind, any connection on the machine could take it ("address
    already in use", seen in CI). Below the range only another bind can.
    """
    low = _ephemeral_low()
    for _ in range(100):
        port = _PICK.randrange(10_000, low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # the low ports are all taken: the kernel's pick, as before
        sock.bind(("127.0.0.1", 0))
        found: int = sock.getsockname()[1]
        return found


def _ephemeral_low() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32_768  # Linux's default
    return max(low, 10_001)
