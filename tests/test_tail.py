"""A whole document's `<img>` left unselected and its tail copied past lol-html
(`proxy.html.reach`, `selection.quiet_images`, `selection.tail_start`): the same bytes
out as gating every byte with every selector, and the browser's reading of where tags
are (`reach.read_to`) checked against lol-html's on the html5lib corpus."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Final

import lolhtml
import pytest

from proxy.core.policy import UrlRule
from proxy.html.gate import GateError, HtmlGate
from proxy.html.needles import ENGINE, Needles
from proxy.html.reach import IMG_REACH, images_quiet, read_to
from proxy.html.run import Additions, Handler
from proxy.html.selection import TAIL_MIN, TAIL_READ, quiet_images
from tests.test_rewrite import NONE, REMOVE, html5lib_inputs, plan

pytestmark = pytest.mark.skipif(ENGINE is None, reason="Hyperscan is not installed: no tail, no quiet images")

HOST: Final = "shop.example"


def tiles(count: int, seed: int = 1) -> bytes:
    """A listing's body: product tiles with plainly relative images, text that only
    looks like code, a link, a price."""
    rng = random.Random(seed)
    return "".join(
        f'<li><a href="/p/{i}"><img src="/img/p{i}.jpg" alt="Item {i}" width="160"></a>'
        f"<span>{rng.randint(5, 500)}.99</span> fbq('track') gtag('event')</li>\n"
        for i in range(count)
    ).encode()


TAIL: Final = b"<ul>" + tiles(400) + b"</ul><footer><p>The end.</p></footer></body></html>\n"
HEAD: Final = (
    b'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Shop</title>\n'
    b'<script async src="https://www.googletagmanager.com/gtag/js?id=G-1"></script>\n'
    b'<noscript><img height=1 width=1 src="https://www.facebook.com/tr?id=1&amp;ev=PageView"></noscript>\n'
    b'<link rel="preconnect" href="https://connect.facebook.net">\n</head><body>\n'
)


def whole(doc: bytes, p: object = REMOVE, additions: Additions | None = None) -> tuple[bytes, HtmlGate]:
    g = HtmlGate(p, NONE, page_host=HOST, **({"additions": additions} if additions else {}))  # type: ignore[arg-type]
    return g.feed_whole(doc), g


def reference(doc: bytes, p: object = REMOVE, additions: Additions | None = None) -> bytes:
    """Every byte through lol-html, every selector (no whole-document choices)."""
    g = HtmlGate(p, NONE, page_host=HOST, adaptive=False, **({"additions": additions} if additions else {}))  # type: ignore[arg-type]
    return g.feed(doc) + g.end()


def tail_through(doc: bytes, label: object) -> int | None:
    """Gate `doc` whole and as the reference: the same bytes (asserted), and how many
    bytes of it were copied past lol-html; None where the reference fails safe."""
    try:
        expected = reference(doc)
    except GateError:
        return None
    out, g = whole(doc)
    assert out == expected, label
    return g.tail_copied


# --------------------------------------------------------------------------- IMG_REACH

REACHING: Final = (
    b'<img src="//bat.bing.com/a">',
    b"<img src=https://bat.bing.com/a>",
    b"<IMG SRC='http:x'>",
    b'<img alt="a > b" src="/ok.png" data-x="y">',  # a quoted `>`: the second branch
    b'<img alt="x"src="//c">',
    b"<img/src=/\\\\evil>",
    b'<img src="/a&#47;/b">',
    b'<img\nsrc\n=\n"/a\tb">',
    b'<img src="/a\nb">',
    b"<img srcset='a.png 1x'>",
    b"<img attributionsrc>",
    b"<img src=/a\rb>",
)
PLAIN: Final = (
    b'<img src="/img/p1.jpg" alt="Item 1" width="160" height="160">',
    b'<img data-src="//cdn.example/a.jpg" src="/a.jpg">',
    b"<img src=/a.png alt='x: y'>",  # `:` outside `src`: the first branch needs `src`
    b"<imgx src=//a>",
    b'<img src="/a.png">//x',
    b"<image src=//a>",  # the `svg` registration's, not `<img>`'s
)


def test_img_reach_matches_every_attribute_the_narrow_compounds_select() -> None:
    needles = Needles([IMG_REACH])
    for tag in REACHING:
        assert needles.present(tag) == {0}, tag
    for tag in PLAIN:
        assert needles.present(tag) == set(), tag


def test_every_reaching_image_keeps_the_img_selector_and_is_gated() -> None:
    for tag in REACHING:
        doc = HEAD + tag + TAIL
        assert not quiet_images(doc), tag
        out, g = whole(doc)
        assert out == reference(doc), tag
        assert len(doc) - g.tail_copied >= doc.index(tag) + len(tag), tag  # lol-html read it


# --------------------------------------------------------------------------- read_to against lol-html

MARK: Final = b'<img src="//bat.bing.com/mark">'


class _Marks(Handler):
    def __init__(self) -> None:
        self.seen = False

    def element(self, e: Any) -> None:
        self.seen = self.seen or "bat.bing.com/mark" in (e.get_attribute("src") or "")


def lol_html_reads_a_tag(doc: bytes) -> bool:
    """Whether lol-html itself (not the gate, whose `<noscript>` handler gates that
    element's text in a nested gate) reads `MARK` as an `<img>` start tag."""
    marks = _Marks()
    rewriter = lolhtml.HTMLRewriter(lambda chunk: None)
    rewriter.on("img", marks)
    try:
        rewriter.write(doc.decode("latin-1").encode("utf-8"))  # the gate's transport
        rewriter.end()
    except RuntimeError:
        return False
    return marks.seen


def test_read_to_finds_tags_where_lol_html_does_on_the_html5lib_corpus(testdata: Path) -> None:
    """Each html5lib input, then an `<img>` lol-html removes if it reads it as a tag: the
    Python reading (`read_to`) says it is a tag exactly where lol-html does, except where
    it gives up (foreign content, `<plaintext>`, escaped script data)."""
    agreed = hidden = gave_up = 0
    for name, data in html5lib_inputs(testdata / "html5lib-tests"):
        if read_to(data, 0, len(data) + 1, images=False) < 0:
            gave_up += 1
            continue
        doc = data + MARK
        ours = read_to(doc, 0, len(data) + 5) < 0
        assert ours == lol_html_reads_a_tag(doc), (name, data[:300])
        agreed += 1
        hidden += not ours
    assert agreed > 8000 and hidden > 500 and gave_up < 3000, (agreed, hidden, gave_up)


def test_read_to_stops_in_the_data_state_after_the_tag_it_is_in() -> None:
    doc = b"<link href=\"/a>b<c\" title='<!--'><p>x</p>"
    assert read_to(doc, 0, 3, images=False) == doc.index(b"<p>")
    doc = b"<script>a<b</script ><p>"
    assert read_to(doc, 0, 1, images=False) == doc.index(b"<p>")  # past the end tag
    assert read_to(b"<!-- <p> --!><p>", 0, 1, images=False) == 13
    assert read_to(b"<!--><p>", 0, 1, images=False) == 5
    assert read_to(b"<title><p></title><p>", 0, 1, images=False) == 18
    assert read_to(b"<script><!--<p></script><p>", 0, 1, images=False) == -1  # escaped: gives up
    assert read_to(b"<svg><p>", 0, 1, images=False) == -1
    assert read_to(b"<noscript><img src=//a></noscript><p>", 0, 12) == 34  # hidden
    assert read_to(b"<p><img src=//a></p>", 0, 5) == -1


def test_images_quiet_reads_past_a_pixel_in_a_noscript() -> None:
    doc = HEAD + TAIL
    needles = Needles([IMG_REACH])

    def next_match(at: int) -> int | None:
        found = needles.ends(memoryview(doc)[at:])
        assert found is not None
        return None if 0 not in found else at + found[0]

    assert images_quiet(doc, next_match)
    assert quiet_images(doc)
    assert not quiet_images(doc.replace(b"<noscript>", b"<div>"))


# --------------------------------------------------------------------------- the tail


def test_a_listing_page_copies_its_tail_and_gates_its_head() -> None:
    doc = HEAD + TAIL
    out, g = whole(doc)
    assert out == reference(doc)
    assert g.tail_copied > len(TAIL) - 100
    assert b"googletagmanager" not in out and b"facebook.com/tr" not in out


@pytest.mark.parametrize(
    "late",
    [
        b'<script src="/app.js"></script>',  # any needle of a registration
        b'<link rel="stylesheet" href="/b.css">',
        b'<p style="background:url(/x.png)">',
        b'<a ping="/p" href="/">',
        b'<img src="https://bat.bing.com/late">',
        b"<!-- <meta name=x> -->",  # conservative: a needle in a comment counts
    ],
)
def test_a_needle_in_the_tail_keeps_the_whole_document_in_lol_html(late: bytes) -> None:
    for at in (100, len(TAIL) // 2, len(TAIL) - 30):
        doc = HEAD + TAIL[:at] + late + TAIL[at:]
        out, g = whole(doc)
        assert out == reference(doc), (late, at)
        assert len(doc) - g.tail_copied >= len(HEAD) + at + len(late), (late, at)  # lol-html read it


def test_an_element_with_content_anywhere_keeps_the_whole_document() -> None:
    elements = (b'<object data="//bat.bing.com/o">', b"<video src=/v.mp4>", b"<audio>", b"<frame src=/f>")
    for element in (*elements, b'<table background="//bat.bing.com/t.gif"><tr><td>x</td></tr></table>'):
        doc = HEAD.replace(b"</head>", element + b"</head>") + TAIL
        out, g = whole(doc)
        assert out == reference(doc) and g.tail_copied == 0, element


def test_the_tail_is_looked_for_only_in_the_documents_start() -> None:
    filler = b"<p>" + b"words " * 4000 + b"</p>\n"  # 24 KB before the last needle
    doc = HEAD.replace(b"<noscript>", filler + b"<noscript>") + TAIL
    assert doc.index(b"</noscript>") > TAIL_READ
    out, g = whole(doc)
    assert out == reference(doc) and g.tail_copied == 0
    short = HEAD + TAIL[: TAIL_MIN // 2] + b"</ul></body></html>"
    out, g = whole(short)
    assert out == reference(short) and g.tail_copied == 0


def test_the_document_end_markup_goes_after_the_copied_tail() -> None:
    additions = Additions(body_end="<script>/*end*/</script>", activation=True)
    doc = HEAD + TAIL
    out, g = whole(doc, additions=additions)
    assert g.tail_copied > 0
    assert out == reference(doc, additions=additions)
    assert out.endswith(b"<script>/*end*/</script>") and out.index(b"/*end*/") > len(doc) - 200


def test_non_ascii_bytes_in_the_tail_go_out_as_they_came() -> None:
    doc = HEAD + TAIL.replace(b"The end.", "Prix : 12 € – à bientôt".encode()) + b"\xff\xfe"
    out, g = whole(doc)
    assert g.tail_copied > 0 and out == reference(doc)


def test_a_rule_on_relative_urls_selects_every_image_and_copies_no_image() -> None:
    relative = plan(rules=[UrlRule("p", path_prefixes=("/img/p3",), category="advertising")])
    doc = HEAD + TAIL
    out, g = whole(doc, relative)
    assert out == reference(doc, relative)
    assert b"/img/p3.jpg" not in out and b"/img/p2.jpg" in out


def test_html5lib_inputs_before_a_long_tail_gate_the_same(testdata: Path) -> None:
    """Each html5lib input as a page's start (every parser state the corpus reaches at
    its end: open comments, raw text, tags cut short, foreign content), a refused
    `<link>` after it, then a tail with no needle: the same bytes out as gating it all,
    and the tail copied where the input ends in the data state."""
    copied = checked = 0
    link = b'<link rel="stylesheet" href="https://bat.bing.com/s.css" title="a>b">'
    for name, data in html5lib_inputs(testdata / "html5lib-tests"):
        if b"<base" in data.lower():
            continue
        tail = tail_through(data + link + TAIL, (name, data[:300]))
        if tail is None:
            continue
        copied += tail > 0
        checked += 1
    assert checked > 8000 and copied > 4000, (checked, copied)


PIECES: Final = (
    b"<!-- <script src=//bat.bing.com/c.js></script> -->",
    b"<!-- a --!><p>",
    b"<!--><p>",
    b"<!--->",
    b"<!-- <!-- -- > -->",
    b"<!DOCTYPE html>",
    b"<!x <img src=//bat.bing.com/b>",
    b"<?php echo 1 ?>",
    b"</ x>",
    b"</>",
    b"< p>",
    b"<script>var a = '</scr' + 'ipt>'; if (a<b) {}</script>",
    b"<script>document.write('<img src=//bat.bing.com/w>')</script >",
    b"<SCRIPT type=text/plain>x</script\t>",
    b"<script><!-- if (a) {} --></script>",  # escaped script data: `read_to` gives up
    b'<script src="https://connect.facebook.net/en_US/fbevents.js"></script>',
    b'<noscript><img src="https://www.facebook.com/tr?id=1&amp;ev=P"></noscript>',
    b"<noscript>x</noscript/>",
    b"<title><img src=//bat.bing.com/t></title>",
    b"<textarea></textarea ><p>",
    b"<style>a{b:url(//bat.bing.com/s.png)}</style>",
    b"<xmp><iframe src=//www.youtube.com/embed/x></xmp>",
    b"<iframe srcdoc='<img src=//bat.bing.com/i>'></iframe>",
    b'<meta name="x" content="a>b<c">',
    b"<link rel=preconnect href=https://connect.facebook.net title='x>y'>",
    b'<a href="/x" title="<script>">y</a>',
    b"<img src=/a.png alt='a > b'>",
    b'<img src="/b.png"alt=x>',
    b"<img/src=/c.png>",
    b'<div data-x="</noscript><img src=//bat.bing.com/d>">',
    b"<p>a < b & c > d</p>",
    b"\n",
    b"<br/>",
)


def test_random_heads_before_a_long_tail_gate_the_same() -> None:
    """Heads drawn from markup whose reading is easy to get wrong (comments, raw text,
    end tags that are not, quoted `>` and `<`, a `<noscript>` pixel), then a refused
    `<link>` and a tail: the same bytes out as gating every byte, and the tail copied
    in most of them."""
    rng = random.Random(17)
    link = b'<link rel="stylesheet" href="https://bat.bing.com/s.css">'
    copied = 0
    for i in range(1500):
        head = b"".join(rng.choice(PIECES) for _ in range(rng.randint(1, 12)))
        copied += (tail_through(head + link + TAIL, (i, head)) or 0) > 0
    assert 900 < copied < 1500, copied  # not where a head holds escaped script data
