"""DESIGN §3 snapshot_path and §5 reload: what survives a restart and what a reload changes."""

from __future__ import annotations

import io
from pathlib import Path

from pytest_aiohttp import AiohttpClient

from gate.admin import reload
from gate.app import create_admin_app, create_app
from gate.config import load
from gate.keys import STATE
from tests.conftest import MakeSettings, ServeApp, StartGate, Upstream
from tests.support import (
    CUSTOMER,
    PARTNER_A,
    agreements_path,
    auth,
    confirmation,
    metric,
    order,
    orders_path,
)


async def test_snapshot_keeps_confirmed_pairs_across_a_restart(
    serve_app: ServeApp, make_settings: MakeSettings, upstream: Upstream, tmp_path: Path
) -> None:
    """§3 snapshot_path: pairs confirmed before shutdown are trusted after start, with no lookup."""
    snapshot = tmp_path / "acceptance.jsonl"
    settings = make_settings(acceptance={"snapshot_path": str(snapshot)})
    first = create_app(settings, log_stream=io.StringIO())
    client = await serve_app(first)
    confirmed = await client.post(agreements_path(), json=confirmation(), headers=auth())
    assert confirmed.status == 201
    await client.close()  # runs the cleanup contexts: the snapshot is written
    assert PARTNER_A in snapshot.read_text()

    upstream.sandbox.agreements.clear()  # only the snapshot can say 'accepted' now
    second = create_app(settings, log_stream=io.StringIO())
    client = await serve_app(second)
    response = await client.post(orders_path(), json=order(), headers=auth())
    assert response.status == 201
    assert response.headers["X-Gate-Decision"] == "allowed"
    assert upstream.sandbox.calls("GET", "/agreements") == []


async def test_unreadable_snapshot_rows_are_skipped(
    serve_app: ServeApp, make_settings: MakeSettings, tmp_path: Path
) -> None:
    """§3 snapshot_path: a damaged snapshot never stops the gate; good rows still load."""
    snapshot = tmp_path / "acceptance.jsonl"
    good = f'{{"partner": "{PARTNER_A}", "customer": "{CUSTOMER}", "cached_at": 9e12}}\n'
    snapshot.write_text("not json\n{}\n" + good)
    settings = make_settings(acceptance={"snapshot_path": str(snapshot)})
    app = create_app(settings, log_stream=io.StringIO())
    client = await serve_app(app)
    response = await client.post(orders_path(), json=order(), headers=auth())
    assert response.status == 201


async def test_admin_reload_swaps_policy_and_refuses_a_bad_file(
    aiohttp_client: AiohttpClient, serve_app: ServeApp, upstream: Upstream, tmp_path: Path
) -> None:
    """§5: POST /admin/reload applies a changed file at once and keeps the old config on error."""
    config = tmp_path / "gate.toml"
    config.write_text(f'[upstream]\nurl = "{upstream.url}"\n')
    logs = io.StringIO()
    app = create_app(load(config), log_stream=logs, config_path=str(config))
    client = await serve_app(app)
    app[STATE].listening = True
    admin = await aiohttp_client(
        create_admin_app(load(config), app), server_kwargs={"host": "127.0.0.1"}
    )
    assert (await client.post(orders_path(), json=order(), headers=auth())).status == 403

    config.write_text(f'[upstream]\nurl = "{upstream.url}"\n[policy]\nmode = "observe"\n')
    reloaded = await admin.post("/admin/reload")
    assert reloaded.status == 200
    observed = await client.post(orders_path(), json=order(), headers=auth())
    assert observed.status == 201
    assert observed.headers["X-Gate-Decision"] == "would-block"

    config.write_text("[policy]\nmode = 'sometimes'\n")
    refused = await admin.post("/admin/reload")
    assert refused.status == 400
    assert any("policy.mode" in p for p in (await refused.json())["problems"])
    still = await client.post(orders_path(), json=order(), headers=auth())
    assert still.headers["X-Gate-Decision"] == "would-block"
    text = await (await admin.get("/metrics")).text()
    assert metric(text, "gate_config_reloads_total", result="ok") == 1
    assert metric(text, "gate_config_reloads_total", result="error") == 1
    assert "reload_refused" in logs.getvalue()
    assert reload(app) == ["policy.mode: Input should be 'enforce', 'observe' or 'off'"]


