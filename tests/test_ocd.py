"""The Open Cookie Database import: the fallback lookup, the shipped files, decisions, coverage."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from proxy.core.catalog import (
    OCD_REPOSITORY,
    Catalog,
    Vendor,
    VendorError,
    load_builtin_vendors,
    load_ocd_vendors,
    make_catalog,
    parse_ocd,
    parse_vendor,
)
from proxy.core.categories import ADVERTISING, ANALYTICS, BUILTIN_CATEGORIES, ESSENTIAL, SOCIAL
from tools import import_ocd

DATA = resources.files("proxy") / "data" / "ocd"
META, ROWS, SKIPPED = import_ocd.read_json((DATA / "open-cookie-database.json").read_text(encoding="utf-8"))
DECISIONS_TEXT = (DATA / "decisions.toml").read_text(encoding="utf-8")
CATALOG = make_catalog()
HAND = Catalog(load_builtin_vendors())


def vendor_id(vendor: Vendor | None) -> str | None:
    return None if vendor is None else vendor.id


# ---------------------------------------------------------------------------
# Catalog(cookie_fallback=...): the fallback answers only what nobody else claims
# ---------------------------------------------------------------------------

FALLBACK = Catalog(
    [
        Vendor("hand-exact", "Hand exact", ANALYTICS, cookies=("_x",)),
        Vendor("hand-pattern", "Hand pattern", ANALYTICS, cookies=("_x_*",)),
        Vendor("site", "Site", SOCIAL, hosts=("site.example",)),
    ],
    cookie_fallback=[
        Vendor("fb-exact", "Fallback exact", ADVERTISING, cookies=("_x", "_x_1", "_y", "_y_1")),
        Vendor("fb-pattern", "Fallback pattern", ESSENTIAL, cookies=("_y*", "_x_*")),
        Vendor("fb-long", "Fallback longer pattern", ADVERTISING, cookies=("_y_long*",)),
    ],
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("_x", "hand-exact"),  # a hand exact name beats a fallback exact name
        ("_x_1", "hand-pattern"),  # a hand pattern beats a fallback exact name
        ("_x_2", "hand-pattern"),
        ("_y", "fb-exact"),
        ("_y_1", "fb-exact"),  # in the fallback, too, exact beats pattern
        ("_y_2", "fb-pattern"),
        ("_y_longer", "fb-long"),  # and the most literal pattern wins
        ("_z", None),
        ("", None),
    ],
)
def test_fallback_answers_only_unclaimed_names(name: str, expected: str | None) -> None:
    assert vendor_id(FALLBACK.vendor_for_cookie(name)) == expected
    assert vendor_id(FALLBACK.vendor_for_cookie(name)) == expected  # memoised answer is the same


def test_fallback_takes_no_part_in_other_lookups() -> None:
    assert [v.id for v in FALLBACK.vendors] == ["hand-exact", "hand-pattern", "site"]
    assert FALLBACK.vendor("fb-exact") is None
    assert FALLBACK.by_service("Fallback exact") is None
    only_fallback = Catalog([], cookie_fallback=[Vendor("f", "F", ADVERTISING, cookies=("_f",))])
    assert vendor_id(only_fallback.vendor_for_cookie("_f")) == "f"
    assert only_fallback.vendor_for_cookie("_g") is None


# ---------------------------------------------------------------------------
# The shipped data in make_catalog()
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # hand entries win, whatever the database says
        ("_hjSession_123", "hotjar"),
        ("_fbp", "meta-pixel"),
        ("euconsent", "iab-consent-strings"),
        ("__hstc", "hubspot-tracking"),
        # names only the database knows
        ("_gali", "ocd-google-analytics-analytics"),
        ("GRV_BHV_UID_123", "ocd-groovinads-advertising"),
        ("_opt_awkid", "ocd-google-optimize-analytics"),
        ("shbid", "ocd-instagram-social"),
        ("PHPSESSID", "ocd-php-net-essential"),
        # left out by a decision: a site's own cookies of these names stay unknown
        ("sessionid", None),
        ("token", None),
        ("SID", None),
        ("captcha_token", None),  # `cap*` was left out
        ("_session_id", None),  # `_s*` was left out
    ],
)
def test_builtin_catalogue_falls_back_to_the_database(name: str, expected: str | None) -> None:
    assert vendor_id(CATALOG.vendor_for_cookie(name)) == expected


def test_database_vendors_are_cookie_only_and_sourced() -> None:
    vendors = load_ocd_vendors()
    assert vendors is load_ocd_vendors()  # read once per process
    assert len(vendors) > 300
    for vendor in vendors:
        assert vendor.id.startswith("ocd-") and vendor.category in BUILTIN_CATEGORIES
        assert vendor.cookies and not (vendor.hosts or vendor.urls or vendor.inline or vendor.services)
        assert vendor.source == f"{OCD_REPOSITORY}/blob/{META['commit']}/open-cookie-database.csv"
    assert not {v.id for v in vendors} & {v.id for v in load_builtin_vendors()}
    assert len(CATALOG.vendors) == len(load_builtin_vendors())  # the database adds no vendors


def test_operator_vendors_win_over_the_database() -> None:
    operator = parse_vendor({"name": "Shop", "category": "essential", "cookies": ["_gali"]}, "v", BUILTIN_CATEGORIES)
    assert vendor_id(make_catalog([operator]).vendor_for_cookie("_gali")) == "shop"
    # An operator override that drops a hand cookie leaves the name to the database.
    hotjar = next(v for v in load_builtin_vendors() if v.id == "hotjar")
    slim = Vendor(hotjar.id, hotjar.name, hotjar.category, hosts=hotjar.hosts)
    assert vendor_id(make_catalog([slim]).vendor_for_cookie("_hjSession_1")) == "ocd-hotjar-essential"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "expected an object, got array"),
        ({"cookies": []}, "meta: expected an object with the source 'commit'"),
        ({"meta": {"commit": "x"}, "cookies": {}}, "cookies: expected an array"),
        ({"meta": {"commit": "x"}, "cookies": [["a", "P", "Analytics"]]}, r"cookies\[0\]: expected \[pattern"),
        ({"meta": {"commit": "x"}, "cookies": [["a", "P", "Other", None]]}, "unknown Open Cookie Database category"),
        ({"meta": {"commit": "x"}, "cookies": [["a", "P", "Analytics", "nope"]]}, "unknown category 'nope'"),
        ({"meta": {"commit": "x"}, "cookies": [["a b", "P", "Analytics", "analytics"]]}, "cannot appear"),
        ({"meta": {"commit": "x"}, "cookies": [["a?*", "P", "Analytics", "analytics"]]}, "only '\\*' is a wildcard"),
    ],
)
def test_parse_ocd_errors(data: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_ocd(data, BUILTIN_CATEGORIES)


def test_parse_ocd_groups_by_platform_and_category() -> None:
    data = {
        "meta": {"commit": "abc"},
        "cookies": [
            ["_a", "Acme Ads", "Marketing", "advertising"],
            ["_b*", "Acme Ads", "Analytics", "analytics"],
            ["_c", "acme ads", "Marketing", "advertising"],  # same slug: same vendor
            ["_d", "Acme Ads", "Marketing", None],  # left out
        ],
    }
    vendors = parse_ocd(data, BUILTIN_CATEGORIES)
    assert [(v.id, v.cookies) for v in vendors] == [
        ("ocd-acme-ads-advertising", ("_a", "_c")),
        ("ocd-acme-ads-analytics", ("_b*",)),
    ]
    assert vendors[0].name == "Acme Ads (Open Cookie Database)"


def test_a_broken_shipped_file_is_a_vendor_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "data" / "ocd").mkdir(parents=True)
    (tmp_path / "data" / "ocd" / "open-cookie-database.json").write_text("{not json", encoding="utf-8")
    monkeypatch.setattr(resources, "files", lambda package: tmp_path)
    load_ocd_vendors.cache_clear()
    try:
        with pytest.raises(VendorError, match=r"^ocd/open-cookie-database.json: Expecting property name"):
            load_ocd_vendors()
    finally:
        monkeypatch.undo()
        load_ocd_vendors.cache_clear()
    assert load_ocd_vendors()


# ---------------------------------------------------------------------------
# The shipped files: regenerated, every disagreement decided, coverage
# ---------------------------------------------------------------------------


def test_shipped_files_are_what_the_importer_writes() -> None:
    """Fails when the hand catalogue or decisions.toml changed without regenerating
    (`python tools/import_ocd.py --from-json`), or a disagreement has no decision."""
    data, report, _ = import_ocd.generate(META, ROWS, SKIPPED, DECISIONS_TEXT)
    assert data == (DATA / "open-cookie-database.json").read_text(encoding="utf-8")
    assert report == (DATA / "DISAGREEMENTS.md").read_text(encoding="utf-8")


def test_every_disagreement_has_a_decision_and_every_decision_applies() -> None:
    decisions = import_ocd.load_decisions(DECISIONS_TEXT)
    result = import_ocd.decide(ROWS, decisions, HAND)
    assert result.problems == []
    assert result.disagreements, "no disagreement at all: the comparison is broken"
    for line in result.disagreements:
        assert line.decision is not None and line.decision.reason, line.pattern
    report = (DATA / "DISAGREEMENTS.md").read_text(encoding="utf-8")
    assert f"## Disagreements with the hand catalogue ({len(result.disagreements)})" in report


def test_a_new_disagreement_without_a_decision_stops_the_import() -> None:
    decisions = [d for d in import_ocd.load_decisions(DECISIONS_TEXT) if "_fbp" not in d.names]
    problems = import_ocd.decide(ROWS, decisions, HAND).problems
    assert [p for p in problems if p.startswith("'_fbp'")] == [
        "'_fbp': the database says Facebook: Marketing -> social, the hand catalogue says advertising "
        "(meta-pixel); add a decision"
    ]
    stale = import_ocd.Decision(("no-such-cookie",), "exclude", "a name the database does not have")
    first = import_ocd.decide(ROWS, [*decisions, stale], HAND).problems[0]
    assert first.startswith("decision for 'no-such-cookie': the database has no such name")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[decision]]\nnames = []\naction = 'exclude'\nreason = 'long enough reason'\n", "names: expected"),
        ("[[decision]]\nnames = ['a']\naction = 'drop'\nreason = 'long enough reason'\n", "action: expected one of"),
        ("[[decision]]\nnames = ['a']\naction = 'exclude'\nreason = 'short'\n", "reason: say why"),
        ("[[decision]]\nnames = ['a']\naction = 'recategorise'\nreason = 'long enough reason'\n", "category"),
        (
            "[[decision]]\nnames = ['a']\naction = 'exclude'\nreason = 'long enough reason'\nsource = 'http://x.io/'\n",
            "is not https",
        ),
        (
            "[[decision]]\nnames = ['a']\naction = 'exclude'\nreason = 'long enough reason'\n" * 2,
            r"decision\[1\].names: 'a' already has decision\[0\]",
        ),
    ],
)
def test_load_decisions_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        import_ocd.load_decisions(text)


def test_coverage_of_the_shipped_data() -> None:
    """The judged target: of the database's Analytics and Marketing names at least 95 %
    are classified (analytics, advertising, social or functional; never essential), and
    none of its Functional/Necessary/Security names is a tracker without a decision."""
    cov = import_ocd.coverage(ROWS, SKIPPED, CATALOG)
    assert cov.tracking_names > 1200
    assert cov.percent >= 95.0, (cov.percent, cov.tracking_unclassified, cov.tracking_essential)
    decided = {name for d in import_ocd.load_decisions(DECISIONS_TEXT) for name in d.names}
    assert set(cov.other_as_tracker) <= decided


def test_the_shipped_rows_are_the_pinned_csv(testdata: Path) -> None:
    """The import is faithful: the shipped rows are exactly what the pinned CSV gives."""
    folder = testdata / "open-cookie-database"
    with (folder / "open-cookie-database.csv").open(encoding="utf-8", newline="") as f:
        rows, skipped = import_ocd.read_csv(f)
    assert (rows, skipped) == (ROWS, SKIPPED)
    assert META["commit"] in (testdata / "README.md").read_text(encoding="utf-8")
    assert (DATA / "LICENSE").read_text(encoding="utf-8") == (folder / "LICENSE").read_text(encoding="utf-8")
    cov = import_ocd.coverage(rows, skipped, CATALOG)
    assert cov.percent >= 95.0


def test_read_csv_maps_wildcards_and_cleans_names() -> None:
    header = "ID,Platform,Category,Cookie / Data Key name,Domain,Description,Retention period,"
    header += "Data Controller,User Privacy & GDPR Rights Portals,Wildcard match\n"
    lines = [
        "1,Acme,Marketing,_acme_,,,,,,1\n",
        "2,Acme,Analytics,_acme_id,,,,,,0\n",
        "3,Acme,Functional,sess\u00adion\t,,,,,,0\n",
        "4,Acme,Security,bad name,,,,,,0\n",
        "5,Acme,Marketing,SSPR_*,,,,,,0\n",
    ]
    rows, skipped = import_ocd.read_csv([header, *lines])
    assert [r.pattern for r in rows] == ["_acme_*", "_acme_id", "session", "SSPR_*"]
    assert [(s.name, s.why) for s in skipped] == [("bad name", "has ' ', which cannot appear in a cookie name")]
    with pytest.raises(ValueError, match="unknown category 'Other'"):
        import_ocd.read_csv([header, "1,Acme,Other,x,,,,,,0\n"])
    with pytest.raises(ValueError, match="missing column"):
        import_ocd.read_csv(["ID,Platform\n"])


def test_category_mapping() -> None:
    assert import_ocd.map_category("Hotjar", "Functional") == ESSENTIAL
    assert import_ocd.map_category("Acme", "Marketing") == ADVERTISING
    assert import_ocd.map_category("YouTube", "Marketing") == SOCIAL
    assert import_ocd.map_category("Youtube", "Analytics") == ANALYTICS
    assert import_ocd.map_category("Salesforce", "Personalization") == "functional"


def test_shipped_notice_and_license() -> None:
    notice = (DATA / "NOTICE").read_text(encoding="utf-8")
    assert "Open Cookie Database" in notice and META["commit"] in notice and "Apache" in notice
    assert "Apache License" in (DATA / "LICENSE").read_text(encoding="utf-8")
    assert json.loads((DATA / "open-cookie-database.json").read_text(encoding="utf-8"))["meta"]["license"] == (
        "Apache-2.0"
    )
