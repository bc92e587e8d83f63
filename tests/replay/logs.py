"""Decision log lines as the gate writes them, for the replay tests."""

from __future__ import annotations

import json
from typing import Any

from tests.support import CUSTOMER, PARTNER_A

ORDERS = f"/v1/customers/{CUSTOMER}/orders"
SUBSCRIPTION = f"/v1/customers/{CUSTOMER}/subscriptions/sub-1"


def entry(**changes: Any) -> dict[str, Any]:
    """A blocked order of an unaccepted pair under the defaults; keywords replace fields."""
    doc: dict[str, Any] = {
        "method": "POST",
        "path": ORDERS,
        "partner": PARTNER_A,
        "customer": CUSTOMER,
        "resellers": [],
        "transaction": "new_purchase",
        "rule": "create-order",
        "decision": "blocked",
        "reason": "not_accepted",
        "cache": "miss",
        "acceptance": "not_accepted",
        "body": None,
        "status": 403,
        "error": "CustomerAcceptanceRequired",
        "latency_ms": 1.2,
        "correlation_id": "corr-1",
        "event": "decision",
        "level": "info",
        "timestamp": "2024-06-01T12:00:00.000001Z",
    }
    doc.update(changes)
    return doc


def line(**changes: Any) -> bytes:
    return json.dumps(entry(**changes)).encode() + b"\n"
