"""Running tag-gate: listeners, readiness, signals and the graceful drain.

Lifecycle contract:
- start: check the runtime (C HTTP parser), open the upstream pool, bind the public and
  admin listeners, then report ready;
- SIGTERM: readiness goes false at once; the public listener keeps accepting for
  `timeouts.shutdown_delay` (so a load balancer can notice); then it stops listening,
  idle connections close, in-flight requests get up to `timeouts.grace` seconds to
  finish, stragglers are cancelled, and the process exits 0;
- SIGINT (Ctrl-C) does the same without the delay; a second signal during the delay
  ends the delay at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Final

from aiohttp import web

from .admin import make_admin_app
from .core.addresses import Address
from .core.config import Config, ConfigError
from .core.running import merge_reload
from .http import _aiohttp
from .http.handler import ProxyHandler
from .http.server import ProxyServer
from .http.state import ProxyState, Runtime
from .logs import AccessLog, event_lines_dropped
from .metrics import Metrics
from .proof_log import make_proof_sink, sink_key
from .startup import ServeError as ServeError
from .startup import check_http_parser as check_http_parser
from .startup import tune_allocator as tune_allocator

log = logging.getLogger("tag_gate")

ASSET_TYPES: Final = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
"""Files under proxy/data/public/ served at /__tag-gate/<name>, by suffix."""


STOP_POLL: Final = 0.05
"""How often `Service.stop` looks whether the last in-flight request has finished."""

STOP_CLEANUP: Final = 0.5
"""What aiohttp's runner cleanup may still wait once every connection has been cut."""


def load_assets(cookie_name: str = "tg_consent") -> dict[str, tuple[bytes, str]]:
    """The files served under /__tag-gate/, read once, with the native consent cookie's
    configured name written into the scripts that read or write it."""
    assets: dict[str, tuple[bytes, str]] = {}
    folder = resources.files("proxy") / "data" / "public"
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in ASSET_TYPES:
            text = entry.read_text(encoding="utf-8")
            text = text.replace("__TG_COOKIE__", cookie_name).replace("tg_consent", cookie_name)
            assets[entry.name] = (text.encode("utf-8"), ASSET_TYPES[suffix])
    return assets


