"""The runtime guard's rule table and inline script (pure: stdlib and the policy only).

tag-gate's HTML gate removes refused tags from the markup it relays; tags that page
JavaScript adds later are stopped in the browser by `data/public/guard.js`, inserted as
the first child of `<head>`. The guard carries a JSON rule table built here: the
visitor's granted categories and the rules **for the refused categories only**, plus
the entries of other vendors that would win over a refused one for some URL (so the
guard decides every URL as `Policy.decide_url` does; tests/data/url_decisions.json is
the shared proof), plus the operator's URL `[[rule]]`s in order.

Cost: a table depends on the config and the consent key only, so `GuardRules` builds
it once per consent key (memoised, bounded) and the per-page part is the page host,
appended by string concatenation. Nothing here runs per element.

Use (per config generation)::

    guard = make_guard(policy, cookie_name=..., gpc_refuses=..., defer_style=...)
    guard.warnings                      # log at config load: rules the browser can't apply
    body = guard.script(consent, host)  # text of <script nonce=...>BODY</script>

Table format (version 1; short keys because it ships on every gated page)::

    {"v": 1, "cookie": "tg_consent", "style": "tag-gate",
     "granted": ["analytics", "essential"],   # consent.granted at page load
     "final": ["advertising"],                # refused by Sec-GPC: no cookie grants them
     "unknown": null,                         # html.unknown_hosts when it is refused
     "firstParty": ["cdn.shop.example"],      # html.first_party_hosts
     "vendors": [["meta-pixel", "advertising", ["connect.facebook.net"], ["facebook.com/tr"]],
                 ["facebook-social", "social", ["facebook.com", ...], []], ...],
     "rules": [[["ads.example"] | 0, ["/track/"] | 0, ["^https://", "u"] | 0,
                "vendor-id" | 0, 0 | 1 | "category"], ...],
     "page": "www.shop.example"}

`vendors` entries: id, category, host suffixes, URL prefixes `host/path` (a later phase
may add `?param=glob`, which the guard already matches). `rules` outcomes: 0 keeps
(`allow`), 1 takes the vendor's category (a rule with only an `action`), a string is the
rule's category.
"""

from __future__ import annotations

import gzip
import json
import re
import unicodedata
import weakref
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Final

from ..core.categories import ESSENTIAL
from ..core.consent import ConsentState
from ..core.memo import Memo
from ..core.policy import Policy, UrlRule
from ..core.vendors import Vendor

__all__ = [
    "TABLE_VERSION",
    "GuardRules",
    "compact_js",
    "guard_sizes",
    "load_guard_code",
    "make_guard",
    "make_guard_rules",
    "translate_regex",
]

TABLE_VERSION: Final = 1
_PLACEHOLDER: Final = '"__TG_RULES__"'
_CACHE_LIMIT: Final = 256
_CACHE_BYTES: Final = 64 << 20
"""Consent keys per config: 2**4 built-in combinations x GPC, more with custom categories."""


# --------------------------------------------------------------------------- compaction


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
    if code.count(_PLACEHOLDER) != 1:
        raise ValueError(f"guard.js must hold the rule placeholder {_PLACEHOLDER} exactly once")
    return code


def guard_sizes() -> dict[str, int]:
    """Bytes of the guard's code: readable source, compact, compact gzipped (level 9)."""
    source = (resources.files("proxy") / "data" / "public" / "guard.js").read_text(encoding="utf-8")
    code = load_guard_code()
    return {
        "source": len(source.encode()),
        "compact": len(code.encode()),
        "compact_gzip": len(gzip.compress(code.encode(), 9, mtime=0)),
    }


# --------------------------------------------------------------------------- regexes

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


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True, slots=True)
class _Entry:
    """One catalogue lookup entry: a host suffix, or a host suffix and URL prefix."""

    suffix: str
    path: str | None
    vendor: Vendor
    text: str
    """As written in the table: the host, or `host/path[?param=glob]`."""