async def test_readyz_reports_starting_and_draining(start_gate: StartGate) -> None:
    """§5: /readyz is 503 until listening and again while draining, 200 in between."""
    gate = await start_gate()
    assert (await gate.admin.get("/readyz")).status == 200
    gate.app[STATE].draining = True
    draining = await gate.admin.get("/readyz")
    assert draining.status == 503
    assert (await draining.json())["status"] == "draining"
    gate.app[STATE].listening = gate.app[STATE].draining = False
    assert (await gate.admin.get("/readyz")).status == 503


async def test_reload_refuses_what_needs_a_restart(
    aiohttp_client: AiohttpClient, serve_app: ServeApp, upstream: Upstream, tmp_path: Path
) -> None:
    """§5: a reload that changes upstream.url is refused, not half-applied."""
    config = tmp_path / "gate.toml"
    config.write_text(f'[upstream]\nurl = "{upstream.url}"\n')
    app = create_app(load(config), log_stream=io.StringIO(), config_path=str(config))
    client = await serve_app(app)
    config.write_text(f'[upstream]\nurl = "{upstream.url}/api"\n')
    assert reload(app) == ["upstream.url: changes need a restart"]
    response = await client.get("/v1/customers")
    assert response.status == 200
    assert upstream.sandbox.received[-1].path == "/v1/customers"


async def test_reload_rotates_the_admin_token(
    aiohttp_client: AiohttpClient, serve_app: ServeApp, upstream: Upstream, tmp_path: Path
) -> None:
    """§5: a reload that changes admin.token applies it at once; the scheme is case-insensitive."""
    config = tmp_path / "gate.toml"
    config.write_text(f'[upstream]\nurl = "{upstream.url}"\n[admin]\ntoken = "old-secret"\n')
    app = create_app(load(config), log_stream=io.StringIO(), config_path=str(config))
    await serve_app(app)
    admin = await aiohttp_client(
        create_admin_app(load(config), app), server_kwargs={"host": "127.0.0.1"}
    )
    path = f"/admin/acceptance/{PARTNER_A}/{CUSTOMER}"
    assert (await admin.get(path, headers={"Authorization": "bearer old-secret"})).status == 404
    config.write_text(f'[upstream]\nurl = "{upstream.url}"\n[admin]\ntoken = "new-secret"\n')
    assert reload(app) == []
    assert (await admin.get(path, headers={"Authorization": "Bearer old-secret"})).status == 401
    assert (await admin.get(path, headers={"Authorization": "Bearer new-secret"})).status == 404


async def test_reload_refuses_every_key_it_cannot_apply(
    aiohttp_client: AiohttpClient, serve_app: ServeApp, upstream: Upstream, tmp_path: Path
) -> None:
    """§5: cache, log and timeout settings are built at start, so changing them is refused."""
    config = tmp_path / "gate.toml"
    config.write_text(f'[upstream]\nurl = "{upstream.url}"\n')
    app = create_app(load(config), log_stream=io.StringIO(), config_path=str(config))
    await serve_app(app)
    config.write_text(
        f'[upstream]\nurl = "{upstream.url}"\nread_timeout_s = 9\n'
        '[acceptance]\npositive_ttl_s = 10\n[log]\nlevel = "debug"\n'
    )
    assert sorted(reload(app)) == [
        "acceptance.positive_ttl_s: changes need a restart",
        "log.level: changes need a restart",
        "upstream.read_timeout_s: changes need a restart",
    ]


async def test_an_unreadable_snapshot_never_stops_the_gate(
    serve_app: ServeApp, make_settings: MakeSettings, tmp_path: Path
) -> None:
    """§3 snapshot_path: a snapshot that cannot be read or written is logged, not fatal."""
    folder = tmp_path / "a-directory"
    folder.mkdir()
    logs = io.StringIO()
    app = create_app(make_settings(acceptance={"snapshot_path": str(folder)}), log_stream=logs)
    client = await serve_app(app)
    assert (await client.get("/v1/customers")).status == 200
    await client.close()
    assert "snapshot_unreadable" in logs.getvalue()
    assert "snapshot_not_saved" in logs.getvalue()
