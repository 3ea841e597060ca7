"""The start of a page's body: what document it is and how the browser decodes it,
decided before the gate sees a byte (pure bytes in and out; no IO).

`DocumentStart` sits between content decoding and the gate. It holds the first bytes
until it knows what the browser will make of them (`proxy.core.mime.sniff` for a body
of unknown type, `proxy.core.charset.resolve_charset` for the encoding), then:

- a body the browser does not render as a document (sniffed): `NotAPage`, and the
  caller relays the upstream's bytes as they are;
- an HTML page in an encoding whose bytes below 0x80 are not ASCII (UTF-16 by label,
  mark or `<?xml` spelling; ISO-2022-JP): transcoded to UTF-8 before the HTML gate and
  sent as UTF-8, so the gate and the browser read the same characters;
- any other HTML page: gated as it is, with the encoding the browser would only have
  guessed or found in a `<meta>` declared in `Content-Type`, so the browser cannot
  decide otherwise later (a `<meta>` further down, its detector);
- an XML document: transcoded to UTF-8 when it is not, then `XmlGate`; relayed under
  the strict Content-Security-Policy;
- an HTML body the page's own code fetched (`Additions.documents_only`) that is not a
  whole document (`prologue.whole_document`): gated without tag-gate's additions.

`outcome` says what the response's head must then carry; it is set before the first
output byte, and a caller sends the head only after output (or the end).
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from ..core.charset import Charset, resolve_charset
from ..core.encoding_labels import ASCII_INCOMPATIBLE, PYTHON_CODECS, declared_label
from ..core.mime import HTML, sniff
from .gate import GateError, GateStats, HtmlGate
from .prologue import whole_document

START_LIMIT: Final = 65536
"""Most decoded bytes held before deciding: a page whose head declares no charset
within this many bytes is decided on what is known (Chromium's meta prescan keeps
looking while it is in the head, however long)."""


class NotAPage(GateError):
    """The body is not a document the browser renders: relay it unchanged."""

    def __init__(self, detail: str) -> None:
        super().__init__("not_a_page", detail)


@dataclass(frozen=True, slots=True)
class StartOutcome:
    """What the response's head must carry once the start is decided."""

    content_type: str | None
    """A `Content-Type` to send instead of the upstream's (None: leave it)."""
    fail_safe: bool
    """An XML document found by sniffing: the strict Content-Security-Policy applies."""
    charset: Charset
    fragment: bool = False
    """A fragment the page's code fetched, which got no additions: a navigation to the
    same URL gets them, so the response varies by what tells the two apart."""


class Downstream(Protocol):
    def feed(self, data: bytes) -> bytes: ...
    def end(self) -> bytes: ...
    def feed_whole(self, document: bytes) -> bytes: ...


