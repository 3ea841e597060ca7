"""config: every section's keys, defaults, and every problem reported with its path."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from proxy.core.config import (
    DEFER_STYLES,
    Address,
    ConfigError,
    parse_address,
    parse_config,
    parse_size,
    parse_upstream,
)
from proxy.core.consent import DEFAULT_REGISTRY, read_consent
from proxy.core.defer import STYLES
from proxy.core.policy import Action, Kind
from proxy.core.running import with_overrides

REFERENCE = Path(__file__).resolve().parent.parent / "config" / "tag-gate.toml"


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.problems


def test_defaults_without_a_file() -> None:
    cfg = parse_config({})
    assert cfg.server.listen == Address("0.0.0.0", 8080)
    assert cfg.server.admin_listen == Address("127.0.0.1", 9090)
    assert cfg.html.action is Action.REMOVE and cfg.cookies.unknown == "keep"
    assert cfg.consent.gpc_refuses == frozenset({"advertising"})


def test_reference_file_documents_and_parses() -> None:
    data = tomllib.loads(REFERENCE.read_text())
    cfg = parse_config(data)
    assert cfg.server.upstream is not None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.0.0.0:8080", Address("0.0.0.0", 8080)),
        (":9000", Address("0.0.0.0", 9000)),
        ("[::1]:8443", Address("::1", 8443)),
        ("localhost:0", Address("localhost", 0)),
    ],
)
def test_parse_address(value: str, expected: Address) -> None:
    assert parse_address(value) == expected


@pytest.mark.parametrize("value", ["8080", "host:port", "1.2.3.4:70000", "::1:80", "[nothost]:80", 8080])
def test_parse_address_rejects(value: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        parse_address(value)


@pytest.mark.parametrize(
    ("value", "authority", "url"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://app", "app", "http://app:80"),
        ("http://[::1]:81/", "[::1]:81", "http://[::1]:81"),
    ],
)
def test_parse_upstream(value: str, authority: str, url: str) -> None:
    u = parse_upstream(value)
    assert (u.authority, u.url) == (authority, url)


@pytest.mark.parametrize("value", ["https://x", "http://x/path", "http://u:p@x", "ftp://x", "http://", "x:80"])
def test_parse_upstream_rejects(value: str) -> None:
    with pytest.raises(ValueError):
        parse_upstream(value)


@pytest.mark.parametrize(("value", "size"), [(10, 10), ("16MiB", 16 << 20), ("500 kB", 500_000), ("1GB", 10**9)])
def test_parse_size(value: object, size: int) -> None:
    assert parse_size(value) == size


def test_ten_different_mistakes_are_all_reported_with_paths() -> None:
    found = problems(
        {
            "server": {"listen": "nowhere", "mode": "enforcing"},
            "timeouts": {"read": -3},
            "consent": {"sources": ["onetrust", "bogus"], "gpc_refuses": ["advertisin"]},
            "html": {"action": "hide", "defer_style": "acme", "category": {"socail": {"action": "remove"}}},
            "cookies": {"unknown": "sometimes"},
            "vendor": [
                {
                    "id": "x",
                    "name": "X",
                    "category": "analytics",
                    "hosts": ["https://x.example/"],
                    "description": "x",
                    "colour": "red",
                }
            ],
            "rule": [{"path_prefix": "no-slash", "category": "analytics"}, {"hosts": ["a.example"]}],
            "cookie": [{"names": ["bad name"], "category": "analytics"}],
            "exception": [{"path_prefix": "admin"}],
            "typo": 1,
        }
    )
    expected = [
        "server.listen:",
        "server.mode:",
        "timeouts.read:",
        "consent.sources:",
        "consent.gpc_refuses:",
        "html.action:",
        "html.defer_style:",
        "html.category.socail:",
        "cookies.unknown:",
        "vendor[0].hosts[0]:",
        "vendor[0]",
        "rule[0].path_prefix:",
        "rule[1]:",
        "cookie[0].names[0]:",
        "exception[0].path_prefix:",
        "typo: unknown key",
    ]
    for prefix in expected:
        assert any(p.startswith(prefix) for p in found), (prefix, found)
    assert len(found) >= 15


def test_unknown_keys_are_errors_in_every_table() -> None:
    found = problems(
        {
            "server": {"lisen": "x"},
            "html": {"acton": "remove"},
            "cookies": {"strip": True},
            "consent": {"source": []},
            "limits": {"max_body": 1},
        }
    )
    for path in ("server.lisen", "html.acton", "cookies.strip", "consent.source", "limits.max_body"):
        assert f"{path}: unknown key" in found


def test_websocket_limits_are_read_and_checked() -> None:
    cfg = parse_config({"limits": {"websocket_max_message": "1MiB"}, "timeouts": {"websocket_idle": 30}})
    assert cfg.limits.websocket_max_message == 1 << 20 and cfg.timeouts.websocket_idle == 30.0
    defaults = parse_config({})
    assert defaults.limits.websocket_max_message == 16 << 20 and defaults.timeouts.websocket_idle == 300.0
    reference = parse_config(tomllib.loads(REFERENCE.read_text()))
    assert reference.limits.websocket_max_message == defaults.limits.websocket_max_message
    assert reference.timeouts.websocket_idle == defaults.timeouts.websocket_idle
    for limits, timeouts in [
        ({"websocket_max_message": 0}, {"websocket_idle": 0}),
        ({"websocket_max_message": "2GiB"}, {"websocket_idle": "5m"}),
    ]:
        found = problems({"limits": limits, "timeouts": timeouts})
        assert any(p.startswith("limits.websocket_max_message: ") for p in found), found
        assert any(p.startswith("timeouts.websocket_idle: ") for p in found), found


def test_custom_categories_and_mappings() -> None:
    cfg = parse_config(
        {
            "categories": {"chat": "Live chat widgets"},
            "consent": {
                "onetrust": {"groups": {"C0042": ["chat"]}},
                "tcf": {"purposes": {"11": ["analytics"]}},
                "klaro": {"services": {"MyChat": "chat"}},
            },
            "html": {"category": {"chat": {"action": "placeholder"}}},
            "vendor": [
                {
                    "id": "acme-chat",
                    "name": "Acme Chat",
                    "category": "chat",
                    "hosts": ["chat.acme.example"],
                    "description": "Chat.",
                }
            ],
        }
    )
    consent = read_consent("OptanonConsent=groups=C0001%3A1%2CC0042%3A1&interactionCount=1", None, cfg.consent)
    assert "chat" in consent.granted and "x" in consent.key
    none = read_consent(None, None, cfg.consent)
    d = cfg.policy.decide_url(none, Kind.FRAME, "https://chat.acme.example/w", "s")
    assert (d.category, d.action) == ("chat", Action.PLACEHOLDER)
    assert cfg.consent.klaro_services["mychat"] == "chat"
    assert 11 in cfg.consent.tcf_purposes


def test_operator_vendor_overrides_builtin_by_id() -> None:
    cfg = parse_config(
        {
            "vendor": [
                {
                    "id": "youtube",
                    "name": "YouTube",
                    "category": "functional",
                    "hosts": ["youtube.com", "youtube-nocookie.com"],
                    "description": "Videos.",
                }
            ]
        }
    )
    none = read_consent(None, None, cfg.consent)
    assert cfg.policy.decide_url(none, Kind.FRAME, "https://www.youtube.com/embed/x", "s").category == "functional"


def test_operator_vendor_source_is_optional_but_checked() -> None:
    vendor = {"id": "acme", "name": "Acme", "category": "analytics", "hosts": ["acme.example"]}
    assert parse_config({"vendor": [vendor]}).vendors[0].source == ""  # operators know their own sites
    cited = parse_config({"vendor": [{**vendor, "source": "https://acme.example/cookies"}]})
    assert cited.vendors[0].source == "https://acme.example/cookies"
    assert problems({"vendor": [{**vendor, "source": "see the wiki"}]}) == [
        "vendor[0].source: 'see the wiki' is neither an https URL of the vendor's documentation "
        "nor a text starting with 'reason:'"
    ]


def test_rules_compile_and_reference_vendors() -> None:
    cfg = parse_config(
        {
            "rule": [
                {"vendor": "youtube", "action": "placeholder"},
                {"url_regex": "/collect\\\\?", "category": "analytics"},
            ]
        }
    )
    assert cfg.rules[0].vendor == "youtube" and cfg.rules[1].url_regex is not None
    assert problems({"rule": [{"vendor": "no-such-vendor", "action": "remove"}]})[0].startswith("rule[0].vendor:")
    assert problems({"rule": [{"url_regex": "(", "category": "analytics"}]})[0].startswith("rule[0].url_regex:")


def test_overrides_name_their_origin() -> None:
    cfg = parse_config({})
    with pytest.raises(ConfigError) as info:
        with_overrides(cfg, {"listen": ("TAG_GATE_LISTEN", "bogus"), "upstream": ("--upstream", "ftp://x")})
    assert any(p.startswith("TAG_GATE_LISTEN:") for p in info.value.problems)
    assert any(p.startswith("--upstream:") for p in info.value.problems)


def test_defer_styles_match_the_defer_module() -> None:
    assert tuple(DEFER_STYLES) == tuple(STYLES)


MOVED_CONSENT_KEYS = [
    ("onetrust_groups", "[consent.onetrust] groups"),
    ("cookiebot_fields", "[consent.cookiebot] fields"),
    ("klaro_cookie", "[consent.klaro] cookie"),
    ("klaro_services", "[consent.klaro] services"),
    ("cookieconsent_cookie", "[consent.cookieconsent] cookie"),
    ("cookieconsent_categories", "[consent.cookieconsent] categories"),
    ("tarteaucitron_cookie", "[consent.tarteaucitron] cookie"),
    ("tarteaucitron_services", "[consent.tarteaucitron] services"),
    ("complianz_categories", "[consent.complianz] categories"),
    ("cookieyes_categories", "[consent.cookieyes] categories"),
    ("didomi_purposes", "[consent.didomi] purposes"),
    ("didomi_vendors", "[consent.didomi] vendors"),
    ("tcf_purposes", "[consent.tcf] purposes"),
    ("osano_allow", "[consent.osano] allow"),
]


@pytest.mark.parametrize(("old", "new"), MOVED_CONSENT_KEYS)
def test_old_consent_keys_are_errors_that_name_the_new_table(old: str, new: str) -> None:
    assert problems({"consent": {old: {"x": ["analytics"]}}}) == [f"consent.{old}: moved: write {new} = ..."]


def test_every_consent_manager_setting_has_a_table_in_the_reference_file() -> None:
    consent = tomllib.loads(REFERENCE.read_text())["consent"]
    assert tuple(consent["sources"]) == DEFAULT_REGISTRY.sources
    for source in DEFAULT_REGISTRY.entries:
        if source.fields():
            assert set(consent[source.name]) == set(source.fields()), source.name
        else:
            assert source.name not in consent
    assert {old for old, _ in MOVED_CONSENT_KEYS} == {
        s.flat(name) for s in DEFAULT_REGISTRY.entries for name in s.fields()
    }


def test_consent_tables_report_each_problem_at_its_path() -> None:
    found = problems(
        {
            "consent": {
                "onetrust": {"groups": {"C0042": ["stats"], "C0043": "analytics"}, "group": {}},
                "klaro": {"cookie": "a b", "services": {"MyChat": "chat"}},
                "tcf": {"purposes": {"25": ["analytics"], "x": ["analytics"]}},
                "didomi": {"vendors": {"c:acme": 1}},
                "tag-gate": {"cookie": "tg"},
                "complianz": [],
            }
        }
    )
    assert sorted(found) == [
        "consent.complianz: expected a table, got an array",
        'consent.didomi.vendors."c:acme": expected a category name, got an integer',
        "consent.klaro.cookie: 'a b' is not a valid cookie name",
        "consent.klaro.services.MyChat: unknown category 'chat'",
        "consent.onetrust.group: unknown key",
        "consent.onetrust.groups.C0042: unknown category 'stats'",
        "consent.onetrust.groups.C0043: expected an array of category names, got a string",
        "consent.tag-gate: tag-gate has no settings",
        "consent.tcf.purposes.25: TCF purposes are numbered 1 to 24",
        "consent.tcf.purposes.x: TCF purposes are numbered 1 to 24",
    ]
