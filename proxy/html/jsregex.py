"""Python regular expressions as JavaScript RegExps, for operator `url_regex` rules (pure).

The runtime guard decides URLs in the browser as the policy decides them in Python, so
a `[[rule]]`'s `url_regex` must mean the same in both: `translate_regex` spells out
what differs (Unicode classes, `$`, `.`, word boundaries) and refuses, with a
ValueError naming it, any construct that has no JavaScript equivalent.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

__all__ = ["translate_regex"]

_PY_SPACE: Final = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
"""The characters `str.isspace()` accepts, which is what Python's `\\s` matches."""

_JS_SYNTAX: Final = frozenset("^$\\.*+?()[]{}|/")
_WORD_CLASS: Final = r"\p{L}\p{N}_"


def _u(ch: str) -> str:
    return f"\\u{{{ord(ch):x}}}"


def _lit(ch: str, in_class: bool) -> str:
    """One literal character in a JavaScript `u`-mode regex."""
    if ch.isascii() and ch.isalnum():
        return ch
    if ch in _JS_SYNTAX or (in_class and ch == "-"):
        return "\\" + ch
    if " " <= ch <= "~":
        return ch
    return _u(ch)


class _RegexTranslator:
    """Python `re` syntax → an equivalent JavaScript RegExp (source, flags).

    Output always uses the `u` flag; `.`, `^`, `$`, `\\A`, `\\Z`, `\\b`, `\\d`, `\\w`, `\\s`
    are spelled out so they mean what Python means (Unicode classes, `$` before a final
    newline, `.` excluding only `\\n`). Unsupported (ValueError): scoped flags `(?i:...)`,
    atomic groups, possessive quantifiers, conditionals, `\\N{...}` of unknown names,
    `\\W`/`\\S` inside a character class.
    """

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.src = pattern.pattern
        flags = pattern.flags
        self.ascii = bool(flags & re.ASCII)
        self.verbose = bool(flags & re.VERBOSE)
        self.dotall = bool(flags & re.DOTALL)
        self.multiline = bool(flags & re.MULTILINE)
        self.ignorecase = bool(flags & re.IGNORECASE)
        if flags & re.LOCALE:
            raise ValueError("the LOCALE flag has no JavaScript equivalent")
        self.i = 0

    def translate(self) -> tuple[str, str]:
        src = self.src
        while m := re.match(r"\(\?[aiLmsux]+\)", src[self.i :]):
            self.i += m.end()
        out: list[str] = []
        while self.i < len(src):
            out.append(self._item())
        return "".join(out), "iu" if self.ignorecase else "u"

    def _peek(self, text: str) -> bool:
        return self.src.startswith(text, self.i)

    def _word(self) -> str:
        return "A-Za-z0-9_" if self.ascii else _WORD_CLASS

    def _item(self) -> str:
        src = self.src
        ch = src[self.i]
        self.i += 1
        if self.verbose and ch in " \t\n\r\x0b\x0c":
            return ""
        if self.verbose and ch == "#":
            end = src.find("\n", self.i)
            self.i = len(src) if end < 0 else end + 1
            return ""
        if ch == "\\":
            return self._escape(in_class=False)
        if ch == "[":
            return self._class()
        if ch == ".":
            return "[\\s\\S]" if self.dotall else "[^\\n]"
        if ch == "^":
            return "(?<![^\\n])" if self.multiline else "^"
        if ch == "$":
            return "(?=\\n|(?![\\s\\S]))" if self.multiline else "(?=\\n?(?![\\s\\S]))"
        if ch == "(":
            return self._group()
        if ch in ")|":
            return ch
        if ch in "*+?":
            return ch + self._lazy()
        if ch == "{":
            m = re.match(r"(\d*)(,?)(\d*)\}", src[self.i :])
            if m and (m.group(1) or m.group(2)):
                self.i += m.end()
                low = m.group(1) or "0"
                return "{" + low + m.group(2) + m.group(3) + "}" + self._lazy()
            return "\\{"
        return _lit(ch, in_class=False)

    def _lazy(self) -> str:
        if self._peek("+"):
            raise ValueError("possessive quantifiers have no JavaScript equivalent")
        if self._peek("?"):
            self.i += 1
            return "?"
        return ""

    def _group(self) -> str:
        src = self.src
        if not self._peek("?"):
            return "("
        for opening in ("?:", "?=", "?!", "?<=", "?<!"):
            if self._peek(opening):
                self.i += len(opening)
                return "(" + opening
        if m := re.match(r"\?P<(\w+)>", src[self.i :]):
            self.i += m.end()
            return f"(?<{m.group(1)}>"
        if m := re.match(r"\?P=(\w+)\)", src[self.i :]):
            self.i += m.end()
            return f"\\k<{m.group(1)}>"
        if self._peek("?#"):
            self.i = src.index(")", self.i) + 1
            return ""
        raise ValueError(f"the group {src[self.i - 1 : self.i + 3]!r}... has no JavaScript equivalent")

    def _class(self) -> str:
        src = self.src
        out = ["["]
        if self._peek("^"):
            out.append("^")
            self.i += 1
        first = True
        while True:
            if self.i >= len(src):
                raise ValueError("unterminated character class")
            ch = src[self.i]
            self.i += 1
            if ch == "]" and not first:
                break
            first = False
            if ch == "\\":
                out.append(self._escape(in_class=True))
            elif ch == "-" and out[-1] not in ("[", "^") and not self._peek("]"):
                out.append("-")
            else:
                out.append(_lit(ch, in_class=True))
        out.append("]")
        return "".join(out)

    def _escape(self, in_class: bool) -> str:
        src = self.src
        ch = src[self.i]
        self.i += 1
        word = self._word()
        classes = {
            "d": "0-9" if self.ascii else "\\p{Nd}",
            "w": word,
            "s": " \\t\\n\\r\\f\\v" if self.ascii else "".join(_u(c) for c in _PY_SPACE),
        }
        if ch in classes:
            return classes[ch] if in_class else "[" + classes[ch] + "]"
        if ch in "DWS":
            if in_class:
                if ch == "D" and not self.ascii:
                    return "\\P{Nd}"
                raise ValueError(f"\\{ch} inside a character class has no JavaScript equivalent")
            return "[^" + classes[ch.lower()] + "]"
        if not in_class:
            if ch == "A":
                return "(?<![\\s\\S])"
            if ch == "Z":
                return "(?![\\s\\S])"
            if ch in "bB":
                at = f"(?<=[{word}])(?![{word}])|(?<![{word}])(?=[{word}])"
                out = f"(?:{at})" if ch == "b" else f"(?!{at})"
                return out
            if ch.isdigit() and ch != "0":
                digits = ch
                while self.i < len(src) and src[self.i].isdigit() and len(digits) < 2:
                    digits += src[self.i]
                    self.i += 1
                return "\\" + digits
        simple = {"a": "\x07", "b": "\x08", "f": "\x0c", "n": "\n", "r": "\r", "t": "\t", "v": "\x0b"}
        if ch in simple:
            return _u(simple[ch])
        if ch == "0" or (in_class and ch in "1234567"):
            m = re.match(r"[0-7]{0,2}", src[self.i :])
            assert m is not None
            self.i += m.end()
            return _u(chr(int(ch + m.group(), 8)))
        lengths = {"x": 2, "u": 4, "U": 8}
        if ch in lengths:
            code = src[self.i : self.i + lengths[ch]]
            self.i += lengths[ch]
            return _u(chr(int(code, 16)))
        if ch == "N":
            end = src.index("}", self.i)
            name = src[self.i + 1 : end]
            self.i = end + 1
            try:
                return _u(unicodedata.lookup(name))
            except KeyError:
                raise ValueError(f"unknown character name {name!r}") from None
        return _lit(ch, in_class)


def translate_regex(pattern: re.Pattern[str]) -> tuple[str, str]:
    """The JavaScript `new RegExp(source, flags)` arguments matching what `pattern.search`
    matches (on the strings a page's URLs are). Raises ValueError naming the construct
    that has no JavaScript equivalent.

    Known difference: with IGNORECASE, Python also matches `İ` (U+0130) and `ı` (U+0131)
    for `i`; JavaScript's case folding does not (`GuardRules.warnings` says so)."""
    return _RegexTranslator(pattern).translate()
