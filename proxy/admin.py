"""The admin listener: liveness, readiness, Prometheus metrics, and the CSP layer's listings.

It runs on its own address (default 127.0.0.1:9090) and is never reachable through the
public listener. Liveness does not depend on the upstream, so an origin outage never
makes an orchestrator restart tag-gate; readiness is false while starting and draining.
`/csp-gaps` is the CSP report endpoint's listing as JSON (`ReportSink.listing`: catalogue
gaps by host, runtime leaks by vendor), what `tag-gate explain --admin` reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from .http.state import ProxyState


def make_admin_app(state: ProxyState) -> web.Application:
    async def handle_healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def handle_readyz(request: web.Request) -> web.Response:
        if state.ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    async def handle_metrics(request: web.Request) -> web.Response:
        resp = web.Response(body=state.metrics.render())
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    async def handle_csp_gaps(request: web.Request) -> web.Response:
        return web.json_response(state.reports.listing())

    app = web.Application()
    app.router.add_get("/healthz", handle_healthz)
    app.router.add_get("/readyz", handle_readyz)
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/csp-gaps", handle_csp_gaps)
    return app
