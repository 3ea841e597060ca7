"""The admin listener: liveness, readiness and Prometheus metrics.

It runs on its own address (default 127.0.0.1:9090) and is never reachable through the
public listener. Liveness does not depend on the upstream, so an origin outage never
makes an orchestrator restart tag-gate; readiness is false while starting and draining.
One process serves it for itself; with workers, the supervisor serves it for all of
them (ready when every worker is; metrics added up over the workers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST


def make_admin_app(
    is_ready: Callable[[], bool], render_metrics: Callable[[], bytes], *, render_in_thread: bool = False
) -> web.Application:
    """`/healthz` (this process answers), `/readyz` (`is_ready()`), `/metrics`
    (`render_metrics()`, in a thread with `render_in_thread`: the supervisor's reads the
    workers' files, which should not hold its event loop)."""

    async def handle_healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def handle_readyz(request: web.Request) -> web.Response:
        if is_ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    async def handle_metrics(request: web.Request) -> web.Response:
        body = await asyncio.to_thread(render_metrics) if render_in_thread else render_metrics()
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    app = web.Application()
    app.router.add_get("/healthz", handle_healthz)
    app.router.add_get("/readyz", handle_readyz)
    app.router.add_get("/metrics", handle_metrics)
    return app
