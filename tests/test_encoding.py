"""Content codings: round trips, bombs, corrupt streams, negotiation."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import zlib

import brotli
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.core.catalog import make_catalog
from proxy.core.consent import read_consent
from proxy.core.policy import Policy
from proxy.html import codings
from proxy.html.body import WHOLE_DOCUMENT_MAX, BodyPipeline
from proxy.html.codings import (
    CODINGS,
    DecodeError,
    Encoder,
    client_accepts,
    filter_accept_encoding,
    make_decoder,
    parse_accept_encoding,
    parse_content_encoding,
)
from proxy.html.gate import Additions, GatePlan, HtmlGate

PAGE = b"<html><body>" + b"<p>hello tag-gate, caf\xc3\xa9</p>\n" * 5000 + b"</body></html>"


def compress(coding: str, data: bytes) -> bytes:
    if coding == "gzip":
        return gzip.compress(data)
    if coding == "deflate":
        return zlib.compress(data)
    out: bytes = brotli.compress(data) if coding == "br" else zstandard.ZstdCompressor().compress(data)
    return out


def decode_all(coding: str, data: bytes, chunk: int = 997, **limits: float) -> bytes:
    decoder = make_decoder(
        coding, max_output=int(limits.get("max_output", 1 << 30)), max_ratio=limits.get("max_ratio", 100.0)
    )
    out: list[bytes] = []
    for i in range(0, len(data), chunk):
        out.extend(decoder.feed(data[i : i + chunk]))
    out.extend(decoder.end())
    return b"".join(out)


@pytest.mark.parametrize("coding", CODINGS)
def test_decode_round_trip_in_any_chunking(coding: str) -> None:
    data = compress(coding, PAGE)
    for chunk in (1, 7, 4096, len(data)):
        assert decode_all(coding, data, chunk) == PAGE


@pytest.mark.parametrize("coding", CODINGS)
def test_one_small_input_that_decodes_to_megabytes_comes_out_whole(coding: str) -> None:
    """More output than one decoder step per input chunk: every byte is handed over (br
    once kept the rest back, and the stream then looked truncated)."""
    page = b"".join(b"<p>row %d of a long table</p>\n" % i for i in range(100000))
    data = compress(coding, page)
    assert len(page) > 10 * len(data)  # every 64 KiB chunk decodes to far more than one step
    for chunk in (len(data), 65536, 997):
        assert decode_all(coding, data, chunk, max_ratio=1000.0) == page


@pytest.mark.parametrize("coding", CODINGS)
def test_encoder_streams_decodable_output(coding: str) -> None:
    enc = Encoder(coding)
    parts = [enc.feed(PAGE[i : i + 10000]) for i in range(0, len(PAGE), 10000)]
    # each flushed piece is decodable on its own: the page streams
    assert all(parts)
    body = b"".join(parts) + enc.end()
    assert decode_all(coding, body) == PAGE


def test_raw_deflate_is_accepted_under_deflate() -> None:
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    raw = c.compress(PAGE) + c.flush()
    assert decode_all("deflate", raw) == PAGE


def test_gzip_members_are_concatenated() -> None:
    data = gzip.compress(b"one ") + gzip.compress(b"two")
    assert decode_all("gzip", data) == b"one two"


@pytest.mark.parametrize("coding", CODINGS)
def test_bombs_stop_at_the_cap(coding: str) -> None:
    bomb = compress(coding, b"\0" * (64 << 20))
    with pytest.raises(DecodeError) as info:
        decode_all(coding, bomb, chunk=65536, max_output=8 << 20, max_ratio=1e9)
    assert info.value.reason == "bomb"
    with pytest.raises(DecodeError) as info:
        decode_all(coding, bomb, chunk=65536, max_output=1 << 30, max_ratio=100)
    assert info.value.reason == "bomb"


def test_many_tiny_gzip_members_are_a_bomb() -> None:
    data = gzip.compress(b"") * 5000
    with pytest.raises(DecodeError) as info:
        decode_all("gzip", data)
    assert info.value.reason == "bomb"


@pytest.mark.parametrize("coding", CODINGS)
def test_corrupt_and_truncated_streams(coding: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_all(coding, b"this is not " + coding.encode() + b" at all" * 20)
    assert info.value.reason == "corrupt"
    good = compress(coding, PAGE)
    with pytest.raises(DecodeError):
        decode_all(coding, good[: len(good) // 2])


def test_unknown_coding_is_unsupported() -> None:
    with pytest.raises(DecodeError) as info:
        make_decoder("compress", max_output=1, max_ratio=2)
    assert info.value.reason == "unsupported"


@pytest.mark.parametrize(
    ("value", "codings"),
    [
        (None, []),
        ("gzip", ["gzip"]),
        ("x-gzip", ["gzip"]),
        ("gzip, br", ["gzip", "br"]),
        ("identity", []),
        (" BR ", ["br"]),
    ],
)
def test_parse_content_encoding(value: str | None, codings: list[str]) -> None:
    assert parse_content_encoding(value) == codings


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("gzip, deflate, br, zstd", "gzip, deflate, br, zstd"),
        ("gzip;q=0.5, compress, dcb, dcz, br", "gzip;q=0.5, br"),
        ("identity", "identity"),
        ("compress", None),
        (None, None),
    ],
)
def test_filter_accept_encoding(value: str | None, expected: str | None) -> None:
    assert filter_accept_encoding(value) == expected


def test_client_accepts() -> None:
    assert client_accepts("gzip, br;q=0.9", "br")
    assert not client_accepts("gzip, br;q=0", "br")
    assert client_accepts("*", "zstd")
    assert not client_accepts(None, "gzip")
    assert parse_accept_encoding("gzip;q=bogus") == {"gzip": 0.0}


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(CODINGS), st.binary(max_size=300))
def test_garbage_never_raises_anything_but_decode_error(coding: str, data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_all(coding, data, chunk=17)


def test_random_bytes_in_gzip_header() -> None:
    with pytest.raises(DecodeError):
        decode_all("gzip", b"\x1f\x8b" + os.urandom(100))


def reference_decode(coding: str, body: bytes) -> bytes:
    """What the standard library and the codings' own packages make of a body."""
    if coding == "gzip":
        return gzip.decompress(body)
    if coding == "deflate":
        return zlib.decompress(body)  # checks the zlib header and the Adler-32
    if coding == "br":
        out: bytes = brotli.decompress(body)
        return out
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body), read_across_frames=True) as reader:
        return reader.read()


