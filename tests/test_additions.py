"""Markup tag-gate adds to a gated page (`proxy.html.run.Additions`): where it goes, that
it goes once, that it is not itself gated, and that nested documents and report-only
pages never get it. Every case also split at every offset: the output never changes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from proxy.core.config import make_policy
from proxy.core.consent import DEFAULT_SETTINGS, read_consent
from proxy.html.gate import Additions, GateError, GatePlan, HtmlGate
from proxy.html.prologue import first_element_spot, head_start_spot
from tests.test_rewrite import html5lib_inputs

HEAD = '<script nonce="n">/*guard*/</script>'
END = '<div id="banner"></div>'
PLAN = GatePlan(policy=make_policy(None))
NONE = read_consent(None, None, DEFAULT_SETTINGS)


def gate(page: str, additions: Additions, *, report_only: bool = False, step: int = 0) -> str:
    """`step` > 0: fed in pieces of that size; 0: in one `feed`; -1: `feed_whole` (which
    splices the head-start addition in after gating when `head_start_spot` finds where)."""
    g = HtmlGate(PLAN, NONE, page_host="shop.example", report_only=report_only, additions=additions)
    data = page.encode()
    if step < 0:
        return g.feed_whole(data).decode()
    if step > 0:
        out = b"".join(g.feed(data[i : i + step]) for i in range(0, len(data), step)) + g.end()
    else:
        out = g.feed(data) + g.end()
    return out.decode()


CASES = [
    (
        "<!doctype html><html><head><title>t</title></head><body>x</body></html>",
        f"<!doctype html><html><head>{HEAD}<title>t</title></head><body>x</body></html>{END}",
    ),
    (
        # inside the page's <head>: a script between <html> and <head> would make the
        # parser invent a head and drop the page's (its id and prefix with it)
        '<html lang=en>\n<!-- c --> <head id="Head1" prefix="og: x"><title>t</title>',
        f'<html lang=en>\n<!-- c --> <head id="Head1" prefix="og: x">{HEAD}<title>t</title>{END}',
    ),
    # an <html> without a <head>: before its first element
    ("<html>\n<meta charset=utf-8><title>t</title>", f"<html>\n{HEAD}<meta charset=utf-8><title>t</title>{END}"),
    ("<html><body><p>x", f"<html>{HEAD}<body><p>x{END}"),
    (
        "<head><script src=/app.js></script></head><body>x</body>",
        f"<head>{HEAD}<script src=/app.js></script></head><body>x</body>{END}",
    ),
    ("<!-- c --><script src=/first.js></script><p>x", f"<!-- c -->{HEAD}<script src=/first.js></script><p>x{END}"),
    # neither <html> nor <head> (a minified page): before the first element, where the
    # parser makes the head; with or without a script of the page's own
    ("<p>no script at all</p>", f"{HEAD}<p>no script at all</p>{END}"),
    (
        "<!doctype html>\n<!-- c --><meta charset=utf-8><title>t</title><img src=x onerror=f()>",
        f"<!doctype html>\n<!-- c -->{HEAD}<meta charset=utf-8><title>t</title><img src=x onerror=f()>{END}",
    ),
    ("<body onload=f()>x", f"{HEAD}<body onload=f()>x{END}"),
    ("\ufeff <svg onload=f()></svg>", f"\ufeff {HEAD}<svg onload=f()></svg>{END}"),
    ('<meta content="a>b" name=x><p>', f'{HEAD}<meta content="a>b" name=x><p>{END}'),
    # text first: before the first script, as before
    ("x<p>y</p><script src=/a.js></script>", f"x<p>y</p>{HEAD}<script src=/a.js></script>{END}"),
    ("<html lang=en><HEAD><script>var a=1</script>", f"<html lang=en><HEAD>{HEAD}<script>var a=1</script>{END}"),
    ("<html><script src=/a.js></script><head>", f"<html>{HEAD}<script src=/a.js></script><head>{END}"),
    (
        # the first element, a <noscript>: before it, where the parser makes the head
        "<noscript><script src=/x.js></script></noscript><script src=/y.js></script>",
        f"{HEAD}<noscript><script src=/x.js></script></noscript><script src=/y.js></script>{END}",
    ),
    (
        # text first, then a <noscript>, whose content never runs where scripts do: the
        # first script that runs is /y.js
        "x<noscript><script src=/x.js></script></noscript><script src=/y.js></script>",
        f"x<noscript><script src=/x.js></script></noscript>{HEAD}<script src=/y.js></script>{END}",
    ),
]


@pytest.mark.parametrize(("page", "expected"), CASES)
@pytest.mark.parametrize("step", [-1, 0, 1, 7])
def test_additions_go_in_once_at_their_place(page: str, expected: str, step: int) -> None:
    assert gate(page, Additions(head_start=HEAD, body_end=END), step=step) == expected


def test_added_markup_is_not_gated_itself() -> None:
    tracker = '<script src="https://connect.facebook.net/en_US/fbevents.js"></script>'
    page = "<html><head></head><body></body></html>"
    out = gate(page, Additions(head_start=tracker, body_end=tracker))
    assert out.count("fbevents.js") == 2


def test_report_only_pages_get_nothing_added() -> None:
    page = "<html><head></head><body><script src=/a.js></script></body></html>"
    for step in (-1, 0):
        assert gate(page, Additions(head_start=HEAD, body_end=END), report_only=True, step=step) == page


# --------------------------------------------------------------------------- head start spliced into a whole page

SPOTS = [
    # (prologue, how much of it is read up to where the guard goes)
    ("<html>", None),  # no element yet: the guard's place is not known
    ("<html><head>", "<html><head>"),
    ("<!doctype html><html lang=en>\n <head>", "<!doctype html><html lang=en>\n <head>"),
    ("<html>\n<!-- x --><HEAD id=h>x", "<html>\n<!-- x --><HEAD id=h>"),
    ("<html><meta charset=utf-8>", "<html>"),  # before the first element of a head-less <html>
    ("<html> <!--c--> <my-app a=b>", "<html> <!--c--> "),
    ("<html><header>", "<html>"),  # not <head>
    ("<html><meta", None),  # an unfinished tag
    ("<html><html lang=en>", None),
    ("<html><o:p>", None),
    ("<html>text<head>", None),
    ("<html><!doctype html><head>", None),
    (
        '\ufeff<!DOCTYPE html PUBLIC "-//W3C//DTD HTML 4.01//EN"><HEAD>x',
        '\ufeff<!DOCTYPE html PUBLIC "-//W3C//DTD HTML 4.01//EN"><HEAD>',
    ),
    ('<!DOCTYPE html PUBLIC "a>b"><head>', None),  # a DOCTYPE ends at its first >: text follows
    ("  \n\t<!-- c --> <!--x--!><html><head>", "  \n\t<!-- c --> <!--x--!><html><head>"),
    ("<!-- a --!><html>--><head>", None),  # the first of the two closings: text after <html>
    ("<!--><html><head>", "<!--><html><head>"),  # abrupt comment closings: <!--> and <!---> are whole comments
    ("<!---><head>", "<!---><head>"),
    ("<!-- <html> --><head  a = 'x>y'  b=\"\" c=d/>x", "<!-- <html> --><head  a = 'x>y'  b=\"\" c=d/>"),
    ('<html\x0cdata-x="1"\n><head>', '<html\x0cdata-x="1"\n><head>'),
    ("<header>", ""),  # not <head>: the first element of a document without <html> or <head>
    ("<!doctype html><meta charset=utf-8>", "<!doctype html>"),
    ("<!-- c --> <BODY onload=f()>", "<!-- c --> "),
    ("<o:p>", None),
    ("x<html>", None),  # text first
    ('<html a"b><head>', None),  # a quote the tokenizer reads as part of a name
    ("<html ='a>b'><head>", None),  # `=` starting a name
    ("<html/ lang=en><head>", None),
    ("<html a=b'c><head>", None),  # a quote in an unquoted value
    ("<!-- never closed <html>", None),
    ("<script></script><html>", ""),
    ("<?xml version='1.0'?><html>", None),
    ("", None),
]


@pytest.mark.parametrize(("prologue", "read"), SPOTS)
def test_head_start_spot_reads_the_prologue_as_the_tokenizer_does(prologue: str, read: str | None) -> None:
    assert head_start_spot(prologue.encode()) == (-1 if read is None else len(read.encode()))


def test_head_start_spot_reads_a_bounded_prologue_in_one_pass() -> None:
    """Up to 128 whitespace runs, comments and DOCTYPEs; a longer prologue, or one whose
    comment never closes, is -1 without reading it again for every way to split it."""
    assert head_start_spot(b"<!---->" * 128 + b"<head>") == 7 * 128 + 6
    assert head_start_spot(b"<!---->" * 129 + b"<head>") == -1
    assert head_start_spot(b"<html>" + b"<!---->" * 128 + b"<head>") == 6 + 7 * 128 + 6
    assert head_start_spot(b"<html>" + b"<!---->" * 129 + b"<head>") == -1
    assert head_start_spot(b"<!-- -->" * 100_000 + b"x") == -1
    assert head_start_spot(b"<!--" + b"-- >" * 100_000 + b"<html>") == -1


@pytest.mark.parametrize(("prologue", "read"), SPOTS)
def test_a_whole_page_gets_the_head_start_where_a_streamed_one_does(prologue: str, read: str | None) -> None:
    page = prologue + "<title>t</title><script src=https://connect.facebook.net/x.js></script><p>x"
    additions = Additions(head_start=HEAD, body_end=END)
    assert gate(page, additions, step=-1) == gate(page, additions, step=0)


def test_a_handler_that_changes_the_top_tag_keeps_the_lol_html_insertion() -> None:
    """The splice checks that the gate left the prologue as it came; an `<html style>` the
    inline-style gate rewrites sends the page the lol-html way."""
    plan = GatePlan(policy=make_policy(None), inline_styles=True)
    page = b'<html style="background:url(https://bat.bing.com/a.gif)"><head></head><body>x'
    additions = Additions(head_start=HEAD)
    whole = HtmlGate(plan, NONE, page_host="shop.example", additions=additions).feed_whole(page)
    streamed = HtmlGate(plan, NONE, page_host="shop.example", additions=additions)
    assert whole == streamed.feed(page) + streamed.end()
    assert whole.count(HEAD.encode()) == 1 and b"bat.bing.com" not in whole


def test_html5lib_corpus_gets_the_head_start_alike_whole_and_streamed(testdata: Path) -> None:
    """Each html5lib tokenizer input inside a prologue (as a comment, a DOCTYPE, the
    attributes of `<html>`), so that `head_start_spot` meets every oddity the tokenizer
    tests hold: whole and streamed pages are the same, and most take the splice."""
    additions = Additions(head_start=HEAD, body_end=END)
    spliced = checked = 0
    for name, data in html5lib_inputs(testdata / "html5lib-tests"):
        for doc in (
            data,
            b"<html>" + data,
            b"<!--" + data + b"--><html><head>x",
            b"<html>\n<!--" + data + b"--><p>x",
            b"<!--" + data + b"--!><html>--><head>x",
            b"<!doctype " + data + b"><head>x",
            b"<html " + data + b"><head>x",
            b"<head " + data + b"/><p>x",
        ):
            streamed = HtmlGate(PLAN, NONE, page_host="shop.example", additions=additions)
            try:
                expected = streamed.feed(doc) + streamed.end()
            except GateError:
                continue
            whole = HtmlGate(PLAN, NONE, page_host="shop.example", additions=additions).feed_whole(doc)
            assert whole == expected, (name, doc[:200])
            checked += 1
            spliced += head_start_spot(doc) >= 0
    assert checked > 10000 and spliced > checked // 3, (checked, spliced)


def _answers_on_every_cut(doc: bytes) -> None:
    """`first_element_spot` on each prefix of `doc` is None (not known yet) or what it says
    of the whole, which is `head_start_spot`'s answer when that is before an element."""
    whole = first_element_spot(doc, True)
    assert whole in (-1, head_start_spot(doc)), doc
    if whole >= 0:
        assert doc[whole : whole + 1] == b"<" and not re.match(rb"<(html|head)[\t\n\f\r />]", doc[whole:], re.I), doc
    for cut in range(len(doc) + 1):
        assert first_element_spot(doc[:cut], False) in (None, whole), (doc, cut)


