"""Upgrading from the release before issue 24: its snapshot rows and Redis values still load.

That release wrote ``"source": "lookup"`` for a pair an agreements lookup
confirmed (snapshot rows, ``acceptance.snapshot_path``) and the same in the
shared tier's values (``gate:acceptance:<partner>/<customer>``). This release
reads both as ``agreement`` (DESIGN §5 inspect, the decision log's
``source``), trusts them without asking the upstream again, and keeps
``confirmation`` as it was. The rows and values below are byte for byte what
that release wrote (``json.dumps`` of its row; its compact Redis value).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.conftest import Gate, StartGate, StartRedis, Upstream
from tests.support import PARTNER_A, PARTNER_B, auth, decisions, order, orders_path

LOOKED_UP = "c1000000-0000-4000-8000-000000000001"  # confirmed by a lookup (old: "lookup")
CONFIRMED = "c2000000-0000-4000-8000-000000000002"  # confirmed through the gate
REFUSED = "c3000000-0000-4000-8000-000000000003"  # a 'not confirmed' answer in Redis


async def _order(gate: Gate, customer: str, partner: str = PARTNER_A) -> tuple[int, str]:
    async with gate.client.post(
        orders_path(customer), json=order(), headers=auth(partner)
    ) as response:
        return response.status, response.headers.get("X-Gate-Decision", "")


async def _inspect(gate: Gate, customer: str, partner: str = PARTNER_A) -> dict[str, Any]:
    response = await gate.admin.get(f"/admin/acceptance/{partner}/{customer}")
    assert response.status == 200
    doc: dict[str, Any] = await response.json()
    return doc


async def test_an_old_snapshot_loads_its_lookups_as_agreement(
    start_gate: StartGate, upstream: Upstream, tmp_path: Path
) -> None:
    """§3 snapshot_path: rows the previous release wrote ("lookup") load as agreement, unasked."""
    snapshot = tmp_path / "acceptance.jsonl"
    now = time.time() - 60
    rows = [
        {"partner": PARTNER_A, "customer": LOOKED_UP, "cached_at": now, "source": "lookup"},
        {"partner": PARTNER_A, "customer": CONFIRMED, "cached_at": now, "source": "confirmation"},
    ]
    snapshot.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    gate = await start_gate(acceptance={"snapshot_path": str(snapshot)})

    assert await _order(gate, LOOKED_UP) == (201, "allowed")
    assert await _order(gate, CONFIRMED) == (201, "allowed")
    assert upstream.sandbox.calls("GET", "/agreements") == []  # trusted from the snapshot
    assert (await _inspect(gate, LOOKED_UP))["source"] == "agreement"
    assert (await _inspect(gate, CONFIRMED))["source"] == "confirmation"
    logged = {line["customer"]: line["source"] for line in decisions(gate.logs)}
    assert logged == {LOOKED_UP: "agreement", CONFIRMED: "confirmation"}

    await gate.client.close()  # written again by this release, in its own words
    written = {
        row["customer"]: row["source"]
        for row in map(json.loads, snapshot.read_text(encoding="utf-8").splitlines())
    }
    assert written == {LOOKED_UP: "agreement", CONFIRMED: "confirmation"}


def _old_value(status: str, source: str) -> str:
    """A value as the previous release's shared tier wrote it."""
    doc = {"status": status, "source": source, "cached_at": time.time() - 5}
    return json.dumps(doc, separators=(",", ":"))


async def test_old_redis_values_load(
    start_gate: StartGate, start_redis: StartRedis, upstream: Upstream
) -> None:
    """§6: values the previous release left in Redis are read: "lookup" as agreement, unasked."""
    redis = await start_redis()
    values = {
        LOOKED_UP: _old_value("accepted", "lookup"),
        CONFIRMED: _old_value("accepted", "confirmation"),
        REFUSED: _old_value("not_accepted", "lookup"),
    }
    for customer, value in values.items():
        await redis.client.set(f"gate:acceptance:{PARTNER_A}/{customer}", value, px=600_000)
    upstream.sandbox.accept(PARTNER_A, REFUSED)  # only a fresh lookup would find this one
    gate = await start_gate(acceptance={"shared_url": redis.url, "negative_ttl_s": 60})

    assert await _order(gate, LOOKED_UP) == (201, "allowed")
    assert await _order(gate, CONFIRMED) == (201, "allowed")
    assert await _order(gate, REFUSED) == (403, "blocked")  # Redis's old answer, not a lookup
    assert upstream.sandbox.calls("GET", "/agreements") == []
    assert (await _inspect(gate, LOOKED_UP))["source"] == "agreement"
    assert (await _inspect(gate, CONFIRMED))["source"] == "confirmation"
    assert (await _inspect(gate, REFUSED))["status"] == "not_accepted"
    logged = {line["customer"]: (line["cache"], line["source"]) for line in decisions(gate.logs)}
    assert logged[LOOKED_UP] == ("shared", "agreement")
    assert logged[CONFIRMED] == ("shared", "confirmation")

    assert await _order(gate, LOOKED_UP, PARTNER_B) == (403, "blocked")  # other keys untouched
