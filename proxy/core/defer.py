"""Deferral markup: how a refused element is made inert so a consent manager can
activate it later without a reload (pure: attribute edits only, no lol-html).

Each style is one consent manager's own convention (docs/field-survey.md §c), written
in that CMP's module of `proxy.core.consent` (`Source.defer`); this module turns the
gate's element into a `consent.Element`, dispatches on the style name, and holds what
every style shares: which attributes fetch, which script types run, and building and
applying an `Edit`. The native `tag-gate` style is activated by
/__tag-gate/activate.js.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from .catalog import Vendor
from .consent import ConsentSettings
from .consent.markup import Edit, Element, escape_attr
from .consent.registry import DEFAULT_REGISTRY
from .policy import Kind

__all__ = [
    "JS_TYPES",
    "STYLES",
    "URL_ATTRIBUTES",
    "WORKER_SCRIPT_TYPES",
    "CmpNames",
    "Edit",
    "apply_edit",
    "defer_edit",
    "make_cmp_names",
    "runs_somewhere",
    "start_tag",
]

STYLES: Final = DEFAULT_REGISTRY.styles
"""The built-in deferral styles (`html.defer_style`), in registry order."""

URL_ATTRIBUTES: Final[dict[Kind, tuple[str, ...]]] = {
    Kind.SCRIPT: ("src",),
    Kind.INLINE: (),
    Kind.MEDIA: ("src", "srcset", "poster", "background"),
    Kind.FRAME: ("src",),
    Kind.EMBED: ("src", "data"),
    Kind.LINK: ("href",),
}
"""Attributes that make the browser fetch something, per element kind."""

_EditFunction = Callable[[Element, Mapping[str, str]], Edit]


@dataclass(frozen=True, slots=True)
class CmpNames:
    """The deferral styles compiled from the consent settings: style → (its edit
    function, our category names in that CMP's vocabulary), so a site that mapped
    OneTrust group `C0042` to analytics gets `C0042` back. Empty (the default): the
    built-in styles with their fallback names."""

    by_style: Mapping[str, tuple[_EditFunction, Mapping[str, str]]] = field(default_factory=dict)


def make_cmp_names(settings: ConsentSettings) -> CmpNames:
    """Every style of the settings' registry, with names derived from the settings."""
    return CmpNames(
        {
            source.name: (source.defer.edit, source.defer.names(settings.of(source)))
            for source in settings.registry.entries
            if source.defer is not None
        }
    )


JS_TYPES: Final = frozenset(
    {
        "",
        "text/javascript",
        "text/javascript1.0",
        "text/javascript1.1",
        "text/javascript1.2",
        "text/javascript1.3",
        "text/javascript1.4",
        "text/javascript1.5",
        "application/javascript",
        "application/ecmascript",
        "application/x-ecmascript",
        "application/x-javascript",
        "text/ecmascript",
        "text/jscript",
        "text/livescript",
        "text/x-ecmascript",
        "text/x-javascript",
        "module",
    }
)
"""`type` values (trimmed, lower-cased) that make a `<script>` run; others are data: the
HTML standard's JavaScript MIME type essences and `module`. Chromium (checked) runs them
in any ASCII case and with surrounding whitespace, and runs none with a parameter
(`text/javascript;charset=utf-8`), so the trimmed, lowered value is the whole test."""


WORKER_SCRIPT_TYPES: Final = frozenset({"text/partytown"})
"""Script types the browser does not run but a library on the page does, in a web
worker (Partytown): such a script fetches and runs as surely as one the browser runs."""


def runs_somewhere(type_attr: str | None) -> bool:
    """Whether a script of this type runs: in the page (`JS_TYPES`) or in a web worker a
    library on the page starts (`WORKER_SCRIPT_TYPES`)."""
    return type_attr is None or (t := type_attr.strip().lower()) in JS_TYPES or t in WORKER_SCRIPT_TYPES


def defer_edit(
    style: str,
    kind: Kind,
    attrs: Mapping[str, str],
    category: str,
    vendor: Vendor | None,
    names: CmpNames,
) -> Edit:
    """The edit that makes one element inert in `style`'s convention.

    `attrs` are the element's current attributes (names lower-case). Scripts always get
    `type="text/plain"` (or Didomi's own type): browsers neither fetch nor run a script
    of an unknown type. Fetching attributes of other elements are moved to `data-*`.
    Raises ValueError for a style neither `names` nor the built-in registry knows.
    """
    entry = names.by_style.get(style)
    if entry is None:
        source = DEFAULT_REGISTRY.get(style)
        if source is None or source.defer is None:
            raise ValueError(f"unknown defer style {style!r}")
        entry = (source.defer.edit, {})
    edit, vocabulary = entry
    element = Element(
        script=kind in (Kind.SCRIPT, Kind.INLINE),
        frame=kind is Kind.FRAME,
        attrs=attrs,
        moving=tuple(a for a in URL_ATTRIBUTES.get(kind, ()) if a in attrs),
        category=category,
        vendor=vendor,
    )
    return edit(element, vocabulary)


def start_tag(tag: str, attrs: Mapping[str, str] | list[tuple[str, str]]) -> str:
    """Serialise a start tag from attributes (values escaped for a double-quoted attribute)."""
    items = attrs.items() if isinstance(attrs, Mapping) else attrs
    parts = [f"<{tag}"]
    for name, value in items:
        parts.append(f' {name}="{escape_attr(value)}"' if value != "" else f" {name}")
    return "".join(parts) + ">"


def apply_edit(attrs: list[tuple[str, str]], edit: Edit) -> list[tuple[str, str]]:
    """The attribute list after an edit (for rebuilding inline-script start tags)."""
    out = dict(attrs)
    for name in edit.remove:
        out.pop(name, None)
    for name, value in edit.set:
        out[name] = value
    return list(out.items())