class Service:
    """The running listeners for one config.

    With `worker`, one of a supervisor's worker processes (proxy/worker.py): the public
    listener is bound with SO_REUSEPORT beside the other workers', there is no admin
    listener (the supervisor has it), metrics go to the multiprocess files
    (`Metrics(worker=True)`, sampled every half second), the access log names this
    process (`"pid"`), and a reload comes in two steps, `prepare` then `commit`, so that
    the supervisor applies a config on every worker or on none.
    """

    def __init__(
        self, config: Config, *, access_log: AccessLog | None = None, worker: bool = False, generation: int = 1
    ) -> None:
        self.config = config
        self.worker = worker
        self.metrics = Metrics(worker=worker)
        if access_log is not None:
            log_out = access_log
        else:
            log_out = AccessLog(sys.stdout if config.server.access_log else None, pid=os.getpid() if worker else None)
        self.metrics.count_log_drops("access", lambda: log_out.dropped)
        self.metrics.count_log_drops("error", event_lines_dropped)
        self._generation = generation
        self.metrics.count_log_drops("proof", self._proof_dropped)
        self._proof_lost = 0
        self._closing: set[asyncio.Future[None]] = set()
        self.state = ProxyState(
            runtime=Runtime.make(config, self.metrics, {}, self._generation),
            metrics=self.metrics,
            access_log=log_out,
        )
        state = self.state
        m = self.metrics
        m.observe(m.in_flight, lambda: state.in_flight)
        m.observe(m.upstream_connections.labels("open"), lambda: state.pool.open_connections if state.pool else 0)
        m.observe(m.upstream_connections.labels("idle"), lambda: state.pool.idle_connections if state.pool else 0)
        m.observe(m.upstream_queued, lambda: state.pool.queued_requests if state.pool else 0)
        self._runner: web.ServerRunner | None = None
        self._admin_runner: web.AppRunner | None = None
        self.public_address: Address | None = None
        self.admin_address: Address | None = None
        self._lag_task: asyncio.Task[None] | None = None

    @property
    def generation(self) -> int:
        """The running runtime's generation (1 at start, one more per applied config)."""
        return self._generation

    async def start(self) -> None:
        problem = check_http_parser()
        if problem:
            raise ServeError(problem)
        cfg = self.config
        self.state.runtime = Runtime.make(cfg, self.metrics, load_assets(cfg.consent.cookie_name), self._generation)
        await self.state.open_upstream()
        self.state.proof_sink = make_proof_sink(cfg.banner, self.state.access_log)
        server = ProxyServer(ProxyHandler(self.state), cfg, self.metrics)
        public_sock = await self._listen(cfg.server.listen, "public")
        admin_sock = None
        if cfg.server.admin_listen is not None and not self.worker:
            admin_sock = await self._listen(cfg.server.admin_listen, "admin")
        self._runner = web.ServerRunner(server, shutdown_timeout=cfg.timeouts.grace)
        await self._runner.setup()
        await web.SockSite(self._runner, public_sock).start()
        self.public_address = _address_of(public_sock, cfg.server.listen)
        if admin_sock is not None and cfg.server.admin_listen is not None:
            state = self.state
            admin = make_admin_app(lambda: state.ready, state.metrics.render, csp_listing=state.reports.listing)
            self._admin_runner = web.AppRunner(admin, access_log=None, shutdown_timeout=1.0)
            await self._admin_runner.setup()
            await web.SockSite(self._admin_runner, admin_sock).start()
            self.admin_address = _address_of(admin_sock, cfg.server.admin_listen)
        self._lag_task = asyncio.ensure_future(self._watch_loop_lag())
        self.state.ready = True
        self.metrics.set_ready(True)

    async def _listen(self, address: Address, role: str) -> socket.socket:
        """A bound, listening socket, or a one-line ServeError (after cleaning up). A
        worker's public socket shares its port with the other workers' (SO_REUSEPORT)."""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family = infos[0][0]
            return socket.create_server(
                (address.host, address.port),
                family=family,
                backlog=1024,
                reuse_port=self.worker and role == "public",
            )
        except (OSError, IndexError, ValueError) as exc:
            await self.stop(grace=0)
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ServeError(f"cannot listen on {address} ({role} listener): {reason}") from None

    async def _watch_loop_lag(self) -> None:
        loop = asyncio.get_running_loop()
        interval = 0.5
        while True:
            before = loop.time()
            await asyncio.sleep(interval)
            self.metrics.loop_lag.set(max(0.0, loop.time() - before - interval))
            self.metrics.sample()

    def reload(self, build: Callable[[], Config]) -> bool:
        """Apply a new config, transactionally: any problem keeps the running one.

        Consent, HTML, cookie, catalogue and rule settings apply to the next request.
        Listener addresses, the upstream, timeouts and size limits belong to sockets that
        are already open; a change there is reported and waits for a restart
        (`merge_reload`).
        """
        try:
            new = build()
        except ConfigError as exc:
            for line in exc.problems:
                log.error("reload refused, keeping the running config: %s", line)
            self.metrics.reloads.labels("refused").inc()
            return False
        except Exception as exc:  # anything unexpected: same rule, keep what runs
            log.error("reload refused, keeping the running config: %s: %s", type(exc).__name__, exc)
            self.metrics.reloads.labels("refused").inc()
            return False
        for name in merge_reload(self.config, new)[1]:
            log.warning("reload: %s changed; it takes effect after a restart", name)
        try:
            runtime = self.prepare(new, self._generation + 1)
        except Exception as exc:  # building it failed: nothing was swapped
            log.error("reload refused, keeping the running config: %s: %s", type(exc).__name__, exc)
            self.metrics.reloads.labels("refused").inc()
            return False
        self.commit(runtime)
        self.metrics.reloads.labels("applied").inc()
        log.info("reloaded config from %s", runtime.config.source)
        return True

    def prepare(self, new: Config, generation: int) -> Runtime:
        """Build, without applying, the runtime for `new` as a reload applies it
        (`merge_reload` with the running config). Raises whatever building raised; the
        running runtime is untouched either way."""
        applied, _ = merge_reload(self.config, new)
        return Runtime.make(applied, self.metrics, load_assets(applied.consent.cookie_name), generation)

    def commit(self, runtime: Runtime) -> None:
        """Apply a runtime `prepare` built: one assignment, which cannot fail; the next
        request reads the new runtime."""
        self._generation = runtime.generation
        self.config = runtime.config
        self._swap_proof_sink(runtime.config)
        self.state.runtime = runtime

    def _proof_dropped(self) -> float:
        sink = self.state.proof_sink
        return float(self._proof_lost + (sink.dropped if sink is not None else 0))

    def _swap_proof_sink(self, config: Config) -> None:
        """A reload that changes where proof lines go opens the new sink and closes the
        old one in the background (what it gathered is still written, bounded)."""
        old = self.state.proof_sink
        if old is not None and old.key == sink_key(config.banner):
            return
        new = make_proof_sink(config.banner, self.state.access_log)
        self.state.proof_sink = new
        if old is not None:
            self._proof_lost += old.dropped
            task = asyncio.ensure_future(old.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def drain(self, delay: float) -> None:
        """Readiness off; keep serving for `delay` seconds so routing can move away."""
        self.state.ready = False
        self.metrics.set_ready(False)
        if delay > 0:
            await asyncio.sleep(delay)

    async def stop(self, grace: float | None = None) -> None:
        """Stop listening, let in-flight requests finish, close; within `grace` seconds
        (default `timeouts.grace`) plus a fraction of a second.

        Idle kept-alive connections close at once; a connection busy with a request
        closes after its response. At the deadline every connection still open is cut
        (its handler is cancelled, its upstream request dropped, a stream or WebSocket
        relay ends there). aiohttp's own shutdown would wait the timeout for the
        handler and then again after cancelling the request's body, twice the grace."""
        grace = self.config.timeouts.grace if grace is None else grace
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        self.state.ready = False
        self.metrics.set_ready(False)
        if self._lag_task is not None:
            self._lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag_task
        runner = self._runner
        if runner is not None:
            for site in list(runner.sites):
                await site.stop()
            server = runner.server
            if server is not None:
                server.pre_shutdown()
                while self.state.in_flight and loop.time() < deadline:
                    await asyncio.sleep(min(STOP_POLL, max(0.0, deadline - loop.time())))
                cut = 0
                for conn in server.connections:
                    transport = conn.transport
                    conn.force_close()
                    if transport is not None and not transport.is_closing():
                        cut += 1
                        transport.abort()
                if cut:
                    log.warning("grace period over: cut %d connection(s) still busy", cut)
            _aiohttp.set_cleanup_timeout(runner, STOP_CLEANUP)
            await runner.cleanup()
            self._runner = None
        if self._admin_runner is not None:
            await self._admin_runner.cleanup()
            self._admin_runner = None
        await self.state.close_upstream()
        sink, self.state.proof_sink = self.state.proof_sink, None
        if sink is not None:
            await sink.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        await self.state.access_log.close()
        self.metrics.sample()


def _address_of(sock: socket.socket, wanted: Address) -> Address:
    """The address actually bound (port 0 becomes the port the kernel chose)."""
    return Address(wanted.host, sock.getsockname()[1])


class StopRequest:
    """SIGTERM and SIGINT (or, for a worker, its supervisor going away) asking to stop.

    Call it with the signal number; `wait()` returns once the first arrives. The first
    signal decides how (`SIGTERM`: drain with `timeouts.shutdown_delay` first; `SIGINT`:
    no delay); a second one ends the delay at once and stops without waiting."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self._event = asyncio.Event()

    def __call__(self, signum: int) -> None:
        self.received.append(signum)
        if len(self.received) > 1:
            log.warning("second signal: stopping without waiting")
        self._event.set()

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self, signum)

    async def wait(self) -> None:
        await self._event.wait()

    def rearm(self) -> None:
        """Make `wait()` wait for a signal after the ones already received."""
        self._event.clear()


async def drain_and_stop(service: Service, stop: StopRequest) -> None:
    """After the first stop signal: drain (SIGTERM alone: `shutdown_delay` first, cut
    short by a second signal), then `Service.stop` with `timeouts.grace`, or with none
    after a second signal."""
    await stop.wait()
    timeouts = service.config.timeouts
    first = stop.received[0]
    log.info("received %s: draining", signal.Signals(first).name)
    if first == signal.SIGTERM and len(stop.received) == 1:
        drain = asyncio.ensure_future(service.drain(timeouts.shutdown_delay))
        stop.rearm()
        waiter = asyncio.ensure_future(stop.wait())
        await asyncio.wait((drain, waiter), return_when=asyncio.FIRST_COMPLETED)
        drain.cancel()
        waiter.cancel()
    await service.stop(grace=0 if len(stop.received) > 1 else timeouts.grace)


async def serve(
    config: Config,
    *,
    reload: Callable[[], Config] | None = None,
    on_ready: Callable[[Service], Awaitable[None] | None] | None = None,
) -> int:
    """Run until SIGTERM or SIGINT, then drain; returns the exit status. SIGHUP rebuilds
    the config with `reload` (the same file, environment and flags) and applies it."""
    service = Service(config)
    await service.start()
    loop = asyncio.get_running_loop()
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, service.reload, reload)
    stop = StopRequest()
    stop.install(loop)
    log.info(
        "tag-gate listening on %s, forwarding to %s%s",
        service.public_address,
        config.server.upstream.url if config.server.upstream else "?",
        f"; admin on {service.admin_address}" if service.admin_address else "",
    )
    if on_ready is not None:
        result = on_ready(service)
        if result is not None:
            await result
    await drain_and_stop(service, stop)
    log.info("tag-gate stopped")
    return 0
