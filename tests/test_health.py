"""`gate health` (the image's HEALTHCHECK): asks /healthz where the effective config says."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from tests.certs import Authority
from tests.contract.conftest import ServeGate, free_port, serve_gate  # noqa: F401 - the fixture
from tests.contract.test_tls_listeners import ServeTls, serve_tls  # noqa: F401 - the fixture
from tests.support import GATE_COMMAND


async def _health(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *GATE_COMMAND, "health", *args, env=env if env is not None else dict(os.environ),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


async def test_health_passes_on_a_live_gate_and_fails_on_a_dead_one(
    serve_gate: ServeGate,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    """§5 /healthz: exit 0 and one line naming the URL while the gate runs; 1 when it is not."""
    served = await serve_gate()
    code, out = await _health("--config", str(served.config))
    assert code == 0, out
    assert out == f"healthy: GET {served.admin_url}/healthz answered 200\n"
    dead = tmp_path / "dead.toml"
    dead.write_text(f'[admin]\nlisten = "127.0.0.1:{free_port()}"\n')
    code, out = await _health("--config", str(dead))
    assert code == 1
    assert out.startswith("unhealthy: GET http://127.0.0.1:") and out.count("\n") == 1, out


async def test_health_follows_the_admin_listener_moved_by_the_environment(
    serve_gate: ServeGate,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    """§3 GATE_ADMIN__LISTEN overrides the file for the probe too (wildcards: loopback)."""
    served = await serve_gate()
    port = served.admin_url.rpartition(":")[2]
    elsewhere = tmp_path / "elsewhere.toml"  # a file that puts the admin listener on a dead port
    elsewhere.write_text(f'[admin]\nlisten = "127.0.0.1:{free_port()}"\n')
    code, out = await _health("--config", str(elsewhere))
    assert code == 1, out
    moved = {**os.environ, "GATE_ADMIN__LISTEN": f"0.0.0.0:{port}"}
    code, out = await _health("--config", str(elsewhere), env=moved)
    assert (code, out) == (0, f"healthy: GET http://127.0.0.1:{port}/healthz answered 200\n")


async def test_health_speaks_mutual_tls_with_the_admin_pair(
    serve_tls: ServeTls,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    """§3 admin TLS: with a client CA, the probe presents a client pair (the admin's by default)."""
    authority = Authority(tmp_path)
    pair = authority.issue()
    served = await serve_tls(
        admin=pair.toml(ca=authority.ca_file),
        admin_ssl=authority.client_context(authority.issue()),
    )
    code, out = await _health("--config", str(served.config))
    assert (code, out) == (0, f"healthy: GET {served.admin_url}/healthz answered 200\n")
    (tmp_path / "other").mkdir()
    foreign = Authority(tmp_path / "other", "other").issue()  # a CA the listener does not trust
    code, out = await _health(
        "--config", str(served.config), "--cert", str(foreign.cert), "--key", str(foreign.key)
    )
    assert code == 1 and out.startswith(f"unhealthy: GET {served.admin_url}/healthz"), out
