"""Transport: what the browser takes a response to be, and how the body start decides it.

Pure tables for `proxy.core.mime` (Content-Type as Chromium reads it, nosniff,
sniffing), `proxy.core.encoding_labels` (the Encoding Standard's label table),
`proxy.core.charset` (BOM, header, XML declaration, meta prescan, default), and the
body stages `proxy.html.start.DocumentStart` and `proxy.html.xmlgate.XmlGate`, each
fed whole and split at every offset. The browser's own verdict on the same bytes is
checked in tests/e2e/test_transport.py.
"""

from __future__ import annotations

import json
import subprocess
import weakref
from collections.abc import Callable
from pathlib import Path

import pytest

from proxy.core.catalog import make_catalog
from proxy.core.charset import Charset, prescan_meta, resolve_charset
from proxy.core.consent import read_consent
from proxy.core.encoding_labels import ENCODINGS, LABELS, encoding_for_label
from proxy.core.mime import ContentType, nosniff, resolve_content_type, sniff, split_values
from proxy.core.policy import Kind, Policy
from proxy.html.gate import GatePlan, HtmlGate
from proxy.html.start import DocumentStart, NotAPage, StartOutcome
from proxy.html.xmlgate import XmlGate

POLICY = Policy(make_catalog())
NONE = read_consent(None, None)

# ------------------------------------------------------------------- Content-Type

CONTENT_TYPES: list[tuple[list[str], tuple[str, str | None]]] = [
    (["text/html"], ("text/html", None)),
    (["Text/HTML; Charset=UTF-8"], ("text/html", "utf-8")),
    # two lines, or a list: the last valid type wins
    (["text/plain", "text/html"], ("text/html", None)),
    (["text/html", "text/plain"], ("text/plain", None)),
    (["text/plain, text/html"], ("text/html", None)),
    (["text/html, */*"], ("text/html", None)),
    (["*/*", "text/html"], ("text/html", None)),
    (["text/html", "garbage"], ("text/html", None)),
    (["text/html", ""], ("text/html", None)),
    # a comma inside a quoted parameter does not split
    (['text/html; x="a,text/plain"'], ("text/html", None)),
    (['text/plain; x="a,text/html"'], ("text/plain", None)),
    # the charset of a type stays when the same type follows without one
    (["text/html; charset=utf-16, text/html"], ("text/html", "utf-16")),
    (["text/html; charset=utf-16, text/plain"], ("text/plain", None)),
    (["text/plain; charset=x", "text/html; charset=utf-8"], ("text/html", "utf-8")),
    # a charset inside a quoted parameter is not the charset
    (['text/html; foo="; charset=utf-16"'], ("text/html", None)),
    (['text/html; foo="bar; charset=utf-8"; charset=utf-16'], ("text/html", "utf-16")),
    (['text/html; charset="utf-16"'], ("text/html", "utf-16")),
    (["text/html; charset=utf-16; charset=utf-8"], ("text/html", "utf-16")),
    (["text/html;charset= utf-16 "], ("text/html", "utf-16")),
    (["text/html/x"], ("text/html/x", None)),
    (["html"], ("", None)),
    ([""], ("", None)),
    (["application/xhtml+xml"], ("application/xhtml+xml", None)),
]


@pytest.mark.parametrize(("lines", "expected"), CONTENT_TYPES)
def test_resolve_content_type(lines: list[str], expected: tuple[str, str | None]) -> None:
    got = resolve_content_type(lines)
    assert (got.essence, got.charset) == expected


def test_kinds_and_serialisation() -> None:
    assert resolve_content_type(["unknown/unknown"]).unknown and resolve_content_type(["html"]).unknown
    assert resolve_content_type(["*/*"]).unknown and not resolve_content_type(["text/plain"]).unknown
    for xml in ("text/xml", "application/xml", "text/xsl", "image/svg+xml", "application/xhtml+xml"):
        assert resolve_content_type([xml]).xml
    assert ContentType("text/html", "utf-8", 2).serialise() == "text/html; charset=utf-8"
    assert ContentType("text/html", 'a "b"', 2).serialise() == 'text/html; charset="a \\"b\\""'
    assert ContentType("", None, 2).serialise() is None
    assert split_values(['a, "b,c", d', "e"]) == ["a", '"b,c"', "d", "e"]