SPLICED = b"<script>" + b"".join(b"hook(%d, 'src', 'set');" % i for i in range(2000)) + b"</script>"


@pytest.mark.parametrize("coding", CODINGS)
def test_a_spliced_text_decodes_in_place(coding: str) -> None:
    """`splice` puts a text between two of the stream's own pieces from its compressed
    form: every decoder reads prefix + text + rest, the rest repeating the prefix (the
    compressor would refer back across the text if the flush before it did not forbid
    it, and the bytes would decode wrong)."""
    prefix = PAGE[:3000]
    for parts in ((prefix, SPLICED, prefix * 3), (b"", SPLICED, prefix), (prefix, SPLICED, b""), (b"", b"", prefix)):
        enc = Encoder(coding)
        body = enc.feed(parts[0]) + enc.splice(parts[1]) + enc.feed(parts[2]) + enc.end()
        assert reference_decode(coding, body) == b"".join(parts)
        assert _decode(coding, body) == b"".join(parts)


_PIECE = st.binary(max_size=3000) | st.sampled_from([PAGE[:2000], SPLICED[:5000], b"<head>" * 300])


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(CODINGS), st.lists(st.tuples(st.booleans(), _PIECE), max_size=6))
def test_any_mix_of_fed_and_spliced_pieces_decodes_to_their_concatenation(
    coding: str, pieces: list[tuple[bool, bytes]]
) -> None:
    """Pieces fed and spliced in any order, repeated or empty, decode to the pieces one
    after the other, with the reference decoders and ours."""
    enc = Encoder(coding)
    body = b"".join(enc.splice(p) if spliced else enc.feed(p) for spliced, p in pieces) + enc.end()
    want = b"".join(p for _, p in pieces)
    assert reference_decode(coding, body) == want
    assert _decode(coding, body) == want


@pytest.mark.parametrize("coding", ["gzip", "deflate", "zstd"])
def test_a_spliced_text_is_compressed_once_for_every_response(coding: str) -> None:
    """The compressed form of a spliced text is made once and copied into each body
    (compressing the guard's 20 KB again for every page cost 0.25 ms at gzip level 1)."""
    packed = codings._zstd_frame(SPLICED) if coding == "zstd" else codings._deflated(SPLICED)
    for _ in range(2):
        enc = Encoder(coding)
        body = enc.feed(PAGE[:500]) + enc.splice(SPLICED) + enc.feed(PAGE[500:1000]) + enc.end()
        assert packed in body
    assert len(packed) < len(SPLICED) // 5


@pytest.mark.parametrize("coding", CODINGS)
def test_the_guard_spliced_into_a_whole_page_reaches_the_encoder_compressed_once(coding: str) -> None:
    """A whole compressed page that gets the guard: the gate splices it in after the
    `<head>` tag, and the pipeline hands the encoder the page's bytes around it and the
    guard to `splice`; the body decodes to what the uncompressed path gives."""
    same = "window.guard = 1;" * 500 + "</script>"  # what follows the tag (which may carry a nonce)
    head = "<script>" + same
    additions = Additions(head_tag="<script>", head_start=same)
    page = b"<!doctype html><html><head><title>t</title></head><body>" + b"<p>x</p>" * 50 + b"</body></html>"
    plain = HtmlGate(
        GatePlan(Policy(make_catalog())),
        read_consent(None, None),
        page_host="shop.example",
        additions=additions,
    ).feed_whole(page)
    pipeline = _pipeline(coding, additions)
    body = pipeline.finish(compress(coding, page))
    assert pipeline.gate.spliced == (plain.index(head.encode()), b"<script>", same.encode())
    assert reference_decode(coding, body) == plain
    if coding != "br":
        packed = codings._zstd_frame(same.encode()) if coding == "zstd" else codings._deflated(same.encode())
        assert packed in body
    # markup without a separate tag is spliced whole
    pipeline = _pipeline(coding, Additions(head_start=head))
    assert reference_decode(coding, pipeline.finish(compress(coding, page))) == plain
    assert pipeline.gate.spliced == (plain.index(head.encode()), b"", head.encode())


