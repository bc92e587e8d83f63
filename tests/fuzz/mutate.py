"""The socket-level mutation fuzzer: spelled-differently gated calls sent to a running gate.

Each request starts from a gated call of DESIGN R1 and takes a few mutations
(droppable segments, parameters, encodings, case, folding letters, dot
segments, absolute form, method overrides, folded or repeated JSON keys).
``judge`` then reads what reached the sandbox the liberal way
(tests/fuzz/oracle.py): a call that is gated to such a reading must have been
answered with X-Gate-Decision allowed, would-block or exempt.
"""

from __future__ import annotations

import json
import random
from typing import Any

from tests.fuzz.oracle import body_gates, effective_methods, gated_readings

C = "/v1/customers/c0ffee00-1234-4321-abcd-0123456789ab"
ITEM = {"offerId": "CFQ7TTC0LH18:0001", "quantity": 5}
CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", f"{C}/orders", {"lineItems": [ITEM]}),
    ("PATCH", f"{C}/orders/order-1", {"lineItems": [ITEM]}),
    ("PATCH", f"{C}/orders/order-1", {"status": "cancelled"}),
    ("POST", f"{C}/carts/cart-1/checkout", {}),
    ("POST", f"{C}/subscriptions/sub-1/upgrades", {}),
    ("POST", f"{C}/subscriptions/sub-1/transitions", {}),
    ("POST", f"{C}/subscriptions/sub-1/conversions", {}),
    ("POST", f"{C}/migrations/newcommerce", {}),
    ("PATCH", f"{C}/subscriptions/sub-1", {"quantity": 50}),
    ("PATCH", f"{C}/subscriptions/sub-1", {"quantity": 10, "status": "active"}),
]
DROPPED = [";a", ";", ";a=1", "%20", "%09", "...", ".%20", "%20.", ".;a", "x/..;a", "%0a", "."]
PIECES = [";", ";x=1", ".", "..", "%20", "%09", "%2e", "%2E%2E", "%3B", "%2F", "~", "%7E"]
FOLDS = {"i": ["%C4%B1", "%C4%B0"], "s": ["%C5%BF"], "k": ["%E2%84%AA"]}
JSON_FOLDS = {"i": ["\\u0131", "\\u0130"], "s": ["\\u017f"], "k": ["\\u212a"]}
METHODS = ["POST", "PATCH", "GET", "PUT", "DELETE"]


def _path(rng: random.Random, path: str) -> str:
    for _ in range(rng.randint(1, 3)):
        segments = path.split("/")
        at = rng.randrange(1, len(segments))
        kind = rng.randrange(7)
        if kind == 0:
            path = f"{path}/{rng.choice(DROPPED)}"
        elif kind == 1:
            segments[at] += rng.choice(PIECES)
            path = "/".join(segments)
        elif kind == 2:
            path = "".join(c.swapcase() if rng.random() < 0.3 else c for c in path)
        elif kind == 3:
            chars = [f"%{ord(c):02X}" if c.isalnum() and rng.random() < 0.2 else c for c in path]
            path = "".join(chars)
        elif kind == 4:
            fold = [rng.choice(FOLDS[c]) if c in FOLDS and rng.random() < 0.3 else c for c in path]
            path = "".join(fold)
        elif kind == 5:
            segments.insert(at, rng.choice(["x/..", ".", "", "x/..;a", "%2e"]))
            path = "/".join(segments)
        else:
            path = "/".join([*segments[:at], rng.choice(PIECES), *segments[at:]])
    return path


def _body(rng: random.Random, doc: dict[str, Any]) -> bytes:
    text = json.dumps(doc)
    if rng.random() < 0.5:
        return text.encode()
    keys = [k for k in doc if rng.random() < 0.7]
    for key in keys:
        spelled = "".join(
            rng.choice(JSON_FOLDS[c]) if c in JSON_FOLDS and rng.random() < 0.5 else c for c in key
        )
        spelled = "".join(c.swapcase() if rng.random() < 0.3 else c for c in spelled)
        if rng.random() < 0.5:  # a second spelling beside the first
            extra = json.dumps(rng.choice([10, 50, "cancelled", [ITEM], []]))
            text = text.replace("{", f'{{"{spelled}": {extra}, ', 1)
        else:
            text = text.replace(f'"{key}"', f'"{spelled}"', 1)
    return text.encode()


def request(rng: random.Random, token: str, port: int) -> bytes:
    """One mutated request, as bytes for a raw socket."""
    method, path, doc = rng.choice(CALLS)
    if rng.random() < 0.15:
        method = rng.choice(METHODS)
    target = _path(rng, path)
    if rng.random() < 0.1:
        target = f"http://127.0.0.1:{port}{target}"
    headers = [f"Authorization: Bearer {token}", "Content-Type: application/json"]
    if rng.random() < 0.15:
        name = rng.choice(["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"])
        headers.append(f"{name}: {rng.choice(METHODS)}")
    body = _body(rng, doc)
    head = "\r\n".join([f"{method} {target} HTTP/1.1", "Host: gate", *headers])
    return f"{head}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


def judge(method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> str | None:
    """The gated call a liberal upstream reads in what reached it, or None."""
    for wanted in effective_methods(method, headers):
        for rule, _customer in gated_readings(wanted, path):
            if body_gates(rule, body):
                return rule
    return None
