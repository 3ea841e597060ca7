"""Actions, element kinds, and the one table of what an action does to each kind (pure).

An `Action` is what the policy wants done to something the visitor refused; a `Kind`
is the sort of thing it is (an external script, an inline one, an image, a frame, a
`Link` header URL, a cookie line...). Not every action makes sense for every kind: a
`<link rel=preconnect>` has nothing to activate later, so "defer" removes it. `EFFECTS`
is the whole answer, one row per action and one column per kind; `TRAITS` says, per
action, what the rest of the code needs to know about it. Everyone reads these two:

- the policy builds each classification's refused decisions from `EFFECTS`
  (`Decision.action` is already the effect for the kind asked about);
- the HTML gate turns an effect into markup (`proxy.html.run.GateRun.act`), downgrading
  it to `TRAITS[effect].final` where nothing could activate it later (inside
  `<noscript>`/`srcdoc`, or a category refused by Sec-GPC), counting it, and asking for
  `activate.js` as `TRAITS[effect].activation` says;
- config validation accepts exactly `ELEMENT_ACTIONS` for `html.action`,
  `[html.category.*] action` and `[[rule]] action`;
- the `Tag-Gate-Decisions` header counts exactly `ELEMENT_ACTIONS`, in this order.

Adding an action: a member of `Action`, its row in the grid below (`_ROWS`, published
as `EFFECTS`) and its `TRAITS` entry. When one of its effects is new (not keep, remove,
defer or placeholder), the gate needs one more branch in `GateRun.act` (and in the
inline-script handler if the `INLINE` column holds it); until then the gate refuses
the effect (fails closed) and `tests/test_actions.py` fails.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final


class Action(enum.StrEnum):
    KEEP = "keep"
    REMOVE = "remove"
    DEFER = "defer"
    PLACEHOLDER = "placeholder"
    DROP = "drop"


class Kind(enum.StrEnum):
    """What sort of element a decision is for; it limits which actions make sense."""

    SCRIPT = "script"
    INLINE = "inline"
    MEDIA = "media"
    FRAME = "frame"
    EMBED = "embed"
    LINK = "link"
    PING = "ping"
    HEADER = "header"


class Activation(enum.Enum):
    """Whether an effect needs tag-gate's `activate.js` on the page."""

    NONE = "none"
    OWN_STYLE = "own-style"
    """Only when tag-gate writes its own deferral convention (`html.defer_style =
    "tag-gate"`); a site CMP's convention is activated by that CMP."""
    ALWAYS = "always"


@dataclass(frozen=True, slots=True)
class Traits:
    """What the code around the table needs to know about one action."""

    element: bool
    """Operators may choose it for refused elements, and `Tag-Gate-Decisions` counts it."""
    final: Action
    """What it becomes where nothing could activate it later."""
    activation: Activation


_KEEP, _REMOVE, _DEFER, _PLACEHOLDER, _DROP = Action.KEEP, Action.REMOVE, Action.DEFER, Action.PLACEHOLDER, Action.DROP

_COLUMNS: Final = (Kind.SCRIPT, Kind.INLINE, Kind.MEDIA, Kind.FRAME, Kind.EMBED, Kind.LINK, Kind.PING, Kind.HEADER)
# A placeholder is a same-size box with a "load" button: only frames have a box to keep;
# elsewhere it means "defer" (recoverable without a reload). Hints, pings and headers
# have nothing to activate later: they are removed. "drop" is for cookies.
# fmt: off
_ROWS: Final = {
    #              SCRIPT    INLINE    MEDIA     FRAME         EMBED     LINK      PING      HEADER
    _KEEP:        (_KEEP,    _KEEP,    _KEEP,    _KEEP,        _KEEP,    _KEEP,    _KEEP,    _KEEP),
    _REMOVE:      (_REMOVE,  _REMOVE,  _REMOVE,  _REMOVE,      _REMOVE,  _REMOVE,  _REMOVE,  _REMOVE),
    _DEFER:       (_DEFER,   _DEFER,   _DEFER,   _DEFER,       _DEFER,   _REMOVE,  _REMOVE,  _REMOVE),
    _PLACEHOLDER: (_DEFER,   _DEFER,   _DEFER,   _PLACEHOLDER, _DEFER,   _REMOVE,  _REMOVE,  _REMOVE),
    _DROP:        (_DROP,    _DROP,    _DROP,    _DROP,        _DROP,    _DROP,    _DROP,    _DROP),
}
# fmt: on

EFFECTS: Final[Mapping[Action, Mapping[Kind, Action]]] = MappingProxyType(
    {action: MappingProxyType(dict(zip(_COLUMNS, row, strict=True))) for action, row in _ROWS.items()}
)
"""`EFFECTS[configured action][kind]`: the action actually taken on that kind."""

TRAITS: Final[Mapping[Action, Traits]] = MappingProxyType(
    {
        _KEEP: Traits(element=False, final=_KEEP, activation=Activation.NONE),
        _REMOVE: Traits(element=True, final=_REMOVE, activation=Activation.NONE),
        _DEFER: Traits(element=True, final=_REMOVE, activation=Activation.OWN_STYLE),
        _PLACEHOLDER: Traits(element=True, final=_REMOVE, activation=Activation.ALWAYS),
        _DROP: Traits(element=False, final=_DROP, activation=Activation.NONE),
    }
)

ELEMENT_ACTIONS: Final = tuple(a for a in Action if TRAITS[a].element)
"""The actions operators may configure for elements, in the order the header lists them."""
