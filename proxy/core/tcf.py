"""IAB TCF v2.x TC string decoder (the `euconsent-v2` cookie). Pure: no IO.

`parse_tc_string` decodes every field of the core segment and of the optional
DisclosedVendors (type 1), AllowedVendors (type 2) and PublisherTC (type 3)
segments, and raises `ValueError` on anything malformed. Values are the raw bits:
TCF *policy* rules (purpose 1 never on legitimate interest, IsServiceSpecific must
be 1, ...) are not applied here; `proxy.core.consent` decides what the bits mean.

Strictness, decided here once:

- The alphabet is base64url (`A-Z a-z 0-9 - _`) and nothing else. Python's base64
  decoders silently skip unknown characters, so they are not used at all.
- Up to two trailing `=` per segment are tolerated as padding (some encoders emit
  them; iabtcf-java accepts them). `=` anywhere else is an error.
- The core segment comes first and has version 2. Every other segment starts with
  a 3-bit type that must be 1, 2 or 3 and may appear once. A type 0 or 4-7 segment
  is rejected rather than skipped: a segment we cannot read might change what the
  string means, and an unreadable consent string is treated as no consent.
- Every field must fit in the bits present; a bitfield shorter than its
  MaxVendorId, or a section missing entirely, is a truncation error. Bits left
  over after the last field are base64 padding and are ignored.
- Range entries must have 1 <= start <= end <= 65535; ids above the section's
  MaxVendorId are rejected (the spec defines MaxVendorId as the highest id).

Work is bounded: input is capped at `MAX_TC_STRING_CHARS`, each field read costs
O(width), and vendor sets are kept as merged ranges, so a range entry 1..65535 is
one tuple, not 65535 integers.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Final

MAX_TC_STRING_CHARS: Final = 8192
"""Longest TC string accepted. Real strings with every GVL vendor disclosed stay
well under this; a browser will not store a cookie over 4096 bytes anyway."""

SEGMENT_CORE: Final = 0
SEGMENT_DISCLOSED_VENDORS: Final = 1
SEGMENT_ALLOWED_VENDORS: Final = 2
SEGMENT_PUBLISHER_TC: Final = 3

_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_SIX_BITS: Final = {c: format(i, "06b") for i, c in enumerate(_ALPHABET)}
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]+")
_NOT_BASE64URL: Final = re.compile(r"[^A-Za-z0-9_-]")
_ONES: Final = re.compile("1+")
_MAX_ID: Final = 0xFFFF


@dataclass(frozen=True, slots=True)
class VendorSet:
    """A set of vendor ids (1..65535) stored as sorted, disjoint, non-adjacent
    inclusive ranges. Supports `in`, `len()` and ascending iteration."""

    ranges: tuple[tuple[int, int], ...] = ()

    @classmethod
    def from_ranges(cls, ranges: Iterable[tuple[int, int]]) -> VendorSet:
        """Normalise possibly overlapping, unsorted or duplicated ranges."""
        merged: list[tuple[int, int]] = []
        for start, end in sorted(ranges):
            if merged and start <= merged[-1][1] + 1:
                if end > merged[-1][1]:
                    merged[-1] = (merged[-1][0], end)
            else:
                merged.append((start, end))
        return cls(tuple(merged))

    def __contains__(self, vendor_id: object) -> bool:
        if not isinstance(vendor_id, int):
            return False
        i = bisect_right(self.ranges, (vendor_id, _MAX_ID + 1)) - 1
        return i >= 0 and self.ranges[i][0] <= vendor_id <= self.ranges[i][1]

    def __iter__(self) -> Iterator[int]:
        for start, end in self.ranges:
            yield from range(start, end + 1)

    def __len__(self) -> int:
        return sum(end - start + 1 for start, end in self.ranges)


@dataclass(frozen=True, slots=True)
class VendorSection:
    """One vendor section: MaxVendorId, how it was encoded, and the ids set."""

    max_vendor_id: int
    range_encoded: bool
    vendors: VendorSet


@dataclass(frozen=True, slots=True)
class PublisherRestriction:
    """One publisher restriction entry. `restriction_type`: 0 not allowed,
    1 require consent, 2 require legitimate interest, 3 undefined (kept raw)."""

    purpose_id: int
    restriction_type: int
    vendors: VendorSet


@dataclass(frozen=True, slots=True)
class PublisherTC:
    """The PublisherTC segment (type 3): the publisher's own purposes."""

    pub_purposes_consent: frozenset[int]
    pub_purposes_li_transparency: frozenset[int]
    num_custom_purposes: int
    custom_purposes_consent: frozenset[int]
    custom_purposes_li_transparency: frozenset[int]


