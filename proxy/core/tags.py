"""The tag manager: the site's own tags, declared in `[[tag]]` and inserted by tag-gate (pure).

A site lists its tags (an external script, an inline snippet, a pixel, an iframe) in the
config instead of its templates, each with its category, where it goes and on which
paths. For each gated page, `TagPlan.render` writes the tags whose path matches, in
config order:

- category granted: the live tag, scripts with the page's CSP nonce;
- category refused: the tag in the deferred form of `[html] defer_style`
  (`proxy.core.defer`: with the native `tag-gate` style a `type="text/plain"` script or
  a `data-tg-src` element that activate.js brings back when the consent cookie grants
  the category), so a tag granted later (by tag-gate's banner or the site's consent
  manager) runs without a reload; inert markup fetches nothing and runs nothing;
- category refused by `Sec-GPC` (`consent.gpc_refuses`): left out, since nothing may
  activate it later.

Scripts and inline snippets may go at the head end or the body end; pixels and iframes
are content and go at the body end. Everything written is pure ASCII (the gate's
transport needs it): attribute values are escaped with character references and
inline code must be ASCII (`\\u` escapes in JavaScript say the same thing).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Final, Literal

from .consent.markup import escape_attr
from .defer import CmpNames, apply_edit, defer_edit, start_tag
from .policy import Kind
from .reader import Reader, as_bool, as_str, type_name

KINDS: Final = ("script", "inline", "pixel", "iframe")
PLACEMENTS: Final = ("head-end", "body-end")
LOADING: Final = ("async", "defer", "blocking")
MAX_CODE: Final = 64 << 10
MAX_TAGS: Final = 200

_ID: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_URL: Final = re.compile(r"(?:https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[^\s\"'<>\\`]*)?|/(?!/)[^\s\"'<>\\`]*)")
_ATTRIBUTE: Final = re.compile(r"(?:data|aria)-[a-z0-9_.-]+")
_SAFE_ATTRIBUTES: Final = frozenset(
    {"id", "class", "crossorigin", "referrerpolicy", "integrity", "allow", "allowfullscreen", "loading", "sandbox"}
)
_DIMENSION: Final = re.compile(r"[0-9]{1,5}%?")
_SCRIPT_END: Final = re.compile(r"</script|<!--", re.IGNORECASE)
_KIND_OF: Final = {"script": Kind.SCRIPT, "inline": Kind.INLINE, "pixel": Kind.MEDIA, "iframe": Kind.FRAME}
_NONCE_SLOT: Final = "\x00tag-gate-nonce\x00"


@dataclass(frozen=True, slots=True)
class Tag:
    """One validated `[[tag]]` entry (see `read_tags` for each key)."""

    id: str
    kind: Literal["script", "inline", "pixel", "iframe"]
    category: str
    placement: Literal["head-end", "body-end"] = "body-end"
    paths: tuple[str, ...] = ("/",)
    src: str = ""
    code: str = ""
    loading: Literal["async", "defer", "blocking"] = "async"
    title: str = ""
    width: str = ""
    height: str = ""
    attributes: tuple[tuple[str, str], ...] = ()

    def applies_to(self, path: str) -> bool:
        return any(path.startswith(prefix) for prefix in self.paths)


def _url(value: Any) -> str:
    text = as_str(value)
    if not text.isascii():
        raise ValueError(f"{text!r}: percent-encode the characters outside ASCII")
    if len(text) > 2048 or not _URL.fullmatch(text):
        raise ValueError(f"expected an http(s) URL or a path on the site (/js/app.js), got {text!r}")
    return text


def _code(value: Any) -> str:
    text = as_str(value)
    if not text.strip():
        raise ValueError("must not be empty")
    if len(text) > MAX_CODE:
        raise ValueError(f'longer than {MAX_CODE} characters; serve it as a file and use kind = "script"')
    if not text.isascii():
        bad = next(c for c in text if not c.isascii())
        raise ValueError(f"contains {bad!r}: write characters outside ASCII as \\u escapes (\\u{ord(bad):04x})")
    if _SCRIPT_END.search(text):
        raise ValueError('contains "</script" or "<!--", which would end or confuse the script element')
    return text


def _paths(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise TypeError(
            f'expected a path prefix or a non-empty array of them (["/", "/shop/"]), got {type_name(value)}'
        )
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item.startswith("/") or any(c.isspace() for c in item):
            raise ValueError(f"[{i}] {item!r}: a path prefix starts with / and holds no spaces")
        out.append(item)
    return tuple(out)


def _dimension(value: Any) -> str:
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not _DIMENSION.fullmatch(text):
        raise ValueError(f'expected a number of pixels or a percentage ("100%"), got {value!r}')
    return text


def _attributes(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise TypeError(f'expected a table of attribute = "value", got {type_name(value)}')
    out: list[tuple[str, str]] = []
    for name, item in value.items():
        if name not in _SAFE_ATTRIBUTES and not _ATTRIBUTE.fullmatch(name):
            raise ValueError(
                f"{name!r}: only data-*, aria-* and {', '.join(sorted(_SAFE_ATTRIBUTES))} "
                "(tag-gate writes src, type, nonce and the loading attributes itself; no event handlers)"
            )
        if item is True:
            out.append((name, ""))
        elif item is False:
            continue
        elif not isinstance(item, str) or any(c in item for c in "\x00\r\n"):
            raise ValueError(f"{name}: expected a one-line string, or true for an attribute without a value")
        else:
            out.append((name, item))
    return tuple(out)


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        text = as_str(value)
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(repr(c) for c in choices)}, got {text!r}")
        return text

    return convert


def read_tags(root: Reader, categories: Collection[str]) -> tuple[Tag, ...]:
    """Validate the `[[tag]]` array; every problem is recorded with its TOML path.

    Keys: `id` (required, unique: a-z, 0-9, - and _), `kind` (required: "script",
    "inline", "pixel" or "iframe"), `category` (required: a known category; "essential"
    tags are always inserted), `placement` ("body-end"; "head-end" for scripts and
    inline snippets only), `paths` (["/"]: page path prefixes), `src` (script, pixel
    and iframe: an http(s) URL or a path on the site), `code` (inline: the JavaScript,
    ASCII, without `</script`), `loading` (scripts: "async", "defer" or "blocking"),
    `title` (iframes, required: its accessible name), `width` and `height` (pixels and
    iframes), `attributes` (a table of data-*, aria-* and a few safe attributes),
    `enabled` (true: false keeps the entry in the file but out of every page).
    """
    tags: list[Tag] = []
    seen: set[str] = set()
    known = sorted(categories)
    for i, r in enumerate(root.tables("tag")):
        if i == MAX_TAGS:
            r.problem(None, f"more than {MAX_TAGS} tags")
        tag_id = r.get("id", "", as_str)
        kind: Any = r.get("kind", "", _one_of(KINDS))
        category = r.get("category", "", _one_of(tuple(known)))
        placement: Any = r.get("placement", "body-end", _one_of(PLACEMENTS))
        paths: tuple[str, ...] = r.get("paths", ("/",), _paths)
        src = r.get("src", "", _url)
        code = r.get("code", "", _code)
        loading: Any = r.get("loading", "async", _one_of(LOADING))
        title = r.get("title", "", as_str)
        width = r.get("width", "", _dimension)
        height = r.get("height", "", _dimension)
        attributes: tuple[tuple[str, str], ...] = r.get("attributes", (), _attributes)
        enabled = r.get("enabled", True, as_bool)
        r.finish()
        if not r.has("id"):
            r.problem("id", "required: a short name for this tag (a-z, 0-9, - and _)")
        elif tag_id and not _ID.fullmatch(tag_id):
            r.problem("id", f"{tag_id!r}: use a-z, 0-9, - and _ (at most 64)")
        elif tag_id in seen:
            r.problem("id", f"{tag_id!r} is already the id of another tag")
        seen.add(tag_id)
        if not r.has("kind"):
            r.problem("kind", f"required: one of {', '.join(KINDS)}")
        if not r.has("category"):
            r.problem("category", f"required: one of {', '.join(known)}")
        wants_src = kind in ("script", "pixel", "iframe")
        if wants_src and not r.has("src"):
            r.problem("src", f"required for a {kind}: its URL")
        if kind == "inline" and not r.has("code"):
            r.problem("code", "required for an inline tag: the JavaScript to run")
        if kind == "inline" and r.has("src"):
            r.problem("src", 'an inline tag has code, not src (use kind = "script" for a file)')
        if kind and kind != "inline" and r.has("code"):
            r.problem("code", f'a {kind} has src, not code (use kind = "inline" for a snippet)')
        if kind in ("pixel", "iframe") and placement == "head-end":
            r.problem("placement", f'a {kind} is page content: it goes at the "body-end"')
        if kind and kind not in ("script",) and r.has("loading"):
            r.problem("loading", 'only for kind = "script"')
        if kind == "iframe" and not title.strip():
            r.problem("title", "required for an iframe: what it shows (screen readers announce it)")
        if kind in ("script", "inline") and (r.has("width") or r.has("height") or r.has("title")):
            r.problem(None, "width, height and title are for pixels and iframes")
        if enabled and tag_id and kind and category:
            tags.append(
                Tag(
                    id=tag_id,
                    kind=kind,
                    category=category,
                    placement=placement,
                    paths=paths,
                    src=src,
                    code=code,
                    loading=loading,
                    title=title,
                    width=width,
                    height=height,
                    attributes=attributes,
                )
            )
    return tuple(tags)


# --------------------------------------------------------------------------- markup


def _attrs(tag: Tag) -> list[tuple[str, str]]:
    """The live element's attributes, in a fixed order (the nonce as a slot)."""
    attrs: list[tuple[str, str]] = [("data-tg-tag", tag.id)]
    if tag.kind == "script":
        attrs.append(("src", tag.src))
        if tag.loading != "blocking":
            attrs.append((tag.loading, ""))
    if tag.kind in ("script", "inline"):
        attrs.append(("nonce", _NONCE_SLOT))
    if tag.kind == "pixel":
        attrs += [("src", tag.src), ("alt", ""), ("width", tag.width or "1"), ("height", tag.height or "1")]
        attrs.append(("hidden", ""))
    if tag.kind == "iframe":
        attrs += [("src", tag.src), ("title", tag.title)]
        attrs += [(name, value) for name, value in (("width", tag.width), ("height", tag.height)) if value]
    names = {name for name, _ in attrs}
    attrs += [(name, value) for name, value in tag.attributes if name not in names]
    return attrs


