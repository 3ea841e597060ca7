"""Deferral conventions: the types a consent manager's deferral is written with.

A refused element is made inert in the site CMP's own convention (docs/field-survey.md
§c) so that the CMP can activate it later without a reload. `proxy.core.defer` turns
the gate's element into an `Element` and applies the style's `Deferral.edit`, which
returns an `Edit`: attributes to set and to remove, and optionally markup to wrap
around the element (Didomi wraps blocked HTML in `<script type="didomi/html">`).

Kept apart from `proxy.core.defer` (which dispatches on the style name and so imports
the registry) so that a CMP module can use these without an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..catalog import Vendor

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class Edit:
    """Attribute changes for one deferred element (applied in this order)."""

    set: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()
    before: str = ""
    after: str = ""


@dataclass(frozen=True, slots=True)
class Element:
    """The element being deferred, as a deferral convention sees it."""

    script: bool
    """A `<script>` (external or inline): made inert by its `type`."""
    frame: bool
    """An `<iframe>` or `<frame>`."""
    attrs: Mapping[str, str]
    """Its current attributes (names lower-case)."""
    moving: tuple[str, ...]
    """Its attributes that make the browser fetch something, which a deferral moves
    aside (e.g. `src` to `data-src`)."""
    category: str
    vendor: Vendor | None

    @property
    def vendor_id(self) -> str:
        return self.vendor.id if self.vendor else ""

    def moved(self, prefix: str, suffix: str = "") -> list[tuple[str, str]]:
        """The fetching attributes renamed `prefix + name + suffix`, with their values."""
        return [(f"{prefix}{name}{suffix}", self.attrs[name]) for name in self.moving]


def _no_names(settings: object) -> Mapping[str, str]:
    return {}


@dataclass(frozen=True, slots=True)
class Deferral(Generic[S]):
    """A CMP's deferral convention. `edit` makes one element inert; its second argument
    is `names(settings)`, our category names in the CMP's vocabulary (derived from the
    settings, so a site that mapped OneTrust group `C0042` to analytics gets `C0042`
    back; empty when the settings are not known, and each `edit` has a fallback)."""

    edit: Callable[[Element, Mapping[str, str]], Edit]
    names: Callable[[S], Mapping[str, str]] = _no_names


def inverse_names(mapping: Mapping[str, frozenset[str]], preferred: Mapping[str, str]) -> dict[str, str]:
    """Category → CMP name from a CMP name → categories map. When several CMP names map
    to one category, `preferred`'s choice is taken when it is in `mapping`, else the
    first name in sorted order."""
    out: dict[str, str] = {}
    for name, categories in sorted(mapping.items()):
        for category in categories:
            if preferred.get(category) == name or category not in out:
                out[category] = name
    out.update({c: n for c, n in preferred.items() if n in mapping})
    return out


def with_class(attrs: Mapping[str, str], extra: str) -> str:
    """The element's `class` value with the classes of `extra` added once."""
    current = attrs.get("class", "").split()
    return " ".join([*current, *(c for c in extra.split() if c not in current)])


def service_name(vendor: Vendor | None, category: str) -> str:
    """The CMP service key for a vendor: its first catalogue service key, else its id;
    the category when the element has no vendor."""
    if vendor is None:
        return category
    return vendor.services[0] if vendor.services else vendor.id


def escape_attr(value: str) -> str:
    """`value` escaped for a double-quoted attribute."""
    return value.replace("&", "&amp;").replace('"', "&quot;")
