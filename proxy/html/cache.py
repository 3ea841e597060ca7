"""A cache of gated pages, keyed by everything the gated output depends on.

Many pages are the same bytes for every visitor (CDN-served marketing pages, articles,
docs). When a page has arrived whole, its gated output is kept under a key made of a
digest of the exact upstream body and every input of the gate: the content coding it
came in and the one it leaves in, the visitor's consent key, the page host, the CSP
nonce, the config generation, the markup added to the page, and what the response's
`Content-Type` makes of the body (its charset label, HTML page, XML document or a body
to sniff). An entry also keeps what the start of the body decided for the response's
head (a `Content-Type` naming the encoding, the strict CSP for a sniffed XML document),
so a hit sends the head a miss sends. A hit skips decoding, gating and re-encoding (the
relay builds no gate for it). A cached result can therefore never reach a visitor whose
consent, host or nonce differ, nor outlive a reload (the cache belongs to one runtime,
and the generation is in the key as well). The relay does not use the cache for a page
whose CSP names a nonce at all: a nonce is new for every response, so such a key never
recurs.

The digest is XXH3-128 (about 2 µs for 100 KB here, where BLAKE2b takes 165 µs): it is
not collision-resistant, so an entry also keeps the upstream body it was made from and a
hit is only a hit when the bodies are byte-for-byte equal (a memory compare). A crafted
collision therefore costs a miss, never another page's output.

Bounded by bytes (`html.cache_size`, counting both bodies), least recently used first
out; a page larger than a quarter of the bound is not kept. Pure: no IO, no lol-html.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

import xxhash

from .run import Additions

ENTRY_OVERHEAD: Final = 256
"""Bytes an entry costs beyond its body: key, digest, counts and the dict slot."""

Counts = tuple[tuple[tuple[str, str], int], ...]
"""What the gate did to the page (action, category) → n, replayed into the metrics."""


@dataclass(frozen=True, slots=True)
class CachedPage:
    source: bytes
    """The upstream body this page was gated from (compared on every hit)."""
    body: bytes
    """The gated page exactly as it is sent (in the client's content coding)."""
    counts: Counts
    activation_needed: bool
    content_type: str | None = None
    """The `Content-Type` the start of the body decided the response must carry (the
    encoding named, `proxy.html.start`), None: the upstream's stays."""
    fail_safe: bool = False
    """The start found an XML document by sniffing: the strict CSP applies."""
    fragment: bool = False
    """A fetched fragment without additions (`StartOutcome.fragment`): its `Vary` names
    what tells the page's fetch from a navigation (`FRAGMENT_VARY`)."""


CacheKey = tuple[
    bytes, str | None, str | None, str, str | None, str | None, int, Additions, str | None, str | None, str | None
]


class GateCache:
    """LRU by bytes (see the module docstring). Not thread-safe: one per event loop."""

    __slots__ = ("_entries", "bytes", "evictions", "hits", "max_bytes", "misses")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[CacheKey, CachedPage] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    @staticmethod
    def key(
        body: bytes,
        *,
        coding: str | None,
        encode: str | None,
        consent_key: str,
        host: str | None,
        nonce: str | None,
        generation: int,
        additions: Additions,
        charset: str | None = None,
        document: str | None = None,
        essence: str | None = None,
    ) -> CacheKey:
        """The key of a whole upstream body gated for one visitor (see the module docstring;
        `charset`, the Content-Type's, decides how non-ASCII hosts read; `document` and
        `essence`, what the response's type makes of the body: an HTML page, an XML
        document, a body to sniff)."""
        digest = xxhash.xxh3_128_digest(body)
        return (digest, coding, encode, consent_key, host, nonce, generation, additions, charset, document, essence)

    def get(self, key: CacheKey, source: bytes) -> CachedPage | None:
        """The page gated from exactly `source` under `key`'s other inputs, or None."""
        page = self._entries.get(key)
        if page is None or page.source != source:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return page

    def put(self, key: CacheKey, page: CachedPage) -> None:
        cost = _cost(page)
        if cost > self.max_bytes // 4 or key in self._entries:
            return
        self._entries[key] = page
        self.bytes += cost
        while self.bytes > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self.bytes -= _cost(old)
            self.evictions += 1

    def __len__(self) -> int:
        return len(self._entries)


def _cost(page: CachedPage) -> int:
    return len(page.source) + len(page.body) + ENTRY_OVERHEAD
