"""tag-gate's two logs: the JSON access log (stdout) and the event log (stderr).

Contract:
- Every event is one line, whatever bytes a client or an upstream sent. The event log's
  formatter escapes CR, LF and every other non-printable character of the finished line
  and renders an exception as `Type: message`, never as a traceback; tag-gate's,
  aiohttp's and asyncio's loggers all go through it. Client- and upstream-controlled
  text is only ever a `%s` argument, never part of a format string.
- Logging never blocks the event loop. Lines go into a bounded buffer that a writer
  thread drains to the stream; when the stream does not keep up (a pipe nobody reads),
  new lines are dropped and counted (`tag_gate_log_dropped_total{stream}`) instead of
  waiting for room.
- At shutdown both logs are drained with a bounded wait (`DRAIN_TIMEOUT`): nothing is
  lost while the stream keeps up, and a blocked stream cannot hold the exit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import select
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO, Any, Final

ACCESS_CAPACITY: Final = 1 << 20
"""Most characters of access-log lines waiting for stdout (about 10,000 requests);
lines that do not fit are dropped and counted."""

EVENT_CAPACITY: Final = 256 << 10
"""Most characters of event-log lines waiting for stderr."""

ACCESS_INTERVAL: Final = 0.25
"""How long access-log lines gather on the event loop before they go to the writer
thread in one batch (one hand-off and one write for many requests)..."""

ACCESS_BATCH: Final = 512
"""...or how many, whichever comes first, so a burst reaches the writer in pieces that
fit its buffer rather than in one that would not."""

DRAIN_TIMEOUT: Final = 0.5
"""Longest wait, per log, for the writer to catch up at shutdown. A stream that keeps up
needs milliseconds; a blocked one would otherwise hold the exit past its deadline."""

MAX_EVENT_CHARS: Final = 16384
"""Longest event-log line (after escaping); the rest is cut and its length noted."""

ROUTED_LOGGERS: Final = (
    "tag_gate",
    "aiohttp.access",
    "aiohttp.client",
    "aiohttp.internal",
    "aiohttp.server",
    "aiohttp.web",
    "aiohttp.websocket",
    "asyncio",
    "py.warnings",
)
"""Loggers that must reach the event log's handler (through the root logger) and no
handler of their own."""


class LineWriter:
    """A bounded buffer of lines, written to a stream by a daemon thread.

    `offer()` takes a short lock and never waits for the stream: lines that do not fit in
    `capacity` characters are dropped and counted in `dropped`. While the thread writes
    one batch the next one gathers, so at most about twice `capacity` is held. A real
    file descriptor is written with `os.write`, outside the stream object's own lock, so a
    thread stuck on a blocked pipe cannot wedge the interpreter's exit.
    """

    def __init__(self, out: IO[str], *, capacity: int, name: str) -> None:
        self._out = out
        self._fd = _raw_fd(out)
        self._encoding = getattr(out, "encoding", None) or "utf-8"
        self._capacity = capacity
        self._name = name
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._settled = threading.Condition(self._lock)
        self._pending: list[str] = []
        self._pending_chars = 0
        self._writing = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._dropped = 0

    @property
    def dropped(self) -> int:
        """Lines dropped so far: no room, written after `close()`, or the stream failed."""
        return self._dropped

    @property
    def idle(self) -> bool:
        """Nothing waiting and nothing being written."""
        with self._lock:
            return not self._pending and not self._writing

    def count_dropped(self, lines: int = 1) -> None:
        with self._lock:
            self._dropped += lines

    def offer(self, lines: Sequence[str]) -> int:
        """Queue `lines` (each ending in a newline) without waiting; returns how many were
        taken. The first line that does not fit and all after it are dropped."""
        with self._lock:
            if self._closed:
                self._dropped += len(lines)
                return 0
            room = self._capacity - self._pending_chars
            size = sum(map(len, lines))
            if size <= room:
                taken = len(lines)
            else:
                taken = 0
                for line in lines:
                    if len(line) > room:
                        break
                    room -= len(line)
                    taken += 1
                size = self._capacity - self._pending_chars - room
                self._dropped += len(lines) - taken
            if taken:
                self._pending.extend(lines[:taken] if taken < len(lines) else lines)
                self._pending_chars += size
                if self._thread is None and not self._start():
                    return 0
                self._wake.notify()
            return taken

    def _start(self) -> bool:
        """Start the writer thread (lock held); if that is refused (interpreter shutdown),
        close and count what waits as dropped, rather than raise into a logging call."""
        thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        try:
            thread.start()
        except RuntimeError:
            self._closed = True
            self._dropped += len(self._pending)
            self._pending = []
            self._pending_chars = 0
            return False
        self._thread = thread
        return True

    def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds until everything offered is written; True if it was.
        Blocks the calling thread: for shutdown and tests, never the request path."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending or self._writing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._settled.wait(remaining)
        return True

    def close(self, timeout: float = DRAIN_TIMEOUT) -> bool:
        """Drain (bounded), then stop the thread; later offers are dropped and counted.
        Lines still waiting at the deadline are counted as dropped. Idempotent."""
        done = self.drain(timeout)
        with self._lock:
            self._closed = True
            self._dropped += len(self._pending)
            self._pending = []
            self._pending_chars = 0
            self._wake.notify()
            thread = self._thread
        if done and thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        return done

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closed:
                    self._wake.wait()
                if not self._pending:
                    return
                batch, self._pending = self._pending, []
                self._pending_chars = 0
                self._writing = True
            try:
                self._write("".join(batch))
            except Exception:  # a closed or broken stream: nobody can read these lines
                with self._lock:
                    self._dropped += len(batch)
            finally:
                with self._lock:
                    self._writing = False
                    self._settled.notify_all()

    def _write(self, text: str) -> None:
        if self._fd is None:
            self._out.write(text)
            self._out.flush()
            return
        view = memoryview(text.encode(self._encoding, "backslashreplace"))
        while view:
            try:
                written = os.write(self._fd, view)
            except BlockingIOError:
                # Someone made the descriptor non-blocking: wait for room here, in this thread.
                select.select([], [self._fd], [], 1.0)
                continue
            view = view[written:]


MAX_RELAY_LINE: Final = 1 << 20
"""Longest line `relay_lines` waits for; a longer one is cut there."""


async def relay_lines(stream: asyncio.StreamReader | None, out: LineWriter, *, keep_partial: bool) -> None:
    """Copy another process's output (a worker's stdout or stderr pipe) to `out`, whole
    lines at a time, until end-of-file. One process then writes each stream, so lines
    from several workers never interleave, whatever their length: PIPE_BUF (4 KiB) is
    all the kernel keeps whole when several processes write to one pipe, and a line here
    may be longer (an event line up to `MAX_EVENT_CHARS`, an access line with an escaped
    path). A line longer than `MAX_RELAY_LINE` is cut into lines of that length. A partial
    line left at end-of-file (its writer was killed mid-line) is kept, ended with a
    newline, with `keep_partial`, else dropped and counted in `out.dropped`."""
    if stream is None:
        return
    pending = b""
    while True:
        try:
            chunk = await stream.read(65536)
        except OSError:
            chunk = b""
        if not chunk:
            break
        pending += chunk
        lines: list[bytes] = []
        if b"\n" in chunk:
            *lines, pending = pending.split(b"\n")
        lines.append(pending)
        pieces = [line[i : i + MAX_RELAY_LINE] for line in lines for i in range(0, max(len(line), 1), MAX_RELAY_LINE)]
        pending = pieces.pop() if len(pieces[-1]) < MAX_RELAY_LINE else b""
        if pieces:
            out.offer([piece.decode("utf-8", "backslashreplace") + "\n" for piece in pieces])
    if pending:
        if keep_partial:
            out.offer([pending.decode("utf-8", "backslashreplace") + "\n"])
        else:
            out.count_dropped()


def _raw_fd(out: IO[str]) -> int | None:
    """The descriptor behind a real file or pipe (its buffer flushed first), else None."""
    try:
        fd = out.fileno()
        out.flush()
    except (AttributeError, OSError, ValueError):
        return None
    return fd


class AccessLog:
    """One JSON object per line, gathered on the event loop and written by a thread.

    Lines collect for `ACCESS_INTERVAL`, then go to a `LineWriter` in one batch, so the
    request path pays neither a system call per request nor a wait on a slow stdout; if
    stdout stops taking lines, they are dropped and counted (`dropped`). `flush()` and
    `close()` hand over what is gathered and wait, bounded, until it is written.
    """

    def __init__(self, out: IO[str] | None, *, capacity: int = ACCESS_CAPACITY, pid: int | None = None) -> None:
        self._out = out
        self._writer = LineWriter(out, capacity=capacity, name="tag-gate access log") if out is not None else None
        self._buffer: list[str] = []
        self._handle: asyncio.TimerHandle | None = None
        self.enabled = out is not None
        self._pid = pid
        self._tail = f',"pid":{pid}}}\n' if pid is not None else "}\n"
        """How every line ends: with workers, each names the process that served the
        request (`"pid"`), so a line in the shared log leads to that worker's events."""

    @property
    def dropped(self) -> int:
        """Access-log lines dropped because stdout did not keep up."""
        return self._writer.dropped if self._writer is not None else 0

    def write(self, record: dict[str, Any]) -> None:
        if self._out is None:
            return
        if self._pid is not None:
            record = {**record, "pid": self._pid}
        self._append(json.dumps(record, separators=(",", ":")) + "\n")

    def request(
        self, ts: float, remote: str | None, method: str, path: str, status: int, ms: float, error: str | None
    ) -> None:
        """The per-request line, formatted without the generic encoder when the strings
        need no escaping (they almost never do)."""
        if self._out is None:
            return
        if _plain(path) and _plain(remote or "") and (error is None or _plain(error)):
            line = (
                f'{{"ts":{ts:.3f},"remote":{_quote(remote)},"method":"{method}","path":"{path}",'
                f'"status":{status},"ms":{ms:.2f}' + (f',"error":"{error}"' if error else "") + self._tail
            )
            self._append(line)
            return
        record: dict[str, Any] = {
            "ts": round(ts, 3),
            "remote": remote,
            "method": method,
            "path": path,
            "status": status,
            "ms": round(ms, 2),
        }
        if error:
            record["error"] = error
        self.write(record)

    def _append(self, line: str) -> None:
        self._buffer.append(line)
        if len(self._buffer) >= ACCESS_BATCH:
            self._hand_off()
        elif self._handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._hand_off()
                return
            self._handle = loop.call_later(ACCESS_INTERVAL, self._hand_off)

    def _hand_off(self) -> None:
        """Give the gathered lines to the writer thread; never waits."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._buffer and self._writer is not None:
            lines, self._buffer = self._buffer, []
            self._writer.offer(lines)

    def flush(self, timeout: float = DRAIN_TIMEOUT) -> bool:
        """Hand over every gathered line and wait up to `timeout` seconds until it is
        written; True if it was. Blocks the caller (shutdown and tests only)."""
        self._hand_off()
        return self._writer.drain(timeout) if self._writer is not None else True

    async def close(self, timeout: float = DRAIN_TIMEOUT) -> bool:
        """At shutdown: hand over every gathered line, give the writer up to `timeout`
        seconds without blocking the event loop, then stop it. True if nothing was lost."""
        self._hand_off()
        writer = self._writer
        if writer is None:
            return True
        deadline = time.monotonic() + timeout
        while not writer.idle and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return writer.close(timeout=0)


def _plain(text: str) -> bool:
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


def _quote(text: str | None) -> str:
    return "null" if text is None else f'"{text}"'


_ESCAPES: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def one_line(text: str) -> str:
    """`text` with CR, LF and every other non-printable character (C0 and C1 controls,
    Unicode line and paragraph separators, lone surrogates from undecodable bytes)
    written as a backslash escape, so it is one line of printable text."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    known = _ESCAPES.get(ch)
    if known is not None:
        return known
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def describe_exception(exc: BaseException, *, where: bool = False) -> str:
    """`Type: message` for the log (plus its direct cause, and with `where` the innermost
    frame). One line only once passed through `one_line` (messages may hold newlines)."""
    text = _type_and_message(exc)
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if cause is not None:
        text += f" (from {_type_and_message(cause)})"
    if where:
        tb = exc.__traceback__
        if tb is not None:
            while tb.tb_next is not None:
                tb = tb.tb_next
            code = tb.tb_frame.f_code
            path = "/".join(code.co_filename.replace("\\", "/").rsplit("/", 2)[-2:])
            text += f" [at {path}:{tb.tb_lineno} in {code.co_name}]"
    return text


