"""DESIGN §5: the admin listener (health, metrics, cache inspection) and its token."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gate import __version__
from gate.keys import STATE
from tests.conftest import Gate, StartGate
from tests.support import (
    BUILD,
    CUSTOMER,
    PARTNER_A,
    PARTNER_B,
    agreements_path,
    auth,
    confirmation,
    metric,
    order,
    orders_path,
)

METRIC_NAMES = (
    "gate_decisions_total",
    "gate_acceptance_lookups_total",
    "gate_acceptance_lookup_duration_seconds",
    "gate_upstream_request_duration_seconds",
    "gate_upstream_errors_total",
    "gate_acceptance_cache_entries",
    "gate_requests_in_flight",
    "gate_config_reloads_total",
    "gate_build_info",
)


def _sample_names(text: str) -> set[str]:
    return {sample.name for f in text_string_to_metric_families(text) for sample in f.samples}


def _inspect_path(partner: str = PARTNER_A, customer: str = CUSTOMER) -> str:
    return f"/admin/acceptance/{partner}/{customer}"


def _rfc3339(value: str) -> datetime:
    assert value.endswith(("Z", "+00:00")), value
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.utcoffset() == timedelta(0)
    return parsed


# -- health -------------------------------------------------------------------------------


async def test_healthz_answers_200(gate: Gate) -> None:
    """§5: /healthz answers 200 while the process is alive."""
    response = await gate.admin.get("/healthz")
    assert response.status == 200


async def test_readyz_answers_200_when_listening(gate: Gate) -> None:
    """§5: /readyz answers 200 once the config is loaded and the proxy is listening."""
    response = await gate.admin.get("/readyz")
    assert response.status == 200


async def test_readyz_answers_503_while_draining(gate: Gate) -> None:
    """§5: /readyz stops answering 200 once the gate is draining."""
    gate.app[STATE].draining = True
    response = await gate.admin.get("/readyz")
    assert response.status == 503
    assert (await gate.admin.get("/healthz")).status == 200  # still alive


# -- metrics ------------------------------------------------------------------------------


async def test_metrics_expose_every_contract_name(gate: Gate) -> None:
    """§5: /metrics is Prometheus text carrying every metric name of the contract."""
    response = await gate.admin.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = _sample_names(await response.text())
    for name in METRIC_NAMES:  # a histogram's samples are name_bucket, name_count, name_sum
        assert name in samples or f"{name}_count" in samples, name


async def test_metrics_count_decisions_lookups_and_timings(gate: Gate) -> None:
    """§5: gated decisions, lookups and upstream timings are counted under the contract's labels."""
    assert (await gate.client.post(orders_path(), json=order(), headers=auth())).status == 403
    gate.upstream.sandbox.accept(PARTNER_B, CUSTOMER)
    for _ in range(2):
        response = await gate.client.post(orders_path(), json=order(), headers=auth(PARTNER_B))
        assert response.status == 201
    await gate.client.post(agreements_path(), json=confirmation(), headers=auth())
    text = await gate.metrics()
    decisions = "gate_decisions_total"
    assert metric(text, decisions, transaction="new_purchase", decision="blocked") == 1
    assert metric(text, decisions, transaction="new_purchase", decision="allowed") == 2
    assert metric(text, decisions, transaction="confirmation", decision="allowed") == 1
    assert metric(text, "gate_acceptance_lookups_total", result="miss") == 2
    assert metric(text, "gate_acceptance_lookups_total", result="hit") == 1
    assert metric(text, "gate_acceptance_lookups_total", result="error") == 0
    assert metric(text, "gate_acceptance_lookup_duration_seconds_count") == 2
    assert metric(text, "gate_upstream_request_duration_seconds_count") == 3  # 2 orders + confirm
    assert metric(text, "gate_acceptance_cache_entries") == 2
    assert metric(text, "gate_requests_in_flight") == 0
    assert metric(text, "gate_build_info", version=__version__, build=BUILD) == 1


async def test_metrics_labels_never_carry_tenant_ids(gate: Gate) -> None:
    """§5: metric labels are low-cardinality: no customer or partner id appears in /metrics."""
    gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    await gate.client.post(orders_path(), json=order(), headers=auth())
    await gate.client.post(orders_path(), json=order(), headers=auth(PARTNER_B))
    text = await gate.metrics()
    assert metric(text, "gate_decisions_total", transaction="new_purchase", decision="allowed")
    for tenant in (CUSTOMER, PARTNER_A, PARTNER_B):
        assert tenant not in text


async def test_config_reloads_counter_is_exported_by_result(gate: Gate) -> None:
    """§5: gate_config_reloads_total is exported with a result label before any reload."""
    text = await gate.metrics()
    results = {
        sample.labels.get("result")
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "gate_config_reloads_total"
    }
    assert results >= {"ok", "error"}


# -- /admin/acceptance --------------------------------------------------------------------