@pytest.mark.parametrize(
    ("lines", "blocked"),
    [
        (["nosniff"], True),
        ([" NoSniff "], True),
        (["nosniff", "nosniff"], True),
        (["nosniff, foo"], True),
        (["foo, nosniff"], False),
        ([], False),
        ([""], False),
    ],
)
def test_nosniff(lines: list[str], blocked: bool) -> None:
    assert nosniff(lines) is blocked


SNIFFS: list[tuple[bytes, bool, str | None]] = [
    (b"<!DOCTYPE html><p>", True, "html"),
    (b"  \n\t\x0b\x0c<HTML>", True, "html"),
    (b"<abbr>x", True, "html"),
    (b"<pre>x", True, "html"),
    (b"<!-- c -->", True, "html"),
    (b"<?xml version='1.0'?><r/>", True, "xml"),
    (b"<img src=x>", True, "other"),
    (b"hello <html>", True, "other"),
    (b" " * 600 + b"<html>", True, "other"),
    (b" " * 500 + b"<html>", True, "html"),
    (b"\xef\xbb\xbf<html>", True, "other"),
    (b"GIF89a", True, "other"),
    (b"  ", False, None),
    (b"<scr", False, None),
    (b"<scr", True, "other"),
    (b"<img", False, "other"),
]


@pytest.mark.parametrize(("prefix", "complete", "expected"), SNIFFS)
def test_sniff(prefix: bytes, complete: bool, expected: str | None) -> None:
    assert sniff(prefix, complete) == expected


# ------------------------------------------------------------------------ labels


def test_every_label_of_the_encoding_standard() -> None:
    """The whole table of https://encoding.spec.whatwg.org/encodings.json: 228 labels,
    40 encodings; lookups ignore case and surrounding ASCII whitespace."""
    assert len(LABELS) == 228 and len(ENCODINGS) == 40
    for label, encoding in LABELS.items():
        assert encoding_for_label(f" \t{label.upper()}\n") == encoding
    assert encoding_for_label("utf-7") is None and encoding_for_label("") is None


UTF16_LABELS = {
    "unicode": "UTF-16LE",
    "unicodefeff": "UTF-16LE",
    "csunicode": "UTF-16LE",
    "iso-10646-ucs-2": "UTF-16LE",
    "ucs-2": "UTF-16LE",
    "utf-16": "UTF-16LE",
    "utf-16le": "UTF-16LE",
    "unicodefffe": "UTF-16BE",
    "utf-16be": "UTF-16BE",
}


def test_utf16_labels_are_all_there() -> None:
    assert {label: enc for label, enc in LABELS.items() if enc.startswith("UTF-16")} == UTF16_LABELS


ENCODING_JSON = Path("/work/.mirror/whatwg+encoding/repo")


@pytest.mark.skipif(not ENCODING_JSON.exists(), reason="the whatwg/encoding mirror is not on this machine")
def test_label_table_matches_the_standards_json() -> None:
    raw = subprocess.run(
        ["git", "-C", str(ENCODING_JSON), "show", "HEAD:encodings.json"], capture_output=True, check=True
    ).stdout
    table = {label: e["name"] for group in json.loads(raw) for e in group["encodings"] for label in e["labels"]}
    assert dict(LABELS) == table


# ---------------------------------------------------------------------- charsets

