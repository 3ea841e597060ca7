"""Import the Open Cookie Database into tag-gate's catalogue as a lower-priority source.

Reads the Open Cookie Database CSV (https://github.com/jkwakman/Open-Cookie-Database,
Apache-2.0) and the hand-edited decisions in proxy/data/ocd/decisions.toml, compares
every name with the built-in hand catalogue (proxy/data/vendors/), and writes:

  proxy/data/ocd/open-cookie-database.json   the names, shipped in the package
  proxy/data/ocd/DISAGREEMENTS.md            every disagreement and decision, kept in the repo

Nothing is written when a problem is found (a disagreement without a decision, a
decision naming a name the database does not have, a hand entry said to be fixed
that still disagrees, one name with two categories): the problems are printed and
the exit status is 1.

Mapping of the database's categories to ours (its definitions are in its README):
Analytics -> analytics; Marketing -> advertising, or social for a social platform,
video player or share button (SOCIAL_PLATFORMS); Functional ("technical, essential or
strictly necessary"), Necessary and Security -> essential; Personalization -> functional.
A name marked as a wildcard match is a prefix and becomes the pattern `name*`.

Usage (the CSV and commit used for the shipped file are recorded in its `meta`):

    python tools/import_ocd.py ../shared/testdata/open-cookie-database/open-cookie-database.csv \\
        --commit 0ee5a17fe1cb002943f89370d24fc26a4226061c

`--check` regenerates in memory and fails when the files in the repo differ; `--from-json`
takes the rows from the shipped JSON instead of a CSV (to refresh the decisions and the
report after the hand catalogue changed, without the CSV).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import re
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.core.catalog import (
    OCD_REPOSITORY,
    Catalog,
    Vendor,
    load_builtin_vendors,
    parse_cookie_pattern,
    parse_ocd,
    parse_source,
)
from proxy.core.categories import (
    ADVERTISING,
    ANALYTICS,
    BUILTIN_CATEGORIES,
    ESSENTIAL,
    FUNCTIONAL,
    SOCIAL,
)

REPO: Final = Path(__file__).resolve().parent.parent
DATA: Final = REPO / "proxy" / "data" / "ocd"
JSON_PATH: Final = DATA / "open-cookie-database.json"
REPORT_PATH: Final = DATA / "DISAGREEMENTS.md"
DECISIONS_PATH: Final = DATA / "decisions.toml"
CSV_FILE: Final = "open-cookie-database.csv"

CATEGORY_MAP: Final = {
    "Analytics": ANALYTICS,
    "Marketing": ADVERTISING,
    "Functional": ESSENTIAL,
    "Necessary": ESSENTIAL,
    "Security": ESSENTIAL,
    "Personalization": FUNCTIONAL,
}
SOCIAL_PLATFORMS: Final = frozenset(
    # Social networks, video players, share buttons and comment widgets: our
    # "social" category (DESIGN.md, category D). Compared casefolded.
    (
        "facebook",
        "instagram",
        "x",
        "twitter",
        "linkedin",
        "pinterest",
        "youtube",
        "tiktok",
        "reddit",
        "snapchat",
        "disqus",
        "sharethis",
        "twitch",
        "vimeo",
        "issuu",
        "spotify",
        "wistia",
        "whatsapp",
    )
)
TRACKING: Final = frozenset((ANALYTICS, ADVERTISING, SOCIAL))
"""Categories that count as "a tracker" for the database's Functional and Security names."""
CLASSIFIED: Final = TRACKING | {FUNCTIONAL}
"""Categories that count as "classified" for its Analytics and Marketing names."""
ACTIONS: Final = ("keep-hand", "hand-fixed", "exclude", "recategorise")
SAMPLE: Final = "Q7"
"""What stands for `*` when a pattern is looked up as a name."""