@pytest.mark.parametrize(("prologue", "read"), SPOTS)
def test_a_streamed_page_learns_the_first_element_as_a_whole_page_reads_it(prologue: str, read: str | None) -> None:
    _answers_on_every_cut((prologue + "<title>t</title><p>x").encode())
    _answers_on_every_cut(prologue.encode())


def test_streamed_and_whole_pages_without_html_or_head_get_the_guard_at_one_place(testdata: Path) -> None:
    """The html5lib tokenizer inputs as the prologue of a page without `<html>` or
    `<head>`: each cut of the stream answers as the whole does, and a page fed in 7-byte
    pieces comes out as the whole page does."""
    additions = Additions(head_start=HEAD, body_end=END)
    placed = 0
    for _name, data in html5lib_inputs(testdata / "html5lib-tests"):
        for doc in (b"<!--" + data[:200] + b"--><meta charset=utf-8><p>x", b"<!doctype " + data[:200] + b"><p>x"):
            _answers_on_every_cut(doc)
            whole = HtmlGate(PLAN, NONE, page_host="shop.example", additions=additions)
            streamed = HtmlGate(PLAN, NONE, page_host="shop.example", additions=additions)
            try:
                expected = whole.feed_whole(doc)
            except GateError:
                continue
            out = b"".join(streamed.feed(doc[i : i + 7]) for i in range(0, len(doc), 7)) + streamed.end()
            assert out == expected, doc
            placed += 0 <= out.find(HEAD.encode()) < out.find(b"<p>x")  # before the first element, not the fallback
    assert placed > 1000, placed