CHARSETS: list[tuple[str | None, bytes, bool, Charset | None]] = [
    # header label, body start, complete -> decision
    ("utf-8", b"<html>", False, Charset("UTF-8", "header")),
    ("Unicode", b"<\x00h\x00", False, Charset("UTF-16LE", "header")),
    ("unicodefffe", b"\x00<", False, Charset("UTF-16BE", "header")),
    ("iso-2022-jp", b"<html>", False, Charset("ISO-2022-JP", "header")),
    ("iso-2022-kr", b"<html>", False, Charset("replacement", "header")),
    # a byte order mark beats the header
    ("windows-1252", b"\xff\xfe<\x00", False, Charset("UTF-16LE", "bom", 2)),
    ("utf-16", b"\xef\xbb\xbf<html>", False, Charset("UTF-8", "bom", 3)),
    ("utf-8", b"\xfe\xff\x00<", False, Charset("UTF-16BE", "bom", 2)),
    (None, b"\xef\xbb", False, None),
    # an unknown header label is ignored
    ("bogus", b"<meta charset=shift_jis>", False, Charset("Shift_JIS", "meta")),
    # the meta prescan: UTF-16 means UTF-8, x-user-defined means windows-1252
    (None, b"<meta charset=utf-16>", False, Charset("UTF-8", "meta")),
    (None, b"<meta charset='x-user-defined'>", False, Charset("windows-1252", "meta")),
    (
        None,
        b'<meta http-equiv="Content-Type" content="text/html; charset=iso-2022-jp">',
        False,
        Charset("ISO-2022-JP", "meta"),
    ),
    (None, b'<meta content="text/html; charset=euc-jp">x' + b" " * 1100, True, Charset("windows-1252", "default")),
    (None, b"<meta charset=nonsense><meta charset=big5>", False, Charset("Big5", "meta")),
    # an XML declaration, then the meta
    (None, b'<?xml version="1.0" encoding="shift_jis"?><html>', True, Charset("Shift_JIS", "xml")),
    (None, b'<?xml version="1.0" encoding="utf-16"?><meta charset=koi8-r>', True, Charset("KOI8-R", "meta")),
    (None, b"<\x00?\x00x\x00m\x00l\x00", False, Charset("UTF-16LE", "xml")),
    (None, b"\x00<\x00?\x00x\x00m", False, Charset("UTF-16BE", "xml")),
    (None, b"<html><head>", False, None),
    (None, b"<html><head>", True, Charset("windows-1252", "default")),
]


@pytest.mark.parametrize(("label", "prefix", "complete", "expected"), CHARSETS)
def test_resolve_charset(label: str | None, prefix: bytes, complete: bool, expected: Charset | None) -> None:
    assert resolve_charset(label, prefix, complete, default="windows-1252") == expected


def test_xml_documents_default_to_utf8_and_skip_the_meta() -> None:
    got = resolve_charset(None, b"<svg><meta charset=big5/></svg>", True, default="windows-1252", html_page=False)
    assert got == Charset("UTF-8", "default")


PRESCANS: list[tuple[bytes, bool, str | None]] = [
    (b"<!doctype html><html><head><title>x</title><meta charset=utf-8>", False, "UTF-8"),
    # tag-like text inside title, script, style, textarea, comments is not a meta
    (b"<head><title><meta charset=big5></title><meta charset=gbk>", False, "GBK"),
    (b"<script>'<meta charset=big5>'</script><meta charset=gbk>", False, "GBK"),
    (b"<style>/*<meta charset=big5>*/</style><meta charset=gbk>", False, "GBK"),
    (b"<!-- <meta charset=big5> --><meta charset=gbk>", False, "GBK"),
    (b"<!--><meta charset=gbk>", False, "GBK"),
    # the head goes on as long as it is a head, past 1024 bytes
    (b"<head>" + b"<link rel=a href=b>" * 200 + b"<meta charset=euc-kr>", False, "EUC-KR"),
    # after the head, 1024 bytes and no more
    (b"<body>" + b"x" * 900 + b"<meta charset=euc-kr>", False, "EUC-KR"),
    (b"<body>" + b"x" * 1100 + b"<meta charset=euc-kr>", False, None),
    (b"<p>" + b"<b>x</b>" * 200, False, None),
    # character references in attribute values are decoded
    (b"<meta charset='&#115;hift_jis'>", False, "Shift_JIS"),
    (b"<plaintext><meta charset=big5>", True, None),
    # the one-step start and what it must leave to the full prescan
    (b'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">', False, "UTF-8"),
    (b"<html><head><META CHARSET='Shift_JIS'/>", False, "Shift_JIS"),
    (b"<head><meta charset=nonsense><meta charset=big5>", False, "Big5"),
    (b'<html lang="<meta charset=big5>"><meta charset=gbk>', False, "GBK"),
    (b"<!doctype html><!-- <meta charset=big5> --><meta charset=gbk>", False, "GBK"),
    (b"<html " + b"x" * 1100 + b"><meta charset=big5>", False, "Big5"),
]