@dataclass(frozen=True, slots=True)
class Row:
    """One CSV line: the name as our pattern, the platform, the database's category."""

    pattern: str
    platform: str
    ocd_category: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """A CSV line whose name tag-gate cannot match as a cookie name."""

    name: str
    platform: str
    ocd_category: str
    why: str


@dataclass(frozen=True, slots=True)
class Decision:
    names: tuple[str, ...]
    action: str
    reason: str
    source: str = ""
    category: str = ""


@dataclass(frozen=True, slots=True)
class Line:
    """One name where the hand catalogue and the database disagree."""

    pattern: str
    rows: tuple[Row, ...]
    hand: Vendor
    decision: Decision | None


@dataclass(slots=True)
class Result:
    categories: dict[tuple[str, str], str | None] = field(default_factory=dict)
    """(pattern, platform) -> our category after the decisions (None: left out)."""
    disagreements: list[Line] = field(default_factory=list)
    fixed: list[tuple[str, Decision, Vendor | None]] = field(default_factory=list)
    changed: list[tuple[str, tuple[Row, ...], Decision]] = field(default_factory=list)
    merged: list[tuple[str, tuple[Row, ...]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def map_category(platform: str, ocd_category: str) -> str:
    """Our category for a name the database files under `ocd_category` for `platform`."""
    category = CATEGORY_MAP[ocd_category]
    if category == ADVERTISING and platform.casefold() in SOCIAL_PLATFORMS:
        return SOCIAL
    return category


def sample(pattern: str) -> str:
    """A name the pattern matches (the pattern itself when it is an exact name)."""
    return pattern.replace("*", SAMPLE)


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------

_INVISIBLE: Final = re.compile("[\u00ad\u200b\u200c\u200d\ufeff]")
_FORBIDDEN: Final = re.compile(r"[\x00-\x20\x7f;,=\"]")
COLUMNS: Final = ("Platform", "Category", "Cookie / Data Key name", "Wildcard match")


def read_csv(lines: Iterable[str]) -> tuple[list[Row], list[Skipped]]:
    """Rows of the database's CSV, in file order, and the lines whose name cannot be used.

    Names are stripped of surrounding whitespace and invisible characters (a soft
    hyphen inside `logglytrackingsession`); a wildcard name gets a trailing `*`.
    Raises ValueError for a missing column or an unknown category.
    """
    reader = csv.DictReader(lines)
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        raise ValueError(f"CSV: missing column(s) {', '.join(missing)}")
    rows: list[Row] = []
    skipped: list[Skipped] = []
    for n, record in enumerate(reader, start=2):
        platform = record["Platform"].strip()
        ocd_category = record["Category"].strip()
        if ocd_category not in CATEGORY_MAP:
            raise ValueError(f"CSV line {n}: unknown category {ocd_category!r}")
        raw = record["Cookie / Data Key name"]
        name = _INVISIBLE.sub("", raw).strip()
        wildcard = record["Wildcard match"].strip() == "1"
        pattern = name + "*" if wildcard and not name.endswith("*") else name
        why = _unusable(pattern)
        if why:
            skipped.append(Skipped(raw, platform, ocd_category, why))
        else:
            rows.append(Row(pattern, platform, ocd_category))
    return rows, skipped


def _unusable(pattern: str) -> str:
    if not pattern:
        return "empty name"
    if "*" in pattern:
        try:
            parse_cookie_pattern(pattern)
        except ValueError as exc:
            return str(exc)
        return ""
    bad = _FORBIDDEN.search(pattern)
    return f"has {bad.group()!r}, which cannot appear in a cookie name" if bad else ""


def load_decisions(text: str) -> list[Decision]:
    """The `[[decision]]` tables of decisions.toml. Raises ValueError listing every problem."""
    problems: list[str] = []
    decisions: list[Decision] = []
    seen: dict[str, int] = {}
    document = tomllib.loads(text)
    for key in document:
        if key != "decision":
            problems.append(f"{key}: unknown key (known: decision)")
    tables = document.get("decision", [])
    if not isinstance(tables, list):
        raise ValueError("decision: expected an array of tables ([[decision]])")
    for i, table in enumerate(tables):
        where = f"decision[{i}]"
        if not isinstance(table, dict):
            problems.append(f"{where}: expected a table")
            continue
        for key in table:
            if key not in ("names", "action", "reason", "source", "category"):
                problems.append(f"{where}: unknown key {key!r}")
        names, action, reason = table.get("names"), table.get("action"), table.get("reason")
        source, category = table.get("source", ""), table.get("category", "")
        if not (isinstance(names, list) and names and all(isinstance(x, str) and x for x in names)):
            problems.append(f"{where}.names: expected a non-empty array of names")
            names = []
        if action not in ACTIONS:
            problems.append(f"{where}.action: expected one of {', '.join(ACTIONS)}, got {action!r}")
        if not isinstance(reason, str) or len(reason.strip()) < 10:
            problems.append(f"{where}.reason: say why (at least 10 characters)")
            reason = ""
        if not isinstance(source, str):
            problems.append(f"{where}.source: expected a string")
            source = ""
        elif source:
            try:
                parse_source(source)
            except ValueError as exc:
                problems.append(f"{where}.source: {exc}")
        if (action == "recategorise") != bool(category):
            problems.append(f"{where}.category: given exactly when action = 'recategorise'")
        elif category and category not in BUILTIN_CATEGORIES:
            problems.append(f"{where}.category: unknown category {category!r}")
        for name in names:
            if name in seen:
                problems.append(f"{where}.names: {name!r} already has decision[{seen[name]}]")
            seen[name] = i
        if isinstance(action, str) and isinstance(category, str):
            decisions.append(Decision(tuple(names), action, reason, source, category))
    if problems:
        raise ValueError("\n".join(problems))
    return decisions


# ---------------------------------------------------------------------------
# Deciding
# ---------------------------------------------------------------------------


def decide(rows: Sequence[Row], decisions: Sequence[Decision], hand: Catalog) -> Result:
    """Apply the decisions to the rows and compare every name with the hand catalogue.

    A name disagrees when the hand catalogue's category for it differs from the
    category the database's own category maps to; every disagreement needs a
    decision. `result.problems` lists what must be fixed before the files are written.
    """
    result = Result()
    by_name: dict[str, Decision] = {name: d for d in decisions for name in d.names}
    grouped: dict[str, list[Row]] = {}
    for row in rows:
        grouped.setdefault(row.pattern, []).append(row)
    for name in by_name:
        if name not in grouped:
            result.problems.append(f"decision for {name!r}: the database has no such name ('*' marks a wildcard)")
    for pattern, group in grouped.items():
        decision = by_name.get(pattern)
        hand_vendor = hand.vendor_for_cookie(sample(pattern))
        disagrees = hand_vendor is not None and any(
            map_category(r.platform, r.ocd_category) != hand_vendor.category for r in group
        )
        if disagrees and hand_vendor is not None:
            result.disagreements.append(Line(pattern, tuple(group), hand_vendor, decision))
            if decision is None:
                result.problems.append(
                    f"{pattern!r}: the database says {_ocd_text(group)}, the hand catalogue says "
                    f"{hand_vendor.category} ({hand_vendor.id}); add a decision"
                )
            elif decision.action == "hand-fixed":
                result.problems.append(
                    f"{pattern!r}: the decision says the hand entry was fixed, but it still disagrees "
                    f"({hand_vendor.id}: {hand_vendor.category}; database: {_ocd_text(group)})"
                )
        elif decision is not None and decision.action == "keep-hand":
            result.problems.append(f"{pattern!r}: a keep-hand decision, but the hand catalogue does not disagree")
        if decision is not None and decision.action == "hand-fixed" and not disagrees:
            result.fixed.append((pattern, decision, hand_vendor))
        finals: set[str | None] = set()
        for row in group:
            final: str | None = map_category(row.platform, row.ocd_category)
            if decision is not None and decision.action == "exclude":
                final = None
            elif decision is not None and decision.action == "recategorise":
                final = decision.category
            result.categories[(row.pattern, row.platform)] = final
            finals.add(final)
        if decision is not None and decision.action in ("exclude", "recategorise"):
            result.changed.append((pattern, tuple(group), decision))
        if len(group) > 1:
            if len(finals) > 1:
                result.problems.append(
                    f"{pattern!r}: one name, several categories ({_ocd_text(group)}); "
                    "add an exclude or recategorise decision"
                )
            else:
                result.merged.append((pattern, tuple(group)))
    return result


def _ocd_text(rows: Iterable[Row]) -> str:
    return "; ".join(
        f"{r.platform or '(no platform)'}: {r.ocd_category} -> {map_category(r.platform, r.ocd_category)}" for r in rows
    )


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def render_json(meta: Mapping[str, str], rows: Sequence[Row], skipped: Sequence[Skipped], result: Result) -> str:
    """The shipped data file: one row per line so that diffs stay readable."""
    head = json.dumps(dict(meta), ensure_ascii=False, sort_keys=True)
    body = ",\n".join(
        "  " + json.dumps([r.pattern, r.platform, r.ocd_category, result.categories[(r.pattern, r.platform)]])
        for r in rows
    )
    skips = ",\n".join("  " + json.dumps([s.name, s.platform, s.ocd_category, s.why]) for s in skipped)
    return f'{{"meta": {head},\n"cookies": [\n{body}\n],\n"skipped": [\n{skips}\n]}}\n'


def read_json(text: str) -> tuple[dict[str, str], list[Row], list[Skipped]]:
    """The meta, rows and skipped lines of a shipped data file (its own categories are not read)."""
    data = json.loads(text)
    meta = {str(k): str(v) for k, v in data["meta"].items()}
    rows = [Row(str(p), str(pl), str(c)) for p, pl, c, _ in data["cookies"]]
    skipped = [Skipped(str(n), str(pl), str(c), str(w)) for n, pl, c, w in data["skipped"]]
    return meta, rows, skipped


@dataclass(frozen=True, slots=True)
class Coverage:
    tracking_names: int
    tracking_classified: int
    tracking_essential: tuple[str, ...]
    tracking_unclassified: tuple[str, ...]
    other_names: int
    other_as_tracker: tuple[str, ...]

    @property
    def percent(self) -> float:
        return 100.0 * self.tracking_classified / self.tracking_names if self.tracking_names else 100.0


def coverage(rows: Sequence[Row], skipped: Sequence[Skipped], catalog: Catalog) -> Coverage:
    """How `catalog` classifies the database's names, counted by distinct name.

    Its Analytics and Marketing names count as classified when the catalogue gives
    them a category in CLASSIFIED; its Functional, Necessary and Security names are
    listed when the catalogue gives them a TRACKING category. Skipped lines count as
    unclassified names.
    """
    tracking: dict[str, str | None] = {}
    other: dict[str, str | None] = {}
    for row in rows:
        vendor = catalog.vendor_for_cookie(sample(row.pattern))
        category = vendor.category if vendor else None
        if row.ocd_category in ("Analytics", "Marketing"):
            tracking[row.pattern] = category
        elif row.ocd_category in ("Functional", "Necessary", "Security"):
            other[row.pattern] = category
    for s in skipped:
        if s.ocd_category in ("Analytics", "Marketing"):
            tracking.setdefault(s.name, None)
    return Coverage(
        tracking_names=len(tracking),
        tracking_classified=sum(c in CLASSIFIED for c in tracking.values()),
        tracking_essential=tuple(sorted(n for n, c in tracking.items() if c == ESSENTIAL)),
        tracking_unclassified=tuple(sorted(n for n, c in tracking.items() if c is None)),
        other_names=len(other),
        other_as_tracker=tuple(sorted(n for n, c in other.items() if c in TRACKING)),
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _decision_text(decision: Decision | None) -> tuple[str, str]:
    if decision is None:
        return "**none**", ""
    what = decision.action + (f" ({decision.category})" if decision.category else "")
    reason = decision.reason.strip()
    if decision.source:
        reason += f" [source]({decision.source})"
    return what, _cell(reason)


def render_report(
    meta: Mapping[str, str], rows: Sequence[Row], skipped: Sequence[Skipped], result: Result, cov: Coverage
) -> str:
    """DISAGREEMENTS.md: what the import changed and why, line by line."""
    out = [
        "# Open Cookie Database: disagreements and import decisions",
        "",
        "Generated by `tools/import_ocd.py`; do not edit. The decisions live in `decisions.toml`",
        "beside this file; edit them there and regenerate.",
        "",
        f"Source: [{meta['repository']}]({meta['repository']}) `{meta['file']}` at commit `{meta['commit']}`,",
        f"imported {meta['imported']}; licence {meta['license']} (see `LICENSE` and `NOTICE`).",
        "",
        "The hand catalogue (`proxy/data/vendors/`) always wins over the database; a name it",
        "lists is never decided by the database. Categories map as Analytics → analytics,",
        "Marketing → advertising (social for social platforms, video players and share",
        "buttons), Functional/Necessary/Security → essential, Personalization → functional.",
        "",
        "## Summary",
        "",
        f"- {len(rows)} names imported ({sum(1 for r in rows if result.categories[(r.pattern, r.platform)])}"
        f" used, {sum(1 for r in rows if result.categories[(r.pattern, r.platform)] is None)} left out by a"
        f" decision), {len(skipped)} lines skipped as no usable cookie name.",
        f"- Analytics and Marketing names classified as analytics, advertising, social or functional:"
        f" {cov.tracking_classified} of {cov.tracking_names} ({cov.percent:.1f} %);"
        f" {len(cov.tracking_essential)} essential by a hand entry, {len(cov.tracking_unclassified)} unclassified.",
        f"- Functional, Necessary and Security names classified as a tracker: {len(cov.other_as_tracker)} of"
        f" {cov.other_names}, each with a decision below.",
        f"- Disagreements with the hand catalogue: {len(result.disagreements)}; hand entries fixed to agree:"
        f" {len(result.fixed)}; names changed on import: {len(result.changed)}.",
        "",
        f"## Disagreements with the hand catalogue ({len(result.disagreements)})",
        "",
        "| Name | Open Cookie Database | Hand catalogue | Decision | Reason |",
        "|---|---|---|---|---|",
    ]
    for line in sorted(result.disagreements, key=lambda x: (x.hand.id, x.pattern.casefold())):
        what, reason = _decision_text(line.decision)
        out.append(
            f"| `{_cell(line.pattern)}` | {_cell(_ocd_text(line.rows))} | {line.hand.id}: {line.hand.category}"
            f" | {what} | {reason} |"
        )
    out += [
        "",
        f"## Hand entries fixed to agree ({len(result.fixed)})",
        "",
        "| Name | Hand catalogue now | Reason |",
        "|---|---|---|",
    ]
    for pattern, decision, vendor in sorted(result.fixed, key=lambda x: x[0].casefold()):
        now = f"{vendor.id}: {vendor.category}" if vendor else "not listed"
        out.append(f"| `{_cell(pattern)}` | {now} | {_decision_text(decision)[1]} |")
    out += [
        "",
        f"## Names changed on import ({len(result.changed)})",
        "",
        "| Name | Open Cookie Database | Decision | Reason |",
        "|---|---|---|---|",
    ]
    for pattern, group, decision in sorted(result.changed, key=lambda x: (x[2].action, x[0].casefold())):
        what, reason = _decision_text(decision)
        out.append(f"| `{_cell(pattern)}` | {_cell(_ocd_text(group))} | {what} | {reason} |")
    out += [
        "",
        f"## One name, several platforms, one category ({len(result.merged)})",
        "",
    ]
    for pattern, group in sorted(result.merged, key=lambda x: x[0].casefold()):
        out.append(f"- `{pattern}`: {_ocd_text(group)}")
    out += ["", f"## Lines skipped ({len(skipped)})", ""]
    for s in skipped:
        out.append(f"- `{_cell(ascii(s.name)[1:-1])}` ({s.platform}, {s.ocd_category}): {s.why}")
    out += [
        "",
        f"## Analytics and Marketing names left unclassified ({len(cov.tracking_unclassified)})",
        "",
        ", ".join(f"`{_cell(n)}`" for n in cov.tracking_unclassified) or "None.",
        "",
    ]
    return "\n".join(out)


def generate(
    meta: Mapping[str, str], rows: Sequence[Row], skipped: Sequence[Skipped], decisions_text: str
) -> tuple[str, str, Result]:
    """The JSON and the report for these rows, against the built-in hand catalogue.

    Raises ValueError listing every problem (nothing should be written then).
    """
    decisions = load_decisions(decisions_text)
    hand = Catalog(load_builtin_vendors())
    result = decide(rows, decisions, hand)
    if result.problems:
        raise ValueError("\n".join(result.problems))
    data = render_json(meta, rows, skipped, result)
    full = Catalog(load_builtin_vendors(), cookie_fallback=parse_ocd(json.loads(data), BUILTIN_CATEGORIES))
    return data, render_report(meta, rows, skipped, result, coverage(rows, skipped, full)), result


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", nargs="?", type=Path, help="the database's open-cookie-database.csv")
    ap.add_argument("--commit", help="the upstream commit the CSV was taken from (40 hex digits)")
    ap.add_argument("--date", type=datetime.date.fromisoformat, help="import date (default: today)")
    ap.add_argument("--from-json", action="store_true", help="take the rows from the shipped JSON, not a CSV")
    ap.add_argument("--check", action="store_true", help="write nothing; fail if the files would change")
    args = ap.parse_args(argv)
    if args.from_json == (args.csv is not None):
        ap.error("give either a CSV file or --from-json")
    if args.from_json:
        meta, rows, skipped = read_json(JSON_PATH.read_text(encoding="utf-8"))
        if args.date:
            meta["imported"] = args.date.isoformat()
    else:
        if not args.commit or not re.fullmatch(r"[0-9a-f]{40}", args.commit):
            ap.error("--commit: the upstream commit id (40 lowercase hex digits) is required with a CSV")
        with args.csv.open(encoding="utf-8", newline="") as f:
            rows, skipped = read_csv(f)
        date = args.date
        if date is None and args.check and JSON_PATH.exists():
            date = datetime.date.fromisoformat(read_json(JSON_PATH.read_text(encoding="utf-8"))[0]["imported"])
        meta = {
            "repository": OCD_REPOSITORY,
            "file": CSV_FILE,
            "commit": args.commit,
            "imported": (date or datetime.date.today()).isoformat(),
            "license": "Apache-2.0",
            "generator": "tools/import_ocd.py",
        }
    try:
        data, report, result = generate(meta, rows, skipped, DECISIONS_PATH.read_text(encoding="utf-8"))
    except ValueError as exc:
        print(f"import_ocd: not written, fix these first:\n{exc}", file=sys.stderr)
        return 1
    outputs = {JSON_PATH: data, REPORT_PATH: report}
    if args.check:
        stale = [p.name for p, text in outputs.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
        if stale:
            print(f"import_ocd: out of date: {', '.join(stale)}", file=sys.stderr)
            return 1
        return 0
    for path, text in outputs.items():
        path.write_text(text, encoding="utf-8")
    print(
        f"wrote {JSON_PATH.relative_to(REPO)} ({len(rows)} names) and {REPORT_PATH.relative_to(REPO)}"
        f" ({len(result.disagreements)} disagreements)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
