"""The runtime layers of one config: the guard's markup and our CSP header, per response head.

`RuntimeLayers` is built with the `Stages` of a config (so a reload brings new ones) and
holds everything the two header steps (`stages.runtime_guard`, `stages.csp_layer`) and
the `/__tag-gate/guard.js` route need, computed once per consent key:

- the guard's inline body (`proxy.html.guard.GuardRules`, memoised per consent key) and
  everything of the `<script>` element after its opening tag per (key, page host), so
  every page of a visitor shares one string, nonce or not (the gated-page cache hashes
  the additions, and a compressed page gets that string's compressed form, made once);
- the external form for pages whose CSP blocks inline scripts but allows `'self'`:
  `/__tag-gate/guard.js?k=<consent key>&v=<digest of the body>` (a new config gives
  new URLs, so the browser may keep each one a day);
- our CSP header per consent key (`proxy.core.csp.CspHeaders`) and the sampling of the
  pages that get it: deterministic, every 1/sample-th gated page.

Contract: nothing here does IO except one log line per page path whose CSP keeps the
guard inline out (bounded: 1024 paths per config).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from typing import Final

from ..core.config import Config
from ..core.consent import ConsentState
from ..core.csp import CspHeaders, GuardDelivery
from ..core.memo import Memo
from ..html.gate import Additions
from ..html.guard import GuardRules, config_guard
from ..html.guard_code import frames_code
from ..metrics import Metrics

log = logging.getLogger("tag_gate")

GUARD_PATH: Final = "/__tag-gate/guard.js"
FRAMES_PATH: Final = "/__tag-gate/guard-frames.js"
_LOGGED_PATHS: Final = 1024
_GUARDED_BYTES: Final = 16 << 20
"""Bound of `RuntimeLayers.add_guard`'s table (counting each entry's markup, mostly
shared with the guard's own memo)."""


class RuntimeLayers:
    """The guard and the CSP layer for one config (see the module docstring)."""

    def __init__(self, config: Config, metrics: Metrics) -> None:
        html = config.html
        policy = config.policy
        self.metrics = metrics
        self.guard: GuardRules | None = None
        self.external_first = html.guard.delivery == "external"
        if html.guard.enabled:
            self.guard = config_guard(config)
            for warning in self.guard.warnings:
                log.warning("runtime guard: %s", warning)
        csp = html.csp
        self.csp: CspHeaders | None = None
        if csp.mode != "off" and csp.sample > 0:
            self.csp = CspHeaders(csp.layer, policy.catalog.vendors, html.first_party_hosts)
        self.sample = csp.sample
        self._credit = 1.0 - csp.sample  # the first page is sampled
        self._markup: Memo[tuple[str, str | None], str] = Memo(256, 32 << 20)
        self._guarded: Memo[tuple[str, str | None, str, Additions], Additions] = Memo(4096, _GUARDED_BYTES)
        self._external: dict[str, tuple[str, bytes]] = {}
        self._logged: set[str] = set()

    # ------------------------------------------------------------ the guard

    def add_guard(
        self, additions: Additions, consent: ConsentState, host: str | None, delivery: GuardDelivery, path: str
    ) -> Additions:
        """`additions` with the guard for this page: its `<script>` first at the head
        (`head_tag` and `head_start`; nothing when the site's CSP keeps it out) and
        `frame_markup` after the frames of the markup, counted by delivery; the first
        time a page path cannot have the guard inline, one log line says why.

        Without a nonce every page of a visitor gets one value, made once (one lookup
        per response: the header step runs on every gated page, the cached ones too).
        With one, only the tag is made per response: what follows it is one string per
        consent key and host whatever the nonce (hashed once, and spliced compressed
        from a form made once); such values are not kept, they would only fill the table."""
        self.metrics.guard_pages[delivery.how].inc()
        if delivery.reason:  # the site's policy decided, not the operator
            self._log_once(path, delivery)
        if delivery.how == "none":
            return additions
        shared = delivery.nonce is None
        if shared:
            key = (consent.key, host, delivery.how, additions)
            hit = self._guarded.table.get(key)
            if hit is not None:
                return hit
        nonce = f' nonce="{delivery.nonce}"' if delivery.nonce else ""
        if delivery.how == "external":
            url, _ = self.external(consent)
            tag, rest = f'<script src="{url}"{nonce}>', "</script>"
        else:
            tag, rest = f"<script{nonce}>", self._inline(consent, host)
        made = replace(
            additions, head_tag=tag, head_start=rest + additions.head_start, frame_markup=self.frame_markup(delivery)
        )
        if not shared:
            return made
        size = len(rest) + len(additions.head_start) + len(additions.head_end) + len(additions.body_end)
        return self._guarded.put(key, made, size)

    def _inline(self, consent: ConsentState, host: str | None) -> str:
        """Everything of the inline guard's `<script>` after its opening tag."""
        guard = self.guard
        assert guard is not None
        key = (consent.key, host)
        rest = self._markup.table.get(key)
        if rest is None:
            rest = f"{guard.script(consent, host)}</script>"
            rest = self._markup.put(key, rest, len(rest))
        return rest

    @staticmethod
    def frame_markup(delivery: GuardDelivery) -> str:
        """The `<script>` that gives the frames of the markup the guard's hooks
        (`Additions.frame_markup`, guard-frames.js), delivered as the guard is."""
        nonce = f' nonce="{delivery.nonce}"' if delivery.nonce else ""
        if delivery.how == "external":
            return f'<script src="{FRAMES_PATH}"{nonce}></script>'
        return f"<script{nonce}>{frames_code()}</script>"

    def external(self, consent: ConsentState) -> tuple[str, bytes]:
        """The external guard's URL and body for this visitor's consent key."""
        hit = self._external.get(consent.key)
        if hit is None:
            assert self.guard is not None
            body = self.guard.script(consent, None).encode()
            digest = hashlib.blake2b(body, digest_size=6).hexdigest()
            hit = self._external[consent.key] = (f"{GUARD_PATH}?k={consent.key}&v={digest}", body)
        return hit

    def external_body(self, key: str) -> bytes | None:
        """The external guard served under a consent key this config wrote into a page."""
        hit = self._external.get(key)
        return hit[1] if hit is not None else None

    def _log_once(self, path: str, delivery: GuardDelivery) -> None:
        if path in self._logged or len(self._logged) >= _LOGGED_PATHS:
            return
        self._logged.add(path)
        if delivery.how == "external":
            log.warning(
                "runtime guard: the Content-Security-Policy of %s blocks inline scripts without a nonce tag-gate can"
                " use; the guard is loaded from %s instead (allowed by 'self')",
                path[:200],
                GUARD_PATH,
            )
        else:
            log.warning(
                "runtime guard: the Content-Security-Policy of %s allows neither an inline script tag-gate can"
                " mark nor 'self'; the page gets no runtime guard (the HTML gate still applies)",
                path[:200],
            )

    # ------------------------------------------------------------ the CSP layer

    def sampled(self) -> bool:
        """Whether this page gets our CSP header: every 1/sample-th page, counting."""
        self._credit += self.sample
        if self._credit >= 1.0:
            self._credit -= 1.0
            return True
        return False
