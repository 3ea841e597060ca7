"""The admin listener: liveness, readiness, Prometheus metrics, and the CSP layer's listings.

It runs on its own address (default 127.0.0.1:9090) and is never reachable through the
public listener. Liveness does not depend on the upstream, so an origin outage never
makes an orchestrator restart tag-gate; readiness is false while starting and draining.
One process serves it for itself; with workers, the supervisor serves it for all of
them (ready when every worker is; metrics added up over the workers).
`/csp-gaps` is the CSP report endpoint's listing as JSON (`ReportSink.listing`: catalogue
gaps by host, runtime leaks by vendor), what `tag-gate explain --admin` reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST


def make_admin_app(
    is_ready: Callable[[], bool],
    render_metrics: Callable[[], bytes],
    *,
    render_in_thread: bool = False,
    csp_listing: Callable[[], object] | None = None,
) -> web.Application:
    """`/healthz` (this process answers), `/readyz` (`is_ready()`), `/metrics`
    (`render_metrics()`, in a thread with `render_in_thread`: the supervisor's reads the
    workers' files, which should not hold its event loop), `/csp-gaps` (`csp_listing()`;
    None: the listings are kept by each worker, and the answer says where to look)."""

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

    async def handle_csp_gaps(request: web.Request) -> web.Response:
        if csp_listing is None:
            return web.json_response(
                {
                    "error": "with server.workers above 1 each worker keeps its own listing; the metrics "
                    "tag_gate_catalogue_gaps_total and tag_gate_runtime_leaks_total add them up"
                },
                status=501,
            )
        return web.json_response(csp_listing())

    app = web.Application()
    app.router.add_get("/healthz", handle_healthz)
    app.router.add_get("/readyz", handle_readyz)
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/csp-gaps", handle_csp_gaps)
    return app
