"""What tag-gate adds to a gated page: its consent banner and the site's managed tags.

`PageAdditions` is compiled once per config and held by `Stages`:

- `read_choice` (request stage, memoised with the visitor): with the banner on, whether
  the visitor's `tg_consent` record is current (`proxy.core.banner.decide_reask`: a
  record of the current policy version, younger than the lifetime). A record that is
  not is read as absent, so the server refuses what the banner is about to ask again
  (fail closed), exactly when the banner opens by itself;
- `for_page` (headers stage, `stages.page_additions`): the `Additions` for one gated
  page: the managed tags of `[[tag]]` for its path and consent, and the banner's
  configuration and script, in the language negotiated from the page's `<html lang>`
  and `Accept-Language` once the gate has seen the former, with the page's CSP nonce.

Pages of a site whose banner is off and that has no `[[tag]]` get nothing here: their
bytes are exactly what they were without this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Final

from aiohttp import hdrs

from ..core.banner import (
    LANGUAGE_MODES,
    decide_reask,
    make_banner_config,
    make_banner_snippet,
    negotiate_language,
    parse_consent_cookie,
)
from ..core.config import Config
from ..core.consent import ConsentSettings, ConsentState, read_consent
from ..core.cookies import parse_cookie_header
from ..core.defer import make_cmp_names
from ..core.tags import TagPlan
from ..html.gate import Additions
from .header_filters import FRAGMENT_VARY, FetchMetadata, from_page_code

NATIVE: Final = "tag-gate"
"""The consent source that reads `tg_consent`."""

NESTED_DESTINATIONS: Final = frozenset({"iframe", "frame", "embed", "object", "fencedframe"})
"""`Sec-Fetch-Dest` values of a page shown inside another: it gets no banner of its own."""

_DAY: Final = 86400


class PageAdditions:
    """The banner and the managed tags for one config (see the module docstring)."""

    def __init__(self, config: Config) -> None:
        banner = config.banner
        self.banner = banner if banner.enabled else None
        self.tags = TagPlan(config.tags, config.html.defer_style, make_cmp_names(config.consent))
        self.catalog = config.policy.catalog
        self.cookie_name = config.consent.cookie_name
        self.gpc_refuses = config.consent.gpc_refuses
        self.vary_language = banner.language in LANGUAGE_MODES
        consent = config.consent
        self._without_native = ConsentSettings(
            sources=tuple(s for s in consent.sources if s != NATIVE),
            undecided=consent.undecided,
            gpc_refuses=consent.gpc_refuses,
            categories=consent.categories,
            cookie_name=consent.cookie_name,
            max_cookie_bytes=consent.max_cookie_bytes,
            registry=consent.registry,
            per_source=consent.per_source,
        )

    def __bool__(self) -> bool:
        return self.banner is not None or bool(self.tags)

    # ------------------------------------------------------------ request stage

    def read_choice(
        self, cookies: tuple[str, ...], sec_gpc: str | None, consent: ConsentState, now: float
    ) -> tuple[ConsentState, bool, float]:
        """With the banner on: (the consent to apply, whether the banner opens at once,
        until when both hold). The banner opens when the native record is missing,
        malformed, sent twice with different values, from an older policy version or
        older than the lifetime; when the native source decided on such a record, the
        consent is read again without it (other sources, then `consent.undecided`)."""
        settings = self.banner
        if settings is None:
            return consent, False, math.inf
        values = [
            value for header in cookies for name, value in parse_cookie_header(header) if name == self.cookie_name
        ]
        if not values:
            return consent, True, math.inf
        value = values[0]
        reask = len(set(values)) > 1 or decide_reask(value, settings, now)
        until = math.inf
        try:
            record = parse_consent_cookie(value)
        except ValueError:
            record = None
        if record is not None and record.policy_version >= settings.policy_version:
            if not reask:
                until = record.time + settings.lifetime_days * _DAY
            elif record.time - now > _DAY:
                until = record.time - _DAY  # dated in the future: current once that day comes
        if reask and consent.source == NATIVE:
            consent = read_consent("; ".join(cookies), sec_gpc, self._without_native)
        return consent, reask, until

    # ------------------------------------------------------------ headers stage

    def for_page(
        self,
        *,
        path: str,
        consent: ConsentState,
        banner_open: bool,
        nonce: str | None,
        request_headers: Mapping[str, str],
    ) -> tuple[Additions, bool] | None:
        """The additions for one gated page, and whether they depend on
        `Accept-Language`; None when there is nothing to add."""
        final = self.gpc_refuses if consent.gpc else ()
        tags = self.tags.render(path, consent.allows, final, nonce) if self.tags else None
        banner = None
        if self.shows_banner(request_headers):
            banner = self._banner(request_headers.get(hdrs.ACCEPT_LANGUAGE), banner_open, nonce)
        if banner is None and (tags is None or not (tags.head_end or tags.body_end)):
            return None
        additions = Additions(
            head_end=tags.head_end if tags else "",
            body_end=tags.body_end if tags else "",
            localised=banner,
            activation=bool(tags and tags.deferred),
        )
        return additions, banner is not None and self.vary_language

    def shows_banner(self, request_headers: Mapping[str, str]) -> bool:
        """Whether a gated page answering this request gets the banner: it is on, and the
        page is not shown inside another (`NESTED_DESTINATIONS`)."""
        return self.banner is not None and request_headers.get("Sec-Fetch-Dest", "") not in NESTED_DESTINATIONS

    def _banner(self, accept_language: str | None, open_now: bool, nonce: str | None) -> Callable[[str | None], str]:
        settings = self.banner
        assert settings is not None
        catalog, cookie_name = self.catalog, self.cookie_name

        def markup(page_lang: str | None) -> str:
            lang = negotiate_language(accept_language, page_lang, settings)
            blob = make_banner_config(settings, catalog, lang, open_now=open_now, cookie_name=cookie_name)
            return make_banner_snippet(blob, nonce)

        return markup


def not_modified_vary(
    additions: PageAdditions | None, request_headers: Mapping[str, str], fetch: FetchMetadata
) -> list[str]:
    """The `Vary` names a 304 for a gated page needs beyond `Cookie, Sec-GPC`, as its 200
    would say them (RFC 9110 15.4.5; a cache replaces the stored response's fields with
    the 304's, `Vary` among them): `Accept-Language` where the banner follows it
    (`PageAdditions.for_page`); `FRAGMENT_VARY` for the page's own fetch (`from_page_code`),
    whose 200 says them when the body is a fragment, which a 304 does not show (the
    superset only keeps a stored fetch from serving a navigation)."""
    names = list(FRAGMENT_VARY) if from_page_code(fetch, request_headers) else []
    if additions is not None and additions.vary_language and additions.shows_banner(request_headers):
        names.append(hdrs.ACCEPT_LANGUAGE)
    return names