def test_no_additions_means_the_page_is_unchanged() -> None:
    page = "<html><head><script src=/a.js></script></head><body>x</body></html>"
    assert gate(page, Additions()) == page


# --------------------------------------------------------------------------- head end, page language

TAGS = '<script nonce="n" data-tg-tag="t">/*managed*/</script>'
HEAD_END_CASES = [
    (
        "<!doctype html><html><head><title>t</title></head><body>x</body></html>",
        f"<!doctype html><html><head><title>t</title></head>{TAGS}<body>x</body></html>",
    ),
    # no </head>: the parser still puts a script before <body> at the end of the head
    ("<html><head><title>t</title><body class=a>x", f"<html><head><title>t</title>{TAGS}<body class=a>x"),
    # no <body> tag at all: at the document end, before the rest of what is added there
    ("<title>t</title><p>x", f"<title>t</title><p>x{TAGS}"),
    # the first <body> only; a "<body" inside a script or a comment is not a tag
    (
        "<head><script>var s='<body>'</script><!-- <body> --></head><BODY>a<body>b",
        f"<head><script>var s='<body>'</script><!-- <body> --></head>{TAGS}<BODY>a<body>b",
    ),
]


@pytest.mark.parametrize(("page", "expected"), HEAD_END_CASES)
@pytest.mark.parametrize("step", [0, 1, 5])
def test_head_end_goes_in_once_before_the_body(page: str, expected: str, step: int) -> None:
    assert gate(page, Additions(head_end=TAGS), step=step) == expected