@pytest.mark.parametrize(("prefix", "complete", "expected"), PRESCANS)
def test_prescan(prefix: bytes, complete: bool, expected: str | None) -> None:
    assert prescan_meta(prefix, complete) == expected


# -------------------------------------------------------------- DocumentStart


def make_start(kind: str, header_charset: str | None = None, essence: str = "text/html") -> DocumentStart:
    gate = HtmlGate(GatePlan(policy=POLICY), NONE)

    def xml_gate() -> XmlGate:
        return XmlGate(lambda url: POLICY.decide_url(NONE, Kind.HEADER, url, "www.shop.test").keeps)

    return DocumentStart(
        gate, xml_gate, kind=kind, essence=essence, header_charset=header_charset, default_encoding="windows-1252"
    )


def run_start(start: DocumentStart, data: bytes, cut: int | None) -> bytes:
    if cut is None:
        return start.feed_whole(data)
    return start.feed(data[:cut]) + start.feed(data[cut:]) + start.end()


PIXEL = "<img src='https://www.facebook.com/tr?id=1'>"
JIS_COMMENT = b"\x1b$B<!--\x1b(B" + PIXEL.encode() + b"\x1b$B-->\x1b(B"
"""`<!--` and `-->` written in JIS X 0208 mode are two kanji each, not a comment: to
the browser the pixel in between is a real element."""

JIS_TEXT = JIS_COMMENT.replace(PIXEL.encode(), b"")


def jis(data: bytes) -> bytes:
    """What the browser reads from ISO-2022-JP bytes, as UTF-8."""
    return data.decode("iso2022_jp_ext", "replace").encode()


STARTS: list[tuple[str, str, str | None, bytes, bytes, str | None]] = [
    # id, kind, header charset, body -> output, Content-Type to send
    ("utf-8 labelled", "html", "utf-8", f"<p>x{PIXEL}</p>".encode(), b"<p>x</p>", None),
    (
        "meta declared",
        "html",
        None,
        f"<meta charset=utf-8><p>{PIXEL}".encode(),
        b"<meta charset=utf-8><p>",
        "text/html; charset=utf-8",
    ),
    ("undeclared", "html", None, f"<p>{PIXEL}".encode(), b"<p>", "text/html; charset=windows-1252"),
    (
        "utf-16 by label",
        "html",
        "unicode",
        f"<p>{PIXEL}</p>".encode("utf-16-le"),
        b"<p></p>",
        "text/html; charset=utf-8",
    ),
    (
        "utf-16 by mark",
        "html",
        "utf-8",
        f"\ufeff<p>{PIXEL}</p>".encode("utf-16-be"),
        b"<p></p>",
        "text/html; charset=utf-8",
    ),
    (
        "utf-16 by <?x spelling",
        "html",
        None,
        f"<?xml?><p>{PIXEL}".encode("utf-16-le"),
        b"<?xml?><p>",
        "text/html; charset=utf-8",
    ),
    (
        "iso-2022-jp comment trick",
        "html",
        "iso-2022-jp",
        b"<p>" + JIS_COMMENT + b"</p>",
        jis(b"<p>" + JIS_TEXT + b"</p>"),
        "text/html; charset=utf-8",
    ),
    (
        "iso-2022-jp by meta",
        "html",
        None,
        b"<meta charset=iso-2022-jp>" + JIS_COMMENT,
        jis(b"<meta charset=iso-2022-jp>" + JIS_TEXT),
        "text/html; charset=utf-8",
    ),
    ("sniffed html", "sniff", None, f"  <html>{PIXEL}".encode(), b"  <html>", "text/html; charset=windows-1252"),
    (
        "sniffed xml",
        "sniff",
        None,
        b"<?xml version='1.0'?><r/>",
        b"<?xml version='1.0'?><r/>",
        "text/xml; charset=utf-8",
    ),
    ("xml in latin-1", "xml", "iso-8859-1", b"<r>\xe9</r>", "<r>\xe9</r>".encode(), "image/svg+xml; charset=utf-8"),
    ("xml in utf-8", "xml", None, "<r>\xe9</r>".encode(), "<r>\xe9</r>".encode(), None),
]


