"""The config's rule sections: `[[rule]]` (URL and inline-script rules), `[[cookie]]`,
`[[exception]]` and `[[vendor]]`, each compiled at load time, every problem with its
TOML path."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from .actions import ELEMENT_ACTIONS, Action
from .catalog import Vendor, VendorError, parse_host, parse_vendor
from .policy import CookieRule, UrlRule, compile_globs
from .reader import Reader, as_bool, as_str, as_str_list, type_name

_NO_STRINGS: tuple[str, ...] = ()


def category_checker(categories: frozenset[str]) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        name = as_str(value)
        if name not in categories:
            raise ValueError(f"unknown category {name!r} (known: {', '.join(sorted(categories))})")
        return name

    return convert


def element_action(value: Any) -> Action:
    name = as_str(value)
    if name not in ELEMENT_ACTIONS:
        raise ValueError(f"expected one of {', '.join(repr(a.value) for a in ELEMENT_ACTIONS)}, got {name!r}")
    return Action(name)


def read_rules(root: Reader, categories: frozenset[str], vendor_ids: frozenset[str]) -> tuple[UrlRule, ...]:
    rules = []
    for i, r in enumerate(root.tables("rule")):
        name = r.get("name", f"rule[{i}]", as_str)
        raw_hosts = r.get("hosts", _NO_STRINGS, as_str_list)
        parsed = []
        for j, host in enumerate(raw_hosts):
            try:
                parsed.append(parse_host(host))
            except ValueError as exc:
                r.problem(f"hosts[{j}]", str(exc))
        hosts = tuple(parsed)

        def prefixes(value: Any) -> tuple[str, ...]:
            items = as_str_list(value)
            for item in items:
                if not item.startswith("/"):
                    raise ValueError(f"{item!r}: a path prefix starts with /")
            return items

        def regex(value: Any) -> re.Pattern[str]:
            try:
                return re.compile(as_str(value))
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None

        def vendor(value: Any) -> str:
            vid = as_str(value)
            if vid not in vendor_ids:
                raise ValueError(f"no vendor with id {vid!r} in the catalogue or [[vendor]]")
            return vid

        path_prefixes = r.get("path_prefix", _NO_STRINGS, lambda v: prefixes([v] if isinstance(v, str) else v))
        url_regex = r.get("url_regex", None, regex)
        vendor_id = r.get("vendor", None, vendor)
        inline = r.get("inline", _NO_STRINGS, as_str_list)
        category = r.get("category", None, category_checker(categories))
        action = r.get("action", None, element_action)
        allow = r.get("allow", False, as_bool)
        r.finish()
        if not (hosts or path_prefixes or url_regex or vendor_id or inline) and not raw_hosts:
            r.problem(None, "a rule needs at least one of hosts, path_prefix, url_regex, vendor, inline")
        if allow and (category or action):
            r.problem(None, "allow = true keeps matches untouched; it cannot also set category or action")
        if not allow and category is None and action is None:
            r.problem(None, "a rule needs allow = true, a category, or an action")
        if inline and (hosts or path_prefixes or url_regex or vendor_id):
            r.problem("inline", "inline signatures match inline scripts only; put URL matchers in another rule")
        rules.append(
            UrlRule(
                name=name,
                hosts=frozenset(hosts),
                path_prefixes=path_prefixes,
                url_regex=url_regex,
                vendor=vendor_id,
                inline=inline,
                category=category,
                action=action,
                allow=allow,
            )
        )
    return tuple(rules)


_COOKIE_GLOB: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def read_cookie_rules(root: Reader, categories: frozenset[str]) -> tuple[CookieRule, ...]:
    rules = []
    for i, r in enumerate(root.tables("cookie")):
        name = r.get("name", f"cookie[{i}]", as_str)
        names = r.get("names", _NO_STRINGS, as_str_list)
        for j, n in enumerate(names):
            if not _COOKIE_GLOB.fullmatch(n):
                r.problem(f"names[{j}]", f"{n!r} is not a cookie name or a pattern with *")
        category = r.get("category", None, category_checker(categories))
        allow = r.get("allow", False, as_bool)
        r.finish()
        if not names:
            r.problem("names", "required: the cookie names (or patterns with *) this rule covers")
        if allow == (category is not None):
            r.problem(None, "give exactly one of category or allow = true")
        rules.append(
            CookieRule(
                name=name,
                exact=frozenset(n for n in names if "*" not in n),
                pattern=compile_globs(names),
                category=category,
                allow=allow,
            )
        )
    return tuple(rules)


def read_exceptions(root: Reader) -> tuple[str, ...]:
    out = []
    for r in root.tables("exception"):
        prefix = r.get("path_prefix", None, as_str)
        r.finish()
        if prefix is None:
            r.problem("path_prefix", "required: the page path prefix where the HTML gate does not run")
        elif not prefix.startswith("/"):
            r.problem("path_prefix", f"{prefix!r}: a path prefix starts with /")
        else:
            out.append(prefix)
    return tuple(out)


def read_vendors(root: Reader, categories: frozenset[str], problems: list[str]) -> tuple[Vendor, ...]:
    root.raw("vendor")
    items = root._data.get("vendor", [])
    if not isinstance(items, list):
        problems.append(f"vendor: expected an array of tables ([[vendor]]), got {type_name(items)}")
        return ()
    vendors = []
    for i, item in enumerate(items):
        try:
            vendors.append(parse_vendor(item, f"vendor[{i}]", categories))
        except VendorError as exc:
            problems.extend(exc.problems)
    return tuple(vendors)
