"""The supervisor: `tag-gate serve --workers N` (N > 1) runs N worker processes on one port.

Workers. Each is a fresh interpreter (`python -m proxy.worker FD`, proxy/worker.py)
started with `asyncio.create_subprocess_exec`: it inherits no event loop, thread or lock
(a fork of a process with a running loop would), and needs none of `multiprocessing`'s
machinery (the "spawn" method also starts a resource-tracker process, and would
re-import the command's main module). Each binds the public port with SO_REUSEPORT, so
the kernel spreads new connections over the workers' listeners, and has its own
upstream pool. Workers start in their own session, so a terminal's Ctrl-C or hang-up
reaches only the supervisor, which passes signals on: every signal a worker acts on
comes from the supervisor, once.

Start. The supervisor binds the public address first, plainly (so an address in use, by
anyone, is one clear line before any worker starts), then keeps a bound, not listening
SO_REUSEPORT socket on the port for as long as it runs: port 0 becomes one port all
workers share, and the port stays ours while a worker restarts. Then it opens the admin
listener (the workers have none) and starts the workers. A worker that cannot start
the first time ends the supervisor with that worker's one-line problem, exit status 1.

Readiness. Each worker says `ready` over its socket once it serves, and `draining` when
it stops; a worker that exits closes the socket, which the supervisor sees at once.
`/readyz` is ready when every worker is ready and the supervisor is not stopping;
`/healthz` says the supervisor is alive.

Metrics. Workers write prometheus-client's multiprocess files into a private directory
made at start (`tempfile.mkdtemp`, so it starts empty) and removed at exit;
`/metrics` adds them up (proxy/metrics.py says how each gauge combines), and
`mark_process_dead` drops a worker's live gauges when it exits.

Restarts. A worker that exits without being asked to is started again after a backoff
(0.1 s, doubling to 10 s; back to 0.1 s once a worker has served for 10 s), counted in
`tag_gate_worker_restarts_total`. A worker that dies (or does not say ready within 30 s)
before it was ready five times in a row means the config cannot serve: the supervisor
stops the others and exits 1 with a message, rather than restart it forever.

Reload (SIGHUP), all or none. The supervisor reads the file and builds the config
itself; a file with any problem is refused with every problem logged, no worker told.
Otherwise every ready worker gets `prepare` with the file's text and builds the new
runtime without applying it; only when every one has answered `ok` does each get
`commit` (one assignment, which cannot fail), and if any refuses or does not answer
within 5 s, every one gets `abort` and keeps the config it runs. A worker starting
meanwhile, or restarted later, gets the supervisor's current config; one that comes up
on an older one is brought to the current one the same way (or restarted).
`tag_gate_config_reloads_total{result}` counts each reload once.

Stop. SIGTERM: readiness goes false at once and each worker gets SIGTERM and drains as
a single process does (`timeouts.shutdown_delay`, then `timeouts.grace`); SIGINT
likewise, without the delay; a second signal is passed on too (stop without waiting).
A worker still starting (not yet ready: it serves nothing, and may not handle signals
yet) is killed. A worker still running at the deadline (delay + grace + 0.75 s) is
killed; the supervisor exits 0 once all have exited.

Logs. A worker's stdout and stderr are pipes to the supervisor, which reads them and
hands each complete line to its own writers (the same bounded, threaded `LineWriter`s
a single process uses). One process writes each stream, whole lines at a time, so
lines from different workers never interleave, whatever their length (PIPE_BUF, 4 KiB,
bounds what the kernel keeps whole when several processes write one pipe; an event
line may be 16 KiB). A line longer than 1 MiB is cut there. A worker killed in the
middle of a line leaves a partial one: an access-log fragment is dropped (and
counted), an event-log fragment is kept, ended with a newline.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web
from prometheus_client.multiprocess import mark_process_dead

from .admin import make_admin_app
from .control import Channel, ConfigSource
from .core.config import Address, Config, ConfigError
from .core.running import merge_reload
from .logs import ACCESS_CAPACITY, DRAIN_TIMEOUT, EventLogHandler, LineWriter, event_lines_dropped, relay_lines
from .metrics import SupervisorMetrics
from .startup import ServeError, check_http_parser, reserve_port

log = logging.getLogger("tag_gate")

RESTART_FIRST: Final = 0.1
RESTART_MAX: Final = 10.0
STABLE_AFTER: Final = 10.0
"""A worker that served this long had a good run: the next restart waits RESTART_FIRST."""
MAX_START_FAILURES: Final = 5
START_TIMEOUT: Final = 30.0
RELOAD_TIMEOUT: Final = 5.0
KILL_MARGIN: Final = 0.75
"""Beyond a stop's delay and grace, what a worker gets before it is killed; leaves the
supervisor time to finish within delay + grace + 1 s."""
EXIT_WAIT: Final = 5.0
"""How long a worker whose socket closed may take to exit before it is killed."""


@dataclass(eq=False)
class Worker:
    """One of the N places for a worker process, and the process in it."""

    index: int
    process: asyncio.subprocess.Process | None = None
    channel: Channel | None = None
    ready: bool = False
    was_ready: bool = False
    generation: int = 0
    started: float = 0.0
    backoff: float = RESTART_FIRST
    start_failures: int = 0
    problem: str | None = None
    answers: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0


class Supervisor:
    """N workers on `config`'s public port, one admin listener (module docstring)."""

    def __init__(
        self,
        source: ConfigSource,
        config: Config,
        count: int,
        *,
        reread: Callable[[], ConfigSource],
        events: EventLogHandler,
        log_level: str = "info",
    ) -> None:
        self._base = source
        self._current: ConfigSource | None = None
        self._config = config
        self._generation = 1
        self._reread = reread
        self._events = events
        self._log_level = log_level
        self.workers = [Worker(i + 1) for i in range(count)]
        self._stdout = LineWriter(sys.stdout, capacity=ACCESS_CAPACITY, name="tag-gate access log")
        self._dir = ""
        self.metrics: SupervisorMetrics | None = None
        self._reservation: socket.socket | None = None
        self.port = 0
        self._admin: web.AppRunner | None = None
        self.admin_address: Address | None = None
        self._starting = True
        self._stopping = False
        self._signals: list[int] = []
        self._deadline = 0.0
        self._failure: str | None = None
        self._changed = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()

    def stopping(self) -> bool:
        """A stop began. A method, so that a type checker does not take the flag it
        reads as unchanged across an await."""
        return self._stopping

    @property
    def ready(self) -> bool:
        return not self._stopping and all(w.ready for w in self.workers)

    def _update(self) -> None:
        """Something about a worker changed: the gauges follow, waiters look again."""
        if self.metrics is not None:
            self.metrics.ready.set(1 if self.ready else 0)
            running = sum(w.process is not None and w.process.returncode is None for w in self.workers)
            self.metrics.workers.labels("running").set(running)
            self.metrics.workers.labels("ready").set(sum(w.ready for w in self.workers))
        self._changed.set()

    async def run(self) -> int:
        """Start, serve until a stop signal, stop; the exit status. ServeError (one line)
        when it cannot start, or when a worker cannot start again and again."""
        problem = check_http_parser()
        if problem:
            raise ServeError(problem)
        loop = asyncio.get_running_loop()
        try:
            self._reservation, self.port = reserve_port(self._config.server.listen)
            self._dir = tempfile.mkdtemp(prefix="tag-gate-metrics-")
            self.metrics = SupervisorMetrics(self._dir)
            self.metrics.count_log_drops("access", lambda: self._stdout.dropped)
            self.metrics.count_log_drops("error", event_lines_dropped)
            self.metrics.workers.labels("configured").set(len(self.workers))
            await self._open_admin()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self._on_stop_signal, signum)
            loop.add_signal_handler(signal.SIGHUP, self._on_hup)
            self._tasks = [asyncio.ensure_future(self._keep(w)) for w in self.workers]
            self._update()
            while not (self.ready or self._failure or self._stopping):
                await self._wait_change()
            self._starting = False
            if self._failure is None and not self._stopping:
                log.info(
                    "tag-gate listening on %s with %d workers, forwarding to %s%s",
                    Address(self._config.server.listen.host, self.port),
                    len(self.workers),
                    self._config.server.upstream.url if self._config.server.upstream else "?",
                    f"; admin on {self.admin_address}" if self.admin_address else "",
                )
            while not (self._stopping or self._failure):
                await self._wait_change()
            if self._failure is not None and not self._stopping:
                self._stop(signal.SIGINT)
            await self._wait_for_workers()
        finally:
            await self._close()
        if self._failure is not None:
            raise ServeError(self._failure)
        log.info("tag-gate stopped")
        return 0

    def _spawn(self, coro: Any) -> None:
        """Run `coro` as a task the supervisor holds on to until it ends."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _wait_change(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    async def _open_admin(self) -> None:
        address = self._config.server.admin_listen
        if address is None:
            return
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            sock = socket.create_server((address.host, address.port), family=infos[0][0], backlog=128)
        except (OSError, IndexError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ServeError(f"cannot listen on {address} (admin listener): {reason}") from None
        metrics = self.metrics
        assert metrics is not None
        app = make_admin_app(lambda: self.ready, metrics.render, render_in_thread=True)
        self._admin = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._admin.setup()
        await web.SockSite(self._admin, sock).start()
        self.admin_address = Address(address.host, sock.getsockname()[1])

    # ----------------------------------------------------------------- one worker's life

    async def _keep(self, w: Worker) -> None:
        """Run a worker in this place, and again each time it exits unasked."""
        loop = asyncio.get_running_loop()
        while not self._stopping:
            status = await self._run_once(w)
            if self.stopping():
                return
            uptime = loop.time() - w.started
            if not w.was_ready:
                w.start_failures += 1
                why = w.problem or f"exited with {describe_status(status)} before it was ready"
                if self._starting:
                    self._fail(f"worker {w.index} could not start: {why}")
                    return
                if w.start_failures >= MAX_START_FAILURES:
                    self._fail(f"worker {w.index} failed to start {w.start_failures} times in a row: {why}")
                    return
            if uptime >= STABLE_AFTER:
                w.backoff = RESTART_FIRST
            log.warning(
                "worker %d (pid %d) exited with %s after %.1f s; starting it again in %.1f s",
                w.index,
                w.pid,
                describe_status(status),
                uptime,
                w.backoff,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._until_stopping(), w.backoff)
            if self.stopping():
                return
            w.backoff = min(w.backoff * 2, RESTART_MAX)
            assert self.metrics is not None
            self.metrics.restarts.inc()

    async def _until_stopping(self) -> None:
        while not self._stopping:
            await self._wait_change()

    async def _run_once(self, w: Worker) -> int:
        """Start a worker, follow its messages until it exits; its exit status."""
        w.started = asyncio.get_running_loop().time()
        parent, child = socket.socketpair()
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": self._dir}
        env.pop("prometheus_multiproc_dir", None)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "proxy.worker",
                str(child.fileno()),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(child.fileno(),),
                start_new_session=True,
                env=env,
            )
        except OSError as exc:
            parent.close()
            w.problem = f"cannot start a worker process: {exc.strerror or exc}"
            w.was_ready = False
            return 1
        finally:
            child.close()
        w.process, w.ready, w.was_ready, w.problem = process, False, False, None
        relays = [
            asyncio.ensure_future(relay_lines(process.stdout, self._stdout, keep_partial=False)),
            asyncio.ensure_future(relay_lines(process.stderr, self._events.writer, keep_partial=True)),
        ]
        channel = w.channel = await Channel.open(parent)
        channel.send(
            "start",
            index=w.index,
            port=self.port,
            base=self._base.to_json(),
            current=self._current.to_json() if self._current is not None else None,
            generation=self._generation,
            log_level=self._log_level,
        )
        self._update()
        if self._stopping:  # a stop signal came while this worker was starting
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        await self._follow(w, channel)
        w.ready = False
        for answer in w.answers.values():
            if not answer.done():
                answer.set_result({"gone": True})
        w.answers.clear()
        self._update()
        try:
            status = await asyncio.wait_for(process.wait(), EXIT_WAIT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            status = await process.wait()
        await asyncio.wait(relays, timeout=1.0)
        channel.close()
        w.channel = None
        mark_process_dead(process.pid, self._dir)  # type: ignore[no-untyped-call]
        self._update()
        return status

    async def _follow(self, w: Worker, channel: Channel) -> None:
        """Read a worker's messages until its socket closes (or it misses the start
        deadline, when it is killed)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                if w.was_ready:
                    message = await channel.receive()
                else:
                    message = await asyncio.wait_for(channel.receive(), w.started + START_TIMEOUT - loop.time())
            except TimeoutError:
                w.problem = f"not ready within {START_TIMEOUT:.0f} s"
                if w.process is not None:
                    with contextlib.suppress(ProcessLookupError):
                        w.process.kill()
                return
            if message is None:
                return
            kind = message["t"]
            if kind == "ready":
                w.ready = w.was_ready = True
                w.start_failures = 0
                w.generation = int(message.get("generation", 0))
                if w.generation != self._generation and not self._stopping:
                    self._spawn(self._catch_up(w))
                self._update()
            elif kind == "draining":
                w.ready = False
                self._update()
            elif kind == "failed":
                w.problem = str(message.get("problem", "")) or None
            elif kind == "prepared":
                answer = w.answers.pop(int(message.get("id", 0)), None)
                if answer is not None and not answer.done():
                    answer.set_result(message)

    def _fail(self, message: str) -> None:
        if not self._starting:  # at start, the message is the command's one line of error
            log.error("%s; stopping", message)
        if self._failure is None:
            self._failure = message
        self._update()

    # ----------------------------------------------------------------- reload

    def _on_hup(self) -> None:
        if self._stopping:
            log.warning("SIGHUP ignored: stopping")
            return
        self._spawn(self.reload())

    async def reload(self) -> bool:
        """Rebuild the config from its file and apply it on every worker, or on none."""
        async with self._reload_lock:
            metrics = self.metrics
            assert metrics is not None
            try:
                source = self._reread()
                new = source.build()
            except ConfigError as exc:
                for line in exc.problems:
                    log.error("reload refused, keeping the running config: %s", line)
                metrics.reloads.labels("refused").inc()
                return False
            except Exception as exc:  # anything unexpected: same rule, keep what runs
                log.error("reload refused, keeping the running config: %s: %s", type(exc).__name__, exc)
                metrics.reloads.labels("refused").inc()
                return False
            applied, changed = merge_reload(self._config, new)
            for name in changed:
                log.warning("reload: %s changed; it takes effect after a restart", name)
            generation = self._generation + 1
            refusals = await self._apply([w for w in self.workers if w.ready], source, generation)
            if refusals:
                for line in refusals:
                    log.error("reload refused, keeping the running config: %s", line)
                metrics.reloads.labels("refused").inc()
                return False
            self._config, self._current, self._generation = applied, source, generation
            metrics.reloads.labels("applied").inc()
            log.info("reloaded config from %s on every worker", applied.source)
            return True

    async def _apply(self, workers: list[Worker], source: ConfigSource, generation: int) -> list[str]:
        """Two-phase: `prepare` on each, then `commit` on each if all agreed, else `abort`
        on each. The refusals (none: applied). A worker that exited meanwhile takes no
        part: it starts again on whatever config the supervisor ends up with."""
        ident = next(self._ids)
        loop = asyncio.get_running_loop()
        asked: list[tuple[Worker, asyncio.Future[dict[str, Any]]]] = []
        for w in workers:
            if w.channel is None:
                continue
            answer: asyncio.Future[dict[str, Any]] = loop.create_future()
            w.answers[ident] = answer
            w.channel.send("prepare", id=ident, source=source.to_json(), generation=generation)
            asked.append((w, answer))
        if asked:
            await asyncio.wait([answer for _, answer in asked], timeout=RELOAD_TIMEOUT)
        refusals: list[str] = []
        for w, answer in asked:
            w.answers.pop(ident, None)
            if not answer.done():
                answer.cancel()
                refusals.append(f"worker {w.index} (pid {w.pid}) did not answer within {RELOAD_TIMEOUT:.0f} s")
            elif not answer.result().get("gone") and not answer.result().get("ok"):
                problems = answer.result().get("problems") or ["refused"]
                refusals += [f"worker {w.index}: {problem}" for problem in problems]
        for w, _ in asked:
            if w.channel is not None:
                w.channel.send("abort" if refusals else "commit", id=ident)
                if not refusals:
                    w.generation = generation
        return refusals

    async def _catch_up(self, w: Worker) -> None:
        """A worker came up on an older config (a reload happened while it started):
        bring it to the current one, or restart it so that it starts on it."""
        async with self._reload_lock:
            if w.generation == self._generation or self._current is None or not w.ready:
                return
            if await self._apply([w], self._current, self._generation):
                log.warning("worker %d is on an older config and refused the current one: restarting it", w.index)
                if w.process is not None:
                    with contextlib.suppress(ProcessLookupError):
                        w.process.kill()

    # ----------------------------------------------------------------- stop

    def _on_stop_signal(self, signum: int) -> None:
        if self._signals:
            log.warning("second signal: stopping without waiting")
        else:
            log.info("received %s: stopping %d workers", signal.Signals(signum).name, len(self.workers))
        self._stop(signum)

    def _stop(self, signum: int) -> None:
        """Readiness off; pass `signum` on to every worker; set the deadline."""
        loop = asyncio.get_running_loop()
        timeouts = self._config.timeouts
        self._signals.append(signum)
        if len(self._signals) == 1:
            self._stopping = True
            delay = timeouts.shutdown_delay if signum == signal.SIGTERM else 0.0
            self._deadline = loop.time() + delay + timeouts.grace + KILL_MARGIN
        else:
            self._deadline = min(self._deadline, loop.time() + KILL_MARGIN)
        for w in self.workers:
            if w.process is not None and w.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    if w.was_ready:
                        w.process.send_signal(signum)
                    else:  # still starting: it serves nothing yet, and may not handle signals yet
                        w.process.kill()
        self._update()

    async def _wait_for_workers(self) -> None:
        """Until every worker has exited; past the deadline, kill those still running."""
        loop = asyncio.get_running_loop()
        while True:
            pending = [t for t in self._tasks if not t.done()]
            if not pending:
                return
            left = self._deadline - loop.time()
            if left <= 0:
                break
            await asyncio.wait(pending, timeout=min(left, 0.25))  # a second signal may move the deadline
        for w in self.workers:
            if w.process is not None and w.process.returncode is None:
                log.warning("worker %d (pid %d) still running at the deadline: killed", w.index, w.pid)
                with contextlib.suppress(ProcessLookupError):
                    w.process.kill()
        await asyncio.wait(self._tasks, timeout=EXIT_WAIT)

    async def _close(self) -> None:
        for task in [*self._tasks, *self._background]:
            task.cancel()
        if self._admin is not None:
            await self._admin.cleanup()
            self._admin = None
        if self._reservation is not None:
            self._reservation.close()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
        await asyncio.to_thread(self._stdout.close, DRAIN_TIMEOUT)


def describe_status(status: int | None) -> str:
    """`status 1`, or `SIGKILL` for a process a signal ended."""
    if status is None:
        return "no status"
    if status < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-status).name
        return f"signal {-status}"
    return f"status {status}"


async def supervise(
    source: ConfigSource,
    config: Config,
    count: int,
    *,
    reread: Callable[[], ConfigSource],
    events: EventLogHandler,
    log_level: str = "info",
) -> int:
    """Run `count` workers under a supervisor until stopped; the exit status."""
    supervisor = Supervisor(source, config, count, reread=reread, events=events, log_level=log_level)
    return await supervisor.run()