@pytest.mark.parametrize("coding", ["gzip", "deflate", "zstd"])
def test_a_guard_with_each_responses_nonce_is_compressed_once(coding: str) -> None:
    """On a strict-CSP site the guard's tag carries each response's nonce: what follows
    the tag is spliced, so every response copies in the same compressed bytes instead of
    compressing the guard anew (a text per nonce would miss the cache every time)."""
    code = "window.guard = 3;" * 500 + "</script>"
    page = b"<!doctype html><html><head><title>t</title></head><body><p>x</p></body></html>"
    for nonce in ("n0nceA", "n0nceB"):
        head = f'<script nonce="{nonce}">{code}'
        additions = Additions(head_tag=f'<script nonce="{nonce}">', head_start=code)
        pipeline = _pipeline(coding, additions)
        body = pipeline.finish(compress(coding, page))
        plain = _pipeline(coding, additions, encode=False).finish(compress(coding, page))
        assert reference_decode(coding, body) == plain and head.encode() in plain
        packed = codings._zstd_frame(code.encode()) if coding == "zstd" else codings._deflated(code.encode())
        assert packed in body


@pytest.mark.parametrize("start", [b"<!doctype html><html><head>", b"<!doctype html>"], ids=["head", "minified"])
@pytest.mark.parametrize("coding", ["gzip", "deflate", "zstd"])
def test_the_guard_in_a_streamed_page_is_spliced_too(coding: str, start: bytes) -> None:
    """A page that streams (it arrives in pieces): lol-html inserts the guard in the
    output of the piece that holds `<head>` (or the gate before the first element of a
    page without `<html>` and `<head>`), and the pipeline finds its bytes there and
    splices them compressed; the body decodes to what the same pipeline gives without
    re-encoding."""
    same = "window.guard = 2;" * 500 + "</script>"  # what follows the tag (which may carry a nonce)
    head = '<script nonce="n1">' + same
    page = start + b"<title>t</title></head><body>" + b"<p>row</p>\n" * 30000 + b"</body></html>"
    data = compress(coding, page)
    bodies = []
    for encode in (True, False):
        additions = Additions(head_tag='<script nonce="n1">', head_start=same)
        pipeline = _pipeline(coding, additions, encode=encode)
        pieces = [pipeline.feed(data[i : i + 4096]) for i in range(0, len(data), 4096)]
        bodies.append(b"".join(pieces) + pipeline.end())
        assert pipeline.gate.spliced is None  # not the whole-document path
    assert reference_decode(coding, bodies[0]) == bodies[1]
    assert bodies[1].count(head.encode()) == 1 and bodies[1].index(head.encode()) == len(start)
    packed = codings._zstd_frame(same.encode()) if coding == "zstd" else codings._deflated(same.encode())
    assert packed in bodies[0]


# --------------------------------------------------------------------------- decode → gate → encode


def _pipeline(coding: str, additions: Additions | None = None, *, encode: bool = True) -> BodyPipeline:
    return BodyPipeline(
        gate=HtmlGate(
            GatePlan(Policy(make_catalog())),
            read_consent(None, None),
            page_host="shop.example",
            additions=additions or Additions(),
        ),
        decode=coding,
        encode=coding if encode else None,
        max_output=1 << 30,
        max_ratio=1000.0,
        gzip_level=1,
        brotli_quality=4,
        zstd_level=3,
        report_only=False,
    )


def _decode(coding: str, data: bytes) -> bytes:
    return decode_all(coding, data, max_ratio=1000.0)


@pytest.mark.parametrize("coding", CODINGS)
@pytest.mark.parametrize("paragraphs", [10, 20000], ids=["one-pass", "past-one-pass"])
def test_a_whole_body_in_one_step_gives_what_streaming_gives(coding: str, paragraphs: int) -> None:
    """`finish` on a complete compressed body: one gate pass over the document when it is
    small enough (`WHOLE_DOCUMENT_MAX`), piece by piece past that; the page either way."""
    filler = b"".join(b"<p><a href='/a/%d'>shopping %d</a></p>\n" % (i, i) for i in range(paragraphs))
    page = (
        b"<html><head><script src='https://connect.facebook.net/x.js'></script></head><body>"
        + filler
        + b"<a href=/x PING='https://analytics.tiktok.com/p'>x</a>"
        + filler
        + b"</body></html>"
    )
    assert (len(page) > WHOLE_DOCUMENT_MAX) is (paragraphs > 10)
    body = compress(coding, page)
    streamed = _pipeline(coding)
    pieces = [streamed.feed(body[i : i + 997]) for i in range(0, len(body), 997)]
    expected = _decode(coding, b"".join(pieces) + streamed.end())
    assert b"facebook" not in expected and b"tiktok" not in expected and b"shopping" in expected
    assert _decode(coding, _pipeline(coding).finish(body)) == expected
