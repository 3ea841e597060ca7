"""`tag-gate demo --once` (CI): the report for every consent state, with the banner and
the tag manager on, each page through the proxy identical to the offline gate's output
with the same additions. In a browser: tests/e2e/test_banner.py."""

from __future__ import annotations

import io

from proxy.core.addresses import Address
from proxy.demo import VendorLog, run


async def test_demo_once_reports_every_state() -> None:
    out = io.StringIO()
    assert await run(Address("127.0.0.1", 0), once=True, out=out) == 0
    text = out.getvalue()
    assert text.count("identical to the offline gate's output") == 3, text
    assert "DIFFERENT" not in text
    assert text.count("banner: opens at once") == 1 and text.count("banner: closed") == 2
    assert "[[tag]] entries: 0 live, 2 inert" in text and "[[tag]] entries: 2 live, 0 inert" in text
    assert "cookies let through: session, csrftoken; dropped: _ga, _fbp" in text


def test_vendor_log_is_bounded_and_filtered() -> None:
    log = VendorLog(size=3)
    for i in range(5):
        log.add(f"h{i}.example", "/x", "V", "analytics")
    assert [e.host for e in log.since(0, -1)] == ["h2.example", "h3.example", "h4.example"]
    assert [e.n for e in log.since(0, 3)] == [4]
    assert log.since(log.entries[-1].at + 1, -1) == []
