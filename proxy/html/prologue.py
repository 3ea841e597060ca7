"""Where the runtime guard goes in a complete document, read from its bytes as the HTML
tokenizer reads them (pure, stdlib only).

The runtime guard goes right after the `<head>` start tag, or, in an `<html>` without
one, right before its first element (`Additions.head_start`): never right after
`<html>` when a `<head>` follows, since a script there makes the parser invent a head
and ignore the page's own `<head id=... prefix=...>` with its attributes; in a document
with neither start tag, right before its first element. A streamed page gets it from
lol-html (the `head, html > *` handler; with neither tag, spliced in by the gate before
that element, `first_element_spot`); a page that arrived whole
gets it spliced into the gate's output at this offset instead, which saves the
registration, two handler calls and the trip of ~10 KB through lol-html: about a tenth
of what gating a 2 KB page costs. `HtmlGate.feed_whole` checks that the output's first
bytes are the input's (no handler touched the prologue or the tag) before it splices.

`head_start_spot` only answers for the plain prologues real pages have, each read
exactly as the tokenizer does; anything else is -1 (the caller keeps the handler):

- an optional UTF-8 byte order mark, then up to 128 of: runs of ASCII whitespace; comments
  (`<!--` to the first `-->` or `--!>` counted from its third byte, so `<!-->` and
  `<!--->` are whole comments, as the tokenizer's abrupt-closing rules make them);
  a DOCTYPE (`<!doctype` in any case, to the first `>`: every DOCTYPE state ends there);
- then `<head` (any case) and its attributes up to `>` or `/>`: names without quotes,
  `<` or `=`, values double-quoted, single-quoted or unquoted (without the characters
  that make an unquoted value a parse error), attributes separated by whitespace. A
  quote where the tokenizer would take it as part of a name, a `/` inside the tag, or
  text before the tag: -1;
- or `<html` and its attributes, up to 128 runs of whitespace and comments, then such a
  `<head>` tag (the offset after it), or the whole start tag of another element whose
  name is ASCII letters, digits and hyphens (the offset before it);
- or such a start tag right away (a document without `<html>` and `<head>` start tags,
  as minifiers write them): the offset before it, where the parser makes the head. A
  streamed page learns the same from its first bytes (`first_element_spot`).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["FIRST_ELEMENT_LIMIT", "first_element_spot", "head_start_spot", "whole_document"]

_ATTRIBUTES: Final = (
    rb"(?:[\t\n\x0c\r ]+[^\t\n\x0c\r />\"'<=]+"
    rb"(?:[\t\n\x0c\r ]*=[\t\n\x0c\r ]*(?:\"[^\"]*\"|'[^']*'|[^\t\n\x0c\r >\"'<=`]+))?)*"
    rb"[\t\n\x0c\r ]*/?>"
)
_WHITESPACE_OR_COMMENT: Final = rb"[\t\n\x0c\r ]++|<!(?=--)(?s:.*?)(?:-->|--!>)"
_BEFORE_TAGS: Final = (
    # a byte order mark; then, possessively (each item read once, never re-read to make
    # the tag match), at most 128 runs of whitespace, comments (their end looked for from
    # the comment's third byte on) and DOCTYPEs
    rb"(?:\xef\xbb\xbf)?(?:" + _WHITESPACE_OR_COMMENT + rb"|<!doctype[^>]*>){0,128}+"
)
_OTHER_ELEMENT: Final = rb"(?=<(?!(?:html|head)(?![a-z\d-]))[a-z][a-z\d-]*" + _ATTRIBUTES + rb")"
"""The whole start tag of an element other than `<html>` and `<head>`, looked ahead at."""
_PROLOGUE: Final = re.compile(
    # `<head>`: after it; `<html>`, then `<head>` (after it) or another element's whole
    # start tag (before it)
    _BEFORE_TAGS
    + rb"(?:<head%s|<html%s(?:%s){0,128}+(?:<head%s|%s))"
    % (_ATTRIBUTES, _ATTRIBUTES, _WHITESPACE_OR_COMMENT, _ATTRIBUTES, _OTHER_ELEMENT),
    re.IGNORECASE,
)
FIRST_ELEMENT_LIMIT: Final = 1 << 16
"""Where neither `<html>` nor `<head>` comes first, the first element's whole start tag
must end within this many bytes for the guard to go right before it: a streamed page's
first bytes are held until that is known (`HtmlGate._place_head`), so a whole page
reads no further."""
_FIRST_ELEMENT: Final = re.compile(_BEFORE_TAGS + _OTHER_ELEMENT, re.IGNORECASE)
_PLAIN_START: Final = re.compile(_BEFORE_TAGS, re.IGNORECASE)
_UNFINISHED: Final = re.compile(rb"<!(?:-(?:-|$)|d(?:o(?:c(?:t(?:y(?:p(?:e|$)|$)|$)|$)|$)|$)|$)", re.IGNORECASE)
_TOP_TAG: Final = re.compile(rb"<(?:html|head)[\t\n\x0c\r />]", re.IGNORECASE)


def head_start_spot(document: bytes) -> int:
    """Where the guard goes in a document with a plain prologue (module docstring): right
    after its `<head>` start tag, or before the first element of its `<html>`, or of the
    document when it has neither (`first_element_spot`); else -1.
    One regular expression: run right after lol-html, with the caches cold, a loop over
    the prologue in Python cost four times what it costs on its own."""
    m = _PROLOGUE.match(document)
    if m is not None:
        return m.end()
    spot = first_element_spot(document, True)
    assert spot is not None  # a complete document is answered
    return spot


def first_element_spot(prefix: bytes, complete: bool) -> int | None:
    """Where the guard goes in a document whose first tag, after a plain prologue, starts
    an element other than `<html>` and `<head>` (a minified page, `<!doctype html><meta
    charset=utf-8>...`): right before it, which is where the parser makes the head; -1
    for any other document (`<html>` or `<head>` first: the gate's `head, html > *`
    handler places it; text first; a prologue `head_start_spot` does not read); None
    while `prefix` (not `complete`) ends before that is known: inside the prologue or the
    first start tag. Only the first `FIRST_ELEMENT_LIMIT` bytes are read (a prefix
    that long is answered), so a streamed page and a whole one get it at one place."""
    m = _FIRST_ELEMENT.match(prefix, 0, FIRST_ELEMENT_LIMIT)
    if m is not None:
        return m.end()
    if complete or len(prefix) >= FIRST_ELEMENT_LIMIT:
        return -1
    start = _PLAIN_START.match(prefix)
    assert start is not None  # every part is optional
    end = start.end()
    rest = prefix[end : end + 16]  # what follows the prologue's plain part: its first bytes
    if b"\xef\xbb\xbf".startswith(rest) or (rest[:1] == b"<" and len(rest) < 2):
        return None  # the prologue may go on (a byte order mark, cut), a tag may start
    if rest.startswith(b"<!") and _UNFINISHED.match(rest):
        return None  # a comment or DOCTYPE not read whole: unfinished (or the 129th item)
    if rest[:1] == b"<" and rest[1:2].isalpha() and _TOP_TAG.match(rest) is None:
        return None  # a start tag, maybe unfinished (a quoted value may hold a `>`)
    return -1


_WHOLE: Final = re.compile(
    rb"(?:\xef\xbb\xbf)?(?:" + _WHITESPACE_OR_COMMENT + rb"){0,128}+"
    rb"(<!doctype|<(?:html|head|body)(?=[\t\n\x0c\r />]))?",
    re.IGNORECASE,
)


def whole_document(prefix: bytes, complete: bool) -> bool | None:
    """Whether markup starting with `prefix` is a whole document rather than a fragment:
    after a byte order mark, whitespace and comments, a DOCTYPE or an `<html>`, `<head>`
    or `<body>` start tag. None while `prefix` (not `complete`) ends before that is known
    (in a comment, or a tag's first bytes)."""
    m = _WHOLE.match(prefix)
    assert m is not None  # every part is optional
    if m.group(1) is not None:
        return True
    rest = prefix[m.end() : m.end() + 10]
    if not complete and (not rest or (rest[:1] == b"<" and (rest.startswith(b"<!-") or len(rest) < 10))):
        return None
    return False