def test_order_of_every_slot() -> None:
    page = "<html><head></head><body><p>x</p></body></html>"
    out = gate(page, Additions(head_start=HEAD, head_end=TAGS, body_end=END, localised=lambda lang: "[banner]"))
    assert out == f"<html><head>{HEAD}</head>{TAGS}<body><p>x</p></body></html>[banner]{END}"


@pytest.mark.parametrize(
    ("page", "lang"),
    [
        ('<html lang="fr-CA"><body>x', "fr-CA"),
        ("<!doctype html><HTML LANG=de><p>x", "de"),
        ("<html><body>x", None),
        ('<html lang=" "><body>x', None),
        ("<p>no html tag", None),
        # only the first <html> start tag names the page's language
        ('<html lang="nl"><body><html lang="en">x', "nl"),
    ],
)
@pytest.mark.parametrize("step", [0, 1])
def test_page_language_reaches_the_localised_markup(page: str, lang: str | None, step: int) -> None:
    seen: list[str | None] = []

    def localised(value: str | None) -> str:
        seen.append(value)
        return f"<i>{value}</i>"

    out = gate(page, Additions(localised=localised), step=step)
    assert seen == [lang] and out == f"{page}<i>{lang}</i>"


def test_activation_for_added_deferred_markup() -> None:
    page = "<html><body>x</body></html>"
    out = gate(page, Additions(body_end=END, activation=True))
    assert out == f'{page}<script src="/__tag-gate/activate.js" defer></script>{END}'
    assert gate(page, Additions(body_end=END)) == f"{page}{END}", "no activate.js when nothing needs it"
    assert gate(page, Additions(body_end=END, activation=True), report_only=True) == page


