"""Cookie parsing and filtering, in both directions (pure: no IO, no aiohttp).

Request side: the `Cookie` header is read into (name, value) pairs. Response side:
`Set-Cookie` lines are read for their name only, never re-serialised.
"""

from __future__ import annotations


def parse_cookie_header(value: str) -> list[tuple[str, str]]:
    """Split one request `Cookie` header value into (name, value) pairs, in order.

    Pairs are separated by `;` (never `,`). Whitespace around names and values is
    trimmed. A pair without `=` is a nameless cookie: name `""`, value the whole pair
    (what browsers send for `Set-Cookie: foo`). Empty segments are skipped. Values are
    returned as sent: no unquoting, no percent-decoding.
    """
    pairs: list[tuple[str, str]] = []
    for segment in value.split(";"):
        segment = segment.strip(" \t")
        if not segment:
            continue
        name, eq, val = segment.partition("=")
        if eq:
            pairs.append((name.strip(" \t"), val.strip(" \t")))
        else:
            pairs.append(("", segment))
    return pairs
