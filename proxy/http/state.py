"""What the request path reads: one frozen runtime per config, and the process's state.

`Runtime` is everything a reload may change, built whole from one config and swapped
whole (`ProxyState.runtime = new`): a request reads `state.runtime` once at its start
and uses that one object to its end, so it never sees half of one config and half of
another. `ProxyState` holds what lives as long as the process: metrics, logs, the
upstream clients, readiness and the in-flight count.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp

from ..core.addresses import Upstream
from ..core.config import Config
from ..core.csp_reports import GuardErrorLimits, ReportSink
from ..html.cache import GateCache
from ..logs import AccessLog
from ..metrics import Metrics
from ..proof_log import ProofSink, RateLimiter
from .forwarding import make_session
from .pool import UpstreamPool
from .stages import Stages


@dataclass(frozen=True, slots=True)
class Runtime:
    """One config, compiled for the request path (see the module docstring)."""

    config: Config
    stages: Stages
    """Consent, cookie and header stages, with their memo tables (emptied by a reload,
    since a new runtime brings new ones)."""
    assets: Mapping[str, tuple[bytes, str]]
    """`/__tag-gate/<name>` → (body, content type)."""
    generation: int
    """Counts configs applied in this process (1 at start): keys anything derived from
    a config, so nothing computed under one config is served under another."""
    upstream: Upstream
    methods: frozenset[str]
    allow: str
    """The `Allow` header of a 405: the forwarded methods."""
    gate_cache: GateCache | None
    """Gated pages kept for reuse (None: `html.cache_size = 0`); a new runtime starts empty."""

    @classmethod
    def make(
        cls, config: Config, metrics: Metrics, assets: Mapping[str, tuple[bytes, str]], generation: int
    ) -> Runtime:
        upstream = config.server.upstream
        assert upstream is not None, "config.check_runnable() guards this"
        return cls(
            config=config,
            stages=Stages(config, metrics),
            assets=assets,
            generation=generation,
            upstream=upstream,
            methods=config.server.methods,
            allow=", ".join(sorted(config.server.methods)),
            gate_cache=GateCache(config.html.cache_size) if config.html.cache_size else None,
        )


@dataclass
class ProxyState:
    """The process's mutable state (one per running service)."""

    runtime: Runtime
    metrics: Metrics
    access_log: AccessLog
    pool: UpstreamPool | None = None
    session: aiohttp.ClientSession | None = None
    """Used for WebSocket relays only; HTTP goes through `pool`."""
    ready: bool = False
    in_flight: int = 0
    proof_sink: ProofSink | None = None
    """Where proof-of-consent lines go (None: banner off or `proof_sink = "off"`)."""
    proof_limiter: RateLimiter = field(default_factory=RateLimiter)
    reports: ReportSink = field(default_factory=ReportSink)
    """What the CSP report endpoint keeps (rate limit, gap and leak listings) across reloads."""
    guard_error_limits: GuardErrorLimits = field(default_factory=GuardErrorLimits)
    """The guard-error endpoint's rate limit and log pace."""

    @property
    def config(self) -> Config:
        """The current runtime's config (a request should hold its runtime instead)."""
        return self.runtime.config

    async def open_upstream(self) -> None:
        config = self.runtime.config
        self.pool = UpstreamPool(config)
        self.session = make_session(config)

    async def close_upstream(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None
        if self.session is not None:
            await self.session.close()
            self.session = None
