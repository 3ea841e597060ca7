"""The consent registry: its order, its rules, and a fictional consent manager added
from a test (tests/acme_consent.py, one file, plus one registry line here) that works
end to end: `read_consent` reads its cookie, `explain-consent` names it, `check-config`
accepts its table and reports a bad value in it with its TOML path, the cookie
firewall keeps its cookie, and the HTML gate defers in its convention."""

from __future__ import annotations

import io
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from proxy.core.categories import ANALYTICS, ESSENTIAL, SOCIAL
from proxy.core.config import Config, ConfigError, load_config, parse_config
from proxy.core.consent import (
    BUILTIN,
    DEFAULT_REGISTRY,
    SOURCES,
    ConsentSettings,
    Registry,
    Source,
    read_consent,
    source_cookie_names,
    validate_settings,
)
from proxy.core.defer import STYLES
from proxy.explain import run_explain_consent
from proxy.html.gate import gate_document
from proxy.http.stages import Stages
from proxy.metrics import Metrics
from tests import acme_consent

ACME = DEFAULT_REGISTRY.with_source(acme_consent.SOURCE)  # the one registry line

ACME_TOML = """
[consent.acme-consent]
cookie = "acme_consent"
purposes = { stats = ["analytics"], analytics = [] }   # the site calls it "stats"

[cookies]
unknown = "drop"
"""


def acme_config(text: str = ACME_TOML) -> Config:
    return parse_config(tomllib.loads(text), registry=ACME)


def problems(data: dict[str, Any], registry: Registry = ACME) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, registry=registry)
    return info.value.problems


# --- the built-in registry ------------------------------------------------------------


def test_registry_order_is_the_default_resolution_order() -> None:
    order = (
        "tag-gate",
        "onetrust",
        "cookiebot",
        "klaro",
        "cookieconsent",
        "tarteaucitron",
        "complianz",
        "cookieyes",
        "didomi",
        "osano",
        "tcf",
    )
    assert SOURCES == DEFAULT_REGISTRY.sources == ConsentSettings().sources == order
    assert DEFAULT_REGISTRY.entries == BUILTIN
    # Usercentrics only defers (its choice lives in localStorage); TCF, Osano and
    # tarteaucitron only read.
    assert "usercentrics" in STYLES and "usercentrics" not in SOURCES
    assert set(STYLES) == set(SOURCES) - {"tcf", "osano", "tarteaucitron"} | {"usercentrics"}


@dataclass(frozen=True, slots=True)
class _Two:
    consent_cookie: str = "x"


