"""tag-gate's own consent cookie (`[consent] cookie_name`, default `tg_consent`), and the
native deferral convention that /__tag-gate/activate.js activates.

The cookie's name stays in `[consent]` rather than a `[consent.tag-gate]` table: it is
tag-gate's cookie everywhere, not only this reader's (the banner writes it, and the
first-party scripts activate.js, bridge.js and guard.js are served with it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from .dates import from_unix_seconds
from .markup import Deferral, Edit, Element
from .source import DEFAULT_VIEW, MALFORMED, DecidedAt, Reading, Source, View
from .values import dated, decided, percent_decode, prepare, single_cookie

_SEPARATORS: Final = re.compile(r"[.,|]")


def read_native(value: str, settings: View = DEFAULT_VIEW) -> Reading:
    """tag-gate's own cookie (`tg_consent`): granted names joined by `.` (`,` and `|`
    also accepted, percent-encoding tolerated). Empty or `none` is a decision for
    essential only. Unknown names are ignored. Everything from the first `~` on is the
    banner's record (`~policy version~time~consent id`, see proxy.core.banner): it grants
    nothing, and its time dates the decision."""
    prepared = prepare(value, settings)
    if isinstance(prepared, Reading):
        return prepared
    try:
        text, _, record = percent_decode(prepared).partition("~")
    except ValueError:
        return MALFORMED
    names = {name.strip(" \t").lower() for name in _SEPARATORS.split(text)}
    return dated(decided(names, settings), _decided_at(record))


def _decided_at(record: str) -> DecidedAt | None:
    """The `time` of the banner's `version~time~consent id` record (None without one)."""
    fields = record.split("~")
    return from_unix_seconds(fields[1]) if len(fields) == 3 else None


def _cookie(view: View) -> str:
    return view.cookie_name


def _cookies(view: View) -> tuple[str, ...]:
    return (view.cookie_name,)


def _defer(e: Element, names: Mapping[str, str]) -> Edit:
    sets = [("data-tg-category", e.category)]
    if e.vendor_id:
        sets.append(("data-tg-vendor", e.vendor_id))
    if e.script:
        if "type" in e.attrs:
            sets.append(("data-tg-type", e.attrs["type"]))
        sets.append(("type", "text/plain"))
    sets += e.moved("data-tg-")
    return Edit(set=tuple(sets), remove=e.moving)


SOURCE: Final[Source[None]] = Source(
    name="tag-gate",
    defaults=None,
    read=single_cookie(_cookie, read_native),
    cookies=_cookies,
    defer=Deferral(_defer),
)
