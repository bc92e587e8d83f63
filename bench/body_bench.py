"""Micro benchmark of gated-body parsing (gate.core.body.parse): µs a call, best of 5.

    .venv/bin/python bench/body_bench.py

Bodies: an order (the SDK's PascalCase), a whole subscription object (a seat
change PATCH, ~40 keys), and a large order (500 line items). Used to check that
key folding (issue 28) costs the hot path next to nothing.
"""

from __future__ import annotations

import json
import timeit

from gate.core import body

_ITEM = {"LineItemNumber": 0, "OfferId": "CFQ7TTC0LH18:0001:CFQ7TTC0LH1B", "Quantity": 5}
_SUBSCRIPTION = {
    "id": "a4c1340d-6911-4758-bba3-0c4c6007d161",
    "offerId": "CFQ7TTC0LH18:0001",
    "offerName": "Microsoft 365 Business Basic",
    "friendlyName": "Business Basic",
    "quantity": 10,
    "unitType": "Licenses",
    "hasPurchasableAddons": False,
    "creationDate": "2024-05-01T00:00:00Z",
    "effectiveStartDate": "2024-05-01T00:00:00Z",
    "commitmentEndDate": "2025-05-01T00:00:00Z",
    "status": "active",
    "autoRenewEnabled": True,
    "isTrial": False,
    "billingType": "license",
    "billingCycle": "monthly",
    "termDuration": "P1Y",
    "renewalTermDuration": "",
    "refundOptions": [{"type": "Full", "expiresAt": "2024-05-08T00:00:00Z"}],
    "isMicrosoftProduct": True,
    "partnerId": "",
    "attentionNeeded": False,
    "actionTaken": False,
    "contractType": "subscription",
    "links": {"self": {"uri": "/customers/x/subscriptions/y", "method": "GET", "headers": []}},
    "orderId": "X5jZ7fG9cUq2",
    "attributes": {"etag": "eyJpZCI6IjEifQ==", "objectType": "Subscription"},
}
BODIES = {
    "order": json.dumps({"LineItems": [_ITEM]}).encode(),
    "subscription": json.dumps(_SUBSCRIPTION).encode(),
    "order-500-items": json.dumps({"LineItems": [_ITEM] * 500}).encode(),
}


def main() -> None:
    for name, raw in BODIES.items():
        number = max(1, 20_000 // (1 + len(raw) // 200))
        best = min(timeit.repeat(lambda raw=raw: body.parse(raw), number=number, repeat=5))
        print(f"{name:18} {len(raw):7} bytes  {best / number * 1e6:9.2f} µs")


if __name__ == "__main__":
    main()
