"""How consent is read: the settings common to every source, each source's own settings,
the registry they belong to, and every problem with them.

`ConsentSettings` holds `[consent]` (sources, undecided, gpc_refuses, cookie_name,
max_cookie_bytes), the config's categories, the `Registry`, and one settings value per
source (`of(source)`). `proxy.core.config` builds one from TOML; code builds one with
keywords. A source's field can also be given and read by its flat name
(`ConsentSettings(onetrust_groups=...)`, `settings.tcf_purposes`, see `Source.flat`):
that spelling works for every source, built-in or not, without listing it here.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from ..categories import ADVERTISING, BUILTIN_CATEGORIES, ESSENTIAL
from .registry import DEFAULT_REGISTRY, Registry
from .source import DEFAULT_COOKIE_NAME, DEFAULT_MAX_COOKIE_BYTES, Jar, Reading, Source, View
from .tables import check_categories, check_cookie_name, toml_key

S = TypeVar("S")

_CATEGORY_NAME: Final = re.compile(r"[a-z][a-z0-9_-]{0,31}")


@dataclass(frozen=True, slots=True, init=False)
class ConsentSettings:
    """How consent is read. Defaults are the built-in behaviour. Every field is a plain
    value; mappings may be given as dicts. Service and category-name keys (Klaro,
    tarteaucitron, cookieconsent) are matched case-insensitively and must be written in
    lower case; `validate_settings` says so. Compare settings with `==`; they are not
    hashable (the mappings are not).

    Keywords: the common fields; `registry` (default: the built-in one); `per_source`, source
    name → that source's settings value (the others keep their defaults); and any
    source field by its flat name, applied after `per_source`. An unknown keyword, a `per_source`
    name the registry does not know or a value of the wrong type raise TypeError.
    """

    sources: tuple[str, ...]
    """Resolution order (default: every source of the registry that has a reader)."""
    undecided: frozenset[str]
    gpc_refuses: frozenset[str]
    categories: frozenset[str]
    cookie_name: str
    max_cookie_bytes: int
    registry: Registry = field(repr=False)
    per_source: Mapping[str, Any] = field(repr=False)
    """Source name → its settings, for every source of the registry."""
    readers: tuple[tuple[str, Callable[[Jar, View], Reading]], ...] = field(init=False, repr=False, compare=False)
    """(name, reader) of each entry of `sources` the registry can read, in order."""

    def __init__(
        self,
        *,
        sources: tuple[str, ...] | None = None,
        undecided: frozenset[str] = frozenset(),
        gpc_refuses: frozenset[str] = frozenset({ADVERTISING}),
        categories: frozenset[str] = frozenset(BUILTIN_CATEGORIES),
        cookie_name: str = DEFAULT_COOKIE_NAME,
        max_cookie_bytes: int = DEFAULT_MAX_COOKIE_BYTES,
        registry: Registry = DEFAULT_REGISTRY,
        per_source: Mapping[str, Any] | None = None,
        **flat: Any,
    ) -> None:
        own = {source.name: source.defaults for source in registry.entries}
        for name, value in (per_source or {}).items():
            source = registry.get(name)
            if source is None:
                raise TypeError(f"per_source: no consent manager named {name!r} in the registry")
            if type(value) is not type(source.defaults):
                raise TypeError(
                    f"per_source[{name!r}]: expected {type(source.defaults).__name__}, got {type(value).__name__}"
                )
            own[name] = value
        for key, value in flat.items():
            hit = registry.flat_field(key)
            if hit is None:
                raise TypeError(f"ConsentSettings() got an unexpected keyword argument {key!r}")
            source, name = hit
            own[source.name] = dataclasses.replace(own[source.name], **{name: value})
        set_ = object.__setattr__
        order = registry.sources if sources is None else sources
        set_(self, "sources", order)
        set_(self, "undecided", undecided)
        set_(self, "gpc_refuses", gpc_refuses)
        set_(self, "categories", categories)
        set_(self, "cookie_name", cookie_name)
        set_(self, "max_cookie_bytes", max_cookie_bytes)
        set_(self, "registry", registry)
        set_(self, "per_source", own)
        readers = ((name, source.read) for name in order if (source := registry.get(name)) is not None)
        set_(self, "readers", tuple((name, read) for name, read in readers if read is not None))

    def of(self, source: Source[S]) -> S:
        """`source`'s settings (its defaults when the registry does not hold it)."""
        own: S = self.per_source.get(source.name, source.defaults)
        return own

    def __getattr__(self, name: str) -> Any:
        """A source's field by its flat name (`settings.onetrust_groups`)."""
        if not name.startswith("_"):
            try:
                registry: Registry = object.__getattribute__(self, "registry")
            except AttributeError:
                pass
            else:
                hit = registry.flat_field(name)
                if hit is not None:
                    return getattr(self.of(hit[0]), hit[1])
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


