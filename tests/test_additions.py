"""Markup tag-gate adds to a gated page (`proxy.html.run.Additions`): where it goes, that
it goes once, that it is not itself gated, and that nested documents and report-only
pages never get it. Every case also split at every offset: the output never changes."""

from __future__ import annotations

import pytest

from proxy.core.config import make_policy
from proxy.core.consent import DEFAULT_SETTINGS, read_consent
from proxy.html.gate import Additions, GatePlan, HtmlGate

HEAD = '<script nonce="n">/*guard*/</script>'
END = '<div id="banner"></div>'
PLAN = GatePlan(policy=make_policy(None))
NONE = read_consent(None, None, DEFAULT_SETTINGS)


def gate(page: str, additions: Additions, *, report_only: bool = False, step: int = 0) -> str:
    g = HtmlGate(PLAN, NONE, page_host="shop.example", report_only=report_only, additions=additions)
    data = page.encode()
    if step:
        out = b"".join(g.feed(data[i : i + step]) for i in range(0, len(data), step)) + g.end()
    else:
        out = g.feed(data) + g.end()
    return out.decode()


CASES = [
    (
        "<!doctype html><html><head><title>t</title></head><body>x</body></html>",
        f"<!doctype html><html>{HEAD}<head><title>t</title></head><body>x</body></html>{END}",
    ),
    (
        "<head><script src=/app.js></script></head><body>x</body>",
        f"<head>{HEAD}<script src=/app.js></script></head><body>x</body>{END}",
    ),
    ("<!-- c --><script src=/first.js></script><p>x", f"<!-- c -->{HEAD}<script src=/first.js></script><p>x{END}"),
    ("<p>no script at all</p>", f"<p>no script at all</p>{END}"),
    ("<html lang=en><HEAD><script>var a=1</script>", f"<html lang=en>{HEAD}<HEAD><script>var a=1</script>{END}"),
    (
        # <noscript> content never runs where scripts do: the first script that runs is /y.js.
        "<noscript><script src=/x.js></script></noscript><script src=/y.js></script>",
        f"<noscript><script src=/x.js></script></noscript>{HEAD}<script src=/y.js></script>{END}",
    ),
]


@pytest.mark.parametrize(("page", "expected"), CASES)
@pytest.mark.parametrize("step", [0, 1, 7])
def test_additions_go_in_once_at_their_place(page: str, expected: str, step: int) -> None:
    assert gate(page, Additions(head_start=HEAD, body_end=END), step=step) == expected


def test_added_markup_is_not_gated_itself() -> None:
    tracker = '<script src="https://connect.facebook.net/en_US/fbevents.js"></script>'
    page = "<html><head></head><body></body></html>"
    out = gate(page, Additions(head_start=tracker, body_end=tracker))
    assert out.count("fbevents.js") == 2


def test_report_only_pages_get_nothing_added() -> None:
    page = "<html><head></head><body><script src=/a.js></script></body></html>"
    assert gate(page, Additions(head_start=HEAD, body_end=END), report_only=True) == page


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
    assert out == f"<html>{HEAD}<head></head>{TAGS}<body><p>x</p></body></html>[banner]{END}"


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
