"""Character encodings as the Encoding Standard names them (pure).

`LABELS` maps every label to its encoding, from the standard's own table
(https://github.com/whatwg/encoding `encodings.json`, commit a985b62), which Chromium
follows: `encoding_for_label(" Unicode ")` is "UTF-16LE", `"unicodefffe"` is
"UTF-16BE", `"iso-2022-kr"` is "replacement", `"latin1"` is "windows-1252".
`PYTHON_CODECS` names the Python codec that decodes each one (as near as Python
gets: the bytes a codec cannot map become U+FFFD, like the standard's decoders).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

_TABLE: Final = (
    ("UTF-8", "unicode-1-1-utf-8 unicode11utf8 unicode20utf8 utf-8 utf8 x-unicode20utf8"),
    ("IBM866", "866 cp866 csibm866 ibm866"),
    ("ISO-8859-2", "csisolatin2 iso-8859-2 iso-ir-101 iso8859-2 iso88592 iso_8859-2 iso_8859-2:1987 l2 latin2"),
    ("ISO-8859-3", "csisolatin3 iso-8859-3 iso-ir-109 iso8859-3 iso88593 iso_8859-3 iso_8859-3:1988 l3 latin3"),
    ("ISO-8859-4", "csisolatin4 iso-8859-4 iso-ir-110 iso8859-4 iso88594 iso_8859-4 iso_8859-4:1988 l4 latin4"),
    ("ISO-8859-5", "csisolatincyrillic cyrillic iso-8859-5 iso-ir-144 iso8859-5 iso88595 iso_8859-5 iso_8859-5:1988"),
    (
        "ISO-8859-6",
        "arabic asmo-708 csiso88596e csiso88596i csisolatinarabic ecma-114 iso-8859-6 "
        "iso-8859-6-e iso-8859-6-i iso-ir-127 iso8859-6 iso88596 iso_8859-6 "
        "iso_8859-6:1987",
    ),
    (
        "ISO-8859-7",
        "csisolatingreek ecma-118 elot_928 greek greek8 iso-8859-7 iso-ir-126 iso8859-7 "
        "iso88597 iso_8859-7 iso_8859-7:1987 sun_eu_greek",
    ),
    (
        "ISO-8859-8",
        "csiso88598e csisolatinhebrew hebrew iso-8859-8 iso-8859-8-e iso-ir-138 iso8859-8 "
        "iso88598 iso_8859-8 iso_8859-8:1988 visual",
    ),
    ("ISO-8859-8-I", "csiso88598i iso-8859-8-i logical"),
    ("ISO-8859-10", "csisolatin6 iso-8859-10 iso-ir-157 iso8859-10 iso885910 l6 latin6"),
    ("ISO-8859-13", "iso-8859-13 iso8859-13 iso885913"),
    ("ISO-8859-14", "iso-8859-14 iso8859-14 iso885914"),
    ("ISO-8859-15", "csisolatin9 iso-8859-15 iso8859-15 iso885915 iso_8859-15 l9"),
    ("ISO-8859-16", "iso-8859-16"),
    ("KOI8-R", "cskoi8r koi koi8 koi8-r koi8_r"),
    ("KOI8-U", "koi8-ru koi8-u"),
    ("macintosh", "csmacintosh mac macintosh x-mac-roman"),
    ("windows-874", "dos-874 iso-8859-11 iso8859-11 iso885911 tis-620 windows-874"),
    ("windows-1250", "cp1250 windows-1250 x-cp1250"),
    ("windows-1251", "cp1251 windows-1251 x-cp1251"),
    (
        "windows-1252",
        "ansi_x3.4-1968 ascii cp1252 cp819 csisolatin1 ibm819 iso-8859-1 iso-ir-100 "
        "iso8859-1 iso88591 iso_8859-1 iso_8859-1:1987 l1 latin1 us-ascii windows-1252 "
        "x-cp1252",
    ),
    ("windows-1253", "cp1253 windows-1253 x-cp1253"),
    (
        "windows-1254",
        "cp1254 csisolatin5 iso-8859-9 iso-ir-148 iso8859-9 iso88599 iso_8859-9 "
        "iso_8859-9:1989 l5 latin5 windows-1254 x-cp1254",
    ),
    ("windows-1255", "cp1255 windows-1255 x-cp1255"),
    ("windows-1256", "cp1256 windows-1256 x-cp1256"),
    ("windows-1257", "cp1257 windows-1257 x-cp1257"),
    ("windows-1258", "cp1258 windows-1258 x-cp1258"),
    ("x-mac-cyrillic", "x-mac-cyrillic x-mac-ukrainian"),
    ("GBK", "chinese csgb2312 csiso58gb231280 gb2312 gb_2312 gb_2312-80 gbk iso-ir-58 x-gbk"),
    ("gb18030", "gb18030"),
    ("Big5", "big5 big5-hkscs cn-big5 csbig5 x-x-big5"),
    ("EUC-JP", "cseucpkdfmtjapanese euc-jp x-euc-jp"),
    ("ISO-2022-JP", "csiso2022jp iso-2022-jp"),
    ("Shift_JIS", "csshiftjis ms932 ms_kanji shift-jis shift_jis sjis windows-31j x-sjis"),
    (
        "EUC-KR",
        "cseuckr csksc56011987 euc-kr iso-ir-149 korean ks_c_5601-1987 ks_c_5601-1989 ksc5601 ksc_5601 windows-949",
    ),
    ("replacement", "csiso2022kr hz-gb-2312 iso-2022-cn iso-2022-cn-ext iso-2022-kr replacement"),
    ("UTF-16BE", "unicodefffe utf-16be"),
    ("UTF-16LE", "csunicode iso-10646-ucs-2 ucs-2 unicode unicodefeff utf-16 utf-16le"),
    ("x-user-defined", "x-user-defined"),
)

LABELS: Final[Mapping[str, str]] = MappingProxyType(
    {label: name for name, labels in _TABLE for label in labels.split()}
)
"""Every label of the Encoding Standard → the encoding's name."""

