"""The body pipeline: decode → gate → re-encode, for one response, streaming.

Pure bytes in, bytes out; nothing here touches a socket (`proxy.http.relay` owns the
IO). Used by the relay for every gated or report-only page.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from .codings import DecodeError, Encoder, make_decoder
from .gate import GateError, HtmlGate
from .start import DocumentStart

WHOLE_DOCUMENT_MAX: Final = 1 << 18
"""Largest document the gate takes in one step when the whole body has arrived (about a
millisecond of gating); larger ones go through in slices."""


def _find_head(text: bytes, tag: bytes, rest: bytes) -> int:
    """Where `tag + rest` starts in `text`, or -1 (without building `tag + rest`)."""
    first = tag or rest[:64]
    at = text.find(first)
    while at >= 0 and not text.startswith(rest, at + len(tag)):
        at = text.find(first, at + 1)
    return at


class BodyPipeline:
    """decode → gate → encode for one response body. `feed`/`end` return bytes ready to
    send (possibly empty). Raises `DecodeError` or `gate.GateError`; after either the
    pipeline is dead and the caller fails closed.

    In report-only mode the bytes go out exactly as they came and the gate only watches:
    if it cannot follow (a decode or parse failure) it stops watching, `failure` says
    why, and the page is unaffected.
    """

    def __init__(
        self,
        *,
        gate: HtmlGate | DocumentStart,
        decode: str | None,
        encode: str | None,
        max_output: int,
        max_ratio: float,
        gzip_level: int,
        brotli_quality: int,
        zstd_level: int,
        report_only: bool,
    ) -> None:
        self.gate = gate
        self.report_only = report_only
        self.failure: str | None = None
        self._fed = False
        self._decoder = make_decoder(decode, max_output=max_output, max_ratio=max_ratio) if decode else None
        self._encoder = (
            Encoder(encode, gzip_level=gzip_level, brotli_quality=brotli_quality, zstd_level=zstd_level)
            if encode and not report_only
            else None
        )

    def _decoded(self, data: bytes) -> Iterator[bytes]:
        if self._decoder is None:
            yield data
        else:
            yield from self._decoder.feed(data)

    def _decoded_to_end(self, data: bytes) -> Iterator[bytes]:
        assert self._decoder is not None
        yield from self._decoder.feed(data)
        yield from self._decoder.end()  # only once `data` is all decoded

    def feed(self, data: bytes) -> bytes:
        gate = self.gate
        self._fed = True
        if self.report_only:
            if self.failure is None:
                try:
                    for piece in self._decoded(data):
                        gate.feed(piece)
                except (DecodeError, GateError) as exc:
                    self.failure = exc.reason
            return data
        encoder = self._encoder
        head = gate.pending_head if encoder is not None else None
        out = [gate.feed(piece) for piece in self._decoded(data)]
        text = out[0] if len(out) == 1 else b"".join(out)
        return self._encode(text, head) if encoder is not None and text else text

    def finish(self, data: bytes) -> bytes:
        """`feed(data) + end()` for the last of the input, in one step (the caller bounds
        `data` as it bounds a `feed`). When `data` is the whole body (nothing fed before)
        and its decoded form is at most `WHOLE_DOCUMENT_MAX`, the gate gets the complete
        document at once (`HtmlGate.feed_whole`)."""
        if self._fed or self.report_only or (self._decoder is None and len(data) > WHOLE_DOCUMENT_MAX):
            return self.feed(data) + self.end()
        self._fed = True
        gate = self.gate
        head = gate.pending_head if self._encoder is not None else None
        if self._decoder is None:
            text = gate.feed_whole(data)
        else:
            pieces: list[bytes] = []
            size = 0
            out: list[bytes] | None = None  # set once the document is too large for one pass
            for piece in self._decoded_to_end(data):
                if out is None and size + len(piece) > WHOLE_DOCUMENT_MAX:
                    out = [gate.feed(p) for p in pieces]
                    pieces.clear()
                if out is None:
                    pieces.append(piece)
                    size += len(piece)
                else:
                    out.append(gate.feed(piece))
            if out is None:
                text = gate.feed_whole(b"".join(pieces))
            else:
                out.append(gate.end())
                text = b"".join(out)
        return self._encode_last(text, head)

    def end(self) -> bytes:
        gate = self.gate
        if self.report_only:
            if self.failure is None:
                try:
                    if self._decoder is not None:
                        for piece in self._decoder.end():
                            gate.feed(piece)
                    gate.end()
                except (DecodeError, GateError) as exc:
                    self.failure = exc.reason
            return b""
        head = gate.pending_head if self._encoder is not None else None
        tail: list[bytes] = []
        if self._decoder is not None:
            for piece in self._decoder.end():
                tail.append(gate.feed(piece))
        tail.append(gate.end())
        return self._encode_last(b"".join(tail), head)

    def _encode(self, text: bytes, head: tuple[bytes, bytes] | None) -> bytes:
        """`text` re-encoded. When the gate put out the head-start addition (`head`: the
        runtime guard's opening tag and the rest) in it, the rest goes in from its
        compressed form, made once (`Encoder.splice`), instead of being compressed again:
        where `feed_whole` spliced it, or where it is found in a streamed page's output
        (lol-html inserted it as it is: the same bytes, so the output is the same either
        way). The tag, which carries the response's own CSP nonce on a strict-CSP site,
        is compressed with the page."""
        encoder = self._encoder
        assert encoder is not None
        if head is not None and self.gate.pending_head is None:
            tag, rest = head
            spliced = self.gate.spliced
            at = spliced[0] if spliced is not None else _find_head(text, tag, rest)
            if at >= 0:
                cut = at + len(tag)
                view = memoryview(text)
                return encoder.feed(view[:cut]) + encoder.splice(rest) + encoder.feed(view[cut + len(rest) :])
        return encoder.feed(text)

    def _encode_last(self, text: bytes, head: tuple[bytes, bytes] | None = None) -> bytes:
        """The last gated bytes, re-encoded and the encoding closed when there is one."""
        if self._encoder is None:
            return text
        return self._encode(text, head) + self._encoder.end()
