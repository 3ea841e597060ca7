"""What a running process does with a parsed config: flag and environment overrides,
the check that it can serve, and what a reload applies (pure, like the rest of core)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Final

from .addresses import parse_address, parse_address_or_off, parse_upstream, parse_workers_text
from .config import Config, ConfigError

__all__ = ["OVERRIDABLE", "check_runnable", "merge_reload", "with_overrides"]


OVERRIDABLE: Final[dict[str, Callable[[Any], Any]]] = {
    "listen": parse_address,
    "upstream": parse_upstream,
    "admin_listen": parse_address_or_off,
    "workers": parse_workers_text,
}
"""Server settings that flags and environment variables may override, with their parsers."""


def with_overrides(config: Config, overrides: Mapping[str, tuple[str, str]]) -> Config:
    """Apply `{setting: (origin, value)}` overrides (origin names the flag or variable).

    Raises `ConfigError` naming the origin of every bad value.
    """
    problems: list[str] = []
    changes: dict[str, Any] = {}
    for key, (origin, value) in overrides.items():
        try:
            changes[key] = OVERRIDABLE[key](value)
        except (ValueError, TypeError) as exc:
            problems.append(f"{origin}: {exc}")
    if problems:
        raise ConfigError(problems)
    return replace(config, server=replace(config.server, **changes))


def check_runnable(config: Config) -> list[str]:
    """Problems that make a parsed config unable to serve (e.g. no upstream at all)."""
    problems = []
    if config.server.upstream is None:
        problems.append(
            "server.upstream: not set; give it in the config file, with --upstream, or in TAG_GATE_UPSTREAM"
        )
    admin = config.server.admin_listen
    if admin is not None and admin == config.server.listen and admin.port != 0:
        problems.append("server.admin_listen: must differ from server.listen (health and metrics stay private)")
    return problems


def merge_reload(running: Config, new: Config) -> tuple[Config, tuple[str, ...]]:
    """What a reload applies: `new`, except the settings that belong to what is already
    open (listener addresses, the upstream, timeouts, limits other than
    `max_request_body`, the number of workers), which keep their `running` values until a
    restart. Returns that config and the names of those settings `new` changes, for the
    log. Merging again from the result gives the same: the kept settings always come
    from the config the process started with."""
    fixed = {
        "server.listen": (running.server.listen, new.server.listen),
        "server.admin_listen": (running.server.admin_listen, new.server.admin_listen),
        "server.upstream": (running.server.upstream, new.server.upstream),
        "server.workers": (running.server.workers, new.server.workers),
        "timeouts": (running.timeouts, new.timeouts),
        "limits": (replace(running.limits, max_request_body=0), replace(new.limits, max_request_body=0)),
    }
    changed = tuple(name for name, (before, after) in fixed.items() if before != after)
    applied = replace(
        new,
        server=replace(
            new.server,
            listen=running.server.listen,
            admin_listen=running.server.admin_listen,
            upstream=running.server.upstream,
            workers=running.server.workers,
        ),
        timeouts=running.timeouts,
        limits=replace(running.limits, max_request_body=new.limits.max_request_body),
    )
    return applied, changed