@dataclass(frozen=True, slots=True)
class TCString:
    """A decoded TC string. Id sets are 1-based; timestamps are the raw 36-bit
    deciseconds since the Unix epoch. Optional segments are `None` when absent."""

    version: int
    created: int
    last_updated: int
    cmp_id: int
    cmp_version: int
    consent_screen: int
    consent_language: str
    vendor_list_version: int
    policy_version: int
    is_service_specific: bool
    use_non_standard_texts: bool
    special_feature_optins: frozenset[int]
    purposes_consent: frozenset[int]
    purpose_legitimate_interests: frozenset[int]
    purpose_one_treatment: bool
    publisher_cc: str
    vendor_consents: VendorSection
    vendor_legitimate_interests: VendorSection
    publisher_restrictions: tuple[PublisherRestriction, ...]
    disclosed_vendors: VendorSection | None = None
    allowed_vendors: VendorSection | None = None
    publisher_tc: PublisherTC | None = None


class _Bits:
    """A cursor over one segment's bits, as a '0'/'1' string so that each read
    costs O(width) whatever the segment length."""

    __slots__ = ("_bits", "_pos", "_where")

    def __init__(self, bits: str, where: str) -> None:
        self._bits = bits
        self._pos = 0
        self._where = where

    def _take(self, width: int, field: str) -> str:
        end = self._pos + width
        if end > len(self._bits):
            raise ValueError(f"{self._where}: truncated in {field} (needs bit {end}, has {len(self._bits)})")
        chunk = self._bits[self._pos : end]
        self._pos = end
        return chunk

    def uint(self, width: int, field: str) -> int:
        return int(self._take(width, field), 2)

    def flag(self, field: str) -> bool:
        return self._take(1, field) == "1"

    def id_set(self, width: int, field: str) -> frozenset[int]:
        chunk = self._take(width, field)
        return frozenset(i + 1 for i, bit in enumerate(chunk) if bit == "1")

    def letters(self, field: str) -> str:
        out = []
        for _ in range(2):
            value = self.uint(6, field)
            if value > 25:
                raise ValueError(f"{self._where}: {field} letter value {value} is not A-Z")
            out.append(chr(ord("A") + value))
        return "".join(out)

    def bitfield(self, width: int, field: str) -> VendorSet:
        start = self._pos
        self._take(width, field)
        runs = _ONES.finditer(self._bits, start, self._pos)
        return VendorSet(tuple((m.start() - start + 1, m.end() - start) for m in runs))

    def range_entries(self, field: str, max_vendor_id: int | None) -> VendorSet:
        count = self.uint(12, f"{field} NumEntries")
        entries = []
        for n in range(count):
            is_range = self.flag(f"{field} entry {n} IsARange")
            start = self.uint(16, f"{field} entry {n} start")
            end = self.uint(16, f"{field} entry {n} end") if is_range else start
            if start == 0:
                raise ValueError(f"{self._where}: {field} entry {n} has vendor id 0")
            if end < start:
                raise ValueError(f"{self._where}: {field} entry {n} ends ({end}) before it starts ({start})")
            if max_vendor_id is not None and end > max_vendor_id:
                raise ValueError(
                    f"{self._where}: {field} entry {n} reaches vendor {end} above MaxVendorId {max_vendor_id}"
                )
            entries.append((start, end))
        return VendorSet.from_ranges(entries)

    def vendor_section(self, field: str) -> VendorSection:
        max_vendor_id = self.uint(16, f"{field} MaxVendorId")
        if self.flag(f"{field} IsRangeEncoding"):
            return VendorSection(max_vendor_id, True, self.range_entries(field, max_vendor_id))
        return VendorSection(max_vendor_id, False, self.bitfield(max_vendor_id, f"{field} bitfield"))


def _segment_bits(segment: str, index: int) -> str:
    where = f"segment {index}"
    if segment.endswith("=="):
        segment = segment[:-2]
    elif segment.endswith("="):
        segment = segment[:-1]
    if not segment:
        raise ValueError(f"{where} is empty")
    if _BASE64URL.fullmatch(segment) is None:
        bad = _NOT_BASE64URL.search(segment)
        assert bad is not None
        raise ValueError(f"{where}: character {bad.group()!r} at offset {bad.start()} is not base64url")
    return "".join(_SIX_BITS[c] for c in segment)


