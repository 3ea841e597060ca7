"""`tag-gate explain --guard` / `--admin` and `check-config` on the runtime layers' sections."""

from __future__ import annotations

import asyncio
import io
import json
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from proxy.core.config import CspConfig, GuardConfig, parse_config
from proxy.core.consent import read_consent
from proxy.explain_guard import fetch_listing, guard_report, render_guard, render_listing
from proxy.html.guard import decode_table
from proxy.http.layers import RuntimeLayers
from proxy.metrics import Metrics
from tests.proxytools import free_port, running_proxy
from tests.test_cli_functional import run_cli

CONFIG = parse_config({"server": {"upstream": "http://127.0.0.1:9"}})


def report(cookie: str | None, **html: Any) -> dict[str, Any]:
    config = parse_config({"server": {"upstream": "http://127.0.0.1:9"}, "html": html}) if html else CONFIG
    return guard_report(config, read_consent(cookie, None, config.consent), "www.shop.test")


def test_the_guard_report_is_the_table_that_ships() -> None:
    r = report("tg_consent=analytics.social")
    assert r["guard"] == "inserted" and r["refused"] == ["advertising", "functional"]
    rows = {v["vendor"]: v for v in r["vendors"]}
    assert rows["meta-pixel"]["refused"] and "connect.facebook.net" in rows["meta-pixel"]["hosts"]
    # granted vendors are in the table only as shadows (a URL entry that wins over a
    # refused vendor's host: gtag.js?id=G-... is Google Analytics, not Google Ads)
    assert "youtube" not in rows and not rows.get("google-analytics", {"refused": False})["refused"]
    consent = read_consent("tg_consent=analytics.social", None, CONFIG.consent)
    # what `tag-gate serve` ships: the runtime layers' own guard
    layers = RuntimeLayers(CONFIG, Metrics())
    assert layers.guard is not None
    shipped = layers.guard.rules_json(consent, "www.shop.test")
    assert r["table_bytes"] == len(shipped) and len(r["vendors"]) == len(decode_table(json.loads(shipped))[0])
    assert r["csp"]["header"] == "Content-Security-Policy-Report-Only" and "?k=f0a1d0s1g0" in r["csp"]["value"]


def test_the_guard_report_says_when_there_is_no_guard() -> None:
    assert report("tg_consent=functional.analytics.advertising.social")["guard"].startswith("not inserted")
    assert report("tg_consent=functional.analytics.advertising.social")["csp"] is None
    off = report(None, guard={"enabled": False}, csp={"mode": "off"})
    assert off["guard"].startswith("off") and off["csp"] is None


def test_the_guard_report_lists_operator_rules_and_warnings() -> None:
    config = parse_config(
        {
            "server": {"upstream": "http://127.0.0.1:9"},
            "rule": [
                {"name": "ads", "hosts": ["ads.shop.test"], "path_prefix": "/px", "category": "advertising"},
                {"name": "py-only", "url_regex": "a++", "category": "advertising"},
            ],
        }
    )
    r = guard_report(config, read_consent(None, None, config.consent), None)
    assert r["rules"] == [
        {"hosts": ["ads.shop.test"], "paths": ["/px"], "regex": "", "vendor": "", "outcome": "advertising"}
    ]
    assert any("py-only" in w for w in r["warnings"])
    out = io.StringIO()
    render_guard(r, out)
    assert "ads.shop.test" in out.getvalue() and "warning: rule 'py-only'" in out.getvalue()


def test_explain_guard_on_the_command_line() -> None:
    result = run_cli("explain", "--guard", "--consent", "tg_consent=analytics")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Runtime guard: inserted" in out and "Refused categories: advertising, functional, social" in out
    assert "meta-pixel" in out and "Content-Security-Policy-Report-Only" in out
    data = json.loads(run_cli("explain", "--guard", "--json").stdout)
    assert data["runtime"]["refused"] == ["advertising", "analytics", "functional", "social"]
    missing = run_cli("explain")
    assert missing.returncode == 2 and "give a SOURCE" in missing.stderr and "Traceback" not in missing.stderr


async def test_explain_admin_lists_what_browsers_reported() -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<p>hi</p>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with running_proxy(f"http://127.0.0.1:{port}") as tg:
            body = [
                {"type": "csp-violation", "body": {"blockedURL": url, "effectiveDirective": "img-src"}}
                for url in ("https://px.unknown-collector.test/c?id=secret", "https://bat.bing.com/action/0?x=1")
            ]
            async with aiohttp.ClientSession() as client:
                resp = await client.post(
                    tg.url + "/__tag-gate/csp?k=f0a0d0s0g0",
                    data=json.dumps(body),
                    headers={"Content-Type": "application/reports+json"},
                )
                assert resp.status == 204
            listing = await fetch_listing(tg.admin_url)
            out = io.StringIO()
            render_listing(listing, out)
            text = out.getvalue()
            assert "px.unknown-collector.test" in text and "bing-uet" in text and "secret" not in text
            result = await asyncio.to_thread(run_cli, "explain", "--admin", tg.admin_url)
            assert result.returncode == 0 and "Catalogue gaps reported by browsers" in result.stdout
            assert "px.unknown-collector.test" in result.stdout
    finally:
        await runner.cleanup()
    result = await asyncio.to_thread(run_cli, "explain", "--admin", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1 and result.stderr.startswith("tag-gate: cannot read http://127.0.0.1:")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ('[html.guard]\nenabled = "yes"', "html.guard.enabled:"),
        ("[html.guard]\nmode = 1", "html.guard.mode: unknown key"),
        ('[html.csp]\nmode = "strict"', "html.csp.mode:"),
        ("[html.csp]\nsample = 2", "html.csp.sample:"),
        ('[html.csp]\ndirectives = ["script-src"]', "html.csp.directives:"),
        ('[html.csp]\nvendors = ["no-such-vendor"]', "html.csp.vendors[0]: unknown vendor id"),
        ('[html.csp]\nmode = "enforce"', "html.csp.vendors:"),
        ('[html.csp]\nvendors = "granted"', "html.csp.vendors: the header would be"),
        ("[html.csp]\nreport_rate = 0", "html.csp.report_rate:"),
    ],
)
def test_check_config_validates_the_runtime_sections(tmp_path: Path, section: str, problem: str) -> None:
    path = tmp_path / "tag-gate.toml"
    path.write_text(f'[server]\nupstream = "http://127.0.0.1:8000"\n\n{section}\n')
    result = run_cli("check-config", str(path))
    assert result.returncode == 1 and problem in result.stdout, result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_check_config_accepts_the_runtime_sections(tmp_path: Path) -> None:
    path = tmp_path / "tag-gate.toml"
    path.write_text(
        '[server]\nupstream = "http://127.0.0.1:8000"\n\n[html.guard]\nenabled = false\n\n'
        '[html.csp]\nmode = "enforce"\nsample = 1\ndirectives = ["connect-src", "img-src"]\n'
        'vendors = ["google-analytics", "youtube"]\n'
    )
    result = run_cli("check-config", str(path))
    assert result.returncode == 0, result.stdout


def test_the_reference_file_documents_the_runtime_sections_with_their_defaults() -> None:
    reference = Path(__file__).resolve().parent.parent / "config" / "tag-gate.toml"
    data = tomllib.loads(reference.read_text())
    assert set(data["html"]["guard"]) == {f.name for f in fields(GuardConfig)}
    assert set(data["html"]["csp"]) == {f.name for f in fields(CspConfig)}
    parsed = parse_config(data)
    assert parsed.html.guard == GuardConfig() and parsed.html.csp == CspConfig()
