"""The runtime guard's code: `data/public/guard.js`, compacted and loaded once (pure, stdlib only).

guard.js is written to be read; what ships on every gated page is its compact form:
comments and blank space removed by a small JavaScript tokenizer that knows strings,
template literals, regular expression literals and comments, every other token kept
as it was (`compact_js`). The compact code holds `RULES_PLACEHOLDER` exactly once,
where `proxy.html.guard` puts the rule table, as a JSON text inside a JavaScript string
literal (`js_string`): Chromium compiles a string literal about four times faster than
the same table written as an object literal, and the guard parses it at its first
decision, not while the page waits for the install.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Final

__all__ = [
    "RULES_PLACEHOLDER",
    "compact_js",
    "guard_sizes",
    "js_string",
    "js_tokens",
    "load_guard_code",
    "split_guard_code",
]

RULES_PLACEHOLDER: Final = '"__TG_RULES__"'
"""Where the rule table goes in guard.js (a JSON string literal, so the source parses)."""


class _Tokens:
    """A small JavaScript tokenizer: enough to strip comments and blank space safely.

    It knows strings, template literals (with `${}` nesting), regular expression
    literals and comments. A `/` starts a regular expression after an operator, an
    opening bracket, `,` `;` `:` or a keyword like `return`; after `)`, `]`, `}`, a name
    or a number it is a division. (`}` then `/` could be either in general JavaScript;
    guard.js is written so that it is always a division there.)
    """

    _WORD: Final = re.compile(r"[A-Za-z0-9_$\\]")
    _KEYWORDS: Final = frozenset(
        {"return", "typeof", "case", "do", "else", "in", "of", "new", "delete", "void", "throw", "instanceof", "yield"}
    )
    _PUNCTUATORS: Final = (
        ">>>=",
        "...",
        "===",
        "!==",
        "**=",
        "<<=",
        ">>=",
        ">>>",
        "&&=",
        "||=",
        "??=",
        "=>",
        "==",
        "!=",
        "<=",
        ">=",
        "&&",
        "||",
        "??",
        "?.",
        "++",
        "--",
        "+=",
        "-=",
        "*=",
        "/=",
        "%=",
        "&=",
        "|=",
        "^=",
        "<<",
        ">>",
        "**",
    )

    def __init__(self, src: str) -> None:
        self.src = src

    def __iter__(self) -> Iterator[tuple[str, str]]:
        src, n, i = self.src, len(self.src), 0
        regex_ok = True
        templates: list[int] = []  # brace depth at each open `${`
        depth = 0
        while i < n:
            c = src[i]
            if c in " \t\r\n":
                j = i
                while j < n and src[j] in " \t\r\n":
                    j += 1
                yield "space", src[i:j]
            elif src.startswith("//", i):
                j = src.find("\n", i)
                j = n if j < 0 else j
                yield "comment", src[i:j]
            elif src.startswith("/*", i):
                j = src.find("*/", i + 2)
                if j < 0:
                    raise ValueError(f"unterminated comment at {i}")
                j += 2
                yield "comment", src[i:j]
            elif c in "'\"":
                j = self._string_end(i, c)
                yield "string", src[i:j]
                regex_ok = False
            elif c == "`" or (c == "}" and templates and templates[-1] == depth):
                if c == "}":
                    templates.pop()
                j = i + 1
                while True:
                    if j >= n:
                        raise ValueError(f"unterminated template at {i}")
                    if src[j] == "\\":
                        j += 2
                    elif src[j] == "`":
                        j += 1
                        break
                    elif src.startswith("${", j):
                        j += 2
                        templates.append(depth)
                        break
                    else:
                        j += 1
                yield "template", src[i:j]
                regex_ok = src[j - 1] == "{"
            elif c == "/" and regex_ok:
                j = self._regex_end(i)
                yield "regex", src[i:j]
                regex_ok = False
            elif self._WORD.match(c):
                j = i
                while j < n and self._WORD.match(src[j]):
                    j += 1
                word = src[i:j]
                yield "word", word
                regex_ok = word in self._KEYWORDS
            else:
                p = next((p for p in self._PUNCTUATORS if src.startswith(p, i)), c)
                j = i + len(p)
                depth += (p == "{") - (p == "}")
                yield "punctuator", p
                regex_ok = p not in (")", "]", "}")
            i = j

    def _string_end(self, i: int, quote: str) -> int:
        src, j = self.src, i + 1
        while j < len(src) and src[j] != quote:
            if src[j] == "\n":
                raise ValueError(f"newline in a string at {i}")
            j += 2 if src[j] == "\\" else 1
        if j >= len(src):
            raise ValueError(f"unterminated string at {i}")
        return j + 1

    def _regex_end(self, i: int) -> int:
        src, j, in_class = self.src, i + 1, False
        while True:
            if j >= len(src) or src[j] == "\n":
                raise ValueError(f"unterminated regular expression at {i}")
            ch = src[j]
            if ch == "\\":
                j += 2
                continue
            if ch == "[":
                in_class = True
            elif ch == "]":
                in_class = False
            elif ch == "/" and not in_class:
                break
            j += 1
        j += 1
        while j < len(src) and src[j].isalpha():
            j += 1
        return j


def compact_js(source: str) -> str:
    """`source` without comments and blank space, every other token as it was.

    Line breaks between tokens stay (one per run), so automatic semicolon insertion
    reads the result as it read the source; inside a line a space is kept only between
    two name characters and where `+ +`, `- -` or `/ /` would otherwise fuse. Raises
    ValueError on an unterminated string, template, comment or regular expression.
    """
    out: list[str] = []
    last = ""
    gap = ""
    for kind, text in _Tokens(source):
        if kind in ("space", "comment"):
            gap += "\n" if "\n" in text else " "
            continue
        if last and gap:
            a, b = last[-1], text[0]
            if "\n" in gap:
                out.append("\n")
            elif (
                (_Tokens._WORD.match(a) and _Tokens._WORD.match(b))
                or (a in "+-/" and b == a)
                or (a == "/" and b == "*")
            ):
                out.append(" ")
        gap = ""
        out.append(text)
        last = text
    return "".join(out)


def js_tokens(source: str) -> list[str]:
    """The significant tokens of `source` (for checking that compaction kept them)."""
    return [text for kind, text in _Tokens(source) if kind not in ("space", "comment")]


@cache
def load_guard_code() -> str:
    """The guard's compact code with the `"__TG_RULES__"` placeholder (read once)."""
    source = (resources.files("proxy") / "data" / "public" / "guard.js").read_text(encoding="utf-8")
    code = compact_js(source)
    if code.count(RULES_PLACEHOLDER) != 1:
        raise ValueError(f"guard.js must hold the rule placeholder {RULES_PLACEHOLDER} exactly once")
    return code


@cache
def split_guard_code() -> tuple[str, str]:
    """The compact code before and after the rule placeholder."""
    before, _, after = load_guard_code().partition(RULES_PLACEHOLDER)
    return before, after


def js_string(text: str) -> str:
    """The body of a single-quoted JavaScript string literal whose value is `text`.

    `text` is JSON made safe for `<script>` (ASCII, no `<`, `>` or `&`), so only the
    backslash and the quote need escaping; parts escaped apart concatenate into the
    escaped whole, which lets the per-page part be escaped alone."""
    return text.replace("\\", "\\\\").replace("'", "\\'")


def guard_sizes() -> dict[str, int]:
    """Bytes of the guard's code: readable source, compact, compact gzipped (level 9)."""
    source = (resources.files("proxy") / "data" / "public" / "guard.js").read_text(encoding="utf-8")
    code = load_guard_code()
    return {
        "source": len(source.encode()),
        "compact": len(code.encode()),
        "compact_gzip": len(gzip.compress(code.encode(), 9, mtime=0)),
    }
