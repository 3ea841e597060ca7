"""The runtime guard's code: `data/public/guard.js`, compacted and loaded once (pure, stdlib only).

guard.js is written to be read; what ships on every gated page is its minified form:
comments and blank space removed by a small JavaScript tokenizer that knows strings,
template literals, regular expression literals and comments, every other token kept
as it was (`compact_js`), and the names guard.js declares shortened (`minify_js`).
The code holds `RULES_PLACEHOLDER` exactly once, where `proxy.html.guard` puts the
rule table, as a JSON text inside a JavaScript string literal (`js_string`): Chromium
compiles a string literal about four times faster than the same table written as an
object literal, and the guard parses it at its first decision, not while the page
waits for the install.
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
    "frames_code",
    "guard_sizes",
    "js_string",
    "js_tokens",
    "load_guard_code",
    "load_guard_source",
    "minify_js",
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


_RESERVED: Final = frozenset(
    "break case catch class const continue debugger default delete do else enum export extends false finally for"
    " function if import in instanceof let new null return super switch this throw true try typeof var void while"
    " with yield await async of static get set undefined NaN Infinity arguments eval".split()
)
_OBJECT_AFTER: Final = frozenset({"(", ",", "=", ":", "[", "?", "return", "||", "&&", "??", "const", "let", "!"})
"""Tokens after which `{` opens an object literal (or pattern), not a block."""


def _declared(tokens: list[tuple[str, str]]) -> set[str]:
    """The names guard.js declares: `const`/`let` declarators (with array and object
    patterns), the parameters of arrows and of `function (...)` expressions, and `catch`
    bindings. Declarations must end with `;` (guard.js is written that way), or at the
    `of`/`in`/`)` of a for-head."""
    names: set[str] = set()
    depth = 0
    decl: list[int] = []  # bracket depth of each open const/let list
    pattern = 0  # > 0 while inside a destructuring pattern of a declarator
    expect = False  # the next token starts a declarator
    for i, (kind, text) in enumerate(tokens):
        if kind == "word" and text in ("const", "let"):
            decl.append(depth)
            expect = True
            continue
        if kind == "punctuator" and text in "([{":
            if expect or pattern:
                pattern += 1
            depth += 1
            expect = False
            continue
        if kind == "punctuator" and text in ")]}":
            depth -= 1
            if pattern:
                pattern -= 1
            while decl and decl[-1] > depth:
                decl.pop()
            if text == ")" and i + 1 < len(tokens) and _function_params(tokens, i):
                names.update(_params(tokens, i))
            continue
        if kind == "word" and (expect or pattern) and text not in _RESERVED:
            prev = tokens[i - 1][1]
            if expect or (prev in ("[", "{", ",", "...") and tokens[i + 1][1] != ":"):
                names.add(text)
            expect = False
            continue
        if kind == "word" and tokens[i + 1 : i + 2] == [("punctuator", "=>")]:
            names.add(text)
        if decl and decl[-1] == depth and not pattern:
            if text == "," and kind == "punctuator":
                expect = True
            elif text == ";" or (kind == "word" and text in ("of", "in")):
                decl.pop()
        if text == "catch" and kind == "word" and tokens[i - 1][1] not in (".", "?."):
            names.add(tokens[i + 2][1])  # a catch binding, not a promise's .catch(...) argument
    return names


def _open(tokens: list[tuple[str, str]], close: int) -> int:
    """The index of the bracket that the one at `close` closes."""
    depth, j = 0, close
    while j >= 0:
        text = tokens[j][1]
        depth += (text in ")]}") - (text in "([{")
        if depth == 0:
            break
        j -= 1
    return j


def _function_params(tokens: list[tuple[str, str]], close: int) -> bool:
    """Whether the `)` at `close` ends a parameter list: an arrow function's, or an
    anonymous `function (...) {` expression's."""
    nxt = tokens[close + 1][1]
    return nxt == "=>" or (nxt == "{" and tokens[_open(tokens, close) - 1][1] == "function")


