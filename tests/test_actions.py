"""actions: the one action x kind table, and that the policy, the gate, config and the
decisions header all follow it (pure tables, plus the gate on one element per kind)."""

from __future__ import annotations

import pytest

from proxy.core.actions import EFFECTS, ELEMENT_ACTIONS, TRAITS, Action, Activation, Kind
from proxy.core.catalog import make_catalog
from proxy.core.config import ConfigError, parse_config
from proxy.core.consent import read_consent
from proxy.core.policy import Policy
from proxy.html.gate import GatePlan, gate_document

CATALOG = make_catalog()
NONE = read_consent(None, None)

ELEMENTS = {
    Kind.SCRIPT: '<script src="https://www.youtube.com/iframe_api"></script>',
    Kind.INLINE: "<script>fbq('init', '1');</script>",
    Kind.MEDIA: '<img src="https://www.youtube.com/x.png">',
    Kind.FRAME: '<iframe src="https://www.youtube.com/embed/1"></iframe>',
    Kind.EMBED: '<object data="https://www.youtube.com/v/1"></object>',
    Kind.LINK: '<link rel="preconnect" href="https://www.youtube.com">',
    Kind.PING: '<a href="/x" ping="https://www.youtube.com/ping">x</a>',
}
"""One refused element of each kind the gate acts on."""


def test_the_table_has_a_cell_for_every_action_and_kind() -> None:
    assert set(EFFECTS) == set(TRAITS) == set(Action)
    for row in EFFECTS.values():
        assert set(row) == set(Kind)
    assert set(ELEMENTS) == set(Kind) - {Kind.HEADER}


def test_element_actions_are_the_configurable_ones_in_header_order() -> None:
    assert ELEMENT_ACTIONS == (Action.REMOVE, Action.DEFER, Action.PLACEHOLDER)


@pytest.mark.parametrize("action", list(Action))
def test_refusal_never_keeps_and_final_forms_need_no_activation(action: Action) -> None:
    for effect in EFFECTS[action].values():
        assert (effect is Action.KEEP) == (action is Action.KEEP)
        final = TRAITS[effect].final
        assert TRAITS[final].final is final
        assert TRAITS[final].activation is Activation.NONE


@pytest.mark.parametrize("kind", list(ELEMENTS))
@pytest.mark.parametrize("action", ELEMENT_ACTIONS)
def test_the_policy_and_the_gate_take_the_tables_effect(action: Action, kind: Kind) -> None:
    policy = Policy(CATALOG, default_action=action)
    effect = EFFECTS[action][kind]
    element = ELEMENTS[kind]
    url = "https://www.youtube.com/ping" if kind is Kind.PING else "https://www.youtube.com/embed/1"
    if kind is not Kind.INLINE:
        assert policy.decide_url(NONE, kind, url, "shop.example").action is effect
    page = f"<!doctype html><html><head></head><body>{element}</body></html>".encode()
    out, stats = gate_document(GatePlan(policy), NONE, page, page_host="shop.example")
    assert {a for a, _ in stats.counts} == {effect}
    assert out != page
    # Inside <noscript> nothing can activate it later: the final form is taken.
    nested = f"<!doctype html><html><head></head><body><noscript>{element}</noscript></body></html>".encode()
    _, stats = gate_document(GatePlan(policy), NONE, nested, page_host="shop.example")
    assert {a for a, _ in stats.counts} == {TRAITS[effect].final}


@pytest.mark.parametrize("name", [a.value for a in Action])
def test_config_accepts_exactly_the_element_actions(name: str) -> None:
    document = {"server": {"upstream": "http://127.0.0.1:8000"}, "html": {"action": name}}
    if Action(name) in ELEMENT_ACTIONS:
        assert parse_config(document).html.action is Action(name)
    else:
        with pytest.raises(ConfigError, match="'remove', 'defer', 'placeholder'"):
            parse_config(document)
