"""`POST /__tag-gate/consent` through a real tag-gate on loopback (proxy.http.proof) and
its sink (proxy.proof_log): what is written, validated against
docs/consent-proof.schema.json; what is refused, and counted; the file rotated; a
failing sink counted and logged while pages keep working."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.core.config import parse_config
from proxy.proof_log import RateLimiter, RotatingFile
from tests.proxytools import Running, make_config_data, raw_exchange, running_proxy, split_response
from tests.schema_check import check

REPO = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((REPO / "docs" / "consent-proof.schema.json").read_text(encoding="utf-8"))
SALT = "test-salt-0123456789"
UA = "Mozilla/5.0 (X11; Linux x86_64) Chrome/140"
PAGE = "<!doctype html><html lang=en><head><title>x</title></head><body><p>hello</p></body></html>"


def good(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "consent_id": "Abcdefghij0123456789_-",
        "policy_version": 2,
        "granted": ["analytics"],
        "refused": ["functional", "advertising", "social"],
        "page": "https://shop.example/products/pots",
        "time": 1_790_000_000,
        "action": "save",
    }
    body.update(changes)
    return body


@pytest.fixture
async def site() -> AsyncIterator[TestServer]:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


def banner(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "enabled": True,
        "policy_version": 2,
        "proof_salt": SALT,
        "proof_sink": "file",
        "proof_file": str(tmp_path / "consent.jsonl"),
    }
    table.update(changes)
    return table


async def post(
    proxy: Running, body: bytes | dict[str, Any], headers: dict[str, str] | None = None, method: str = "POST"
) -> tuple[int, str]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", "User-Agent": UA, **(headers or {})}
    async with (
        aiohttp.ClientSession() as client,
        client.request(method, f"{proxy.url}/__tag-gate/consent", data=data, headers=sent) as resp,
    ):
        return resp.status, await resp.text()


def lines(proxy: Running, path: Path) -> list[dict[str, Any]]:
    sink = proxy.service.state.proof_sink
    assert sink is not None
    assert sink.flush(2.0)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def metric(proxy: Running, name: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as client, client.get(f"{proxy.admin_url}/metrics") as resp:
        text = await resp.text()
    out = {}
    for m in re.finditer(rf"^{name}\{{(\w+)=\"([^\"]*)\"\}} ([0-9.e+]+)$", text, re.M):
        out[m.group(2)] = float(m.group(3))
    return out


async def test_a_record_becomes_one_line_that_matches_the_schema(site: TestServer, tmp_path: Path) -> None:
    async with running_proxy(str(site.make_url("")), banner=banner(tmp_path)) as proxy:
        before = time.time()
        status, _ = await post(proxy, good())
        assert status == 204
        status, _ = await post(proxy, good(granted=[], refused=["functional", "analytics", "advertising", "social"]))
        assert status == 204
        (first, second) = lines(proxy, tmp_path / "consent.jsonl")
        assert check(SCHEMA, first) == [] and check(SCHEMA, second) == []
        expected_client = hmac.new(SALT.encode(), f"127.0.0.1\n{UA}".encode(), hashlib.sha256).hexdigest()
        assert {k: v for k, v in first.items() if k != "time"} == {
            "event": "consent",
            "v": 1,
            "consent_id": "Abcdefghij0123456789_-",
            "policy_version": 2,
            "granted": ["analytics"],
            "refused": ["functional", "advertising", "social"],
            "action": "save",
            "page": "https://shop.example/products/pots",
            "decided_at": 1_790_000_000,
            "client": expected_client,
        }
        when = time.mktime(time.strptime(first["time"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        assert before - 2 <= when <= time.time() + 1
        assert second["granted"] == []
        assert (await metric(proxy, "tag_gate_consent_records_total"))["written"] == 2


BAD: list[tuple[str, bytes | dict[str, Any], dict[str, str], int, str]] = [
    ("not JSON", b"granted=all", {}, 400, "invalid"),
    ("unknown key", good(extra=1), {}, 400, "invalid"),
    ("essential is not asked", good(granted=["essential"]), {}, 400, "invalid"),
    ("a query in the page", good(page="https://shop.example/?email=a@b.c"), {}, 400, "invalid"),
    ("a category of no config", good(granted=["chat"]), {}, 400, "invalid"),
    ("too large", good(page="https://shop.example/" + "a" * 9000), {}, 413, "too_large"),
    ("from another site", good(), {"Sec-Fetch-Site": "cross-site"}, 403, "cross_site"),
    ("from a sibling site", good(), {"Sec-Fetch-Site": "same-site"}, 403, "cross_site"),
]


@pytest.mark.parametrize(("why", "body", "headers", "status", "outcome"), BAD, ids=[b[0] for b in BAD])
async def test_refused_records_are_answered_and_counted(
    site: TestServer, tmp_path: Path, why: str, body: Any, headers: dict[str, str], status: int, outcome: str
) -> None:
    async with running_proxy(str(site.make_url("")), banner=banner(tmp_path)) as proxy:
        got, text = await post(proxy, body, headers)
        assert got == status, text
        assert (await metric(proxy, "tag_gate_consent_records_total"))[outcome] == 1
        assert not (tmp_path / "consent.jsonl").exists() or lines(proxy, tmp_path / "consent.jsonl") == []


async def test_a_chunked_body_past_the_cap_is_refused(site: TestServer, tmp_path: Path) -> None:
    async with running_proxy(str(site.make_url("")), banner=banner(tmp_path)) as proxy:
        body = json.dumps(good(page="https://shop.example/" + "b" * 9000)).encode()
        chunked = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + 1000]), body[i : i + 1000]) for i in range(0, len(body), 1000)
        )
        raw = await raw_exchange(
            proxy.port,
            b"POST /__tag-gate/consent HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: application/json\r\n\r\n" + chunked + b"0\r\n\r\n",
        )
        assert split_response(raw)[0] == 413


async def test_other_methods_and_a_banner_that_is_off(site: TestServer, tmp_path: Path) -> None:
    async with running_proxy(str(site.make_url("")), banner=banner(tmp_path)) as proxy:
        async with aiohttp.ClientSession() as client, client.get(f"{proxy.url}/__tag-gate/consent") as resp:
            assert resp.status == 405 and resp.headers["Allow"] == "POST"
    async with running_proxy(str(site.make_url(""))) as proxy:
        assert (await post(proxy, good()))[0] == 404
    async with running_proxy(str(site.make_url("")), banner=banner(tmp_path, proof_sink="off")) as proxy:
        assert (await post(proxy, good()))[0] == 204
        assert (await metric(proxy, "tag_gate_consent_records_total"))["not_kept"] == 1
        assert proxy.service.state.proof_sink is None


async def test_rate_limited_per_client_address(site: TestServer, tmp_path: Path) -> None:
    async with running_proxy(str(site.make_url("")), banner=banner(tmp_path, proof_rate=3)) as proxy:
        statuses = [(await post(proxy, good()))[0] for _ in range(5)]
        assert statuses == [204, 204, 204, 429, 429]
        assert len(lines(proxy, tmp_path / "consent.jsonl")) == 3
        assert (await metric(proxy, "tag_gate_consent_records_total"))["rate_limited"] == 2


def test_rate_limiter_refills_and_forgets() -> None:
    limiter = RateLimiter(max_clients=2)
    assert [limiter.allow("a", 2, 100.0) for _ in range(3)] == [True, True, False]
    assert limiter.allow("a", 2, 130.0), "a minute's rate refills evenly: one token after 30 s"
    assert not limiter.allow("a", 2, 130.1)
    limiter.allow("b", 2, 131.0)
    limiter.allow("c", 2, 131.0)  # "a" is the least recently seen: forgotten, a full bucket again
    assert [limiter.allow("a", 2, 131.0) for _ in range(3)] == [True, True, False]


async def test_the_client_behind_trusted_proxies(site: TestServer, tmp_path: Path) -> None:
    sections = {"banner": banner(tmp_path), "server": {"trusted_proxies": ["127.0.0.0/8", "10.0.0.0/8"]}}
    async with running_proxy(str(site.make_url("")), **sections) as proxy:
        await post(proxy, good(), {"X-Forwarded-For": "203.0.113.9, 10.1.2.3"})
        (line,) = lines(proxy, tmp_path / "consent.jsonl")
        assert line["client"] == hmac.new(SALT.encode(), f"203.0.113.9\n{UA}".encode(), hashlib.sha256).hexdigest()


async def test_stdout_lines_share_the_access_log_stream(site: TestServer, tmp_path: Path) -> None:
    async with running_proxy(str(site.make_url("")), banner=banner(tmp_path, proof_sink="stdout")) as proxy:
        await post(proxy, good())
        records = proxy.access_records()
        consent = [r for r in records if r.get("event") == "consent"]
        assert len(consent) == 1 and check(SCHEMA, consent[0]) == []
        assert any(r.get("path") == "/__tag-gate/consent" and r.get("status") == 204 for r in records)


def test_the_file_is_rotated_and_old_files_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "proof.jsonl"
    f = RotatingFile(str(path), max_size=100, keep=2)
    for i in range(7):
        f.write(f'{{"n":{i},"pad":"{"x" * 30}"}}\n')  # 45 bytes: two lines per file
    f.flush()
    f.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["proof.jsonl", "proof.jsonl.1", "proof.jsonl.2"]
    numbers = [[json.loads(line)["n"] for line in (tmp_path / n).read_text().splitlines()] for n in names]
    assert numbers == [[6], [4, 5], [2, 3]], "lines 0 and 1 were in the oldest file, dropped past keep"
    # a file that existed before is appended to, and counts towards the size
    again = RotatingFile(str(path), max_size=100, keep=2)
    again.write('{"n":7,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}\n')
    again.write('{"n":8,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}\n')
    again.close()
    assert [json.loads(line)["n"] for line in path.read_text().splitlines()] == [8]


async def test_a_failing_sink_is_counted_and_logged_and_pages_still_work(
    site: TestServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "no-such-directory" / "consent.jsonl"
    async with running_proxy(str(site.make_url("")), banner=banner(tmp_path, proof_file=str(missing))) as proxy:
        with caplog.at_level(logging.ERROR, logger="tag_gate"):
            for _ in range(3):
                assert (await post(proxy, good()))[0] == 204
            sink = proxy.service.state.proof_sink
            assert sink is not None
            sink.flush(2.0)
            async with aiohttp.ClientSession() as client, client.get(f"{proxy.url}/shop") as resp:
                body = await resp.text()
                assert resp.status == 200 and "hello" in body and "tag-gate-banner-config" in body
            deadline = time.monotonic() + 5
            while (await metric(proxy, "tag_gate_log_dropped_total")).get("proof", 0) < 3:
                assert time.monotonic() < deadline, await metric(proxy, "tag_gate_log_dropped_total")
                await asyncio.sleep(0.05)
        errors = [r.getMessage() for r in caplog.records if "proof-of-consent file" in r.getMessage()]
        assert len(errors) == 1, "logged once a minute, not once a line"
        assert str(missing) in errors[0]
        # the file system recovers: the next line is written
        missing.parent.mkdir()
        assert (await post(proxy, good()))[0] == 204
        assert len(lines(proxy, missing)) == 1


async def test_a_reload_moves_the_sink(site: TestServer, tmp_path: Path) -> None:
    async with running_proxy(str(site.make_url("")), banner=banner(tmp_path)) as proxy:
        await post(proxy, good())
        first = proxy.service.state.proof_sink
        assert first is not None and first.flush(2.0)
        moved = banner(tmp_path, proof_file=str(tmp_path / "moved.jsonl"))
        config = parse_config(make_config_data(str(site.make_url("")), banner=moved))
        assert proxy.service.reload(lambda: config)
        await post(proxy, good(action="accept_all"))
        assert [line["action"] for line in lines(proxy, tmp_path / "moved.jsonl")] == ["accept_all"]
        assert [line["action"] for line in lines_of(tmp_path / "consent.jsonl")] == ["save"]
        same = parse_config(make_config_data(str(site.make_url("")), banner={**moved, "policy_version": 3}))
        sink = proxy.service.state.proof_sink
        assert proxy.service.reload(lambda: same) and proxy.service.state.proof_sink is sink


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
