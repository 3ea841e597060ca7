"""The consent categories tag-gate knows before any config is read.

`essential` is always granted. A config may add categories of its own; they are
declared in `[categories]` and validated by `proxy.core.config`.
"""

from typing import Final

ESSENTIAL: Final = "essential"
FUNCTIONAL: Final = "functional"
ANALYTICS: Final = "analytics"
ADVERTISING: Final = "advertising"
SOCIAL: Final = "social"

BUILTIN_CATEGORIES: Final[tuple[str, ...]] = (ESSENTIAL, FUNCTIONAL, ANALYTICS, ADVERTISING, SOCIAL)
"""Built-in category names, in the order used for consent keys and reports."""

NON_ESSENTIAL: Final[tuple[str, ...]] = BUILTIN_CATEGORIES[1:]