def _type_and_message(exc: BaseException) -> str:
    name = type(exc).__name__
    try:
        message = _BREAK.sub(" ", _CARET.sub("", str(exc))).strip()
    except Exception:
        message = "<unprintable message>"
    return f"{name}: {message}" if message else name


_CARET: Final = re.compile(r"\n[ \t]*\^[ \t]*(?=\n|$)")
"""The line of aiohttp's parser errors that points at the bad byte (meaningless once the
message is one line)."""

_BREAK: Final = re.compile(r"\n\s*")
"""A line break in an exception message and the indentation after it."""


def format_safely(msg: object, args: Any) -> str:
    """`msg % args` as logging would do it, but a message that does not fit its
    arguments (or cannot be printed) becomes text instead of an error."""
    try:
        text = str(msg)
        return text % args if args else text
    except Exception:
        try:
            return f"{msg!r} (arguments that do not fit it: {args!r})"
        except Exception:
            return "<unprintable log message>"


class OneLineFormatter(logging.Formatter):
    """`time LEVEL logger: message`, one line per record whatever it holds.

    A message whose arguments do not fit its format string is still printed (never a
    'Logging error'), an exception is `Type: message [at file:line in function]`, and the
    finished line is passed through `one_line` and cut at `MAX_EVENT_CHARS`.
    """

    def __init__(self, tag: str | None = None) -> None:
        where = f"%(name)s [{tag}]" if tag else "%(name)s"
        super().__init__(f"%(asctime)s %(levelname)s {where}: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        message = format_safely(record.msg, record.args)
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            message = f"{message}: {describe_exception(exc, where=True)}"
        record.message = message
        record.asctime = self.formatTime(record, self.datefmt)
        line = one_line(self.formatMessage(record))
        if len(line) > MAX_EVENT_CHARS:
            line = f"{line[:MAX_EVENT_CHARS]}... ({len(line) - MAX_EVENT_CHARS} more characters)"
        return line


class EventLogHandler(logging.Handler):
    """The event log's handler: each record is formatted on the logging thread (one
    line) and handed to a `LineWriter`; it never waits for the stream, and a record that
    cannot be written is counted, never reported as a 'Logging error'."""

    def __init__(self, out: IO[str], *, capacity: int = EVENT_CAPACITY, tag: str | None = None) -> None:
        super().__init__()
        self.setFormatter(OneLineFormatter(tag))
        self.writer = LineWriter(out, capacity=capacity, name="tag-gate event log")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # the formatter is defensive; this is the last resort
            line = f"{record.levelname} {record.name}: <unformattable log record>"
        self.writer.offer((line + "\n",))

    def handleError(self, record: logging.LogRecord) -> None:
        self.writer.count_dropped()  # never print a "Logging error": count the lost line

    def close(self) -> None:
        """Drain with a bounded wait, then stop the writer (also run by logging at exit)."""
        self.writer.close(DRAIN_TIMEOUT)
        super().close()


_handlers: list[EventLogHandler] = []


def event_lines_dropped() -> int:
    """Event-log lines dropped in this process (for `tag_gate_log_dropped_total`)."""
    return sum(handler.writer.dropped for handler in _handlers)


def install_event_log(level: int, out: IO[str] | None = None, *, tag: str | None = None) -> EventLogHandler:
    """Send every log record of this process to `out` (stderr) through one
    `EventLogHandler`: the root logger gets it as its only handler and the loggers in
    `ROUTED_LOGGERS` propagate to it with no handler of their own. Warnings, exceptions
    nobody could raise (`__del__`, finalisers) and exceptions in threads are logged as
    one-line events too. `tag` marks every line after the logger's name (a worker's
    `worker 2`). `close()` the handler at exit."""
    handler = EventLogHandler(out if out is not None else sys.stderr, tag=tag)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ROUTED_LOGGERS:
        logger = logging.getLogger(name)
        for old in logger.handlers[:]:
            logger.removeHandler(old)
        logger.propagate = True
    logging.raiseExceptions = False  # no handler may print a multi-line "Logging error"
    logging.captureWarnings(True)
    sys.unraisablehook = _log_unraisable
    threading.excepthook = _log_thread_exception
    _handlers.append(handler)
    return handler


_events = logging.getLogger("tag_gate")


def _log_unraisable(unraisable: Any) -> None:
    try:
        where = repr(unraisable.object) if unraisable.object is not None else "?"
    except Exception:
        where = f"<{type(unraisable.object).__name__}>"
    exc = unraisable.exc_value
    detail = describe_exception(exc, where=True) if isinstance(exc, BaseException) else str(unraisable.exc_type)
    _events.error("%s %s: %s", unraisable.err_msg or "Exception ignored in", where, detail)


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    exc = args.exc_value
    detail = describe_exception(exc, where=True) if exc is not None else str(args.exc_type)
    name = args.thread.name if args.thread is not None else "?"
    _events.error("exception in thread %s: %s", name, detail)


class OneLineLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The logger aiohttp's request handler gets. aiohttp calls `exception()` for every
    malformed request; that becomes one warning line with the exception's type and
    message, which quote client bytes and so are only ever arguments."""

    def exception(
        self,
        msg: object,
        *args: object,
        exc_info: bool | BaseException | tuple[Any, ...] | None = True,
        **kwargs: Any,
    ) -> None:
        exc: object = sys.exc_info()[1] if exc_info is True else exc_info
        if isinstance(exc, tuple):
            exc = exc[1] if len(exc) > 1 else None
        text = format_safely(msg, args)
        if isinstance(exc, BaseException):
            self.logger.warning("%s: %s", text, describe_exception(exc))
        else:
            self.logger.warning("%s", text)
