"""Test helpers for functional tests: a tag-gate under test, raw clients, scripted upstreams.

Everything runs on 127.0.0.1 with real sockets; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from proxy.core.config import parse_config
from proxy.logs import AccessLog
from proxy.service import Service


@dataclass
class Running:
    """A tag-gate started in-process on ephemeral ports."""

    service: Service
    log: io.StringIO

    @property
    def port(self) -> int:
        assert self.service.public_address is not None
        return self.service.public_address.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        assert self.service.admin_address is not None
        return f"http://127.0.0.1:{self.service.admin_address.port}"

    def access_records(self) -> list[dict[str, Any]]:
        self.service.state.access_log.flush()
        return [json.loads(line) for line in self.log.getvalue().splitlines() if line.strip()]


def make_config_data(upstream: str, **sections: dict[str, Any]) -> dict[str, Any]:
    server = {"listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0", "upstream": upstream}
    server.update(sections.pop("server", {}))
    return {"server": server, **sections}


@contextlib.asynccontextmanager
async def running_proxy(upstream: str, **sections: dict[str, Any]) -> AsyncIterator[Running]:
    config = parse_config(make_config_data(upstream, **sections))
    out = io.StringIO()
    service = Service(config, access_log=AccessLog(out))
    await service.start()
    try:
        yield Running(service, out)
    finally:
        await service.stop(grace=0)


async def raw_exchange(port: int, data: bytes, *, timeout: float = 5.0, half_close: bool = False) -> bytes:
    """Send raw bytes, read until the server closes (or `timeout`), return what came back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if half_close:
            writer.write_eof()
        chunks = []
        with contextlib.suppress(asyncio.TimeoutError, ConnectionResetError):
            async with asyncio.timeout(timeout):
                while True:
                    chunk = await reader.read(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
        return b"".join(chunks)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def split_response(raw: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return status, headers, body


@dataclass
class ScriptedUpstream:
    """A raw TCP upstream whose behaviour is a coroutine per connection."""

    port: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def read_request_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, ScriptedUpstream], Awaitable[None]]
"""What a `scripted_upstream` does with each connection."""


def replies(response: bytes) -> Script:
    """A `scripted_upstream` script: read one request head, send `response` byte for
    byte, then close the connection."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: ScriptedUpstream) -> None:
        await read_request_head(reader)
        writer.write(response)
        await writer.drain()

    return script


@contextlib.asynccontextmanager
async def scripted_upstream(script: Script) -> AsyncIterator[ScriptedUpstream]:
    up = ScriptedUpstream()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up.connections += 1
        task = asyncio.current_task()
        assert task is not None
        up.tasks.add(task)
        try:
            await script(reader, writer, up)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    up.server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    up.port = up.server.sockets[0].getsockname()[1]
    try:
        yield up
    finally:
        up.server.close()
        for task in up.tasks:
            task.cancel()
        await asyncio.gather(*up.tasks, return_exceptions=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


GUARD_ELEMENT = re.compile(
    rb'<script(?: nonce="[^"]*")?>\(\(\w+,\w+\)=>\{"use strict";if\(\w+\.__tagGateGuard\).*?</script>'
    rb'|<script src="/__tag-gate/guard\.js[^"]*"(?: nonce="[^"]*")?></script>',
    re.DOTALL,
)
"""The runtime guard's `<script>` as tag-gate inserts it (inline, or from /__tag-gate/guard.js)."""


def strip_guard(body: bytes) -> bytes:
    """`body` without the runtime guard's element: the page as the HTML gate alone left it
    (the guard's rule table names the refused vendors' hosts)."""
    return GUARD_ELEMENT.sub(b"", body, count=1)
