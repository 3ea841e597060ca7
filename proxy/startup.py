"""What every serving process checks and sets up before it listens, whether it serves
alone or as one of a supervisor's workers: the C HTTP parser, glibc's allocator, and
the one-line error for an operator (`ServeError`), and the supervisor's reservation of
the public port its workers share (`reserve_port`). Kept apart from `service` so the
supervisor, which serves no request, needs none of the request path.
"""

from __future__ import annotations

import ctypes
import platform
import socket
import sys
from collections.abc import Mapping
from typing import Final

from .core.config import Address
from .http import _aiohttp


class ServeError(Exception):
    """tag-gate cannot start; the message is one line for the operator."""


M_TRIM_THRESHOLD: Final = -1
HEAP_TRIM_THRESHOLD: Final = 32 << 20
MALLOC_ENV: Final = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_")


def tune_allocator(environ: Mapping[str, str]) -> str | None:
    """Keep freed heap for reuse instead of handing it back to the kernel per request.

    glibc's malloc returns the top of the heap to the kernel as soon as a little of it
    is free. A proxy allocates and frees a response's worth of buffers (bodies,
    lol-html's state) on every request, so every request paid to shrink the heap, then
    to grow it and fault its pages in again (bench/README.md has what the 32 MiB trim
    threshold gains); up to 32 MiB of free heap may stay mapped after a burst. An operator
    who sets glibc's own MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_ or
    MALLOC_MMAP_THRESHOLD_ keeps those instead. Returns what was done, for the log, or
    None (not glibc, or the operator's settings apply)."""
    if any(name in environ for name in MALLOC_ENV):
        return None
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if not mallopt(M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD):
        return None
    return f"malloc trim threshold set to {HEAP_TRIM_THRESHOLD >> 20} MiB"


def check_http_parser() -> str | None:
    """A problem message when aiohttp runs on its pure-Python HTTP parser.

    Most historical aiohttp request-smuggling bugs lived in that parser, which is used
    when the C extension is missing or AIOHTTP_NO_EXTENSIONS is set.
    """
    if not _aiohttp.c_parser_in_use():
        return (
            "aiohttp is using its pure-Python HTTP parser (C extension missing or AIOHTTP_NO_EXTENSIONS set); "
            "tag-gate refuses to run on it: reinstall aiohttp with its binary wheel"
        )
    return None


def reserve_port(address: Address) -> tuple[socket.socket, int]:
    """Check that nobody holds `address` (a plain bind, which fails on any socket there,
    SO_REUSEPORT or not), then hold it with a bound, not listening SO_REUSEPORT socket
    the workers' listeners join; returns that socket and the port (port 0: the one the
    kernel chose). ServeError, one line, when the address cannot be had."""
    try:
        infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family = infos[0][0]
        with _stream_socket(family, reuse_port=False) as probe:
            probe.bind((address.host, address.port))
            port = int(probe.getsockname()[1])
        held = _stream_socket(family, reuse_port=True)
        try:
            held.bind((address.host, port))
        except OSError:
            held.close()
            raise
        return held, port
    except (OSError, IndexError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ServeError(f"cannot listen on {address} (public listener): {reason}") from None


def _stream_socket(family: int, *, reuse_port: bool) -> socket.socket:
    """A TCP socket with the options `socket.create_server` gives a listener."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    return sock