class Transcoder:
    """Bytes in `encoding` (its mark already skipped) → UTF-8, incrementally; what the
    codec cannot map becomes U+FFFD, as in the browser's decoder."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        codec = PYTHON_CODECS.get(encoding)
        self._decoder = codecs.getincrementaldecoder(codec)(errors="replace") if codec else None
        self._user_defined = encoding == "x-user-defined"
        self._seen = False

    def feed(self, data: bytes, final: bool = False) -> bytes:
        if self._decoder is None:  # replacement: the whole input is one U+FFFD
            out = b"\xef\xbf\xbd" if data and not self._seen else b""
            self._seen = self._seen or bool(data)
            return out
        text = self._decoder.decode(data, final)
        if self._user_defined:
            text = text.translate(_USER_DEFINED)
        return text.encode("utf-8", "surrogatepass")


_USER_DEFINED: Final = {b: 0xF700 + b for b in range(0x80, 0x100)}


class _Through:
    """No transcoding."""

    def feed(self, data: bytes, final: bool = False) -> bytes:
        return data


class DocumentStart:
    """See the module docstring. `kind` is "html", "xml" or "sniff" (a body of unknown
    type), `essence` the MIME type to declare when a charset must be, `header_charset`
    the `Content-Type` charset label (None: none)."""

    def __init__(
        self,
        html_gate: HtmlGate,
        make_xml_gate: Callable[[], Downstream],
        *,
        kind: str,
        essence: str,
        header_charset: str | None,
        default_encoding: str,
    ) -> None:
        self.html_gate = html_gate
        self._make_xml_gate = make_xml_gate
        self.kind = kind
        self._essence = essence
        self._header_charset = header_charset
        self._default = default_encoding
        self._held: list[bytes] = []
        self.outcome: StartOutcome | None = None
        self._down: Downstream = html_gate
        self._transcode: Transcoder | _Through = _Through()

    @property
    def stats(self) -> GateStats:
        return self.html_gate.stats

    @property
    def spliced(self) -> tuple[int, bytes, bytes] | None:
        """`HtmlGate.spliced` of the HTML gate, whose output this passes on as it is."""
        return self.html_gate.spliced if self._down is self.html_gate else None

    @property
    def pending_head(self) -> tuple[bytes, bytes] | None:
        """`HtmlGate.pending_head` of the HTML gate (None once the body is XML)."""
        return self.html_gate.pending_head if self._down is self.html_gate else None

    # ------------------------------------------------------------------ deciding

    def _decide(self, complete: bool) -> bool:
        """Try to decide on the bytes held; True once decided."""
        prefix = b"".join(self._held)
        if len(self._held) > 1:
            self._held = [prefix]
        complete = complete or len(prefix) >= START_LIMIT
        kind = self.kind
        sniffed = False
        if kind == "sniff":
            found = sniff(prefix, complete)
            if found is None:
                return False
            if found == "other":
                raise NotAPage("the browser would not render this body as a document")
            kind, sniffed = found, True
            self._essence = HTML if found == "html" else "text/xml"
        charset = resolve_charset(
            self._header_charset, prefix, complete, default=self._default, html_page=kind == "html"
        )
        if charset is None:
            return False
        fragment = False
        if kind == "html" and self.html_gate.documents_only and charset.encoding not in ASCII_INCOMPATIBLE:
            whole = whole_document(prefix, complete)
            if whole is None:
                return False
            if not whole:
                self.html_gate.drop_additions()
                fragment = True
        self.kind = kind
        content_type: str | None = None
        if kind == "html":
            if charset.encoding in ASCII_INCOMPATIBLE:
                self._transcode = Transcoder(charset.encoding)
                content_type = f"{HTML}; charset=utf-8"
                self.html_gate.page_charset = "UTF-8"
            else:
                if not charset.settled or sniffed:
                    content_type = f"{HTML}; charset={declared_label(charset.encoding)}"
                self.html_gate.page_charset = charset.encoding
        else:
            if charset.encoding != "UTF-8":
                self._transcode = Transcoder(charset.encoding)
                content_type = f"{self._essence}; charset=utf-8"
            elif sniffed:
                content_type = f"{self._essence}; charset=utf-8"
            self._down = self._make_xml_gate()
        self.outcome = StartOutcome(content_type, sniffed and kind == "xml", charset, fragment)
        if charset.bom and not isinstance(self._transcode, _Through):
            self._held = [prefix[charset.bom :]]
        return True

    def _flush_held(self, final: bool) -> bytes:
        held = b"".join(self._held)
        self._held = []
        data = self._transcode.feed(held, final)
        if final:
            return self._down.feed_whole(data)
        return self._down.feed(data) if data else b""

    # ------------------------------------------------------------------ gate API

    def feed(self, data: bytes) -> bytes:
        if self.outcome is not None:
            return self._down.feed(self._transcode.feed(data))
        self._held.append(data)
        if not self._decide(False):
            return b""
        return self._flush_held(False)

    def end(self) -> bytes:
        if self.outcome is None:
            self._decide(True)
            return self._flush_held(True)
        tail = self._transcode.feed(b"", True)
        out = self._down.feed(tail) if tail else b""
        return out + self._down.end()

    def feed_whole(self, document: bytes) -> bytes:
        if self.outcome is None and not self._held:
            self._held.append(document)
            self._decide(True)
            return self._flush_held(True)
        return self.feed(document) + self.end()
