"""Reading a small request body whole, for tag-gate's own endpoints (proof of consent,
CSP reports, the guard's errors): bounded in bytes and in time, so a large or slow
upload costs nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import hdrs, web

from ..core.csp_reports import TokenBucket
from .relay import error_response

if TYPE_CHECKING:
    from .exchange import Exchange

__all__ = ["read_capped", "read_report"]


async def read_capped(request: web.BaseRequest, limit: int, timeout: float) -> bytes | None:
    """The request body, or None once it passes `limit` bytes (the rest is not read).
    Raises TimeoutError when the whole body takes longer than `timeout` seconds."""
    chunks: list[bytes] = []
    total = 0
    async with asyncio.timeout(timeout):
        while True:
            chunk = await request.content.readany()
            if not chunk:
                return b"".join(chunks)
            total += len(chunk)
            if total > limit:
                return None
            chunks.append(chunk)


async def read_report(
    ex: Exchange, bucket: TokenBucket, limit: int, outcomes: Mapping[str, Any]
) -> bytes | web.StreamResponse:
    """A public report endpoint's body (CSP reports, the guard's errors), or the answer
    that refuses it: anything but a POST (405); no token left in `bucket`, taken before
    anything is read (429); over `limit` bytes (413, the rest unread); slower than the
    client-body timeout (408). Each refusal but the 405 is counted in `outcomes`
    ("rate_limited", "too_large", "invalid": counters by result)."""
    request = ex.request
    if ex.method != "POST":
        resp = error_response(405, "Method Not Allowed")
        resp.headers[hdrs.ALLOW] = "POST"
        return resp
    if not bucket.take(time.monotonic()):
        outcomes["rate_limited"].inc()
        return error_response(429, "Too Many Requests", close=request.body_exists)
    body: bytes | None = None
    if request.content_length is None or request.content_length <= limit:
        try:
            body = await read_capped(request, limit, ex.runtime.config.timeouts.client_body)
        except TimeoutError:
            outcomes["invalid"].inc()
            return error_response(408, "Request Timeout", close=True)
    if body is None:
        outcomes["too_large"].inc()
        return error_response(413, "Content Too Large", close=True)
    return body
