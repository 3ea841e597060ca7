"""Shared fixtures: the third-party test-data directory and a run summary of suite counts."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import settings

from tests.proxytools import Running, Script, ScriptedUpstream, running_proxy, scripted_upstream

# Property tests check results, never time: hypothesis's per-example deadline (200 ms)
# fails them at random on a shared, loaded machine.
settings.register_profile("tag-gate", deadline=None)
settings.load_profile("tag-gate")

_COUNTS: dict[str, int] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--testdata",
        action="store",
        default=None,
        metavar="DIR",
        help="directory holding the third-party suites (html5lib-tests, http-state, tcf); "
        "CI passes ../shared/testdata. Without it those suites are skipped, and the run says so.",
    )
    parser.addoption(
        "--screenshots",
        action="store",
        default=None,
        metavar="DIR",
        help="save the banner's screenshots (tests/e2e/test_banner.py) into DIR, e.g. docs/images; "
        "without it they go to a temporary directory",
    )


def pytest_configure(config: pytest.Config) -> None:
    value = config.getoption("--testdata")
    if value and not Path(value).is_dir():
        raise pytest.UsageError(f"--testdata {value}: no such directory")


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Callable[[], Any]]:
    """Async tests run on uvloop, the loop tag-gate serves on (its transports write,
    buffer and apply flow control in their own way)."""
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture(scope="session")
def testdata(request: pytest.FixtureRequest) -> Path:
    """The third-party suites directory; skips the test when it was not given."""
    value = request.config.getoption("--testdata")
    if not value:
        pytest.skip("third-party suites not given: run pytest with --testdata ../shared/testdata")
    return Path(value)


@pytest.fixture(scope="session")
def record_count() -> Callable[[str, int], None]:
    """Record how many cases of a third-party suite ran; printed at the end of the run."""

    def record(name: str, n: int) -> None:
        _COUNTS[name] = _COUNTS.get(name, 0) + n

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not terminalreporter.config.getoption("--testdata"):
        terminalreporter.write_line(
            "third-party suites NOT run: --testdata was not given (CI passes ../shared/testdata)",
            yellow=True,
        )
    for name, n in sorted(_COUNTS.items()):
        terminalreporter.write_line(f"suite {name}: {n} cases checked")


# --------------------------------------------------------------------------- servers
# Factories whose every server is closed at teardown, whatever the test did: an
# upstream aiohttp app (pytest-aiohttp's `aiohttp_server`), a scripted raw upstream,
# and tag-gate itself in-process.

UpstreamFactory = Callable[[web.Application], Awaitable[TestServer]]
ScriptedFactory = Callable[[Script], Awaitable[ScriptedUpstream]]
TagGateFactory = Callable[..., Awaitable[Running]]


@pytest.fixture
async def upstream(aiohttp_server: Any) -> UpstreamFactory:
    """`await upstream(app)`: an aiohttp app on 127.0.0.1 (closed at teardown)."""

    async def start(app: web.Application) -> TestServer:
        server: TestServer = await aiohttp_server(app, host="127.0.0.1")
        return server

    return start


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedFactory]:
    """`await scripted(script)`: a raw TCP upstream running `script` per connection."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(script: Script) -> ScriptedUpstream:
            return await stack.enter_async_context(scripted_upstream(script))

        yield start


@pytest.fixture
async def tag_gate() -> AsyncIterator[TagGateFactory]:
    """`await tag_gate(upstream_url, **sections)`: tag-gate on ephemeral ports, with the
    given config sections (stopped at teardown)."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(upstream_url: str, **sections: dict[str, Any]) -> Running:
            return await stack.enter_async_context(running_proxy(upstream_url, **sections))

        yield start


@pytest.fixture
def collector_off() -> Iterator[None]:
    """Python's cyclic garbage collector off for the test (earlier garbage collected
    first): what the test drops must go by reference counting alone."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