def _element(name: str, attrs: list[tuple[str, str]], body: str, void: bool) -> str:
    markup = start_tag(name, attrs) + ("" if void else f"{body}</{name}>")
    return markup.encode("ascii", "xmlcharrefreplace").decode("ascii")


_ELEMENT: Final = {"script": "script", "inline": "script", "pixel": "img", "iframe": "iframe"}


@dataclass(frozen=True, slots=True)
class _Compiled:
    tag: Tag
    live: str
    inert: str


@dataclass(frozen=True, slots=True)
class Rendered:
    """The managed tags of one page: markup for the head end and the body end, and
    whether any of it is deferred in the native style (the page then needs activate.js)."""

    head_end: str = ""
    body_end: str = ""
    deferred: bool = False


NOTHING: Final = Rendered()


class TagPlan:
    """The `[[tag]]` entries compiled once per config: each tag's live and inert markup,
    with the nonce as a slot filled per response."""

    def __init__(self, tags: tuple[Tag, ...], defer_style: str, cmp_names: CmpNames) -> None:
        self.native = defer_style == "tag-gate"
        compiled = []
        for tag in tags:
            attrs = _attrs(tag)
            element = _ELEMENT[tag.kind]
            void = element == "img"
            edit = defer_edit(defer_style, _KIND_OF[tag.kind], dict(attrs), tag.category, None, cmp_names)
            inert = edit.before + _element(element, apply_edit(attrs, edit), tag.code, void) + edit.after
            compiled.append(_Compiled(tag, _element(element, attrs, tag.code, void), inert))
        self._tags = tuple(compiled)

    def __bool__(self) -> bool:
        return bool(self._tags)

    def render(self, path: str, allows: Callable[[str], bool], final: Collection[str], nonce: str | None) -> Rendered:
        """The tags for a page at `path`: live where `allows(category)`, left out where
        the category is in `final` (refused for good: Sec-GPC), inert otherwise."""
        head: list[str] = []
        body: list[str] = []
        deferred = False
        for c in self._tags:
            tag = c.tag
            if not tag.applies_to(path):
                continue
            if allows(tag.category):
                markup = c.live
            elif tag.category in final:
                continue
            else:
                markup = c.inert
                deferred = True
            (head if tag.placement == "head-end" else body).append(markup)
        if not head and not body:
            return NOTHING
        slot = f' nonce="{_NONCE_SLOT}"'
        value = f' nonce="{escape_attr(nonce)}"'.encode("ascii", "xmlcharrefreplace").decode() if nonce else ""
        return Rendered(
            "".join(head).replace(slot, value),
            "".join(body).replace(slot, value),
            deferred and self.native,
        )
