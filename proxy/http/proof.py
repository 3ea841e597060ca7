"""`POST /__tag-gate/consent`: the banner's proof-of-consent records, checked and logged.

Contract of `handle_consent_post` (called by the handler for the reserved path):
- only with `[banner] enabled` (404 otherwise, as any unknown `/__tag-gate/` path), only
  POST (405), never from another site (`Sec-Fetch-Site` other than same-origin: 403);
- at most `MAX_RECORD_BYTES` of body (413, the connection closed), read with the
  client-body timeout (408);
- rate-limited per client address (`[banner] proof_rate` a minute) and per process
  (`proxy.proof_log.RateLimiter`): 429 with Retry-After; the body is then not read;
- the body must be what `proxy.core.banner.parse_consent_record` accepts (400 naming
  the problem, docs/consent-record.schema.json);
- a good record becomes one JSON line (docs/consent-proof.schema.json) with the
  arrival time and an HMAC-SHA256, keyed with `[banner] proof_salt`, of the client's
  address and User-Agent, handed to the sink without waiting (`proxy.proof_log`); the
  answer is 204 whatever the sink does later. Each outcome is counted
  (`tag_gate_consent_records_total{outcome}`).
The page never waits for any of this: banner.js sends the record with sendBeacon.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from aiohttp import hdrs, web

from ..core.addresses import IPNetwork
from ..core.banner import CONSENT_PATH, MAX_RECORD_BYTES, parse_consent_record
from .relay import error_response
from .request_body import read_capped

__all__ = ["CONSENT_PATH", "client_address", "client_hash", "handle_consent_post"]

if TYPE_CHECKING:
    from .exchange import Exchange
    from .state import ProxyState

LINE_VERSION: Final = 1
"""`v` of the proof line (docs/consent-proof.schema.json)."""

SAME_ORIGIN: Final = frozenset({"same-origin", "none"})


def client_address(peer: str | None, forwarded_for: Sequence[str], trusted: tuple[IPNetwork, ...]) -> str:
    """The visitor's address: the peer, or behind trusted proxies the right-most
    X-Forwarded-For entry that is not one of them."""
    address = peer or "unknown"
    if not trusted or not _trusted(address, trusted):
        return address
    for value in reversed([part.strip() for header in forwarded_for for part in header.split(",")]):
        if not value:
            continue
        address = value
        if not _trusted(value, trusted):
            break
    return address


def _trusted(address: str, trusted: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_hash(salt: str, address: str, user_agent: str) -> str:
    """HMAC-SHA256 keyed with the salt over address and user agent, as 64 hex digits:
    links the records of one browser without storing its address."""
    return hmac.new(salt.encode(), f"{address}\n{user_agent}".encode(), hashlib.sha256).hexdigest()


def _utc(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


async def handle_consent_post(ex: Exchange, state: ProxyState) -> web.StreamResponse:
    """Answer one request to the consent endpoint (see the module docstring)."""
    config = ex.runtime.config
    settings = config.banner
    count = state.metrics.consent_records
    request = ex.request
    if not settings.enabled:
        return error_response(404, "Not Found")
    if ex.method != "POST":
        resp = error_response(405, "Method Not Allowed")
        resp.headers[hdrs.ALLOW] = "POST"
        return resp
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in SAME_ORIGIN:
        count.labels("cross_site").inc()
        return error_response(403, "Forbidden: consent records come from the site's own pages", close=True)
    length = request.content_length
    if length is not None and length > MAX_RECORD_BYTES:
        count.labels("too_large").inc()
        return error_response(413, "Content Too Large", close=True)
    address = client_address(
        request.remote, request.headers.getall(hdrs.X_FORWARDED_FOR, ()), config.server.trusted_proxies
    )
    now = time.time()
    if not state.proof_limiter.allow(address, settings.proof_rate, now):
        count.labels("rate_limited").inc()
        resp = error_response(429, "Too Many Requests", close=True)
        resp.headers[hdrs.RETRY_AFTER] = "60"
        return resp
    try:
        body = await read_capped(request, MAX_RECORD_BYTES, config.timeouts.client_body)
    except TimeoutError:
        count.labels("invalid").inc()
        return error_response(408, "Request Timeout: the request body stopped arriving", close=True)
    if body is None:
        count.labels("too_large").inc()
        return error_response(413, "Content Too Large", close=True)
    try:
        record = parse_consent_record(body, config.consent.categories)
    except ValueError as exc:
        count.labels("invalid").inc()
        return error_response(400, f"Bad Request: {exc}")
    sink = state.proof_sink
    if sink is not None:
        line: dict[str, Any] = {
            "event": "consent",
            "v": LINE_VERSION,
            "time": _utc(now),
            "consent_id": record.consent_id,
            "policy_version": record.policy_version,
            "granted": list(record.granted),
            "refused": list(record.refused),
            "action": record.action,
            "page": record.page,
            "decided_at": record.time,
            "client": client_hash(settings.proof_salt, address, request.headers.get(hdrs.USER_AGENT, "")),
        }
        sink.write(line)
    count.labels("written" if sink is not None else "not_kept").inc()
    return web.Response(status=204, headers={hdrs.CACHE_CONTROL: "no-store"})
