"""The contract `proxy.html.needles` relies on from the `hyperscan` package (pinned in
pyproject.toml): what the gate's pre-scan would silently get wrong if a new release
matched differently."""

from __future__ import annotations

import gc
import itertools
import re
import threading

import pytest

from proxy.html.needles import ENGINE, Needles
from proxy.html.selection import _NEEDLE_TABLE

pytestmark = pytest.mark.skipif(ENGINE is None, reason="hyperscan is not installed")


def test_hyperscan_is_the_engine() -> None:
    assert ENGINE is not None and ENGINE.startswith("hyperscan ")


def test_every_ascii_case_of_a_literal_is_found_and_nothing_else() -> None:
    needles = Needles([b"<svg", b"background"])
    for letters in itertools.product(*((c, c.upper()) for c in "svg")):
        assert needles.present(("x<" + "".join(letters) + ">").encode()) == {0}
    assert needles.present(b"BackGround") == {1}
    assert needles.present(b"<sv g backgroun d") == set()
    # only ASCII letters fold: no Latin-1 or UTF-8 look-alikes
    assert needles.present("<\u017fvg".encode()) == set()
    assert needles.present("<\u017fvg".encode("latin-1", "replace")) == set()


def test_escaped_control_characters_and_backslash_are_literals() -> None:
    """`re.escape` of a tab, a carriage return and a backslash (the narrow `<img>`
    selector's needles) means the character itself to Hyperscan."""
    needles = Needles([re.escape(b"\t"), re.escape(b"\r"), re.escape(b"\\")])
    assert needles.present(b"a\tb") == {0}
    assert needles.present(b"a\rb") == {1}
    assert needles.present(b"a\\b") == {2}
    assert needles.present(b"a t r \n b") == set()


def test_each_pattern_reports_once_and_at_both_ends() -> None:
    needles = Needles([b"<img", b"ping"])
    assert needles.present(b"<img" + b"<img " * 10_000 + b"ping") == {0, 1}
    assert needles.present(b"<img") == {0}
    assert needles.present(b"") == set()


def test_the_regex_subset_the_gate_uses() -> None:
    """Anchors, classes with escapes (`\\x0c`), alternation and repetition: the gate's
    own `ping` and `style` patterns, each compared with Python's `re` (case-folded)."""
    patterns = [pattern for pattern, names in _NEEDLE_TABLE if names in (("ping",), ("style",))]
    assert len(patterns) == 2
    needles = Needles(patterns)
    compiled = [re.compile(p, re.IGNORECASE) for p in patterns]
    docs = [
        b"ping=",
        b"<a PING\x0c=x>",
        b"<a mapping=x>",
        b'<a x="y"ping=1>',
        b"<p STYLE = 'a:b&#40;'>",
        b"<p style=(x>",
        b"<p style=x>(",
        b'<p style="color:red">x(y)',
        b'<p style="a\nb(">',
    ]
    for doc in docs:
        expected = {i for i, c in enumerate(compiled) if c.search(doc)}
        assert needles.present(doc) == expected, doc


def test_no_engine_answers_none() -> None:
    assert Needles(()).present(b"<svg") is None


def test_threads_scan_at_once() -> None:
    """Each thread gets its own scratch space."""
    # Garbage of earlier tests (a failed gate kept by a test's pytest.raises, say) is
    # collected here, not by a collection that one of these threads happens to run.
    gc.collect()
    needles = Needles([b"<svg", b"<math"])
    doc = b"x" * 200_000 + b"<svg" + b"y" * 200_000 + b"<math"
    results: list[set[int] | None] = []

    def scan() -> None:
        for _ in range(50):
            results.append(needles.present(doc))

    threads = [threading.Thread(target=scan) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 200 and all(r == {0, 1} for r in results)


def test_the_metrics_name_the_prescan_engine() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from proxy.metrics import make_info

    registry = CollectorRegistry()
    make_info(registry)
    assert f'prescan="{ENGINE}"' in generate_latest(registry).decode()


def test_an_engine_failure_answers_none_and_the_gate_scans_in_python(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from proxy.core.config import make_policy
    from proxy.core.consent import DEFAULT_SETTINGS, read_consent
    from proxy.html import selection
    from proxy.html.gate import GatePlan, HtmlGate

    class Broken:
        def scan(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("engine failure")

    needles = Needles([b"<svg"])
    assert needles.present(b"<svg>") == {0}  # this thread's scratch space, made from the real database
    needles._db = Broken()
    assert needles.present(b"<svg>") is None and needles.failures == 1
    monkeypatch.setattr(selection, "_NEEDLES", needles)
    page = b"<html><head></head><body><img src=https://bat.bing.com/a.gif><p>x</p></body></html>"
    plan = GatePlan(policy=make_policy(None))
    consent = read_consent(None, None, DEFAULT_SETTINGS)
    out = HtmlGate(plan, consent, page_host="shop.example").feed_whole(page)
    streamed = HtmlGate(plan, consent, page_host="shop.example")
    assert out == streamed.feed(page) + streamed.end() and b"bat.bing.com" not in out
    assert needles.failures == 2
    said = [r.getMessage() for r in caplog.records if "pre-scan" in r.getMessage()]
    assert len(said) == 1 and "engine failure" in said[0]  # once, not per page


def test_ends_are_the_first_match_ends_and_a_view_scans_like_bytes() -> None:
    needles = Needles([b"<img", b"ab"])
    doc = b"xx<IMG ab <img ab"
    assert needles.ends(doc) == {0: 6, 1: 9}  # one report per pattern: its first
    assert needles.ends(memoryview(doc)[7:]) == {0: 7, 1: 2}  # offsets in the view
    assert needles.ends(b"") == {}


def test_any_of_stops_at_the_first_wanted_match() -> None:
    """The binding raises `hyperscan.ScanTerminated` when the match callback returns true
    (`Needles.any_of` stops a scan that way); patterns outside `among` are passed over."""
    needles = Needles([b"<script", b"<img"])
    doc = b"<img " * 1000 + b"<script>"
    assert needles.any_of(doc, {0}) is True
    assert needles.any_of(doc, {1}) is True
    assert needles.any_of(b"<img " * 1000, {0}) is False
    assert needles.any_of(b"", {0}) is False
    seen: list[int] = []

    def stop(pattern: int, start: int, end: int, flags: int, context: object) -> bool:
        seen.append(end)
        return True

    import hyperscan

    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    db.compile(expressions=[b"a"], ids=[0], elements=1, flags=[0])
    with pytest.raises(hyperscan.ScanTerminated):
        db.scan(b"aaa", match_event_handler=stop, scratch=hyperscan.Scratch(db))
    assert seen == [1]