def _params(tokens: list[tuple[str, str]], close: int) -> list[str]:
    """The parameter names of the function whose parameter list's `)` is at `close`."""
    out: list[str] = []
    j = _open(tokens, close)
    default = False
    for kind, text in tokens[j + 1 : close]:
        if text == "=":
            default = True
        elif text == ",":
            default = False
        elif kind == "word" and not default:
            out.append(text)
    return out


def _short_names(avoid: set[str]) -> Iterator[str]:
    first = "etnoiarsdlcfhupmgbvwyxkqjzETNOIARSDLCFHUPMGBVWYXKQJZ_$"
    for a in first:
        if a not in avoid:
            yield a
    for a in first:
        for b in first + "0123456789":
            if a + b not in avoid and a + b not in _RESERVED:
                yield a + b


def minify_js(source: str) -> str:
    """`compact_js(source)` with every name the source declares (`_declared`) renamed to
    the shortest free name, the most used first. A name after `.` or in key position of
    an object literal is a property and stays; a shorthand property `{a}` becomes
    `{a:x}`. Names are renamed file-wide, which is safe because no declared name is also
    used as a global in guard.js (a test checks the renamed code still decides the
    shared URL table, and the browser suite runs it)."""
    tokens = [(k, t) for k, t in _Tokens(source) if k not in ("space", "comment")]
    declared = _declared(tokens)
    counts: dict[str, int] = {}
    for kind, text in tokens:
        if kind == "word" and text in declared:
            counts[text] = counts.get(text, 0) + 1
    avoid = {t for k, t in tokens if k == "word" and t not in declared} | _RESERVED
    short = _short_names(avoid)
    rename = {name: next(short) for name in sorted(counts, key=lambda n: (-counts[n], n))}
    stack: list[bool] = []  # per open bracket: is it an object literal's `{`
    renamed: list[tuple[str, str]] = []
    for i, (kind, text) in enumerate(tokens):
        prev = tokens[i - 1][1] if i else ""
        if kind == "punctuator" and text in "([{":
            stack.append(text == "{" and prev in _OBJECT_AFTER)
        elif kind == "punctuator" and text in ")]}":
            stack.pop()
        elif kind == "word" and text in rename and prev not in (".", "?."):
            nxt = tokens[i + 1][1] if i + 1 < len(tokens) else ""
            in_object = bool(stack) and stack[-1] and prev in ("{", ",")
            if in_object and nxt == ":":
                pass  # a property key
            elif in_object and nxt in (",", "}"):
                text = f"{text}:{rename[text]}"
            else:
                text = rename[text]
        renamed.append((kind, text))
    return compact_js(" ".join(t if k != "word" else f" {t} " for k, t in renamed))


def js_tokens(source: str) -> list[str]:
    """The significant tokens of `source` (for checking that compaction kept them)."""
    return [text for kind, text in _Tokens(source) if kind not in ("space", "comment")]


def load_guard_source() -> str:
    """guard.js as written (readable, with comments)."""
    return (resources.files("proxy") / "data" / "public" / "guard.js").read_text(encoding="utf-8")


@cache
def frames_code() -> str:
    """guard-frames.js compacted: what goes inline after a frame of the markup."""
    return compact_js((resources.files("proxy") / "data" / "public" / "guard-frames.js").read_text(encoding="utf-8"))


@cache
def load_guard_code() -> str:
    """The guard's minified code with the `"__TG_RULES__"` placeholder (read once)."""
    code = minify_js(load_guard_source())
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
    """Bytes of the guard's code: readable source; compact (comments and blank space
    out) raw and gzipped; minified (what ships: names shortened too) raw and gzipped
    (level 9)."""
    source = load_guard_source()
    compact = compact_js(source).encode()
    code = load_guard_code().encode()
    return {
        "source": len(source.encode()),
        "compact": len(compact),
        "compact_gzip": len(gzip.compress(compact, 9, mtime=0)),
        "minified": len(code),
        "minified_gzip": len(gzip.compress(code, 9, mtime=0)),
    }