def _entries(vendors: Iterable[Vendor]) -> list[_Entry]:
    """The effective catalogue entries, as `Catalog` resolves them (a later vendor wins a
    host or a host + path)."""
    hosts: dict[str, Vendor] = {}
    paths: dict[tuple[str, str], tuple[Vendor, str]] = {}
    for vendor in vendors:
        for host in vendor.hosts:
            hosts[host.lower()] = vendor
        for url in vendor.urls:
            host, _, path = url.partition("/")
            paths[(host.lower(), "/" + path)] = (vendor, f"{host.lower()}/{path}")
    out = [_Entry(h, None, v, h) for h, v in hosts.items()]
    out += [_Entry(h, p, v, text) for (h, p), (v, text) in paths.items()]
    return out


def _plain_path(path: str) -> str:
    return path.partition("?")[0]


def _overlap(a: str | None, b: str | None) -> bool:
    """Whether some URL path can be under both prefixes (None: any path)."""
    if a is None or b is None:
        return True
    a, b = _plain_path(a), _plain_path(b)
    return a.startswith(b) or b.startswith(a)


def _precedes(e: _Entry, k: _Entry) -> bool:
    """Whether the lookup can meet `e` before `k` for a URL both match."""
    if e.suffix == k.suffix:
        if e.path is None:
            return False
        return k.path is None or (_overlap(e.path, k.path) and len(_plain_path(e.path)) >= len(_plain_path(k.path)))
    return e.suffix.endswith("." + k.suffix) and _overlap(e.path, k.path)


def _suffixes(host: str) -> Iterator[str]:
    while True:
        yield host
        dot = host.find(".")
        if dot < 0:
            return
        host = host[dot + 1 :]


_PATH_ENCODE: Final = re.compile(r'[\x00-\x20"<>`{}\x7f-\U0010ffff]')


def _browser_path(prefix: str) -> str:
    """A path prefix percent-encoded as the browser's URL parser writes `pathname`."""
    return _PATH_ENCODE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode("utf-8")), prefix)


