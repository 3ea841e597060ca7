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