DEFAULT_SETTINGS: Final = ConsentSettings()


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem in consent settings: in a common field (`source` None; an int `key`
    is then a list index) or in a source's field (`key` is a key of that mapping)."""

    source: str | None
    field: str
    key: str | int | None
    message: str

    def flat(self) -> str:
        """`onetrust_groups['C0042']: message`, as `validate_settings` reports it."""
        name = self.field
        if self.source is not None:
            name = f"{self.source.replace('-', '_')}_{self.field}"
        return f"{name}{'' if self.key is None else f'[{self.key!r}]'}: {self.message}"

    def path(self) -> str:
        """The TOML path below `[consent]`: `onetrust.groups.C0042`, `sources[1]`."""
        path = self.field if self.source is None else f"{toml_key(self.source)}.{self.field}"
        if self.key is None:
            return path
        if self.source is None and isinstance(self.key, int):
            return f"{path}[{self.key}]"
        return f"{path}.{toml_key(str(self.key))}"


def settings_problems(settings: ConsentSettings) -> Iterator[Problem]:
    """Every problem with a settings object: bad or unknown category names, unknown or
    repeated sources, invalid cookie names, then each source's own `check`."""
    known = settings.categories
    for name in sorted(known):
        if _CATEGORY_NAME.fullmatch(name) is None:
            yield Problem(None, "categories", None, f"{name!r} is not a valid category name ([a-z][a-z0-9_-]*, max 32)")
    for name in BUILTIN_CATEGORIES:
        if name not in known:
            yield Problem(None, "categories", None, f"built-in category {name!r} is missing")
    registry = settings.registry
    seen: set[str] = set()
    for i, name in enumerate(settings.sources):
        if name not in registry.sources:
            yield Problem(None, "sources", i, f"unknown source {name!r} (known: {', '.join(registry.sources)})")
        elif name in seen:
            yield Problem(None, "sources", i, f"{name!r} listed twice")
        seen.add(name)
    for where, names in (("undecided", settings.undecided), ("gpc_refuses", settings.gpc_refuses)):
        for field_name, key, message in check_categories(where, names, known):
            yield Problem(None, field_name, key, message)
    if ESSENTIAL in settings.gpc_refuses:
        yield Problem(None, "gpc_refuses", None, "'essential' cannot be refused")
    for field_name, key, message in check_cookie_name("cookie_name", settings.cookie_name):
        yield Problem(None, field_name, key, message)
    if settings.max_cookie_bytes < 1:
        yield Problem(None, "max_cookie_bytes", None, f"{settings.max_cookie_bytes} must be at least 1")
    for source in registry.entries:
        for field_name, key, message in source.check(settings.of(source), known):
            yield Problem(source.name, field_name, key, message)


def validate_settings(settings: ConsentSettings) -> list[str]:
    """Every problem with a settings object, as `field: message` lines with flat field
    names (`onetrust_groups['C0042']: unknown category 'stats'`); empty when fine."""
    return [problem.flat() for problem in settings_problems(settings)]