class GuardRules:
    """The guard's table for one policy (one config generation) and every consent key.

    `warnings` lists what the browser cannot apply exactly (untranslatable `url_regex`,
    computed once); `rules_json` and `script` are memoised per consent key.
    """

    def __init__(
        self,
        policy: Policy,
        *,
        cookie_name: str = "tg_consent",
        gpc_refuses: Collection[str] = ("advertising",),
        defer_style: str = "tag-gate",
    ) -> None:
        self.policy = policy
        self.cookie_name = cookie_name
        self.gpc_refuses = frozenset(gpc_refuses)
        self.defer_style = defer_style
        self._entries = _entries(policy.catalog.vendors)
        warnings: list[str] = []
        self._rules = self._compile_rules(warnings)
        self.warnings: tuple[str, ...] = tuple(warnings)
        self._memo: Memo[str, tuple[str, str]] = Memo(_CACHE_LIMIT, _CACHE_BYTES)

    def _compile_rules(self, warnings: list[str]) -> list[list[object]]:
        out: list[list[object]] = []
        for rule in self.policy.rules:
            if rule.for_inline:
                continue
            regex: object = 0
            if rule.url_regex is not None:
                try:
                    regex = list(translate_regex(rule.url_regex))
                except ValueError as exc:
                    warnings.append(
                        f"rule {rule.name!r}: url_regex {rule.url_regex.pattern!r} cannot run in the browser ({exc});"
                        " the runtime guard skips this rule"
                    )
                    continue
                if rule.url_regex.flags & re.IGNORECASE and re.search(r"[iI]|-", rule.url_regex.pattern):
                    warnings.append(
                        f"rule {rule.name!r}: case-insensitive url_regex: in the browser 'i' does not match"
                        " U+0130 or U+0131 as it does in Python"
                    )
            out.append(
                [
                    sorted(rule.hosts) or 0,
                    [_browser_path(p) for p in rule.path_prefixes] or 0,
                    regex,
                    rule.vendor or 0,
                    _outcome(rule),
                ]
            )
        return out

    def _table(self, consent: ConsentState) -> dict[str, object]:
        policy = self.policy
        granted = consent.granted

        def refused(category: str | None) -> bool:
            return category is not None and category != ESSENTIAL and category not in granted

        unknown = policy.unknown_hosts if refused(policy.unknown_hosts) else None
        constrained = {r.vendor for r in policy.rules if r.vendor and not r.for_inline}
        if unknown is not None:
            # Any URL the table does not know would be "unknown" and blocked: it must know all.
            keep = list(self._entries)
        else:
            key = [e for e in self._entries if refused(e.vendor.category) or e.vendor.id in constrained]
            by_suffix: dict[str, list[_Entry]] = {}
            for e in key:
                by_suffix.setdefault(e.suffix, []).append(e)
            chosen = set(map(id, key))
            keep = [
                e
                for e in self._entries
                if id(e) in chosen or any(_precedes(e, k) for s in _suffixes(e.suffix) for k in by_suffix.get(s, ()))
            ]
        vendors: dict[str, list[object]] = {}
        order = {v.id: i for i, v in enumerate(policy.catalog.vendors)}
        for e in sorted(keep, key=lambda e: (order[e.vendor.id], e.path is not None, e.text)):
            row = vendors.setdefault(e.vendor.id, [e.vendor.id, e.vendor.category, [], []])
            row[3 if e.path is not None else 2].append(e.text)  # type: ignore[attr-defined]
        return {
            "v": TABLE_VERSION,
            "cookie": self.cookie_name,
            "style": self.defer_style,
            "granted": sorted(granted),
            "final": sorted(self.gpc_refuses - granted) if consent.gpc else [],
            "unknown": unknown,
            "firstParty": sorted(policy.first_party_hosts),
            "vendors": list(vendors.values()),
            "rules": self._rules,
        }

    def _cached(self, consent: ConsentState) -> tuple[str, str]:
        hit = self._memo.table.get(consent.key)
        if hit is None:
            text = _script_json(self._table(consent))
            # `{...}` → `{...,"page":` + host + `}`: the per-page part is one concatenation.
            hit = self._memo.put(consent.key, (text[:-1] + ',"page":', "}"), len(text))
        return hit

    def rules_json(self, consent: ConsentState, page_host: str | None) -> str:
        """The table for a visitor and a page, as a JSON text safe inside `<script>`."""
        head, tail = self._cached(consent)
        return head + _script_json(page_host) + tail

    def script(self, consent: ConsentState, page_host: str | None) -> str:
        """The text of the inline `<script>` (guard code with its table)."""
        return load_guard_code().replace(_PLACEHOLDER, self.rules_json(consent, page_host), 1)


def _outcome(rule: UrlRule) -> object:
    if rule.allow:
        return 0
    return rule.category or 1


def _script_json(value: object) -> str:
    """JSON that can sit inside an inline `<script>`: `<`, `>`, `&` and non-ASCII escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


_GUARDS: dict[int, tuple[weakref.ref[Policy], tuple[object, ...], GuardRules]] = {}


def make_guard(
    policy: Policy,
    *,
    cookie_name: str = "tg_consent",
    gpc_refuses: Collection[str] = ("advertising",),
    defer_style: str = "tag-gate",
) -> GuardRules:
    """The `GuardRules` of a policy, made once per policy object and settings (a new
    config generation has a new Policy, so its tables are built anew)."""
    settings = (cookie_name, frozenset(gpc_refuses), defer_style)
    hit = _GUARDS.get(id(policy))
    if hit is not None and hit[0]() is policy and hit[1] == settings:
        return hit[2]
    guard = GuardRules(policy, cookie_name=cookie_name, gpc_refuses=gpc_refuses, defer_style=defer_style)
    key = id(policy)
    _GUARDS[key] = (weakref.ref(policy), settings, guard)
    weakref.finalize(policy, _GUARDS.pop, key, None)
    return guard


def make_guard_rules(
    policy: Policy,
    consent: ConsentState,
    page_host: str | None,
    *,
    cookie_name: str = "tg_consent",
    gpc_refuses: Collection[str] = ("advertising",),
    defer_style: str = "tag-gate",
) -> str:
    """The rule table JSON for this visitor and page (memoised per policy and consent key)."""
    guard = make_guard(policy, cookie_name=cookie_name, gpc_refuses=gpc_refuses, defer_style=defer_style)
    return guard.rules_json(consent, page_host)
