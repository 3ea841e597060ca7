"""One worker process under the supervisor: `python -m proxy.worker FD`.

The supervisor (proxy/supervisor.py) starts it as a fresh interpreter, never a fork of
itself, so it inherits no event loop, thread or lock, and passes it one end of a Unix
socket as file descriptor FD (the messages are in proxy/control.py). The worker reads
`start`, builds its config from the text the supervisor read, and serves the public
port beside the other workers (SO_REUSEPORT) with its own upstream pool, metrics in the
shared multiprocess directory and no admin listener; then it says `ready`.

Signals are as for a single process (`proxy.service.drain_and_stop`): the supervisor
passes SIGTERM and SIGINT on to every worker, and a second one too. SIGHUP is the
supervisor's to handle (it reloads every worker or none, through `prepare`, `commit` and
`abort`), so a worker ignores one sent to it directly. When the supervisor goes away
(its end of the socket closes), the worker stops as on SIGTERM.

Its stdout and stderr are pipes to the supervisor, which writes each complete line to
its own (see the supervisor's docstring, "Logs").
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from .control import Channel, ConfigSource
from .core.config import Address, Config, ConfigError
from .core.running import merge_reload
from .http.state import Runtime
from .logs import install_event_log
from .service import ServeError, Service, StopRequest, drain_and_stop, tune_allocator

log = logging.getLogger("tag_gate")


def make_worker_config(start: dict[str, Any]) -> Config:
    """The config a worker serves: the supervisor's starting config on the port the
    supervisor reserved, without the admin listener, and the reloads applied since
    (`merge_reload`, as for a single process). ConfigError if it cannot be built."""
    base = ConfigSource.from_json(start["base"]).build()
    listen = Address(base.server.listen.host, int(start["port"]))
    config = replace(base, server=replace(base.server, listen=listen, admin_listen=None))
    if start.get("current") is not None:
        config, _ = merge_reload(config, ConfigSource.from_json(start["current"]).build())
    return config


async def run_worker(sock: socket.socket) -> int:
    """Serve as the supervisor's worker until stopped; the exit status."""
    channel = await Channel.open(sock)
    start = await channel.receive()
    if start is None or start.get("t") != "start":
        return 2  # not started by a supervisor: nothing to report to
    events = install_event_log(
        getattr(logging, str(start.get("log_level", "info")).upper(), logging.INFO), tag=f"worker {start['index']}"
    )
    try:
        return await _serve(channel, start)
    finally:
        await channel.flush()
        events.close()


async def _serve(channel: Channel, start: dict[str, Any]) -> int:
    tuned = tune_allocator(os.environ)
    if tuned:
        log.debug("%s", tuned)
    try:
        config = make_worker_config(start)
    except ConfigError as exc:
        channel.send("failed", problem="; ".join(exc.problems))
        return 1
    service = Service(config, worker=True, generation=int(start["generation"]))
    try:
        await service.start()
    except ServeError as exc:
        channel.send("failed", problem=str(exc))
        return 1
    loop = asyncio.get_running_loop()
    stop = StopRequest()
    stop.install(loop)
    loop.add_signal_handler(signal.SIGHUP, _ignore_hup)
    channel.send("ready", generation=service.generation)
    control = asyncio.ensure_future(_follow(channel, service, stop))
    try:
        await stop.wait()
        channel.send("draining")
        await drain_and_stop(service, stop)
    finally:
        control.cancel()
    return 0


async def _follow(channel: Channel, service: Service, stop: StopRequest) -> None:
    """Carry out the supervisor's reload messages; stop when it goes away."""
    prepared: dict[int, Runtime] = {}
    while True:
        message = await channel.receive()
        if message is None:
            if not stop.received:
                log.warning("the supervisor went away: stopping")
                stop(signal.SIGTERM)
            return
        kind = message["t"]
        if kind == "prepare":
            ident = int(message["id"])
            try:
                new = ConfigSource.from_json(message["source"]).build()
                prepared = {ident: service.prepare(new, int(message["generation"]))}
            except ConfigError as exc:
                channel.send("prepared", id=ident, ok=False, problems=exc.problems)
            except Exception as exc:  # building failed: refuse, keep what runs
                channel.send("prepared", id=ident, ok=False, problems=[f"{type(exc).__name__}: {exc}"])
            else:
                channel.send("prepared", id=ident, ok=True, problems=[])
        elif kind == "commit":
            runtime = prepared.pop(int(message["id"]), None)
            if runtime is not None:
                service.commit(runtime)
                log.debug("reloaded config from %s", runtime.config.source)
            prepared.clear()
        elif kind == "abort":
            prepared.clear()


def _ignore_hup() -> None:
    log.warning("SIGHUP ignored: send it to the supervisor (pid %d), which reloads every worker", os.getppid())


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or not args[0].isdigit():
        sys.stderr.write("tag-gate: proxy.worker is started by `tag-gate serve --workers N`, not by hand\n")
        return 2
    import uvloop

    sock = socket.socket(fileno=int(args[0]))
    try:
        return uvloop.run(run_worker(sock))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
