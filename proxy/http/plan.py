"""What the stages decide for one response (`ResponsePlan`, its `Body` mode) and what
they learned about the visitor (`Visitor`): plain data, shared by the stages, the
handler and the relay."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from multidict import CIMultiDict

from ..core.consent import ConsentState
from ..core.cookies import SetCookie
from ..html.gate import NO_ADDITIONS, Additions


@dataclass(frozen=True, slots=True)
class Visitor:
    """What the request stage learned about the visitor."""

    consent: ConsentState
    cookie: str | None
    """The Cookie header to forward (None: send none)."""
    refused: tuple[str, ...]
    """Names of cookies the browser sent in refused categories (withdrawal candidates)."""
    changed: bool
    """Whether `cookie` differs from what the browser sent."""
    banner_open: bool = False
    """With the banner on: the visitor has no current choice (`PageAdditions.read_choice`),
    so the banner opens at once and `consent` does not count the stale record."""
    valid_until: float = math.inf
    """Unix time when this memoised visitor must be read again (its record's lifetime ends)."""

    @property
    def etag_key(self) -> str:
        """The consent key in this visitor's ETags: a page whose banner opens at once is
        another representation than the same page with the banner closed."""
        return self.consent.key + "r" if self.banner_open else self.consent.key


class Body(enum.Enum):
    PASS = "pass"
    """Relay the bytes as they are."""
    GATE = "gate"
    """Through the HTML gate (decode and re-encode around it when encoded)."""
    REPORT = "report"
    """Report-only: the gate decides and counts, the bytes go out unchanged."""
    FAIL_SAFE = "fail-safe"
    """Relay unchanged under a strict Content-Security-Policy (the gate cannot read it)."""


@dataclass
class ResponsePlan:
    headers: CIMultiDict[str]
    body: Body
    decode: str | None = None
    encode: str | None = None
    nonce: str | None = None
    keep_length: bool = True
    dropped_cookies: tuple[SetCookie, ...] = ()
    expired: int = 0
    fail_safe_reason: str | None = None
    additions: Additions = NO_ADDITIONS
    """Markup the gate adds to this page (the runtime guard, the banner, managed tags)."""
    refused: str | None = None
    """Set when the response must not be relayed at all (a redirect to a refused
    tracker): the reason; the handler answers 403 instead."""
    top_level_only: str | None = None
    """Set when a redirect to a refused tracker answers a navigation of unknown kind:
    its `Location`; the handler answers `header_filters.top_level_page` (a link the
    visitor may follow) instead."""
    document: str = "html"
    """What the gated body is: "html", "xml" or "sniff" (see `HeaderStep.document`)."""
    essence: str = ""
    """The MIME type the browser reads from `Content-Type` ("" when none)."""
    charset_label: str | None = None
    """The `charset` label in `Content-Type`, if any."""