@dataclass(frozen=True, slots=True)
class _One:
    cookie: str = "y"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ((Source("Acme", None),), "'Acme' cannot name a consent manager"),
        ((Source("sources", None),), "'sources' cannot name a consent manager"),
        ((*BUILTIN, Source("klaro", None)), "two consent managers are named 'klaro'"),
        ((Source("acme", _Two()), Source("acme-consent", _One())), "flat name 'acme_consent_cookie' is taken"),
    ],
)
def test_registry_refuses_ambiguous_names(entries: tuple[Source[Any], ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Registry(entries)


def test_with_source_inserts_before_a_named_source() -> None:
    registry = DEFAULT_REGISTRY.with_source(acme_consent.SOURCE, before="tcf")
    assert registry.sources[-2:] == ("acme-consent", "tcf")
    with pytest.raises(ValueError, match="no consent manager named 'nope'"):
        DEFAULT_REGISTRY.with_source(acme_consent.SOURCE, before="nope")


def test_settings_name_unknown_keywords_and_wrong_types() -> None:
    with pytest.raises(TypeError, match="'onetrust_grups'"):
        ConsentSettings(onetrust_grups={})
    with pytest.raises(TypeError, match="no consent manager named 'acme-consent'"):
        ConsentSettings(per_source={"acme-consent": acme_consent.AcmeSettings()})
    with pytest.raises(TypeError, match="expected AcmeSettings"):
        ConsentSettings(registry=ACME, per_source={"acme-consent": "x"})


# --- a fictional consent manager, end to end -------------------------------------------


def test_its_cookie_is_read_by_read_consent() -> None:
    settings = acme_config().consent
    assert settings.sources[-1] == "acme-consent"  # default order: the registry's
    state = read_consent("sid=1; acme_consent=stats|social", None, settings)
    assert (state.source, state.decided, state.reason) == ("acme-consent", True, "ok")
    assert state.granted == {ESSENTIAL, ANALYTICS, SOCIAL}
    # its settings table applies: "analytics" was mapped to nothing
    assert read_consent("acme_consent=analytics", None, settings).granted == {ESSENTIAL}
    # the resolution rules apply to it like to any source
    assert read_consent("acme_consent=pending", None, settings).source == "default"
    assert read_consent("acme_consent=%zz", None, settings).reason == "malformed"
    assert read_consent("acme_consent=ads; acme_consent=social", None, settings).reason == "conflict"
    assert read_consent("tg_consent=; acme_consent=stats", None, settings).source == "tag-gate"
    assert read_consent("acme_consent=ads", "1", settings).granted == {ESSENTIAL}
    # the built-in registry does not know it
    assert read_consent("acme_consent=stats", None).source == "none"
    assert source_cookie_names("acme-consent", settings) == ("acme_consent",)
    assert source_cookie_names("acme-consent") == ()


def test_its_settings_are_reachable_by_flat_name_like_a_builtin() -> None:
    settings = ConsentSettings(registry=ACME, acme_consent_cookie="acme_v2")
    assert settings.acme_consent_cookie == "acme_v2"
    assert settings.of(acme_consent.SOURCE).cookie == "acme_v2"
    assert read_consent("acme_v2=analytics|stats", None, settings).granted == {ESSENTIAL, ANALYTICS}
    assert read_consent("acme_consent=analytics", None, settings).source == "none"
    bad = ConsentSettings(registry=ACME, acme_consent_purposes={"ads": frozenset({"adverts"})})
    assert validate_settings(bad) == ["acme_consent_purposes['ads']: unknown category 'adverts'"]


def test_explain_consent_names_it(tmp_path: Path) -> None:
    path = tmp_path / "tag-gate.toml"
    path.write_text(ACME_TOML)
    config = load_config(path, registry=ACME)
    out = io.StringIO()
    assert run_explain_consent(config, "acme_consent=stats", gpc=False, as_json=False, out=out) == 0
    assert "source:  acme-consent (decided)" in out.getvalue().splitlines()
    assert "granted: essential, analytics" in out.getvalue().splitlines()
    out = io.StringIO()
    run_explain_consent(config, "acme_consent=social", gpc=True, as_json=True, out=out)
    assert json.loads(out.getvalue()) == {
        "granted": [ESSENTIAL, SOCIAL],
        "decided": True,
        "source": "acme-consent",
        "gpc": True,
        "key": "f0a0d0s1g1",
    }


def test_check_config_accepts_its_table_and_reports_bad_values_with_their_path(tmp_path: Path) -> None:
    path = tmp_path / "tag-gate.toml"
    path.write_text(ACME_TOML + '\n[html]\ndefer_style = "acme-consent"\n')
    assert load_config(path, registry=ACME).html.defer_style == "acme-consent"
    found = problems(
        {
            "consent": {
                "sources": ["acme-consent", "tag-gate"],
                "acme-consent": {
                    "cookie": "acme consent",
                    "purposes": {"stats": ["adverts"], "social": "social", "ads": []},
                    "colour": "red",
                },
            }
        }
    )
    assert sorted(found) == [
        "consent.acme-consent.colour: unknown key",
        "consent.acme-consent.cookie: 'acme consent' is not a valid cookie name",
        "consent.acme-consent.purposes.social: expected an array of category names, got a string",
        "consent.acme-consent.purposes.stats: unknown category 'adverts'",
    ]
    # without the registry line, nothing about it is accepted
    unknown = problems(
        {"consent": {"sources": ["acme-consent"], "acme-consent": {}}, "html": {"defer_style": "acme-consent"}},
        registry=DEFAULT_REGISTRY,
    )
    assert any(p.startswith("consent.sources: unknown source 'acme-consent'") for p in unknown), unknown
    assert "consent.acme-consent: unknown key" in unknown
    assert any(p.startswith("html.defer_style: expected one of") for p in unknown), unknown


def test_the_cookie_firewall_keeps_its_cookie() -> None:
    nobody = read_consent(None, None)
    assert acme_config().policy.decide_cookie(nobody, "acme_consent").keeps
    builtin = parse_config({"cookies": {"unknown": "drop"}})
    assert not builtin.policy.decide_cookie(nobody, "acme_consent").keeps


def test_the_gate_defers_in_its_convention() -> None:
    config = acme_config(ACME_TOML + '\n[html]\naction = "defer"\ndefer_style = "acme-consent"\n')
    page = b'<p>x</p><script src="https://www.googletagmanager.com/gtag/js?id=G-1"></script>'
    html, _ = gate_document(Stages(config, Metrics()).gate_plan, read_consent(None, None), page)
    # the gate used the site's own purpose name from [consent.acme-consent]
    assert b'type="text/plain" data-acme-purpose="stats"' in html
