"""Content codings: streaming decode with bomb limits, streaming re-encode (no IO).

Decoders yield output in bounded pieces and stop with `DecodeError("bomb")` once the
decoded size passes `max_output`, or passes `max_ratio` times the encoded size after a
small allowance, so a 10 MB gzip that inflates to 10 GB costs at most the cap. Corrupt
or truncated input is `DecodeError("corrupt")`.
"""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Iterator
from typing import Final, Protocol

import brotli
import zstandard

CODINGS: Final = ("gzip", "deflate", "br", "zstd")
"""Codings tag-gate can decode and re-encode, in its order of preference."""

ALIASES: Final = {"x-gzip": "gzip"}

STEP: Final = 1 << 18
"""Largest output piece a decoder produces at once (256 KiB)."""

RATIO_ALLOWANCE: Final = 4 << 20
"""Decoded bytes allowed before the ratio limit applies (small pages compress well)."""

MAX_MEMBERS: Final = 1024
"""Most gzip members (or zstd frames) in one body; thousands of tiny ones are a CPU bomb."""

_ZSTD_FEED: Final = 1024
"""zstd has no output limit per call: feed it small slices so each call stays bounded."""


class DecodeError(Exception):
    """Decoding failed; `reason` is `bomb`, `corrupt` or `unsupported`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def parse_content_encoding(value: str | None) -> list[str]:
    """The codings listed in a Content-Encoding header, in order, lower-cased.
    `identity` entries are dropped; an empty list means not encoded."""
    if not value:
        return []
    codings = []
    for token in value.split(","):
        token = token.strip().lower()
        if token and token != "identity":
            codings.append(ALIASES.get(token, token))
    return codings


def parse_accept_encoding(value: str | None) -> dict[str, float]:
    """coding → q-value from an Accept-Encoding header (malformed q-values count as 0)."""
    accepted: dict[str, float] = {}
    if not value:
        return accepted
    for item in value.split(","):
        name, _, params = item.partition(";")
        name = name.strip().lower()
        if not name:
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, val = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(val.strip())
                except ValueError:
                    q = 0.0
                if not 0 <= q <= 1:
                    q = 0.0
        accepted[ALIASES.get(name, name)] = q
    return accepted


def client_accepts(accept_encoding: str | None, coding: str) -> bool:
    accepted = parse_accept_encoding(accept_encoding)
    if coding in accepted:
        return accepted[coding] > 0
    return accepted.get("*", 0) > 0


def splice_coding(accept_encoding: str | None) -> str:
    """The coding a brotli page that gets a spliced text (the runtime guard) leaves in.
    Brotli has no seam for the text's compressed form (`Encoder.splice`), and compressing
    the guard's 20 KB again costs 0.4 ms a page: zstd, or gzip, when the client takes
    one (the page is re-encoded either way), else brotli."""
    return next((c for c in ("zstd", "gzip") if client_accepts(accept_encoding, c)), "br")


def filter_accept_encoding(value: str | None) -> str | None:
    """The client's Accept-Encoding limited to codings tag-gate can decode (and identity),
    so the upstream never answers HTML in a coding the gate cannot read."""
    if not value:
        return None
    kept = []
    for item in value.split(","):
        name = item.partition(";")[0].strip().lower()
        if ALIASES.get(name, name) in CODINGS or name == "identity":
            kept.append(item.strip())
    return ", ".join(kept) if kept else None


class Decoder(Protocol):
    def feed(self, data: bytes) -> Iterator[bytes]: ...
    def end(self) -> Iterator[bytes]: ...


class _Limits:
    def __init__(self, max_output: int, max_ratio: float) -> None:
        self.max_output = max_output
        self.max_ratio = max_ratio
        self.consumed = 0
        self.produced = 0

    def count_in(self, n: int) -> None:
        self.consumed += n

    def count_out(self, n: int) -> None:
        self.produced += n
        if self.produced > self.max_output:
            raise DecodeError("bomb", f"decoded size passed {self.max_output} bytes")
        if self.produced > RATIO_ALLOWANCE and self.produced > self.max_ratio * max(self.consumed, 1):
            raise DecodeError("bomb", f"decoded/encoded ratio passed {self.max_ratio:g}")


class _ZlibDecoder:
    """gzip (any number of members, up to MAX_MEMBERS) and deflate (zlib or raw)."""

    def __init__(self, coding: str, limits: _Limits) -> None:
        self.coding = coding
        self.limits = limits
        self.members = 1
        self.started = False
        self._obj = self._new()

    def _new(self) -> zlib._Decompress:
        wbits = 16 + zlib.MAX_WBITS if self.coding == "gzip" else zlib.MAX_WBITS
        return zlib.decompressobj(wbits)

    def feed(self, data: bytes) -> Iterator[bytes]:
        self.limits.count_in(len(data))
        while data:
            obj = self._obj
            try:
                out = obj.decompress(data, STEP)
            except zlib.error as exc:
                if self.coding == "deflate" and not self.started:
                    # Some servers send raw deflate (no zlib header) under "deflate".
                    self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
                    self.started = True
                    continue
                raise DecodeError("corrupt", f"{self.coding}: {exc}") from None
            self.started = True
            if out:
                self.limits.count_out(len(out))
                yield out
            if obj.eof:
                data = obj.unused_data
                if data and self.coding == "gzip":
                    self.members += 1
                    if self.members > MAX_MEMBERS:
                        raise DecodeError("bomb", f"more than {MAX_MEMBERS} gzip members")
                    self._obj = self._new()
                    continue
                if data.strip(b"\x00"):
                    raise DecodeError("corrupt", f"{self.coding}: data after the end of the stream")
                return
            data = obj.unconsumed_tail

    def end(self) -> Iterator[bytes]:
        obj = self._obj
        out = obj.flush()
        if out:
            self.limits.count_out(len(out))
            yield out
        if not obj.eof:
            raise DecodeError("corrupt", f"{self.coding}: truncated stream")


class _BrotliDecoder:
    def __init__(self, limits: _Limits) -> None:
        self.limits = limits
        self._obj = brotli.Decompressor()

    def feed(self, data: bytes) -> Iterator[bytes]:
        self.limits.count_in(len(data))
        obj = self._obj
        try:
            out = obj.process(data, output_buffer_limit=STEP)
            while True:
                if out:
                    self.limits.count_out(len(out))
                    yield out
                if obj.is_finished():
                    return
                # "Can accept more data" does not mean no output is pending: a full
                # buffer is asked again until the decoder has nothing more to give.
                if not out and obj.can_accept_more_data():
                    return
                more = obj.process(b"", output_buffer_limit=STEP)
                if not more and not out:
                    raise DecodeError("corrupt", "br: the decoder neither takes input nor gives output")
                out = more
        except brotli.error as exc:
            raise DecodeError("corrupt", f"br: {exc}") from None

    def end(self) -> Iterator[bytes]:
        if not self._obj.is_finished():
            raise DecodeError("corrupt", "br: truncated stream")
        return iter(())


class _ZstdDecoder:
    def __init__(self, limits: _Limits) -> None:
        self.limits = limits
        self.frames = 1
        self._dctx = zstandard.ZstdDecompressor(max_window_size=1 << 27)
        self._obj = self._dctx.decompressobj()

    def feed(self, data: bytes) -> Iterator[bytes]:
        self.limits.count_in(len(data))
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            piece = bytes(view[pos : pos + _ZSTD_FEED])
            pos += len(piece)
            try:
                out = self._obj.decompress(piece)
            except zstandard.ZstdError as exc:
                raise DecodeError("corrupt", f"zstd: {exc}") from None
            if out:
                self.limits.count_out(len(out))
                yield out
            if self._obj.eof:
                rest = self._obj.unused_data + bytes(view[pos:])
                if not rest:
                    return
                self.frames += 1
                if self.frames > MAX_MEMBERS:
                    raise DecodeError("bomb", f"more than {MAX_MEMBERS} zstd frames")
                self._obj = self._dctx.decompressobj()
                view = memoryview(rest)
                pos = 0

    def end(self) -> Iterator[bytes]:
        if not self._obj.eof:
            raise DecodeError("corrupt", "zstd: truncated stream")
        return iter(())


def make_decoder(coding: str, *, max_output: int, max_ratio: float) -> Decoder:
    limits = _Limits(max_output, max_ratio)
    if coding in ("gzip", "deflate"):
        return _ZlibDecoder(coding, limits)
    if coding == "br":
        return _BrotliDecoder(limits)
    if coding == "zstd":
        return _ZstdDecoder(limits)
    raise DecodeError("unsupported", f"content coding {coding!r}")


_GZIP_HEADER: Final = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"
"""A gzip member's header as zlib writes it: deflate, no name, no time, Unix."""