def test_report_only_and_nested_documents_get_no_head_end_or_language_markup() -> None:
    page = "<html lang=en><head></head><body><noscript><body><p>x</p></noscript></body></html>"
    additions = Additions(head_end=TAGS, localised=lambda lang: "[banner]")
    assert gate(page, additions, report_only=True) == page
    out = gate(page, additions)
    assert out.count(TAGS) == 1 and out.count("[banner]") == 1


# --------------------------------------------------------------------------- frames of the markup

FRAMES = "<script>F()</script>"
FRAME_CASES = [
    # (page body, expected): the frames whose document the page reaches without a navigation
    ("<iframe name=a></iframe><p>x", f"<iframe name=a></iframe>{FRAMES}<p>x"),
    ('<iframe src="about:blank"></iframe>', f'<iframe src="about:blank"></iframe>{FRAMES}'),
    ('<IFRAME SRC=" About:Blank#x "></IFRAME>', f'<IFRAME SRC=" About:Blank#x "></IFRAME>{FRAMES}'),
    ('<iframe src="/same-site/page"></iframe>', '<iframe src="/same-site/page"></iframe>'),
    ('<iframe src="https://cdn.example/x"></iframe>', '<iframe src="https://cdn.example/x"></iframe>'),
    ("<frameset><frame></frameset>", "<frameset><frame></frameset>"),
    # an <iframe> inside <svg> is an SVG element: no frame
    ("<svg><iframe></iframe></svg>", "<svg><iframe></iframe></svg>"),
    # a sandbox that keeps the frame's scripts from running or from reaching the page
    ('<iframe sandbox srcdoc="<p>x"></iframe>', '<iframe sandbox srcdoc="<p>x"></iframe>'),
    ('<iframe sandbox="allow-scripts"></iframe>', '<iframe sandbox="allow-scripts"></iframe>'),
    # tokens are split at ASCII whitespace only: one unknown token here
    (
        '<iframe sandbox="allow-scripts\u00a0allow-same-origin"></iframe>',
        '<iframe sandbox="allow-scripts\u00a0allow-same-origin"></iframe>',
    ),
    (
        '<iframe sandbox="ALLOW-SAME-ORIGIN\nallow-scripts" srcdoc="<p>x"></iframe>',
        f'<iframe sandbox="ALLOW-SAME-ORIGIN\nallow-scripts" srcdoc="{FRAMES}<p>x"></iframe>{FRAMES}',
    ),
    # a frame of a refused vendor is gone, and so is what would follow it
    ('<iframe src="https://www.youtube.com/embed/x"></iframe>', ""),
    # a srcdoc document gets the markup first, after its doctype
    (
        '<iframe srcdoc="<!DOCTYPE html><p>x"></iframe>',
        f'<iframe srcdoc="<!DOCTYPE html>{FRAMES}<p>x"></iframe>{FRAMES}',
    ),
    ("<iframe srcdoc='<p>a &amp;amp; b'></iframe>", f'<iframe srcdoc="{FRAMES}<p>a &amp;amp; b"></iframe>{FRAMES}'),
    # and its own frames (gated in the nested document) too
    (
        '<iframe srcdoc="<iframe name=inner></iframe>"></iframe>',
        f'<iframe srcdoc="{FRAMES}<iframe name=inner></iframe>{FRAMES}"></iframe>{FRAMES}',
    ),
]


@pytest.mark.parametrize(("body", "expected"), FRAME_CASES)
@pytest.mark.parametrize("step", [-1, 0, 3])
def test_frames_of_the_markup_get_the_frame_markup(body: str, expected: str, step: int) -> None:
    page = f"<!doctype html><html><head></head><body>{body}</body></html>"
    out = gate(page, Additions(frame_markup=FRAMES), step=step)
    want = f"<!doctype html><html><head></head><body>{expected}</body></html>"
    if expected == "":  # refused: whatever the action left, without the frame markup
        assert FRAMES not in out and "youtube.com/embed" not in out.replace("data-tg-src", ""), out
    else:
        assert out == want


