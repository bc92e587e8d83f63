"""The reference point: the smallest sensible aiohttp reverse proxy (one session, read whole).

What any aiohttp proxy must do and no more: one pooled ``ClientSession``
(keep-alive, as many connections as the gate's default pool), bodies read
whole, hop-by-hop headers dropped both ways, on uvloop like the gate. No
classification, no identity, no streaming.

    python bench/minimal_proxy.py PORT UPSTREAM_URL
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

try:
    import uvloop
except ImportError:  # pragma: no cover - a dependency of the gate on Linux
    uvloop = None

# RFC 9110 §7.6.1, plus Host (the client sets the upstream's) and the length (recomputed).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)


async def session(app: web.Application) -> AsyncIterator[None]:
    connector = aiohttp.TCPConnector(limit=256, ttl_dns_cache=None)
    app[SESSION] = aiohttp.ClientSession(connector=connector, auto_decompress=False)
    yield
    await app[SESSION].close()


async def handle(request: web.Request) -> web.Response:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    async with request.app[SESSION].request(
        request.method,
        request.app[UPSTREAM] + request.raw_path,
        headers=headers,
        data=await request.read(),
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
    ) as upstream:
        body = await upstream.read()
        answer = [(k, v) for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP]
        return web.Response(status=upstream.status, body=body, headers=answer)


def main() -> None:
    port, upstream = int(sys.argv[1]), sys.argv[2].rstrip("/")
    app = web.Application()
    app[UPSTREAM] = upstream
    app.cleanup_ctx.append(session)
    app.router.add_route("*", "/{tail:.*}", handle)
    loop = uvloop.new_event_loop() if uvloop else asyncio.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, loop=loop)


if __name__ == "__main__":
    main()
