"""The consent managers tag-gate knows, in order.

`BUILTIN`'s order is the default `[consent] sources` order: every listed source is read,
and several decisions are combined category by category (see the package docstring);
the order only picks which name `ConsentState.source` records. Adding a consent manager is one module defining its
`SOURCE` (see `source.py`) and one line here. A `Registry` can also be built from other
sources (an embedding application's, a test's) and handed to
`proxy.core.config.parse_config`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from . import (
    complianz,
    cookiebot,
    cookieconsent,
    cookieyes,
    didomi,
    klaro,
    native,
    onetrust,
    osano,
    tarteaucitron,
    tcf,
    usercentrics,
)
from .source import Source

BUILTIN: Final[tuple[Source[Any], ...]] = (
    native.SOURCE,
    onetrust.SOURCE,
    cookiebot.SOURCE,
    klaro.SOURCE,
    cookieconsent.SOURCE,
    tarteaucitron.SOURCE,
    complianz.SOURCE,
    cookieyes.SOURCE,
    usercentrics.SOURCE,
    didomi.SOURCE,
    osano.SOURCE,
    tcf.SOURCE,
)

RESERVED: Final = frozenset(
    {
        "sources",
        "undecided",
        "gpc_refuses",
        "categories",
        "cookie_name",
        "max_cookie_bytes",
        "registry",
        "per_source",
        "readers",
    }
)
"""Names of the settings common to all sources (`[consent]` keys and `ConsentSettings`
fields): no source name or flat field name may take one."""

_NAME: Final = re.compile(r"[a-z][a-z0-9-]{0,31}")


@dataclass(frozen=True, slots=True)
class Registry:
    """An ordered collection of sources with distinct names. Raises ValueError when a
    name is invalid (`[a-z][a-z0-9-]*`, at most 32), repeated, reserved, or when two
    settings fields would share a flat name."""

    entries: tuple[Source[Any], ...]
    _by_name: Mapping[str, Source[Any]] = field(init=False, repr=False, compare=False)
    _flat: Mapping[str, tuple[Source[Any], str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, Source[Any]] = {}
        flat: dict[str, tuple[Source[Any], str]] = {}
        for source in self.entries:
            if _NAME.fullmatch(source.name) is None or source.name in RESERVED:
                raise ValueError(f"{source.name!r} cannot name a consent manager")
            if source.name in by_name:
                raise ValueError(f"two consent managers are named {source.name!r}")
            by_name[source.name] = source
            for name in source.fields():
                key = source.flat(name)
                if key in flat or key in RESERVED:
                    raise ValueError(f"{source.name}.{name}: its flat name {key!r} is taken")
                flat[key] = (source, name)
        object.__setattr__(self, "_by_name", by_name)
        object.__setattr__(self, "_flat", flat)

    def get(self, name: str) -> Source[Any] | None:
        return self._by_name.get(name)

    @property
    def sources(self) -> tuple[str, ...]:
        """The names of the sources with a reader, in order: the default `sources`."""
        return tuple(s.name for s in self.entries if s.read is not None)

    @property
    def styles(self) -> tuple[str, ...]:
        """The names of the sources with a deferral convention (`html.defer_style`)."""
        return tuple(s.name for s in self.entries if s.defer is not None)

    def flat_field(self, flat: str) -> tuple[Source[Any], str] | None:
        """The source and field a flat name (`onetrust_groups`) stands for, if any."""
        return self._flat.get(flat)

    def with_source(self, source: Source[Any], *, before: str | None = None) -> Registry:
        """A registry with `source` added last, or just before the source named `before`."""
        entries = list(self.entries)
        index = len(entries)
        if before is not None:
            names = [s.name for s in entries]
            if before not in names:
                raise ValueError(f"no consent manager named {before!r}")
            index = names.index(before)
        entries.insert(index, source)
        return Registry(tuple(entries))


DEFAULT_REGISTRY: Final = Registry(BUILTIN)
