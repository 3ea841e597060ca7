"""Deferral markup: how a refused element is made inert so a consent manager can
activate it later without a reload (pure: attribute edits only, no lol-html).

Each style follows one CMP's own convention (docs/field-survey.md §c). The result is
an `Edit`: attributes to set and to remove on the element, and optionally markup to
wrap around it (Didomi wraps blocked HTML in `<script type="didomi/html">`).
The native `tag-gate` style is activated by /__tag-gate/activate.js.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from .catalog import Vendor
from .categories import ADVERTISING, ANALYTICS, FUNCTIONAL, SOCIAL
from .consent import ConsentSettings
from .policy import Kind

STYLES: Final = (
    "tag-gate",
    "cookiebot",
    "onetrust",
    "klaro",
    "cookieconsent",
    "complianz",
    "cookieyes",
    "usercentrics",
    "didomi",
)

URL_ATTRIBUTES: Final[dict[Kind, tuple[str, ...]]] = {
    Kind.SCRIPT: ("src",),
    Kind.INLINE: (),
    Kind.MEDIA: ("src", "srcset", "poster", "background"),
    Kind.FRAME: ("src",),
    Kind.EMBED: ("src", "data"),
    Kind.LINK: ("href",),
}
"""Attributes that make the browser fetch something, per element kind."""


@dataclass(frozen=True, slots=True)
class Edit:
    """Attribute changes for one deferred element (applied in this order)."""

    set: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()
    before: str = ""
    after: str = ""


@dataclass(frozen=True, slots=True)
class CmpNames:
    """Our category names in each CMP's vocabulary (derived from the consent settings,
    so a site that mapped OneTrust group `C0042` to analytics gets `C0042` back)."""

    onetrust: Mapping[str, str] = field(default_factory=dict)
    cookiebot: Mapping[str, str] = field(default_factory=dict)
    cookieconsent: Mapping[str, str] = field(default_factory=dict)
    complianz: Mapping[str, str] = field(default_factory=dict)
    cookieyes: Mapping[str, str] = field(default_factory=dict)
    didomi_vendors: Mapping[str, str] = field(default_factory=dict)


_PREFERRED: Final = {
    # When several CMP names map to one of our categories, this one is written.
    "cookiebot": {FUNCTIONAL: "preferences", ANALYTICS: "statistics", ADVERTISING: "marketing", SOCIAL: "marketing"},
    "complianz": {FUNCTIONAL: "functional", ANALYTICS: "statistics", ADVERTISING: "marketing", SOCIAL: "marketing"},
    "cookieyes": {FUNCTIONAL: "functional", ANALYTICS: "analytics", ADVERTISING: "advertisement"},
    "cookieconsent": {FUNCTIONAL: "functionality", ANALYTICS: "analytics", ADVERTISING: "marketing", SOCIAL: "social"},
}


def _inverse(mapping: Mapping[str, frozenset[str]], preferred: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, categories in sorted(mapping.items()):
        for category in categories:
            if preferred.get(category) == name or category not in out:
                out[category] = name
    out.update({c: n for c, n in preferred.items() if n in mapping})
    return out


def make_cmp_names(settings: ConsentSettings) -> CmpNames:
    return CmpNames(
        onetrust=_inverse(settings.onetrust_groups, {}),
        cookiebot=_inverse(settings.cookiebot_fields, _PREFERRED["cookiebot"]),
        cookieconsent=_inverse(settings.cookieconsent_categories, _PREFERRED["cookieconsent"]),
        complianz=_inverse(settings.complianz_categories, _PREFERRED["complianz"]),
        cookieyes=_inverse(settings.cookieyes_categories, _PREFERRED["cookieyes"]),
        didomi_vendors={},
    )


JS_TYPES: Final = frozenset(
    {
        "",
        "text/javascript",
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
"""`type` values (trimmed, lower-cased) that make a `<script>` run; others are data."""


def runs_as_script(type_attr: str | None) -> bool:
    return type_attr is None or type_attr.strip().lower() in JS_TYPES


def _service(vendor: Vendor | None, category: str) -> str:
    if vendor is None:
        return category
    return vendor.services[0] if vendor.services else vendor.id


def _with_class(attrs: Mapping[str, str], extra: str) -> str:
    current = attrs.get("class", "").split()
    return " ".join([*current, *(c for c in extra.split() if c not in current)])


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
    """
    is_script = kind in (Kind.SCRIPT, Kind.INLINE)
    moving = [a for a in URL_ATTRIBUTES.get(kind, ()) if a in attrs]
    vendor_id = vendor.id if vendor else ""
    if style == "tag-gate":
        sets = [("data-tg-category", category)]
        if vendor_id:
            sets.append(("data-tg-vendor", vendor_id))
        if is_script:
            if "type" in attrs:
                sets.append(("data-tg-type", attrs["type"]))
            sets.append(("type", "text/plain"))
        sets += [(f"data-tg-{a}", attrs[a]) for a in moving]
        return Edit(set=tuple(sets), remove=tuple(moving))

    if style == "didomi":
        didomi_vendor = names.didomi_vendors.get(vendor_id) or f"c:{vendor_id or category}"
        if is_script:
            sets = [("type", "didomi/javascript"), ("data-vendor", didomi_vendor)]
            if "type" in attrs:
                sets.append(("data-type", attrs["type"]))
            return Edit(set=tuple(sets))
        # Didomi holds any other markup as text inside a didomi/html script.
        return Edit(before=f'<script type="didomi/html" data-vendor="{_attr(didomi_vendor)}">', after="</script>")

    if style == "cookiebot":
        cb = names.cookiebot.get(category, "marketing")
        if is_script:
            return Edit(set=(("type", "text/plain"), ("data-cookieconsent", cb)))
        sets = [("data-cookieconsent", cb)] + [(f"data-cookieblock-{a}", attrs[a]) for a in moving]
        return Edit(set=tuple(sets), remove=tuple(moving))

    if style == "onetrust":
        group = names.onetrust.get(category, "C0004")
        cls = _with_class(attrs, f"optanon-category-{group}")
        if is_script:
            return Edit(set=(("type", "text/plain"), ("class", cls)))
        sets = [("class", cls)] + [(f"data-{a}", attrs[a]) for a in moving]
        return Edit(set=tuple(sets), remove=tuple(moving))

    if style == "klaro":
        sets = [("data-name", _service(vendor, category))]
        if is_script:
            sets += [("type", "text/plain"), ("data-type", attrs.get("type") or "text/javascript")]
        sets += [(f"data-{a}", attrs[a]) for a in moving]
        return Edit(set=tuple(sets), remove=tuple(moving))

    if style == "cookieconsent":
        sets = [("data-category", names.cookieconsent.get(category, category))]
        if vendor is not None:
            sets.append(("data-service", vendor.name))
        if is_script:
            sets.append(("type", "text/plain"))
            if attrs.get("type", "").strip().lower() == "module":
                sets.append(("data-type", "module"))
        sets += [(f"data-{a}", attrs[a]) for a in moving]
        return Edit(set=tuple(sets), remove=tuple(moving))

    if style == "complianz":
        sets = [("data-category", names.complianz.get(category, "marketing")), ("data-service", vendor_id or category)]
        if is_script:
            sets.append(("type", "text/plain"))
            sets += [(f"data-cmplz-{a}", attrs[a]) for a in moving]
            return Edit(set=tuple(sets), remove=tuple(moving))
        sets += [(f"data-{a}-cmplz", attrs[a]) for a in moving]
        if kind is Kind.FRAME:
            sets += [
                ("src", "about:blank"),
                ("data-cmplz-target", "src"),
                ("class", _with_class(attrs, "cmplz-iframe cmplz-placeholder-element")),
            ]
            return Edit(set=tuple(sets))
        return Edit(set=tuple(sets), remove=tuple(moving))

    if style == "cookieyes":
        cy = names.cookieyes.get(category, "advertisement")
        if is_script:
            return Edit(set=(("type", "text/plain"), ("data-cookieyes", f"cookieyes-{cy}")))
        sets = [("data-cookieyes", f"cookieyes-{cy}")] + [(f"data-{a}", attrs[a]) for a in moving]
        return Edit(set=tuple(sets), remove=tuple(moving))

    if style == "usercentrics":
        service = vendor.name if vendor is not None else category
        if is_script:
            return Edit(set=(("type", "text/plain"), ("data-usercentrics", service)))
        sets = [("data-usercentrics", service)] + [(f"data-{a}", attrs[a]) for a in moving]
        return Edit(set=tuple(sets), remove=tuple(moving))

    raise ValueError(f"unknown defer style {style!r}")


def _attr(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;")


def start_tag(tag: str, attrs: Mapping[str, str] | list[tuple[str, str]]) -> str:
    """Serialise a start tag from attributes (values escaped for a double-quoted attribute)."""
    items = attrs.items() if isinstance(attrs, Mapping) else attrs
    parts = [f"<{tag}"]
    for name, value in items:
        parts.append(f' {name}="{_attr(value)}"' if value != "" else f" {name}")
    return "".join(parts) + ">"


def apply_edit(attrs: list[tuple[str, str]], edit: Edit) -> list[tuple[str, str]]:
    """The attribute list after an edit (for rebuilding inline-script start tags)."""
    out = dict(attrs)
    for name in edit.remove:
        out.pop(name, None)
    for name, value in edit.set:
        out[name] = value
    return list(out.items())
