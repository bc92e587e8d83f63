"""The reference point: the smallest sensible aiohttp reverse proxy (one session, read whole)."""

from __future__ import annotations

import sys

import aiohttp
from aiohttp import web

UPSTREAM = sys.argv[2]


async def session(app: web.Application) -> object:
    app["s"] = aiohttp.ClientSession(auto_decompress=False)
    yield
    await app["s"].close()


async def handle(request: web.Request) -> web.Response:
    async with request.app["s"].request(
        request.method,
        UPSTREAM + request.raw_path,
        headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
        data=await request.read(),
    ) as upstream:
        body = await upstream.read()
        return web.Response(status=upstream.status, body=body, headers=upstream.headers)


app = web.Application()
app.cleanup_ctx.append(session)
app.router.add_route("*", "/{tail:.*}", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
