"""The markup the gate inserts (pure: strings in, ASCII markup out, no lol-html).

Everything built here is pure ASCII, with text escaped (`ascii_html`), so it survives
the gate's Latin-1 transport whatever the page's charset: the iframe placeholder, the
Consent Mode v2 default block put in front of kept Google tags, and the tag that loads
`activate.js`. Deferral markup in a consent manager's convention is
`proxy.core.defer`'s.
"""

from __future__ import annotations

import html
from typing import Final

from ..core.consent import ConsentState
from ..core.defer import start_tag
from ..core.vendors import Vendor
from .attributes import dimension

__all__ = [
    "ACTIVATE_PATH",
    "GOOGLE_TAG_VENDORS",
    "activation_script",
    "ascii_html",
    "consent_mode_script",
    "gcm_block",
    "placeholder",
]

GOOGLE_TAG_VENDORS: Final = frozenset({"google-analytics", "google-tag-manager", "google-ads"})
"""Vendors whose kept tags get a Consent Mode v2 default block in front of them."""

ACTIVATE_PATH: Final = "/__tag-gate/activate.js"


def ascii_html(text: str) -> str:
    """Escape text for element content or a double-quoted attribute, as pure ASCII
    (inserted markup must survive the Latin-1 transport, whatever the page's charset)."""
    return html.escape(text, quote=True).encode("ascii", "xmlcharrefreplace").decode("ascii")


def _nonce_attribute(nonce: str | None) -> str:
    return f' nonce="{ascii_html(nonce)}"' if nonce else ""


def gcm_block(consent: ConsentState) -> str:
    """`gtag('consent','default', ...)` with every Consent Mode v2 signal from the consent."""

    def state(category: str) -> str:
        return "granted" if consent.allows(category) else "denied"

    ads = state("advertising")
    values = {
        "ad_storage": ads,
        "ad_user_data": ads,
        "ad_personalization": ads,
        "analytics_storage": state("analytics"),
        "functionality_storage": state("functional"),
        "personalization_storage": state("functional"),
        "security_storage": "granted",
    }
    body = ",".join(f"'{k}':'{v}'" for k, v in values.items())
    return (
        "window.dataLayer=window.dataLayer||[];function gtag(){dataLayer.push(arguments);}"
        f"gtag('consent','default',{{{body}}});"
    )


def consent_mode_script(consent: ConsentState, nonce: str | None) -> str:
    """The `<script>` element running `gcm_block`, with the page's CSP nonce."""
    return f"<script{_nonce_attribute(nonce)}>{gcm_block(consent)}</script>"


def activation_script(nonce: str | None) -> str:
    """The deferred `<script>` that loads `activate.js`, with the page's CSP nonce."""
    return f'<script src="{ACTIVATE_PATH}" defer{_nonce_attribute(nonce)}></script>'


def placeholder(
    tag: str,
    attributes: list[tuple[str, str]],
    *,
    name: str,
    category: str,
    vendor: Vendor | None,
    width: str | None,
    height: str | None,
    text: str,
    button: str,
) -> str:
    """A same-size first-party box with the vendor's `name` and a load button; the
    original element (`tag` with its raw `attributes`) waits inside a `<template>` and
    nothing is requested until click. `text` and `button` are the configured templates,
    with `{vendor}` (and, in `text`, `{category}`) filled in here; `width` and `height`
    are the element's raw attribute values."""
    label = text.format(vendor=name, category=category)
    button_label = button.format(vendor=name)
    description = f'<p style="margin:0;opacity:.8">{ascii_html(vendor.description)}</p>' if vendor else ""
    vendor_attribute = f' data-tg-vendor="{ascii_html(vendor.id)}"' if vendor else ""
    original = start_tag(tag, attributes) + f"</{tag}>"
    return (
        f'<div data-tg-placeholder data-tg-category="{ascii_html(category)}"'
        f'{vendor_attribute} role="group" aria-label="{ascii_html(name)}: blocked content" '
        f'style="box-sizing:border-box;width:{dimension(width, "100%")};height:{dimension(height, "auto")};'
        "max-width:100%;min-height:8em;"
        "display:flex;flex-direction:column;align-items:center;justify-content:center;gap:.6em;padding:1em;"
        "background:#f3f3f3;color:#1a1a1a;border:1px solid #c8c8c8;font:15px/1.4 system-ui,sans-serif;"
        'text-align:center">'
        f'<p style="margin:0">{ascii_html(label)}</p>{description}'
        f'<button type="button" data-tg-load style="font:inherit;padding:.4em 1em;cursor:pointer">'
        f"{ascii_html(button_label)}</button>"
        f"<template>{original}</template></div>"
    )
