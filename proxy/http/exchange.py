"""One request through the proxy, as one object.

The handler creates an `Exchange` when a request head arrives and each stage of the
request path fills in what it learned: the target, the forwarding facts, the visitor,
the upstream response, the response plan, and, when something went wrong after the
response started, the error the access log reports. Stages take the exchange instead
of long parameter lists, and nothing is kept on the side by request identity.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from aiohttp import web
from multidict import CIMultiDict

from .forwarding import ForwardFacts
from .pool import UpstreamResponse
from .stages import ResponsePlan, Visitor
from .state import Runtime


class Exchange:
    """A request and everything learned about it on its way (see the module docstring)."""

    __slots__ = (
        "body",
        "conditional_ours",
        "error",
        "facts",
        "host",
        "method",
        "plan",
        "request",
        "runtime",
        "started",
        "target",
        "upstream",
        "upstream_headers",
        "visitor",
    )

    def __init__(self, request: web.BaseRequest, runtime: Runtime) -> None:
        self.request = request
        self.runtime = runtime
        """The config generation this request runs under, from its start to its end."""
        self.started = time.monotonic()
        self.method = request.method
        self.target = request.raw_path
        """Origin-form (`/path?query`) once the handler has checked it."""
        self.facts: ForwardFacts | None = None
        self.host: str | None = None
        """The page's host name (from Host, lower-cased, no port)."""
        self.visitor: Visitor | None = None
        self.conditional_ours = False
        """A tag-gate ETag was in If-None-Match: the answer is a consent-dependent page."""
        self.upstream_headers: CIMultiDict[str] | None = None
        self.body: AsyncIterator[bytes] | None = None
        self.upstream: UpstreamResponse | None = None
        self.plan: ResponsePlan | None = None
        self.error: str | None = None
        """What went wrong after the response started, for the access log."""

    @property
    def path(self) -> str:
        """The target without its query."""
        return self.target.partition("?")[0]

    def note(self, error: str) -> None:
        """Record what went wrong (a later failure replaces an earlier one)."""
        self.error = error
