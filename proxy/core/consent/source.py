"""The Source API: what one consent manager's module defines, and the types it uses.

Each consent manager (CMP) is one module of this package that defines `SOURCE`, a
`Source`, and is listed once in `registry.py`. A `Source` is:

- `name`: what config and reports call it: an entry of `[consent] sources`,
  `ConsentState.source`, its settings table `[consent.<name>]`, an `html.defer_style`;
- `defaults`: its settings, an instance of a frozen dataclass whose fields all have
  defaults (None for a CMP without settings);
- `read`: its reader: the request's cookies in (`Jar`: every value sent for each
  name), a `Reading` out; it never raises. None for a CMP whose choice cannot be read
  on the server (Usercentrics keeps it in localStorage): such a CMP only brings a
  deferral convention and is not a resolution source;
- `cookies`: the cookie names `read` looks at, from the settings (the cookie firewall
  treats them as essential); `also_essential` and `cookie_prefixes` name the CMP's
  other cookies that must survive it (its "banner closed" flags, ...);
- `parse`: the TOML reader of `[consent.<name>]`: a `Table` in, its settings out, every
  shape problem reported on the table with its path (unknown keys are reported by the
  caller). None: the CMP has no table;
- `check`: every semantic problem of a settings value, whether it came from TOML or
  was built in code, as `Check` triples (field, key in that field or None, message);
  `proxy.core.config` prints them as TOML paths (`consent.onetrust.groups.C0042`),
  `validate_settings` as flat names (`onetrust_groups['C0042']`, see `Source.flat`);
- `defer`: its deferral convention (`markup.Deferral`), or None.

A source's functions receive the whole consent settings as a `View` and take their own
part with `view.of(SOURCE)`: a source may read another's settings (Didomi maps its TC
string with the TCF source's purposes). Nothing here imports the registry, so a CMP
module depends only on this module, `values`, `tables`, `markup` and the pure core.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, Protocol, TypeVar

from ..categories import BUILTIN_CATEGORIES
from .markup import Deferral

S = TypeVar("S")
T = TypeVar("T")

REASONS: Final[tuple[str, ...]] = ("ok", "missing", "malformed", "oversized", "conflict")
"""Every value `Reading.reason` and `ConsentState.reason` can take (a fixed set, for
metrics labels)."""

DEFAULT_COOKIE_NAME: Final = "tg_consent"
DEFAULT_MAX_COOKIE_BYTES: Final = 4096

Jar = Mapping[str, Sequence[str]]
"""The request's cookies: name → every value sent under that name, in order."""

Check = tuple[str, str | int | None, str]
"""One problem in a source's settings: (field, key within that field or None, message)."""


@dataclass(frozen=True, slots=True)
class DecidedAt:
    """When a decision was made, as far as the source's clock says: somewhere in
    [`earliest`, `latest`) Unix seconds (a day-precision TCF stamp spans a whole day, a
    Cookiebot stamp one millisecond)."""

    earliest: float
    latest: float

    def before(self, other: DecidedAt) -> bool:
        """Whether this decision was certainly made before `other` (the spans do not overlap)."""
        return self.latest <= other.earliest


@dataclass(frozen=True, slots=True)
class Reading:
    """What one source says. `present` False: its cookie was not sent. `decided` True:
    `granted` (non-essential names, already limited to known categories) is the choice.
    Present, undecided and `reason` "ok": the CMP says no choice was made yet. Present
    with any other `reason`: broken, which decides "essential only".

    A decided reading may also say which categories it speaks for (`covers`; None: every
    category, a name not granted is refused) and when the choice was made (`at`; None:
    the cookie does not say). Both matter only when several sources decide
    (`proxy.core.consent.resolve`)."""

    present: bool
    decided: bool
    granted: frozenset[str] = frozenset()
    reason: str = "ok"
    covers: frozenset[str] | None = None
    at: DecidedAt | None = None


ABSENT: Final = Reading(False, False, reason="missing")
UNDECIDED: Final = Reading(True, False)
MALFORMED: Final = Reading(True, False, reason="malformed")
OVERSIZED: Final = Reading(True, False, reason="oversized")
CONFLICT: Final = Reading(True, False, reason="conflict")


class View(Protocol):
    """What a source's functions see of the consent settings (`ConsentSettings` is one)."""

    @property
    def categories(self) -> frozenset[str]: ...

    @property
    def cookie_name(self) -> str: ...

    @property
    def max_cookie_bytes(self) -> int: ...

    def of(self, source: Source[S]) -> S:
        """`source`'s own settings."""
        ...


@dataclass(frozen=True, slots=True)
class _DefaultView:
    """The built-in settings of every source, without building a registry (the readers'
    default argument; equal in effect to `DEFAULT_SETTINGS`)."""

    categories: frozenset[str] = frozenset(BUILTIN_CATEGORIES)
    cookie_name: str = DEFAULT_COOKIE_NAME
    max_cookie_bytes: int = DEFAULT_MAX_COOKIE_BYTES

    def of(self, source: Source[S]) -> S:
        return source.defaults


DEFAULT_VIEW: Final[View] = _DefaultView()


class Table(Protocol):
    """One TOML table being read (`proxy.core.config`'s reader is one): problems are
    recorded against the table's path, never raised."""

    def get(self, key: str, default: T, convert: Callable[[Any], T]) -> T:
        """The converted value of `key`, or `default` when absent; when `convert` raises
        ValueError or TypeError, its message is recorded against `key` and `default`
        is returned."""
        ...

    def problem(self, key: str | None, message: str) -> None:
        """Record a problem at `key` (a dotted sub-path) of this table, or at the table."""
        ...


@dataclass(frozen=True, slots=True)
class ParseContext:
    """What a settings table is read against: the config's categories, and the service
    keys of the vendor catalogue (service name → category) for CMPs that name services."""

    categories: frozenset[str]
    catalog_services: Mapping[str, str] = dataclasses.field(default_factory=dict)


def _no_cookies(view: View) -> tuple[str, ...]:
    return ()


def _no_checks(settings: object, categories: frozenset[str]) -> Iterable[Check]:
    return ()


@dataclass(frozen=True, slots=True, eq=False)
class Source(Generic[S]):
    """One consent manager; see the module docstring for each field's contract.
    Sources compare by identity."""

    name: str
    defaults: S
    read: Callable[[Jar, View], Reading] | None = None
    cookies: Callable[[View], tuple[str, ...]] = _no_cookies
    parse: Callable[[Table, ParseContext], S] | None = None
    check: Callable[[S, frozenset[str]], Iterable[Check]] = _no_checks
    defer: Deferral[S] | None = None
    also_essential: tuple[str, ...] = ()
    cookie_prefixes: tuple[str, ...] = ()

    def fields(self) -> tuple[str, ...]:
        """The names of the settings' fields (none when the source has no settings)."""
        if not dataclasses.is_dataclass(self.defaults):
            return ()
        return tuple(f.name for f in dataclasses.fields(self.defaults))

    def flat(self, field: str) -> str:
        """The flat name of one settings field: `onetrust` + `groups` → `onetrust_groups`.
        It is how code spells it (`ConsentSettings(onetrust_groups=...)`, attribute reads,
        `validate_settings`), and how the old `[consent]` key was written."""
        return f"{self.name.replace('-', '_')}_{field}"
