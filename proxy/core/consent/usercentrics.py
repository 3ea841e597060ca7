"""Usercentrics: a deferral convention only (`data-usercentrics`). Usercentrics keeps the
visitor's choice in localStorage, which the server never sees; /__tag-gate/bridge.js
copies it into `tg_consent`. So this is not a resolution source: it has no reader, no
cookie and no settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from .markup import Deferral, Edit, Element
from .source import Source


def _defer(e: Element, names: Mapping[str, str]) -> Edit:
    service = e.vendor.name if e.vendor is not None else e.category
    if e.script:
        return Edit(set=(("type", "text/plain"), ("data-usercentrics", service)))
    return Edit(set=(("data-usercentrics", service), *e.moved("data-")), remove=e.moving)


SOURCE: Final[Source[None]] = Source(name="usercentrics", defaults=None, defer=Deferral(_defer))
