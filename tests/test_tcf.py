"""proxy.core.tcf: TC string decoding, against the third-party vectors and a test encoder."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.core.categories import ESSENTIAL
from proxy.core.consent import ConsentSettings, categories_from_purposes, read_consent, read_tcf
from proxy.core.tcf import (
    MAX_TC_STRING_CHARS,
    PublisherRestriction,
    PublisherTC,
    TCString,
    VendorSection,
    VendorSet,
    parse_tc_string,
)

Ranges = tuple[tuple[int, int], ...]
Vectors = list[dict[str, Any]]
Record = Callable[[str, int], None]

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


# --- a test-only encoder: the inverse of parse_tc_string ---------------------------


class _Writer:
    def __init__(self) -> None:
        self.bits: list[str] = []

    def uint(self, value: int, width: int) -> None:
        assert 0 <= value < 1 << width or width == 0
        if width:
            self.bits.append(format(value, f"0{width}b"))

    def flag(self, value: bool) -> None:
        self.bits.append("1" if value else "0")

    def ids(self, ids: frozenset[int], width: int) -> None:
        self.bits.append("".join("1" if i + 1 in ids else "0" for i in range(width)))

    def letters(self, text: str) -> None:
        for char in text:
            self.uint(ord(char) - ord("A"), 6)

    def entries(self, vendors: VendorSet) -> None:
        self.uint(len(vendors.ranges), 12)
        for start, end in vendors.ranges:
            self.flag(start != end)
            self.uint(start, 16)
            if start != end:
                self.uint(end, 16)

    def section(self, section: VendorSection) -> None:
        self.uint(section.max_vendor_id, 16)
        self.flag(section.range_encoded)
        if section.range_encoded:
            self.entries(section.vendors)
        else:
            self.ids(frozenset(section.vendors), section.max_vendor_id)

    def text(self) -> str:
        bits = "".join(self.bits)
        bits += "0" * (-len(bits) % 6)
        return "".join(_ALPHABET[int(bits[i : i + 6], 2)] for i in range(0, len(bits), 6))


def encode(tc: TCString) -> str:
    core = _Writer()
    core.uint(tc.version, 6)
    core.uint(tc.created, 36)
    core.uint(tc.last_updated, 36)
    core.uint(tc.cmp_id, 12)
    core.uint(tc.cmp_version, 12)
    core.uint(tc.consent_screen, 6)
    core.letters(tc.consent_language)
    core.uint(tc.vendor_list_version, 12)
    core.uint(tc.policy_version, 6)
    core.flag(tc.is_service_specific)
    core.flag(tc.use_non_standard_texts)
    core.ids(tc.special_feature_optins, 12)
    core.ids(tc.purposes_consent, 24)
    core.ids(tc.purpose_legitimate_interests, 24)
    core.flag(tc.purpose_one_treatment)
    core.letters(tc.publisher_cc)
    core.section(tc.vendor_consents)
    core.section(tc.vendor_legitimate_interests)
    core.uint(len(tc.publisher_restrictions), 12)
    for restriction in tc.publisher_restrictions:
        core.uint(restriction.purpose_id, 6)
        core.uint(restriction.restriction_type, 2)
        core.entries(restriction.vendors)
    segments = [core.text()]
    for kind, section in ((1, tc.disclosed_vendors), (2, tc.allowed_vendors)):
        if section is not None:
            w = _Writer()
            w.uint(kind, 3)
            w.section(section)
            segments.append(w.text())
    if tc.publisher_tc is not None:
        p = tc.publisher_tc
        w = _Writer()
        w.uint(3, 3)
        w.ids(p.pub_purposes_consent, 24)
        w.ids(p.pub_purposes_li_transparency, 24)
        w.uint(p.num_custom_purposes, 6)
        w.ids(p.custom_purposes_consent, p.num_custom_purposes)
        w.ids(p.custom_purposes_li_transparency, p.num_custom_purposes)
        segments.append(w.text())
    return ".".join(segments)


def segment(kind: int, build: Callable[[_Writer], None]) -> str:
    w = _Writer()
    w.uint(kind, 3)
    build(w)
    return w.text()


_EMPTY_SECTION = VendorSection(0, False, VendorSet())
_EMPTY_PUBLISHER_TC = PublisherTC(frozenset(), frozenset(), 0, frozenset(), frozenset())

MINIMAL = TCString(
    version=2,
    created=17133912000,
    last_updated=17133912000,
    cmp_id=31,
    cmp_version=275,
    consent_screen=3,
    consent_language="FR",
    vendor_list_version=48,
    policy_version=4,
    is_service_specific=True,
    use_non_standard_texts=False,
    special_feature_optins=frozenset({2}),
    purposes_consent=frozenset({1, 2, 8}),
    purpose_legitimate_interests=frozenset({7}),
    purpose_one_treatment=False,
    publisher_cc="DE",
    vendor_consents=VendorSection(10, False, VendorSet(((1, 3), (10, 10)))),
    vendor_legitimate_interests=VendorSection(700, True, VendorSet(((5, 5), (600, 700)))),
    publisher_restrictions=(PublisherRestriction(2, 1, VendorSet(((32, 32),))),),
)


def with_core(**changes: Any) -> str:
    return encode(replace(MINIMAL, **changes))


# --- hand-made cases (always run) --------------------------------------------------


def test_minimal_round_trip() -> None:
    assert parse_tc_string(encode(MINIMAL)) == MINIMAL


@pytest.mark.parametrize(
    ("suffix", "field", "expected"),
    [
        (
            "." + segment(1, lambda w: w.section(VendorSection(5, False, VendorSet(((2, 2),))))),
            "disclosed",
            [2],
        ),
        (
            "." + segment(2, lambda w: w.section(VendorSection(9, True, VendorSet(((4, 9),))))),
            "allowed",
            [4, 5, 6, 7, 8, 9],
        ),
    ],
)
def test_vendor_segments(suffix: str, field: str, expected: list[int]) -> None:
    tc = parse_tc_string(encode(MINIMAL) + suffix)
    section = tc.disclosed_vendors if field == "disclosed" else tc.allowed_vendors
    assert section is not None
    assert list(section.vendors) == expected


@pytest.mark.parametrize("padding", ["=", "=="])
def test_trailing_padding_per_segment_is_tolerated(padding: str) -> None:
    disclosed = segment(1, lambda w: w.section(_EMPTY_SECTION))
    tc = parse_tc_string(f"{encode(MINIMAL)}{padding}.{disclosed}{padding}")
    assert tc.disclosed_vendors == _EMPTY_SECTION


def test_publisher_tc_custom_purposes() -> None:
    ptc = PublisherTC(frozenset({1, 24}), frozenset({3}), 5, frozenset({1, 5}), frozenset({2}))
    assert parse_tc_string(encode(replace(MINIMAL, publisher_tc=ptc))).publisher_tc == ptc


def test_full_range_is_one_range_not_65535_ids() -> None:
    full = VendorSet(((1, 0xFFFF),))
    tc = parse_tc_string(with_core(vendor_consents=VendorSection(0xFFFF, True, full)))
    assert tc.vendor_consents.vendors.ranges == ((1, 0xFFFF),)
    assert len(tc.vendor_consents.vendors) == 0xFFFF
    assert 0xFFFF in tc.vendor_consents.vendors and 0 not in tc.vendor_consents.vendors


def test_work_is_bounded_at_the_length_cap() -> None:
    # ~900 restrictions each covering every vendor id: at most one tuple per entry.
    restriction = PublisherRestriction(1, 1, VendorSet(((1, 0xFFFF),)))
    tc = replace(MINIMAL, publisher_restrictions=(restriction,) * 900)
    text = encode(tc)
    assert len(text) <= MAX_TC_STRING_CHARS
    assert parse_tc_string(text).publisher_restrictions == tc.publisher_restrictions


def _not_base64url(text: str) -> str:
    return text[:20] + "*" + text[20:]


def _bad_section(section: VendorSection) -> str:
    return with_core(vendor_consents=section)


_MALFORMED = [
    ("empty", "", "empty TC string"),
    ("too long", "C" * (MAX_TC_STRING_CHARS + 1), "exceeds"),
    ("star", _not_base64url(encode(MINIMAL)), "'*'"),
    ("slash", encode(MINIMAL).replace("A", "/", 1), "'/'"),
    ("plus", encode(MINIMAL).replace("A", "+", 1), "'+'"),
    ("space", " " + encode(MINIMAL), "' '"),
    ("three pads", encode(MINIMAL) + "===", "'='"),
    ("pad inside", encode(MINIMAL)[:30] + "=" + encode(MINIMAL)[30:], "'='"),
    ("empty segment", encode(MINIMAL) + ".", "segment 1 is empty"),
    ("empty core", "." + encode(MINIMAL), "segment 0 is empty"),
    ("truncated core", encode(MINIMAL)[:30], "truncated"),
    ("version 1", with_core(version=1), "version 1"),
    ("version 3", with_core(version=3), "version 3"),
    ("language not a letter", with_core(consent_language="[A"), "ConsentLanguage"),
    ("vendor id 0", _bad_section(VendorSection(10, True, VendorSet(((0, 0),)))), "vendor id 0"),
    ("range backwards", _bad_section(VendorSection(10, True, VendorSet(((9, 3),)))), "before it starts"),
    ("id above max", _bad_section(VendorSection(10, True, VendorSet(((11, 11),)))), "above MaxVendorId"),
    (
        "short bitfield",
        encode(MINIMAL) + "." + segment(1, lambda w: w.uint(700, 16)),
        "disclosed vendors bitfield",
    ),
    ("segment type 0", encode(MINIMAL) + "." + segment(0, lambda w: w.uint(0, 30)), "unknown segment type 0"),
    ("segment type 4", encode(MINIMAL) + "." + segment(4, lambda w: w.uint(0, 30)), "unknown segment type 4"),
    ("segment type 7", encode(MINIMAL) + "." + segment(7, lambda w: w.uint(0, 30)), "unknown segment type 7"),
    (
        "duplicate publisher TC",
        f"{encode(replace(MINIMAL, publisher_tc=_EMPTY_PUBLISHER_TC))}.{segment(3, lambda w: w.uint(0, 54))}",
        "appears twice",
    ),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in _MALFORMED], ids=[c[0] for c in _MALFORMED])
def test_malformed_strings_raise_value_error(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_tc_string(text)


@pytest.mark.parametrize(
    ("ranges", "normalised"),
    [
        ([], ()),
        ([(5, 5), (1, 3)], ((1, 3), (5, 5))),
        ([(1, 3), (4, 6)], ((1, 6),)),
        ([(1, 10), (3, 4), (3, 4)], ((1, 10),)),
        ([(7, 7), (7, 7), (1, 1)], ((1, 1), (7, 7))),
    ],
)
def test_vendor_set_normalises(ranges: list[tuple[int, int]], normalised: Ranges) -> None:
    vendors = VendorSet.from_ranges(ranges)
    assert vendors.ranges == normalised
    expected = sorted({i for a, b in ranges for i in range(a, b + 1)})
    assert list(vendors) == expected
    assert len(vendors) == len(expected)
    assert all(i in vendors for i in expected)
    assert 0 not in vendors and 11 not in vendors and "3" not in vendors


# --- properties --------------------------------------------------------------------

_letters = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2)


@st.composite
def vendor_sets(draw: st.DrawFn, top: int) -> VendorSet:
    starts = draw(st.lists(st.tuples(st.integers(1, top), st.integers(0, 40)), max_size=8))
    return VendorSet.from_ranges((a, min(top, a + n)) for a, n in starts)


@st.composite
def sections(draw: st.DrawFn) -> VendorSection:
    if draw(st.booleans()):
        vendors = draw(vendor_sets(0xFFFF))
        top = vendors.ranges[-1][1] if vendors.ranges else 0
        return VendorSection(draw(st.integers(top, 0xFFFF)), True, vendors)
    size = draw(st.integers(0, 500))
    vendors = draw(vendor_sets(size)) if size else VendorSet()
    return VendorSection(size, False, vendors)


@st.composite
def publisher_tcs(draw: st.DrawFn) -> PublisherTC:
    n = draw(st.integers(0, 63))
    custom = st.frozensets(st.integers(1, n), max_size=n) if n else st.just(frozenset[int]())
    purposes = st.frozensets(st.integers(1, 24))
    return PublisherTC(draw(purposes), draw(purposes), n, draw(custom), draw(custom))


tc_strings = st.builds(
    TCString,
    version=st.just(2),
    created=st.integers(0, 2**36 - 1),
    last_updated=st.integers(0, 2**36 - 1),
    cmp_id=st.integers(0, 4095),
    cmp_version=st.integers(0, 4095),
    consent_screen=st.integers(0, 63),
    consent_language=_letters,
    vendor_list_version=st.integers(0, 4095),
    policy_version=st.integers(0, 63),
    is_service_specific=st.booleans(),
    use_non_standard_texts=st.booleans(),
    special_feature_optins=st.frozensets(st.integers(1, 12)),
    purposes_consent=st.frozensets(st.integers(1, 24)),
    purpose_legitimate_interests=st.frozensets(st.integers(1, 24)),
    purpose_one_treatment=st.booleans(),
    publisher_cc=_letters,
    vendor_consents=sections(),
    vendor_legitimate_interests=sections(),
    publisher_restrictions=st.lists(
        st.builds(PublisherRestriction, st.integers(0, 63), st.integers(0, 3), vendor_sets(0xFFFF)),
        max_size=4,
    ).map(tuple),
    disclosed_vendors=st.none() | sections(),
    allowed_vendors=st.none() | sections(),
    publisher_tc=st.none() | publisher_tcs(),
)


@given(tc_strings)
def test_encode_then_decode_round_trips(tc: TCString) -> None:
    assert parse_tc_string(encode(tc)) == tc


@given(tc_strings, st.data())
def test_damaged_strings_raise_only_value_error(tc: TCString, data: st.DataObject) -> None:
    text = encode(tc)
    cut = data.draw(st.integers(0, len(text)))
    char = data.draw(st.sampled_from(_ALPHABET + ".=*/+!%"))
    for damaged in (text[:cut], text[:cut] + char + text[cut + 1 :]):
        with contextlib.suppress(ValueError):
            parse_tc_string(damaged)


@given(st.text() | st.text(alphabet=_ALPHABET + ".=") | st.binary().map(lambda b: b.decode("latin-1")))
def test_random_strings_raise_only_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        parse_tc_string(text)


@given(st.text(alphabet=_ALPHABET, min_size=36, max_size=400).map(lambda s: "C" + s))
def test_random_version_2_strings_raise_only_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        parse_tc_string(text)


# --- the third-party vectors (need --testdata) --------------------------------------


@pytest.fixture(scope="module")
def vectors(testdata: Path) -> Vectors:
    loaded: Vectors = json.loads((testdata / "tcf" / "vectors.json").read_text("utf-8"))
    assert loaded, "tcf/vectors.json is empty"
    return loaded


def _timestamp(deciseconds: int) -> str:
    moment = datetime.fromtimestamp(deciseconds // 10, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{deciseconds % 10}Z"


def _section(section: VendorSection | None) -> list[int] | None:
    return None if section is None else list(section.vendors)


def as_expected(tc: TCString) -> dict[str, Any]:
    """The decoded string in the vectors' `expected` shape."""
    ptc = tc.publisher_tc
    return {
        "version": tc.version,
        "created": _timestamp(tc.created),
        "lastUpdated": _timestamp(tc.last_updated),
        "createdDeciseconds": tc.created,
        "lastUpdatedDeciseconds": tc.last_updated,
        "cmpId": tc.cmp_id,
        "cmpVersion": tc.cmp_version,
        "consentScreen": tc.consent_screen,
        "consentLanguage": tc.consent_language,
        "vendorListVersion": tc.vendor_list_version,
        "policyVersion": tc.policy_version,
        "isServiceSpecific": tc.is_service_specific,
        "useNonStandardTexts": tc.use_non_standard_texts,
        "specialFeatureOptins": sorted(tc.special_feature_optins),
        "purposesConsent": sorted(tc.purposes_consent),
        "purposeLegitimateInterests": sorted(tc.purpose_legitimate_interests),
        "purposeOneTreatment": tc.purpose_one_treatment,
        "publisherCC": tc.publisher_cc,
        "maxVendorIdConsents": tc.vendor_consents.max_vendor_id,
        "vendorConsentsRangeEncoded": tc.vendor_consents.range_encoded,
        "vendorConsents": list(tc.vendor_consents.vendors),
        "maxVendorIdLegitimateInterests": tc.vendor_legitimate_interests.max_vendor_id,
        "vendorLegitimateInterestsRangeEncoded": tc.vendor_legitimate_interests.range_encoded,
        "vendorLegitimateInterests": list(tc.vendor_legitimate_interests.vendors),
        "publisherRestrictions": [
            {"purposeId": r.purpose_id, "restrictionType": r.restriction_type, "vendorIds": list(r.vendors)}
            for r in tc.publisher_restrictions
        ],
        "disclosedVendors": _section(tc.disclosed_vendors),
        "allowedVendors": _section(tc.allowed_vendors),
        "publisherTC": None
        if ptc is None
        else {
            "pubPurposesConsent": sorted(ptc.pub_purposes_consent),
            "pubPurposesLITransparency": sorted(ptc.pub_purposes_li_transparency),
            "numCustomPurposes": ptc.num_custom_purposes,
            "customPurposesConsent": sorted(ptc.custom_purposes_consent),
            "customPurposesLITransparency": sorted(ptc.custom_purposes_li_transparency),
        },
    }


