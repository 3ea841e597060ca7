"""Where a complete document's first `<html>` or `<head>` start tag ends, read from its
bytes as the HTML tokenizer reads them (pure, stdlib only).

The runtime guard goes right after that tag (`Additions.head_start`). A streamed page
gets it from lol-html (a `html, head` handler that prepends it); a page that arrived
whole gets it spliced into the gate's output at this offset instead, which saves the
registration, two handler calls and the trip of ~10 KB through lol-html: about a tenth
of what gating a 2 KB page costs. `HtmlGate.feed_whole` checks that the output's first
bytes are the input's (no handler touched the prologue or the tag) before it splices.

`head_start_spot` only answers for the plain prologues real pages have, each read
exactly as the tokenizer does; anything else is -1 (the caller keeps the handler):

- an optional UTF-8 byte order mark, then up to 128 of: runs of ASCII whitespace; comments
  (`<!--` to the first `-->` or `--!>` counted from its third byte, so `<!-->` and
  `<!--->` are whole comments, as the tokenizer's abrupt-closing rules make them);
  a DOCTYPE (`<!doctype` in any case, to the first `>`: every DOCTYPE state ends there);
- then `<html` or `<head` (any case) and its attributes up to `>` or `/>`: names without
  quotes, `<` or `=`, values double-quoted, single-quoted or unquoted (without the
  characters that make an unquoted value a parse error), attributes separated by
  whitespace. A quote where the tokenizer would take it as part of a name, a `/` inside
  the tag, or text before the tag: -1.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["head_start_spot"]

_TOP_TAG: Final = (
    rb"<(?:html|head)"
    rb"(?:[\t\n\x0c\r ]+[^\t\n\x0c\r />\"'<=]+"
    rb"(?:[\t\n\x0c\r ]*=[\t\n\x0c\r ]*(?:\"[^\"]*\"|'[^']*'|[^\t\n\x0c\r >\"'<=`]+))?)*"
    rb"[\t\n\x0c\r ]*/?>"
)
_PROLOGUE: Final = re.compile(
    # a byte order mark; then, possessively (each item read once, never re-read to make
    # the tag match), at most 128 runs of whitespace, comments (their end looked for from
    # the comment's third byte on) and DOCTYPEs; then the tag
    rb"(?:\xef\xbb\xbf)?(?:[\t\n\x0c\r ]++|<!(?=--)(?s:.*?)(?:-->|--!>)|<!doctype[^>]*>){0,128}+" + _TOP_TAG,
    re.IGNORECASE,
)


def head_start_spot(document: bytes) -> int:
    """The offset right after the document's first start tag when it is `<html>` or
    `<head>` behind a plain prologue (module docstring), else -1. One regular expression:
    run right after lol-html, with the caches cold, a loop over the prologue in Python
    cost four times what it costs on its own."""
    m = _PROLOGUE.match(document)
    return m.end() if m else -1