_ZLIB_HEADER: Final = b"\x78\x01"
"""A zlib stream's header: deflate with a 32 KiB window (the level field is only a hint)."""

SPLICE_LEVELS: Final = {"deflate": 9, "zstd": 12}
"""The levels a spliced text is compressed at, once per text (the guard: per consent key
and host): raw deflate (gzip's and deflate's) at 9 takes 0.5 ms for the guard, zstd at 12
1 ms (19 saves 3 % more for 5 ms, paid by the first page of each key)."""


@functools.lru_cache(maxsize=64)
def _deflated(text: bytes) -> bytes:
    """`text` as raw deflate blocks that stand alone: no reference before their start,
    none of them final, ending on a byte (`Encoder.splice`)."""
    packer = zlib.compressobj(SPLICE_LEVELS["deflate"], zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(text) + packer.flush(zlib.Z_SYNC_FLUSH)


@functools.lru_cache(maxsize=64)
def _zstd_frame(text: bytes) -> bytes:
    """`text` as one complete zstd frame (`Encoder.splice`)."""
    return zstandard.ZstdCompressor(level=SPLICE_LEVELS["zstd"]).compress(text)


class Encoder:
    """Streaming encoder; `feed` returns what is ready, flushed so the client can
    decode everything sent so far (the page streams). `splice` adds a text that recurs
    across responses (the runtime guard) from its compressed form, made once.

    gzip and deflate are written as raw deflate with the wrapper (header, checksum,
    length) kept here, so that blocks compressed elsewhere can go between two of ours:
    a full flush first, so nothing after refers back past them. zstd gets a frame of
    its own (a zstd body is one or more frames). A brotli stream has no such seam:
    `splice` compresses the text there like any other."""

    def __init__(self, coding: str, *, gzip_level: int = 1, brotli_quality: int = 4, zstd_level: int = 3) -> None:
        self.coding = coding
        self._started = False
        if coding in ("gzip", "deflate"):
            self._zlib = zlib.compressobj(gzip_level, zlib.DEFLATED, -zlib.MAX_WBITS)
            self._gzip = coding == "gzip"
            self._check = 0 if self._gzip else 1  # CRC-32 or Adler-32 of the text so far
            self._size = 0
        elif coding == "br":
            self._br = brotli.Compressor(quality=brotli_quality, lgwin=22)
        elif coding == "zstd":
            self._zstd_maker = zstandard.ZstdCompressor(level=zstd_level)
            self._zstd = self._zstd_maker.compressobj()
        else:
            raise DecodeError("unsupported", f"cannot encode {coding!r}")

    def _head(self, data: bytes | memoryview) -> bytes:
        """The wrapper's header before the first output; `data` into the checksum."""
        self._size += len(data)
        self._check = zlib.crc32(data, self._check) if self._gzip else zlib.adler32(data, self._check)
        if self._started:
            return b""
        self._started = True
        return _GZIP_HEADER if self._gzip else _ZLIB_HEADER

    def feed(self, data: bytes | memoryview) -> bytes:
        if not data:
            return b""
        if self.coding in ("gzip", "deflate"):
            return self._head(data) + self._zlib.compress(data) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
        self._started = True
        out: bytes
        if self.coding == "br":
            out = self._br.process(data) + self._br.flush()
        else:
            out = self._zstd.compress(data) + self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        return out

    def splice(self, text: bytes) -> bytes:
        """`feed(text)`, for a text many responses carry: its compressed form is made
        once per text (at `SPLICE_LEVELS`) and copied in, instead of compressing it
        again for each response."""
        if not text or self.coding == "br":
            return self.feed(text)
        if self.coding == "zstd":
            out = self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH) if self._started else b""
            self._zstd = self._zstd_maker.compressobj()
            self._started = False  # the rest is a frame of its own
            return out + _zstd_frame(text)
        head = self._head(text)
        return head + self._zlib.flush(zlib.Z_FULL_FLUSH) + _deflated(text)

    def end(self) -> bytes:
        if self.coding in ("gzip", "deflate"):
            out = self._head(b"") + self._zlib.flush(zlib.Z_FINISH)
            if self._gzip:
                return out + struct.pack("<II", self._check, self._size & 0xFFFFFFFF)
            return out + struct.pack(">I", self._check)
        if self.coding == "br":
            finished: bytes = self._br.finish()
            return finished
        tail: bytes = self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)
        return tail