def test_valid_vectors_decode_field_by_field(vectors: Vectors, record_count: Record) -> None:
    valid = [v for v in vectors if not v.get("expected_error")]
    mismatches = []
    for vector in valid:
        got = as_expected(parse_tc_string(vector["tc_string"]))
        for name, want in vector["expected"].items():
            if got.get(name, "<not decoded>") != want:
                mismatches.append(f"{vector['id']}.{name}: got {got.get(name)!r}, want {want!r}")
    assert not mismatches, "\n".join(mismatches)
    assert valid
    record_count("tcf vectors", len(valid))


def test_malformed_vectors_raise_value_error(vectors: Vectors, record_count: Record) -> None:
    malformed = [v for v in vectors if v.get("expected_error")]
    accepted = []
    for vector in malformed:
        try:
            parse_tc_string(vector["tc_string"])
        except ValueError:
            continue
        accepted.append(vector["id"])
    assert not accepted, f"accepted malformed vectors: {accepted}"
    assert malformed
    record_count("tcf vectors", len(malformed))


def _cookie_forms(tc_string: str) -> dict[str, str]:
    return {
        "raw": tc_string,
        "percent-encoded": "".join(f"%{ord(c):02X}" for c in tc_string),
        "double-quoted": f'"{tc_string}"',
    }


