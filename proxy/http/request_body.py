"""Reading a small request body whole, for tag-gate's own endpoints (proof of consent,
CSP reports): bounded in bytes and in time, so a large or slow upload costs nothing."""

from __future__ import annotations

import asyncio

from aiohttp import web

__all__ = ["read_capped"]


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