@pytest.mark.parametrize(
    ("kind", "header_charset", "body", "output", "content_type"), [s[1:] for s in STARTS], ids=[s[0] for s in STARTS]
)
def test_document_start(
    kind: str, header_charset: str | None, body: bytes, output: bytes, content_type: str | None
) -> None:
    essence = "image/svg+xml" if kind == "xml" else "text/html"
    for cut in [None, *range(len(body) + 1)]:
        start = make_start(kind, header_charset, essence)
        got = run_start(start, body, cut)
        assert got == output, cut
        assert start.outcome is not None and start.outcome.content_type == content_type, cut


def test_sniffed_non_page_is_refused_to_the_gate() -> None:
    start = make_start("sniff")
    with pytest.raises(NotAPage):
        start.feed_whole(b"GIF89a\x01\x00")
    start = make_start("sniff")
    assert start.feed(b"  ") == b""
    with pytest.raises(NotAPage):
        start.feed(b"{json}")


def test_the_gate_learns_the_encoding() -> None:
    start = make_start("html", "shift_jis")
    start.feed_whole(b"<p>x</p>")
    assert start.html_gate.page_charset == "Shift_JIS"
    start = make_start("html", "utf-16le")
    start.feed_whole("<p>x</p>".encode("utf-16-le"))
    assert start.html_gate.page_charset == "UTF-8"


# ----------------------------------------------------------------------- XmlGate

X = 'xmlns="http://www.w3.org/1999/xhtml"'
XQ = "xmlns='http://www.w3.org/1999/xhtml'"
FB = "https://www.facebook.com/tr?id=1"
ENTITY_REFRESH = f"<!DOCTYPE html [<!ENTITY r \"<meta {XQ} http-equiv='refresh' content='0;url={FB}'/>\">]>"
XMLS: list[tuple[str, str, str]] = [
    (
        "meta refresh to a tracker",
        f'<html {X}><head><meta http-equiv="refresh" content="0;url={FB}"/></head></html>',
        f'<html {X}><head><meta data-tg-http-equiv="refresh" content="0;url={FB}"/></head></html>',
    ),
    (
        "prefixed meta, attribute order, > in a value",
        f"<h:meta xmlns:h='http://www.w3.org/1999/xhtml' content='0; url={FB}&amp;a>b' http-equiv='Refresh'/>",
        f"<h:meta xmlns:h='http://www.w3.org/1999/xhtml' content='0; url={FB}&amp;a>b' data-tg-http-equiv='Refresh'/>",
    ),
    (
        "first-party refresh stays",
        f'<html {X}><meta http-equiv="refresh" content="5; url=/next"/></html>',
        f'<html {X}><meta http-equiv="refresh" content="5; url=/next"/></html>',
    ),
    (
        "speculation rules",
        f'<html {X}><script type="speculationrules">{{"prefetch":[]}}</script></html>',
        f'<html {X}><script data-tg-type="speculationrules" type="text/plain">{{"prefetch":[]}}</script></html>',
    ),
    (
        "preconnect to a tracker, not to the site",
        f'<html {X}><link rel="preconnect" href="https://connect.facebook.net"/>'
        '<link rel="preconnect" href="/x"/></html>',
        f'<html {X}><link data-tg-rel="preconnect" href="https://connect.facebook.net"/>'
        '<link rel="preconnect" href="/x"/></html>',
    ),
    (
        "two hints to a tracker, the second read after the first edit went out",
        f'<html {X}><link rel="preconnect" href="https://connect.facebook.net"/><p>a</p>'
        '<link rel="dns-prefetch" href="https://connect.facebook.net"/><p>b</p></html>',
        f'<html {X}><link data-tg-rel="preconnect" href="https://connect.facebook.net"/><p>a</p>'
        '<link data-tg-rel="dns-prefetch" href="https://connect.facebook.net"/><p>b</p></html>',
    ),
    (
        "not the XHTML namespace",
        '<svg xmlns="http://www.w3.org/2000/svg"><meta http-equiv="refresh" content="0;url=https://www.facebook.com/"/></svg>',
        '<svg xmlns="http://www.w3.org/2000/svg"><meta http-equiv="refresh" content="0;url=https://www.facebook.com/"/></svg>',
    ),
    (
        "an entity that expands to a refresh loses its reference",
        f"{ENTITY_REFRESH}<html {X}><head>&r;&amp;</head></html>",
        f"{ENTITY_REFRESH}<html {X}><head>&amp;</head></html>",
    ),
    (
        "nothing after a well-formedness error",
        f'<html {X}><p></b><meta http-equiv="refresh" content="0;url={FB}"/></html>',
        f"<html {X}><p>",
    ),
    (
        "undefined entities are not errors",
        f"<html {X}><p>&nbsp;</p></html>",
        f"<html {X}><p>&nbsp;</p></html>",
    ),
]


