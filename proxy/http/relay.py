"""The body stage: relaying an upstream response to the client, raw or through the gate.

Contract (DESIGN.md "fail closed, never break the page"):
- every upstream byte is forwarded as soon as it is read, with backpressure both ways
  (a slow client slows the upstream read, never grows a buffer);
- a failure before the first byte goes out is answered cleanly: a page the gate cannot
  parse is relayed under a strict CSP with its connection hints neutralised (fail-safe), a body that cannot be
  decoded gets 502;
- a failure after the first byte aborts the client connection (no terminating chunk),
  so neither the browser nor a cache can take a truncated or half-filtered body for a
  complete one;
- a client that goes away stops the upstream read and drops that connection.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Sequence
from typing import Final

import aiohttp
from aiohttp import hdrs, web
from multidict import CIMultiDict

from ..core.actions import ELEMENT_ACTIONS
from ..html.body import WHOLE_DOCUMENT_MAX, BodyPipeline
from ..html.cache import CachedPage
from ..html.codings import DecodeError, make_decoder
from ..html.gate import GateError, GateStats
from ..html.hints import HintFilter
from ..html.start import DocumentStart, NotAPage
from ..metrics import Metrics
from ._aiohttp import send_head_with_body
from .exchange import Exchange
from .header_filters import FRAGMENT_VARY
from .pool import UpstreamResponse
from .response import REPRESENTATION_HEADERS, add_vary
from .stages import Body, ResponsePlan, Visitor

log = logging.getLogger("tag_gate")

FIRST_SLICE: Final = 4096
"""Before the first byte goes out the gate takes small steps, so the page starts early."""

GATE_SLICE: Final = 65536
"""Later, most upstream bytes the gate takes in one step (fewer, larger writes; a step
stays well under a millisecond)."""

COALESCE_PEEK: Final = 65536
"""Most already-received body bytes a pass-through response sends with its head."""

REPLAY_LIMIT: Final = 1 << 20
"""Upstream bytes kept while the gate has produced nothing yet, to replay them if it
fails before the first byte goes out; past this the headers are sent anyway."""

DECISIONS_HEADER: Final = "Tag-Gate-Decisions"


async def start_response(request: web.BaseRequest, resp: web.StreamResponse, *, coalesce: bool) -> None:
    """Prepare `resp`. With `coalesce` (a body write follows at once) the head goes out
    in the same socket write as the first body bytes instead of one write of its own.

    An HTTP/1.0 client cannot be sent chunks: a body of unknown length ends when the
    connection closes, so the connection is closed after it (aiohttp would omit the
    length and keep the connection open, leaving the client waiting forever)."""
    if request.version < aiohttp.HttpVersion11 and resp.content_length is None:
        resp.force_close()
    if coalesce:
        send_head_with_body(resp)
    await resp.prepare(request)


def decisions_value(plan: ResponsePlan, stats: GateStats | None, visitor: Visitor) -> str:
    """`Tag-Gate-Decisions`: what was done to this response, as counts."""
    parts = []
    if stats is not None:
        for action in ELEMENT_ACTIONS:
            parts.append(f"{action.value}={stats.total(action)}")
    parts.append(f"cookies-dropped={len(plan.dropped_cookies)}")
    parts.append(f"cookies-expired={plan.expired}")
    parts.append(f"consent={visitor.consent.key}")
    parts.append(f"source={visitor.consent.source}")
    return "; ".join(parts)


class Relay:
    """Relays one exchange's response body (see the module docstring)."""

    def __init__(self, ex: Exchange, metrics: Metrics) -> None:
        self.ex = ex
        self.metrics = metrics

    async def raw(
        self, resp: web.StreamResponse, up: UpstreamResponse, replay: Sequence[bytes], *, body: bool = True
    ) -> web.StreamResponse:
        """Send the head, then the upstream's bytes unchanged (after `replay`, bytes
        already read from it)."""
        request = self.ex.request
        content = up.content
        # Body bytes that came in with the head (a small page, all of it) leave in the
        # head's socket write; a body still on its way never holds the head back.
        ready = content.read_nowait(COALESCE_PEEK) if body and content.exception() is None else b""
        try:
            await start_response(request, resp, coalesce=bool(ready) or (body and any(replay)))
            if body:
                for chunk in replay:
                    await resp.write(chunk)
                if ready:
                    await resp.write(ready)
                while True:
                    chunk = await content.readany()
                    if not chunk:
                        break
                    await resp.write(chunk)
            await resp.write_eof()
        except ConnectionResetError:
            self.client_gone(up)
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.abort(up, exc)
        return resp

    def client_gone(self, up: UpstreamResponse) -> None:
        """The client went away mid-response: stop reading the upstream and drop it."""
        self.metrics.client_disconnects.inc()
        self.ex.note("client_disconnected")
        up.close()

    def abort(self, up: UpstreamResponse, exc: BaseException) -> None:
        """The upstream failed mid-body: drop both connections so nobody sees a clean end.

        The caller returns the response without `write_eof()`; aiohttp's attempt to finish
        it then fails on the aborted transport and the connection is discarded.
        """
        request = self.ex.request
        kind = "timeout" if isinstance(exc, asyncio.TimeoutError) else "body_aborted"
        self.metrics.upstream_error[kind].inc()
        log.warning("upstream body failed (%s) for %s %s: %s", kind, request.method, request.raw_path[:200], exc)
        self.ex.note(f"upstream_{kind}")
        up.close()
        transport = request.transport
        if transport is not None:
            transport.abort()