def test_vectors_as_cookie_values(vectors: Vectors, record_count: Record) -> None:
    """Raw, percent-encoded and quoted `euconsent-v2` values must be read as the same
    string. Every character is percent-encoded, so the per-cookie cap is raised to fit."""
    settings = ConsentSettings(max_cookie_bytes=3 * MAX_TC_STRING_CHARS)
    problems = []
    checked = 0
    for vector in vectors:
        if vector.get("expected_error"):
            want_granted, want_reason = frozenset({ESSENTIAL}), "malformed"
            want_reading_granted: frozenset[str] = frozenset()
        else:
            want_reading_granted = categories_from_purposes(vector["expected"]["purposesConsent"], settings)
            want_granted, want_reason = want_reading_granted | {ESSENTIAL}, "ok"
        for form, value in _cookie_forms(vector["tc_string"]).items():
            reading = read_tcf(value, settings)
            state = read_consent(f"euconsent-v2={value}", None, settings)
            got = (reading.granted, reading.decided, state.granted, state.source, state.reason)
            want = (want_reading_granted, want_reason == "ok", want_granted, "tcf", want_reason)
            if got != want:
                problems.append(f"{vector['id']} {form}: got {got}, want {want}")
            checked += 1
    assert not problems, "\n".join(problems)
    record_count("tcf vectors as cookies", checked)