def keep(url: str) -> bool:
    return POLICY.decide_url(NONE, Kind.HEADER, url, "www.shop.test").keeps


@pytest.mark.parametrize(("document", "expected"), [x[1:] for x in XMLS], ids=[x[0] for x in XMLS])
def test_xml_gate(document: str, expected: str) -> None:
    data = document.encode()
    assert XmlGate(keep).feed_whole(data) == expected.encode()
    for cut in range(len(data) + 1):
        gate = XmlGate(keep)
        assert gate.feed(data[:cut]) + gate.feed(data[cut:]) + gate.end() == expected.encode(), cut


@pytest.mark.usefixtures("collector_off")
def test_an_xml_gate_goes_with_its_last_reference() -> None:
    """No reference cycle (the parser's handler and the gate): a gate left mid-document,
    a client gone, is freed at once, not at the garbage collector's next run."""
    gate = XmlGate(keep)
    gate.feed(b'<html xmlns="http://www.w3.org/1999/xhtml"><head><meta http-equiv="refresh"')
    ref = weakref.ref(gate)
    del gate
    assert ref() is None


# ------------------------------------------------------------ html5lib, from the start


def test_html5lib_corpus_through_the_document_start(testdata: Path, record_count: Callable[[str, int], None]) -> None:
    """Every html5lib input as a `text/html` body with no charset, through
    `DocumentStart` and the gate with nothing to remove, whole and in 7-byte pieces:
    byte-identical, except a document whose own `<meta>` or `<?xml>` names an encoding
    whose bytes are not ASCII (ISO-2022-JP): that one leaves transcoded to UTF-8."""
    from proxy.core.catalog import Catalog
    from proxy.core.policy import UrlRule
    from proxy.html.gate import GateError
    from tests.test_rewrite import html5lib_inputs

    nothing = GatePlan(
        Policy(Catalog([]), rules=[UrlRule("never", hosts=frozenset({"never.invalid"}), category="advertising")])
    )
    identical = transcoded = ambiguous = 0
    for name, data in html5lib_inputs(testdata / "html5lib-tests"):
        outputs = []
        outcome: StartOutcome | None = None
        for cut in (None, 7):
            start = DocumentStart(
                HtmlGate(nothing, NONE),
                lambda: XmlGate(keep),
                kind="html",
                essence="text/html",
                header_charset=None,
                default_encoding="windows-1252",
            )
            try:
                if cut is None:
                    outputs.append(start.feed_whole(data))
                else:
                    outputs.append(
                        b"".join(start.feed(data[i : i + cut]) for i in range(0, len(data), cut)) + start.end()
                    )
            except GateError as exc:
                assert exc.reason == "parse_ambiguity", (name, exc)
                outputs.append(b"<ambiguous>")
            outcome = start.outcome
            assert outcome is not None
        assert outputs[0] == outputs[1] and outcome is not None, name
        encoding = outcome.charset.encoding
        if outputs[0] == b"<ambiguous>":
            ambiguous += 1
        elif encoding == "ISO-2022-JP":
            assert outputs[0] == data.decode("iso2022_jp_ext", "replace").encode(), name
            transcoded += 1
        else:
            assert outputs[0] == data, (name, encoding)
            identical += 1
    assert ambiguous <= 8 and transcoded <= 5, (ambiguous, transcoded)
    record_count("html5lib inputs byte-identical through the document start", identical)
    record_count("html5lib inputs transcoded (their <meta> names ISO-2022-JP)", transcoded)
    record_count("html5lib inputs refused as ambiguous through the document start (fail closed)", ambiguous)
