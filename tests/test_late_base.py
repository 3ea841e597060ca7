"""`<base href>` after the element (issue 15, class 5): `<object data>`, `<embed src>`
and a video `poster` are fetched after parsing goes on, against a base that may come
later. A base on a refused host loses its `href` wherever it stands."""

from __future__ import annotations

import pytest

from tests.test_rewrite import ALL, NONE, REMOVE, gate

FB_BASE = '<base href="https://www.facebook.com/">'


@pytest.mark.parametrize(
    "element",
    [
        '<object data="tr?id=1" type="image/gif"></object>',
        '<embed src="tr?id=2" type="image/gif">',
        '<video poster="tr?id=3"></video>',
        '<img src="tr?id=4">',
    ],
)
@pytest.mark.parametrize(
    "base", [FB_BASE, '<base href="//www.facebook.com/">', '<base href="https://www.facebook.com/" target=_top>']
)
def test_refused_base_after_the_element_loses_its_href(element: str, base: str) -> None:
    page = f"<p>x</p>{element}<div>{base}</div>"
    out = gate(REMOVE, NONE, page).decode()
    assert element in out  # relative: first-party against the page itself
    assert "facebook" not in out
    assert gate(REMOVE, ALL, page).decode() == page  # granted: untouched


def test_only_the_first_base_with_an_href_counts() -> None:
    # The browser ignores a second base: so does the gate (no base host from it).
    page = f'<base href="/static/">{FB_BASE}<img src="tr?id=5">'
    assert gate(REMOVE, NONE, page).decode() == page
    # A refused first base is neutralised: the next one is the browser's base.
    page = f'{FB_BASE}<base href="https://www.facebook.com/x/"><img src="tr?id=6"><img src=/own.png>'
    out = gate(REMOVE, NONE, page).decode()
    assert "facebook" not in out and "/own.png" in out
