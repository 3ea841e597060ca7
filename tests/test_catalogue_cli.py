"""`tag-gate catalogue` as operators run it: a real process, text and JSON answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

CLI = [sys.executable, "-m", "proxy", "catalogue"]

OPERATOR_CONFIG = """
[[vendor]]
name = "Shop partner ads"
category = "advertising"
hosts = ["ads.partner.test"]
urls = ["www.googletagmanager.com/gtag/js?id=G-PARTNER*"]
cookies = ["_partner_*"]
source = "https://partner.test/cookies"

[[vendor]]
id = "hotjar"
name = "Hotjar (our contract)"
category = "functional"
hosts = ["hotjar.com"]

[[rule]]
name = "tracking-path"
path_prefix = "/js/tracking/"
category = "analytics"
"""


def run(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--config", str(config)] if config is not None else []
    return subprocess.run([*CLI, *args, *extra], capture_output=True, text=True, timeout=60, env=dict(os.environ))


def run_json(*args: str, config: Path | None = None) -> dict[str, Any]:
    result = run(*args, "--json", config=config)
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


@pytest.fixture
def operator(tmp_path: Path) -> Path:
    path = tmp_path / "tag-gate.toml"
    path.write_text(OPERATOR_CONFIG, encoding="utf-8")
    return path


def test_help_names_every_question() -> None:
    result = run("--help")
    assert result.returncode == 0
    for flag in ("--list", "--vendor TEXT", "--host HOST", "--url URL", "--cookie NAME", "--config FILE", "--json"):
        assert flag in result.stdout


def test_listing_vendors_shows_category_origin_and_source() -> None:
    result = run()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "CATEGORY", "ORIGIN", "SOURCE"]
    ga = next(line for line in lines if line.startswith("google-analytics "))
    assert "analytics" in ga and "built-in" in ga and "https://" in ga
    assert any("open-cookie-database" in line for line in lines)
    assert "Open Cookie Database platforms" in lines[-1]


def test_json_listings_cover_every_kind_and_filter_by_category() -> None:
    vendors = run_json("--list", "vendors", "--category", "essential")["vendors"]
    assert vendors and all(v["category"] == "essential" for v in vendors)
    assert all(v["source"] for v in vendors)
    urls = {r["url"]: r for r in run_json("--list", "urls")["urls"]}
    assert urls["googletagmanager.com/gtag/js?id=AW-*"]["vendor"] == "google-ads"
    assert urls["connect.facebook.net/*/sdk.js"]["category"] == "social"
    hosts = {r["host"]: r for r in run_json("--list", "hosts")["hosts"]}
    assert hosts["connect.facebook.net"]["vendor"] == "meta-pixel"
    cookies = run_json("--list", "cookies")["cookies"]
    origins = {r["origin"] for r in cookies}
    assert origins == {"built-in", "open-cookie-database"}
    shadowed = [r for r in cookies if r["cookie"] == "_ga" and r["origin"] == "open-cookie-database"]
    assert all(r["overridden_by"] == "google-analytics" for r in shadowed)


def test_vendor_search_by_id_or_name() -> None:
    result = run("--vendor", "Meta Pixel")
    assert result.returncode == 0
    assert result.stdout.startswith("meta-pixel: Meta Pixel (advertising, built-in)")
    assert "source:" in result.stdout and "facebook.com/tr" in result.stdout
    found = run_json("--vendor", "google")["vendors"]
    assert {"google-ads", "google-analytics", "google-tag-manager"} <= {v["id"] for v in found}
    missing = run("--vendor", "no-such-vendor-anywhere")
    assert missing.returncode == 1
    assert "no vendor's id or name contains" in missing.stdout


def test_host_is_a_suffix_lookup_with_the_url_entries_that_win_on_it() -> None:
    data = run_json("--host", "WWW.GoogleTagManager.com.")
    assert data["query"] == {"host": "www.googletagmanager.com"}
    assert data["entry"] == "googletagmanager.com"
    assert data["vendor"]["id"] == "google-tag-manager"
    assert {r["url"] for r in data["urls"]} >= {"googletagmanager.com/gtag/js?id=AW-*"}
    text = run("--host", "www.google.com").stdout
    assert text.startswith("www.google.com: no vendor")
    assert "www.google.com/recaptcha/" in text and "google-recaptcha" in text


@pytest.mark.parametrize(
    ("url", "entry", "vendor", "category"),
    [
        (
            "https://www.googletagmanager.com/gtag/js?id=AW-123",
            "googletagmanager.com/gtag/js?id=AW-*",
            "google-ads",
            "advertising",
        ),
        (
            "https://www.googletagmanager.com/gtag/js?id=G-1",
            "googletagmanager.com/gtag/js?id=G-*",
            "google-analytics",
            "analytics",
        ),
        ("https://www.facebook.com/tr?id=1", "facebook.com/tr", "meta-pixel", "advertising"),
        ("https://www.facebook.com/plugins/like.php", "facebook.com", "facebook-social", "social"),
        ("https://www.google.com/recaptcha/api.js", "www.google.com/recaptcha/", "google-recaptcha", "essential"),
        ("https://www.google.com/pagead/1p-conversion/1/", "www.google.com/pagead/", "google-ads", "advertising"),
    ],
)
def test_url_answers_with_the_deciding_entry(url: str, entry: str, vendor: str, category: str) -> None:
    data = run_json("--url", url)
    assert (data["entry"], data["vendor"]["id"], data["decision"]["category"]) == (entry, vendor, category)


def test_cookie_answers_name_the_pattern_and_the_source() -> None:
    ga = run_json("--cookie", "_ga_ABC123")
    assert (ga["entry"], ga["vendor"]["id"], ga["decision"]["origin"]) == ("_ga_*", "google-analytics", "catalog")
    ocd = run_json("--cookie", "GRV_BHV_UID_42")
    assert ocd["vendor"]["origin"] == "open-cookie-database"
    assert ocd["vendor"]["source"].startswith("https://github.com/jkwakman/Open-Cookie-Database/blob/")
    unknown = run("--cookie", "shop_session_42")
    assert unknown.returncode == 0
    assert "no vendor claims it" in unknown.stdout and "cookies.unknown = 'keep'" in unknown.stdout


def test_operator_vendors_and_rules_from_config(operator: Path) -> None:
    partner = run_json("--host", "cdn.ads.partner.test", config=operator)
    assert partner["vendor"]["id"] == "shop-partner-ads" and partner["vendor"]["origin"] == "config"
    hotjar = run_json("--vendor", "hotjar", config=operator)["vendors"]
    assert hotjar[0]["origin"] == "config (replaces the built-in entry)" and hotjar[0]["category"] == "functional"
    gtag = run_json("--url", "https://www.googletagmanager.com/gtag/js?id=G-PARTNER1", config=operator)
    assert gtag["vendor"]["id"] == "shop-partner-ads"  # its longer host suffix is tried first
    cookie = run_json("--cookie", "_partner_x", config=operator)
    assert cookie["vendor"]["id"] == "shop-partner-ads"
    rule = run("--url", "https://cdn.shop.test/js/tracking/x.js", config=operator)
    assert "analytics (rule 'tracking-path')" in rule.stdout
    listed = {r["url"]: r for r in run_json("--list", "urls", config=operator)["urls"]}
    assert listed["www.googletagmanager.com/gtag/js?id=G-PARTNER*"]["origin"] == "config"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "https://www.google.com/recaptcha/"], "is a URL, not a host name; ask with --url"),
        (["--host", "a b"], "is not a host name"),
        (["--category", "nope"], "unknown category 'nope'"),
        (["--vendor", "  "], "--vendor needs some text"),
        (["--list", "tags"], "invalid choice"),
        (["--host", "a.example", "--url", "https://a.example/"], "not allowed with argument"),
        (["--config", "/nonexistent/tag-gate.toml"], "tag-gate"),
    ],
)
def test_bad_questions_give_one_clear_line(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
