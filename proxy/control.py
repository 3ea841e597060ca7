"""What a supervisor and its workers say to each other, and the config they both build.

Each worker has one Unix stream socket to the supervisor (a socketpair; the worker's end
is passed to it as a file descriptor). Messages are JSON objects, one per line, with
their kind in `"t"`:

supervisor → worker
  start    {index, port, base, current, generation, log_level}: the first message; the
           worker builds `base` (the config the supervisor started with), then applies
           `current` over it as a reload would (None: no reload yet)
  prepare  {id, source, generation}: build the runtime for `source`, hold it, answer
  commit   {id}: apply the runtime held for `id` (it cannot fail: one assignment)
  abort    {id}: drop it

worker → supervisor
  ready    {generation}: serving, on that config generation
  failed   {problem}: could not start (one line for the operator); the worker exits 1
  prepared {id, ok, problems}: the answer to `prepare`
  draining {}: a stop began (a signal, or the supervisor went away); not ready any more

A supervisor that goes away closes the socket: the worker sees end-of-file and stops as
on SIGTERM. A worker that dies closes it too, which the supervisor sees at once.

The config travels as a `ConfigSource`: the file's text as the supervisor read it, its
path, and the flag and environment overrides. Parsing the same text with the same code
gives the same config in every process, so a worker cannot read a different file than
the supervisor checked (the file may change on disk in between), and cannot reject what
the supervisor accepted on the file's content.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .core.config import (
    Config,
    ConfigError,
    load_config,
    load_config_text,
    parse_config_text,
)
from .core.running import check_runnable, with_overrides

MAX_MESSAGE: Final = 16 << 20
"""Longest message line (a config file's text travels in one)."""


@dataclass(frozen=True, slots=True)
class ConfigSource:
    """A config as `tag-gate serve` builds it: a file (or the built-in defaults), then
    the environment's and the flags' overrides (`{setting: (origin, value)}`)."""

    path: str | None
    text: str | None
    overrides: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    @classmethod
    def read(cls, path: str | None, overrides: Mapping[str, tuple[str, str]]) -> ConfigSource:
        """Read the file once (ConfigError when it cannot be read or is not UTF-8)."""
        if path is None:
            return cls(None, None, dict(overrides))
        return cls(path, load_config_text(path), dict(overrides))

    def build(self) -> Config:
        """The config, or ConfigError with every problem (also one that cannot serve)."""
        if self.path is None or self.text is None:
            config = load_config(None)
        else:
            config = parse_config_text(self.text, self.path)
        config = with_overrides(config, self.overrides)
        problems = check_runnable(config)
        if problems:
            raise ConfigError(problems)
        return config

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "text": self.text, "overrides": {k: list(v) for k, v in self.overrides.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConfigSource:
        overrides = {str(k): (str(v[0]), str(v[1])) for k, v in data["overrides"].items()}
        return cls(data["path"], data["text"], overrides)


class Channel:
    """One end of a supervisor-worker socket: JSON messages, one per line."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, sock: socket.socket) -> Channel:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_MESSAGE)
        return cls(reader, writer)

    def send(self, kind: str, **fields: Any) -> None:
        """Queue a message; never waits (messages are few and small, except a config's
        text). A peer that went away is noticed by `receive`, not here."""
        if self._writer.is_closing():
            return
        line = json.dumps({"t": kind, **fields}, separators=(",", ":")) + "\n"
        self._writer.write(line.encode("utf-8"))

    async def receive(self) -> dict[str, Any] | None:
        """The next message, or None once the peer has gone (or sent something that is
        not a message: the channel is then of no further use)."""
        try:
            line = await self._reader.readline()
        except (OSError, ValueError, asyncio.LimitOverrunError, asyncio.IncompleteReadError):
            return None
        if not line.endswith(b"\n"):
            return None
        try:
            message = json.loads(line)
        except ValueError:
            return None
        return message if isinstance(message, dict) and isinstance(message.get("t"), str) else None

    async def flush(self) -> None:
        """Wait until what was sent has been handed to the kernel (or the peer is gone)."""
        with contextlib.suppress(OSError, RuntimeError):
            await self._writer.drain()

    def close(self) -> None:
        self._writer.close()