def _parse_core(bits: _Bits) -> TCString:
    version = bits.uint(6, "Version")
    if version != 2:
        raise ValueError(f"core segment: version {version} is not 2 (only TCF v2.x strings are read)")
    created = bits.uint(36, "Created")
    last_updated = bits.uint(36, "LastUpdated")
    cmp_id = bits.uint(12, "CmpId")
    cmp_version = bits.uint(12, "CmpVersion")
    consent_screen = bits.uint(6, "ConsentScreen")
    consent_language = bits.letters("ConsentLanguage")
    vendor_list_version = bits.uint(12, "VendorListVersion")
    policy_version = bits.uint(6, "TcfPolicyVersion")
    is_service_specific = bits.flag("IsServiceSpecific")
    use_non_standard_texts = bits.flag("UseNonStandardTexts")
    special_feature_optins = bits.id_set(12, "SpecialFeatureOptIns")
    purposes_consent = bits.id_set(24, "PurposesConsent")
    purpose_legitimate_interests = bits.id_set(24, "PurposesLITransparency")
    purpose_one_treatment = bits.flag("PurposeOneTreatment")
    publisher_cc = bits.letters("PublisherCC")
    vendor_consents = bits.vendor_section("vendor consents")
    vendor_legitimate_interests = bits.vendor_section("vendor legitimate interests")
    restrictions = []
    for n in range(bits.uint(12, "NumPubRestrictions")):
        purpose_id = bits.uint(6, f"restriction {n} PurposeId")
        restriction_type = bits.uint(2, f"restriction {n} RestrictionType")
        vendors = bits.range_entries(f"restriction {n}", None)
        restrictions.append(PublisherRestriction(purpose_id, restriction_type, vendors))
    return TCString(
        version=version,
        created=created,
        last_updated=last_updated,
        cmp_id=cmp_id,
        cmp_version=cmp_version,
        consent_screen=consent_screen,
        consent_language=consent_language,
        vendor_list_version=vendor_list_version,
        policy_version=policy_version,
        is_service_specific=is_service_specific,
        use_non_standard_texts=use_non_standard_texts,
        special_feature_optins=special_feature_optins,
        purposes_consent=purposes_consent,
        purpose_legitimate_interests=purpose_legitimate_interests,
        purpose_one_treatment=purpose_one_treatment,
        publisher_cc=publisher_cc,
        vendor_consents=vendor_consents,
        vendor_legitimate_interests=vendor_legitimate_interests,
        publisher_restrictions=tuple(restrictions),
    )


def _parse_publisher_tc(bits: _Bits) -> PublisherTC:
    consent = bits.id_set(24, "PubPurposesConsent")
    li = bits.id_set(24, "PubPurposesLITransparency")
    custom = bits.uint(6, "NumCustomPurposes")
    return PublisherTC(
        pub_purposes_consent=consent,
        pub_purposes_li_transparency=li,
        num_custom_purposes=custom,
        custom_purposes_consent=bits.id_set(custom, "CustomPurposesConsent"),
        custom_purposes_li_transparency=bits.id_set(custom, "CustomPurposesLITransparency"),
    )


def parse_tc_string(s: str) -> TCString:
    """Decode a TC string (TCF v2.0 to v2.3). Raises `ValueError` saying what is
    wrong and where; never raises anything else, whatever the input."""
    if not s:
        raise ValueError("empty TC string")
    if len(s) > MAX_TC_STRING_CHARS:
        raise ValueError(f"TC string of {len(s)} characters exceeds the {MAX_TC_STRING_CHARS} limit")
    segments = s.split(".")
    tc = _parse_core(_Bits(_segment_bits(segments[0], 0), "core segment"))
    seen: set[int] = set()
    for index, segment in enumerate(segments[1:], start=1):
        bits = _Bits(_segment_bits(segment, index), f"segment {index}")
        kind = bits.uint(3, "SegmentType")
        if kind not in (SEGMENT_DISCLOSED_VENDORS, SEGMENT_ALLOWED_VENDORS, SEGMENT_PUBLISHER_TC):
            raise ValueError(f"segment {index}: unknown segment type {kind}")
        if kind in seen:
            raise ValueError(f"segment {index}: segment type {kind} appears twice")
        seen.add(kind)
        if kind == SEGMENT_DISCLOSED_VENDORS:
            tc = replace(tc, disclosed_vendors=bits.vendor_section("disclosed vendors"))
        elif kind == SEGMENT_ALLOWED_VENDORS:
            tc = replace(tc, allowed_vendors=bits.vendor_section("allowed vendors"))
        else:
            tc = replace(tc, publisher_tc=_parse_publisher_tc(bits))
    return tc