class Phase(enum.Enum):
    """Where a gated relay is (see `GatedRelay`)."""

    BUFFERING = "buffering"
    HOLDING = "holding"
    STREAMING = "streaming"
    COMPLETE = "complete"
    FAIL_SAFE = "fail-safe"
    UNGATED = "ungated"
    REFUSED = "refused"
    ABORTED = "aborted"
    CLIENT_GONE = "client-gone"


class GatedRelay(Relay):
    """The body through the HTML gate, streaming: each upstream chunk's output is sent
    before the next chunk is read.

    Phases (terminal ones in capitals of their outcome):

        BUFFERING  nothing sent; upstream bytes kept (≤ REPLAY_LIMIT) to replay
            ├─ first gate output, or replay past REPLAY_LIMIT ─▶ STREAMING (head sent)
            ├─ body ends ─▶ COMPLETE (head, output and end in one write)
            ├─ gate or decode fails ─▶ `_failed`: FAIL_SAFE (page unchanged, strict
            │  CSP) or REFUSED (502, undecodable body)
            └─ its first bytes show no page (`NotAPage`) ─▶ UNGATED (relayed as it came)
        HOLDING    `html.decisions_header`: all output held for the counts
            ├─ body ends ─▶ COMPLETE (one write with Content-Length and the header)
            └─ gate or decode fails, or output over the hold limit ─▶ `_failed`
        STREAMING  head sent; output written as it comes
            ├─ body ends ─▶ COMPLETE (last piece and the chunked end in one write)
            └─ gate or decode fails ─▶ `_failed`: ABORTED
        any        client gone ─▶ CLIENT_GONE; upstream fails mid-body ─▶ ABORTED

    `_failed` is the one place that decides between failing safe and aborting: before
    the head has gone out the failure can still be answered; after, it cannot."""

    def __init__(self, ex: Exchange, metrics: Metrics, resp: web.StreamResponse, upstream_coding: str | None) -> None:
        super().__init__(ex, metrics)
        assert ex.plan is not None and ex.visitor is not None and ex.upstream is not None
        self.resp = resp
        self.plan = ex.plan
        self.up = ex.upstream
        self.upstream_coding = upstream_coding
        runtime = ex.runtime
        self.stages = runtime.stages
        self._pipeline: BodyPipeline | None = None
        html = runtime.config.html
        hold = html.decisions_header and self.plan.body is Body.GATE
        self.phase = Phase.HOLDING if hold else Phase.BUFFERING
        self.max_held = html.max_decoded_size
        self.held: list[bytes] = []
        self.held_size = 0
        self.replay: list[bytes] = []
        self.replay_size = 0
        # Pages that arrive whole may come from, or go into, the gated-page cache;
        # never in report-only mode or while holding output for the decisions header.
        self.cache = runtime.gate_cache if self.phase is Phase.BUFFERING and self.plan.body is Body.GATE else None
        self.cached: CachedPage | None = None

    @property
    def pipeline(self) -> BodyPipeline:
        """The body pipeline (decode, gate, encode), built when first needed: a page
        served from the gated-page cache never needs one."""
        pipeline = self._pipeline
        if pipeline is None:
            ex = self.ex
            assert ex.visitor is not None
            pipeline = self._pipeline = self.stages.body_pipeline(self.plan, ex.visitor.consent, ex.host)
        return pipeline

    async def run(self) -> web.StreamResponse:
        content = self.up.content
        whole_limit = WHOLE_DOCUMENT_MAX if self.plan.decode is None else GATE_SLICE
        length = self.up.content_length
        try:
            try:
                out = b""
                finished = False
                if length is not None and 0 < length <= whole_limit:
                    # A small page of declared length is read whole and gated in one pass
                    # (an origin that declares a length has the page ready; the read
                    # timeout still applies between reads).
                    try:
                        chunk = await content.readexactly(length)
                    except asyncio.IncompleteReadError as exc:
                        raise aiohttp.ClientPayloadError("the upstream body ended early") from exc
                    self._keep_for_replay(chunk)
                    out = self._finish_whole(chunk)
                    finished = True
                while not finished:
                    chunk = await content.readany()
                    if not chunk:
                        break
                    if content.is_eof() and len(chunk) <= whole_limit:
                        # The upstream has sent everything: if the rest is small, gate it
                        # in one step and send it in one write (a whole page: one gate pass
                        # over the complete document, see `BodyPipeline.finish`).
                        rest = content.read_nowait(whole_limit - len(chunk) + 1)
                        if rest:
                            chunk += rest
                        finished = content.at_eof() and len(chunk) <= whole_limit
                    self._keep_for_replay(chunk)
                    if finished:
                        out = self._finish_whole(chunk)
                        break
                    # Large reads are gated in slices so the first bytes leave early and
                    # no single step holds the event loop for long.
                    pipeline = self.pipeline
                    pos, size = 0, len(chunk)
                    while pos < size:
                        step = GATE_SLICE if self.phase is Phase.STREAMING else FIRST_SLICE
                        await self._take(pipeline.feed(chunk[pos : pos + step] if pos or size > step else chunk))
                        pos += step
                if not finished:
                    out = self.pipeline.end()
            except (GateError, DecodeError) as exc:
                return await self._failed(exc)
            return await self._complete(out)
        except ConnectionResetError:
            self.phase = Phase.CLIENT_GONE
            self.client_gone(self.up)
        except (TimeoutError, aiohttp.ClientError) as exc:
            if not self.resp.prepared:
                # Nothing has gone out yet: the failure can still be answered cleanly.
                self.phase = Phase.REFUSED
                return self._upstream_failed(exc)
            self.phase = Phase.ABORTED
            self.abort(self.up, exc)
        finally:
            built = self._pipeline
            if self.cached is not None:
                self.stages.count(self.cached.counts)
            elif built is not None:
                self.stages.count(built.gate.stats.counts.items())
                if built.failure is not None:
                    self.metrics.fail_safe.labels(f"report_only_{built.failure}").inc()
        return self.resp

    def _upstream_failed(self, exc: BaseException) -> web.Response:
        """The upstream failed mid-body before the head went out: 502 (504 for silence)."""
        request = self.ex.request
        timeout = isinstance(exc, asyncio.TimeoutError)
        kind = "timeout" if timeout else "body_aborted"
        self.metrics.upstream_error[kind].inc()
        log.warning("upstream body failed (%s) for %s %s: %s", kind, request.method, request.raw_path[:200], exc)
        self.ex.note(f"upstream_{kind}")
        self.up.close()
        if timeout:
            return error_response(504, "Gateway Timeout: the upstream stopped sending the page")
        return error_response(502, "Bad Gateway: the upstream's page ended early")

    def _finish_whole(self, body: bytes) -> bytes:
        """Gate a body that has arrived whole, through the gated-page cache when there is
        one (`proxy.html.cache`: the key holds every input of the gated output). Not a
        page whose Content-Security-Policy names a nonce: CSP requires a nonce to be new
        for every response, so its key never recurs, and keeping such pages only
        pushed out those that do."""
        cache = self.cache
        ex, plan, metrics = self.ex, self.plan, self.metrics
        if cache is None or plan.nonce is not None:
            if cache is not None:
                metrics.gate_cache_event["uncacheable"].inc()
            return self.pipeline.finish(body)
        assert ex.visitor is not None
        key = cache.key(
            body,
            coding=plan.decode,
            encode=plan.encode,
            consent_key=ex.visitor.consent.key,
            host=ex.host,
            nonce=plan.nonce,
            generation=ex.runtime.generation,
            additions=plan.additions,
            charset=plan.charset_label,
            document=plan.document,
            essence=plan.essence,
        )
        hit = cache.get(key, body)
        if hit is not None:
            metrics.gate_cache_event["hit"].inc()
            self.cached = hit
            return hit.body
        metrics.gate_cache_event["miss"].inc()
        pipeline = self.pipeline
        out = pipeline.finish(body)  # a failure raises: nothing is cached
        stats = pipeline.gate.stats
        start = pipeline.gate
        outcome = start.outcome if isinstance(start, DocumentStart) else None
        evictions = cache.evictions
        cache.put(
            key,
            CachedPage(
                body,
                out,
                tuple(stats.counts.items()),
                stats.activation_needed,
                content_type=outcome.content_type if outcome is not None else None,
                fail_safe=outcome.fail_safe if outcome is not None else False,
                fragment=outcome.fragment if outcome is not None else False,
            ),
        )
        if cache.evictions != evictions:
            metrics.gate_cache_event["eviction"].inc(cache.evictions - evictions)
        metrics.gate_cache_bytes.set(cache.bytes)
        return out

    def _keep_for_replay(self, chunk: bytes) -> None:
        if self.phase is not Phase.STREAMING:
            self.replay.append(chunk)
            self.replay_size += len(chunk)

    def _settle_head(self) -> None:
        """Apply what the start of the body decided (`proxy.html.start`) to the head,
        just before it goes out: a Content-Type naming the encoding, the fail-safe CSP
        for an XML document found by sniffing, `FRAGMENT_VARY` in `Vary` for a fetched
        fragment that got no additions. A page from the gated-page cache gets what its
        start decided when it was gated."""
        cached = self.cached
        if cached is not None:
            content_type, fail_safe, fragment = cached.content_type, cached.fail_safe, cached.fragment
        else:
            start = self._pipeline.gate if self._pipeline is not None else None
            if not isinstance(start, DocumentStart) or start.outcome is None:
                return
            outcome = start.outcome
            content_type, fail_safe, fragment = outcome.content_type, outcome.fail_safe, outcome.fragment
        headers = self.resp.headers
        if content_type is not None:
            headers[hdrs.CONTENT_TYPE] = content_type
        if fragment:
            add_vary(headers, FRAGMENT_VARY)
        if fail_safe:
            self.stages.fail_safe_headers(headers, "xml_document")

    async def _start(self, *, coalesce: bool) -> None:
        self._settle_head()
        await start_response(self.ex.request, self.resp, coalesce=coalesce)

    async def _take(self, out: bytes) -> None:
        """Gate output produced mid-body."""
        if self.phase is Phase.HOLDING:
            self._hold(out)
            return
        if self.phase is Phase.BUFFERING and (out or self.replay_size > REPLAY_LIMIT):
            await self._start(coalesce=bool(out))
            self.phase = Phase.STREAMING
            self.replay = []
        if out:
            await self.resp.write(out)

    def _hold(self, out: bytes) -> None:
        self.held.append(out)
        self.held_size += len(out)
        if self.held_size > self.max_held:
            raise GateError("too_large_to_hold", "page larger than the decisions-header buffer")

    async def _complete(self, out: bytes) -> web.StreamResponse:
        """The body has ended; `out` is the gate's last output."""
        resp = self.resp
        if self.phase is Phase.HOLDING:
            try:
                self._hold(out)
            except GateError as exc:
                return await self._failed(exc)
            body = b"".join(self.held)
            assert self.ex.visitor is not None
            resp.headers[DECISIONS_HEADER] = decisions_value(self.plan, self.pipeline.gate.stats, self.ex.visitor)
            resp.content_length = len(body)
            self._settle_head()
            await resp.prepare(self.ex.request)
            await resp.write(body)
            await resp.write_eof()
        else:
            if self.phase is Phase.BUFFERING:
                await self._start(coalesce=bool(out))
            await resp.write_eof(out)  # the last piece and the chunked terminator in one write
        self.phase = Phase.COMPLETE
        return resp

    def _restore_coding(self, headers: CIMultiDict[str]) -> None:
        """The upstream's bytes go out as they came: with their own Content-Encoding."""
        headers.popall(hdrs.CONTENT_ENCODING, None)
        if self.upstream_coding:
            headers[hdrs.CONTENT_ENCODING] = self.upstream_coding

    async def _failed(self, exc: GateError | DecodeError) -> web.StreamResponse:
        """Fail safe or abort: the one decision, by whether the head has gone out.
        A body found not to be a page at all (`NotAPage`, decided on its first bytes)
        is relayed as it came."""
        reason = exc.reason if isinstance(exc, GateError) else f"decode_{exc.reason}"
        if isinstance(exc, NotAPage) and self.phase is not Phase.STREAMING:
            headers = self.plan.headers
            self._restore_coding(headers)
            for name in REPRESENTATION_HEADERS:  # the upstream's bytes, so its framing too
                headers.popall(name, None)
                for value in self.up.headers.getall(name, ()):
                    headers.add(name, value)
            self.phase = Phase.UNGATED
            return await self.raw(self.resp, self.up, self.replay)
        if self.phase is Phase.STREAMING:
            self.metrics.fail_safe.labels(reason).inc()
            self.phase = Phase.ABORTED
            self.abort(self.up, exc)
            return self.resp
        request = self.ex.request
        log.warning("gate failed before the response started (%s) for %s: %s", reason, request.raw_path[:200], exc)
        self.ex.note(f"fail_safe_{reason}")
        if isinstance(exc, DecodeError):
            self.metrics.fail_safe.labels(reason).inc()
            self.phase = Phase.REFUSED
            self.up.close()
            return error_response(502, "Bad Gateway: the upstream's page could not be decoded")
        # Relayed under a strict CSP, unchanged but for connection hints (CSP does not
        # cover them); refused cookies stay dropped.
        headers = self.plan.headers
        self.stages.fail_safe_headers(headers, reason)
        headers.popall(hdrs.CONTENT_ENCODING, None)  # sent decoded
        self.phase = Phase.FAIL_SAFE
        resp = web.StreamResponse(status=self.up.status, headers=headers)
        return await self._fail_safe_body(resp)

    async def _fail_safe_body(self, resp: web.StreamResponse) -> web.StreamResponse:
        """The fail-safe body: the upstream's bytes from the start (the replay, then the
        rest), decoded, with `<link rel=preconnect|dns-prefetch>` neutralised
        (`proxy.html.hints`). A decode failure now cuts the connection."""
        html = self.ex.runtime.config.html
        decoder = (
            make_decoder(self.plan.decode, max_output=html.max_decoded_size, max_ratio=html.max_ratio)
            if self.plan.decode
            else None
        )
        hints = HintFilter()

        def filtered(chunk: bytes) -> bytes:
            if decoder is None:
                return hints.feed(chunk)
            return b"".join(hints.feed(piece) for piece in decoder.feed(chunk))

        content = self.up.content
        try:
            await start_response(self.ex.request, resp, coalesce=any(self.replay))
            for chunk in self.replay:
                await resp.write(filtered(chunk))
            while True:
                chunk = await content.readany()
                if not chunk:
                    break
                await resp.write(filtered(chunk))
            tail = b"".join(hints.feed(piece) for piece in decoder.end()) if decoder is not None else b""
            await resp.write_eof(tail + hints.end())
        except ConnectionResetError:
            self.client_gone(self.up)
        except (TimeoutError, aiohttp.ClientError, DecodeError) as exc:
            self.abort(self.up, exc)
        if hints.renamed:
            self.ex.note(f"fail_safe_hints_{hints.renamed}")
        return resp


def error_response(status: int, message: str, *, close: bool = False) -> web.Response:
    """A short plain-text answer tag-gate gives itself."""
    resp = web.Response(status=status, text=f"{status} {message}\n", content_type="text/plain")
    if close:
        resp.force_close()
    return resp