NONCED = '<script nonce="n0nce">F()</script>'


@pytest.mark.parametrize("step", [-1, 0, 3])
def test_a_srcdoc_gets_nonced_frame_markup_only_when_it_holds_the_nonce_already(step: int) -> None:
    """In an attribute's value the nonce is not hidden (CSS selectors could read it out
    of the page); a srcdoc whose own scripts carry it exposes nothing new."""
    page = (
        '<!doctype html><html><body><iframe srcdoc="<p>plain"></iframe>'
        "<iframe srcdoc=\"<script nonce='n0nce'>go()</script>\"></iframe></body></html>"
    )
    out = gate(page, Additions(frame_markup=NONCED), step=step)
    inside = NONCED.replace('"', "&quot;")
    assert out == (
        f'<!doctype html><html><body><iframe srcdoc="<p>plain"></iframe>{NONCED}'  # after it: a hidden attribute
        f"<iframe srcdoc=\"{inside}<script nonce='n0nce'>go()</script>\"></iframe>{NONCED}</body></html>"
    )


@pytest.mark.parametrize("step", [-1, 0, 3])
def test_nothing_added_in_a_srcdoc_shows_a_nonce_the_srcdoc_lacks(step: int) -> None:
    """The frame markup after a frame inside a srcdoc, and the Consent Mode block before
    a Google tag there, are in the attribute's value too."""
    analytics = read_consent("tg_consent=analytics", None, DEFAULT_SETTINGS)
    inner = "<iframe name=inner></iframe><script src='https://www.googletagmanager.com/gtag/js?id=G-1'></script>"
    page = (
        f'<!doctype html><html><body><iframe srcdoc="{inner}"></iframe>'
        f"<iframe srcdoc=\"{inner}<script nonce='n0nce'>go()</script>\"></iframe></body></html>"
    ).encode()
    g = HtmlGate(PLAN, analytics, page_host="shop.example", nonce="n0nce", additions=Additions(frame_markup=NONCED))
    size = step or len(page)
    data = g.feed_whole(page) if step < 0 else b"".join(g.feed(page[i : i + size]) for i in range(0, len(page), size))
    out = (data if step < 0 else data + g.end()).decode()
    lacking, holding = (value.split('"></iframe>', 1)[0] for value in out.split('<iframe srcdoc="')[1:])
    assert "n0nce" not in lacking and "gtag(" in lacking and "F()" not in lacking, lacking
    assert holding.count("n0nce") == 4 and holding.count("F()") == 2 and "gtag(" in holding, holding
    assert out.count(f"></iframe>{NONCED}") == 2  # after each frame: a nonce attribute, hidden


def test_frame_markup_is_not_added_in_report_only_mode_or_without_a_guard() -> None:
    page = '<html><body><iframe></iframe><iframe srcdoc="<p>x"></iframe></body></html>'
    assert gate(page, Additions(frame_markup=FRAMES), report_only=True) == page
    assert gate(page, Additions(head_start=HEAD)).count("<iframe") == 2
    assert FRAMES not in gate(page, Additions(head_start=HEAD))


def test_a_streamed_page_holds_at_most_64_kib_while_its_first_element_is_unknown() -> None:
    """A prologue that never ends (a comment of 100 KB, then text): the gate holds the
    first bytes only until 64 KiB have come, then passes them on (the guard goes where
    lol-html's handlers put it, here before the first script), and the output is the
    whole page's."""
    page = b"<!--" + b"x" * 100_000 + b"--><p>x</p><script src=/a.js></script>"
    additions = Additions(head_start=HEAD, body_end=END)
    g = HtmlGate(PLAN, NONE, page_host="shop.example", additions=additions)
    pieces = [g.feed(page[i : i + 1024]) for i in range(0, len(page), 1024)]
    first = next(i for i, p in enumerate(pieces) if p)
    assert first * 1024 <= 1 << 16, first  # nothing held past 64 KiB
    out = b"".join(pieces) + g.end()
    assert out == HtmlGate(PLAN, NONE, page_host="shop.example", additions=additions).feed_whole(page)
    assert out.index(HEAD.encode()) == out.index(b"<script src=/a.js>") - len(HEAD)