async def test_inspect_a_pair_learned_by_lookup(gate: Gate) -> None:
    """§5: inspect shows a looked-up pair (source: the agreement) with RFC 3339 times."""
    gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    assert (await gate.client.post(orders_path(), json=order(), headers=auth())).status == 201
    response = await gate.admin.get(_inspect_path(PARTNER_A.upper(), CUSTOMER.upper()))
    assert response.status == 200
    body = await response.json()
    assert {k: body[k] for k in ("partner", "customer", "status", "source")} == {
        "partner": PARTNER_A,
        "customer": CUSTOMER,
        "status": "accepted",
        "source": "agreement",
    }
    cached, expires = _rfc3339(body["cached_at"]), _rfc3339(body["expires_at"])
    assert expires - cached == timedelta(seconds=3600)  # positive_ttl_s


async def test_inspect_a_pair_recorded_by_confirmation(gate: Gate) -> None:
    """§5: a pair marked by a confirmation through the gate shows source "confirmation"."""
    await gate.client.post(agreements_path(), json=confirmation(), headers=auth())
    body = await (await gate.admin.get(_inspect_path())).json()
    assert (body["status"], body["source"]) == ("accepted", "confirmation")


async def test_inspect_a_not_accepted_pair(start_gate: StartGate) -> None:
    """§5: a 'not confirmed' answer is shown as not_accepted, expiring after negative_ttl_s."""
    gate = await start_gate(acceptance={"negative_ttl_s": 30})
    await gate.client.post(orders_path(), json=order(), headers=auth())
    body = await (await gate.admin.get(_inspect_path())).json()
    assert (body["status"], body["source"]) == ("not_accepted", "lookup")
    assert _rfc3339(body["expires_at"]) - _rfc3339(body["cached_at"]) == timedelta(seconds=30)


async def test_inspect_unknown_pair_is_404(gate: Gate) -> None:
    """§5: inspecting a pair with nothing cached answers 404."""
    response = await gate.admin.get(_inspect_path())
    assert response.status == 404


async def test_delete_drops_the_entry(gate: Gate) -> None:
    """§5: DELETE /admin/acceptance/{partner}/{customer} answers 204 and the gate asks again."""
    gate.upstream.sandbox.accept(PARTNER_A, CUSTOMER)
    await gate.client.post(orders_path(), json=order(), headers=auth())
    response = await gate.admin.delete(_inspect_path())
    assert response.status == 204
    assert (await gate.admin.get(_inspect_path())).status == 404
    assert (await gate.admin.delete(_inspect_path())).status == 404
    await gate.client.post(orders_path(), json=order(), headers=auth())
    assert len(gate.upstream.sandbox.calls("GET", agreements_path())) == 2


async def test_delete_unknown_pair_is_404(gate: Gate) -> None:
    """§5: deleting a pair with nothing cached answers 404."""
    response = await gate.admin.delete(_inspect_path())
    assert response.status == 404


# -- admin token --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-token"),
        pytest.param({"Authorization": "Bearer wrong"}, id="wrong-token"),
        pytest.param({"Authorization": "s3cret"}, id="no-scheme"),
        pytest.param({"Authorization": "Basic s3cret"}, id="other-scheme"),
    ],
)
async def test_admin_token_guards_admin_calls(
    start_gate: StartGate, headers: dict[str, str]
) -> None:
    """§3/§5: with admin.token set, /admin/* answers 401 without "Authorization: Bearer <token>"."""
    gate = await start_gate(admin={"token": "s3cret"})
    await gate.client.post(agreements_path(), json=confirmation(), headers=auth())
    assert (await gate.admin.get(_inspect_path(), headers=headers)).status == 401
    assert (await gate.admin.delete(_inspect_path(), headers=headers)).status == 401
    good = {"Authorization": "Bearer s3cret"}
    assert (await gate.admin.get(_inspect_path(), headers=good)).status == 200  # not dropped


async def test_admin_token_leaves_metrics_and_health_open(start_gate: StartGate) -> None:
    """§3/§5: with admin.token set, /metrics, /healthz and /readyz still need no token."""
    gate = await start_gate(admin={"token": "s3cret"})
    for path in ("/metrics", "/healthz", "/readyz"):
        assert (await gate.admin.get(path)).status == 200, path
    good = {"Authorization": "Bearer s3cret"}
    assert (await gate.admin.delete(_inspect_path(), headers=good)).status == 404


async def test_inspect_shows_the_customers_own_acceptance_as_direct(gate: Gate) -> None:
    """§1.2 and §5: a pair confirmed by the direct status is inspected with source direct."""
    gate.upstream.sandbox.sign_directly(CUSTOMER)
    assert (await gate.client.post(orders_path(), json=order(), headers=auth())).status == 201
    body = await (await gate.admin.get(_inspect_path())).json()
    assert (body["status"], body["source"]) == ("accepted", "direct")