ENCODINGS: Final = tuple(name for name, _ in _TABLE)

ASCII_INCOMPATIBLE: Final = frozenset({"UTF-16BE", "UTF-16LE", "ISO-2022-JP"})
"""Encodings in which bytes below 0x80 do not stand for ASCII characters: UTF-16 pairs
them with the next byte, ISO-2022-JP's escape sequences switch to two-byte JIS, where
`<!--` is two kanji. A gate reading such a page byte-wise sees other markup than the
browser."""

PYTHON_CODECS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "UTF-8": "utf-8",
        "IBM866": "cp866",
        **{f"ISO-8859-{n}": f"iso8859_{n}" for n in (2, 3, 4, 5, 6, 7, 8, 10, 13, 14, 15, 16)},
        "ISO-8859-8-I": "iso8859_8",
        "KOI8-R": "koi8_r",
        "KOI8-U": "koi8_u",
        "macintosh": "mac_roman",
        "windows-874": "cp874",
        **{f"windows-{n}": f"cp{n}" for n in range(1250, 1259)},
        "x-mac-cyrillic": "mac_cyrillic",
        "GBK": "gb18030",
        "gb18030": "gb18030",
        "Big5": "big5hkscs",
        "EUC-JP": "euc_jp",
        "ISO-2022-JP": "iso2022_jp_ext",
        "Shift_JIS": "cp932",
        "EUC-KR": "cp949",
        "UTF-16BE": "utf-16-be",
        "UTF-16LE": "utf-16-le",
        "x-user-defined": "latin-1",
    }
)
"""Encoding → Python codec. `replacement` has none (its decoder turns any input into
one U+FFFD); `x-user-defined` maps bytes 0x80-0xFF to U+F780-U+F7FF, which the caller
handles (`decode_x_user_defined`)."""

_ASCII_WHITESPACE: Final = "\t\n\f\r "


def encoding_for_label(label: str) -> str | None:
    """The encoding a label names (surrounding ASCII whitespace and case ignored), or
    None for a label the standard does not know."""
    return LABELS.get(label.strip(_ASCII_WHITESPACE).lower())


def declared_label(encoding: str) -> str:
    """A label naming `encoding`, for a `charset` parameter (its name, lower-cased:
    every name is also one of its labels)."""
    label = encoding.lower()
    assert LABELS.get(label) == encoding, encoding
    return label


def closest_byte_based(encoding: str) -> str:
    """What a `<meta>` or XML declaration naming `encoding` gets: UTF-16 becomes
    UTF-8 (a document that could declare it in ASCII is not UTF-16)."""
    return "UTF-8" if encoding in ("UTF-16BE", "UTF-16LE") else encoding
