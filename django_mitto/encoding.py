"""SMS text encoding and segmentation for django-mitto.

This module decides, without talking to Mitto, how a text will be encoded
and how many SMS parts it costs. It has no Django dependency so that it can
be shared by the services, the forms, the sandbox server and the tests.

Three encodings exist on the wire:

* ``GSM``: the GSM 03.38 7-bit default alphabet. One part holds 160 septets;
  a concatenated message holds 153 septets per part. Characters of the
  extension table (``€ [ ] { } ~ ^ | \\`` and form feed) are sent as an
  escape pair and cost two septets; a pair is never split across parts.
* ``Unicode``: UCS-2 / UTF-16 code units. One part holds 70 units; a
  concatenated message holds 67 per part. Characters outside the Basic
  Multilingual Plane (most emoji) cost two units and are never split.
* ``Binary``: the text is a string of hexadecimal digits describing raw
  bytes. One part holds 140 bytes; a concatenated message holds 134 per part.

``Auto`` resolves to ``GSM`` when every character fits GSM 03.38 and to
``Unicode`` otherwise. Counting is by Unicode code point: a decomposed
``"e\\u0301"`` is two characters and is not GSM, whereas the precomposed
``"é"`` is.

The GSM 03.38 alphabet is taken from the ``gsm0338`` codec: a character is
GSM only when the codec encodes it and decodes the result back to exactly the
same character.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)

__all__ = [
    "AUTO",
    "BINARY",
    "ENCODINGS",
    "GSM",
    "GSM_BASIC_CHARACTERS",
    "GSM_EXTENSION_CHARACTERS",
    "MULTI_PART_SIZE",
    "SINGLE_PART_SIZE",
    "UNICODE",
    "EncodingError",
    "SmsInfo",
    "analyze",
    "is_gsm",
    "non_gsm_characters",
    "normalize_encoding",
    "split_parts",
    "validate",
]

GSM = "GSM"
UNICODE = "Unicode"
BINARY = "Binary"
AUTO = "Auto"
ENCODINGS: tuple[str, ...] = (GSM, UNICODE, BINARY, AUTO)

#: Capacity of a message sent as a single part, in units of the encoding.
SINGLE_PART_SIZE: dict[str, int] = {GSM: 160, UNICODE: 70, BINARY: 140}
#: Capacity of each part of a concatenated message, in units of the encoding.
MULTI_PART_SIZE: dict[str, int] = {GSM: 153, UNICODE: 67, BINARY: 134}

_CODEC = "gsm03.38"
_ESCAPE = 0x1B


def _build_gsm_tables() -> tuple[frozenset[str], frozenset[str]]:
    """Derive the GSM 03.38 basic and extension tables from the codec.

    Every 7-bit code and every escape sequence is decoded; a character is kept
    only if encoding it gives back the very same bytes and decoding those
    bytes gives back the very same character.
    """
    codec = codecs.lookup(_CODEC)

    def round_trip(data: bytes) -> str | None:
        try:
            char, _ = codec.decode(data, "strict")
        except UnicodeDecodeError:
            return None
        if len(char) != 1:
            return None
        try:
            encoded, _ = codec.encode(char, "strict")
        except UnicodeEncodeError:
            return None
        if encoded != data or codec.decode(encoded, "strict")[0] != char:
            return None
        return char

    basic: set[str] = set()
    extension: set[str] = set()
    for code in range(0x80):
        char = round_trip(bytes((code,)))
        if char is not None:
            basic.add(char)
        char = round_trip(bytes((_ESCAPE, code)))
        if char is not None:
            extension.add(char)
    return frozenset(basic), frozenset(extension - basic)


_BASIC, _EXTENSION = _build_gsm_tables()
#: Characters of the GSM 03.38 default alphabet (one septet each).
GSM_BASIC_CHARACTERS: frozenset[str] = _BASIC
#: Characters of the GSM 03.38 extension table (two septets each).
GSM_EXTENSION_CHARACTERS: frozenset[str] = _EXTENSION
_GSM_CHARACTERS: frozenset[str] = GSM_BASIC_CHARACTERS | GSM_EXTENSION_CHARACTERS
_HEX_DIGITS: frozenset[str] = frozenset("0123456789abcdefABCDEF")
_LAST_BMP = "\uffff"

_ALIASES: dict[str, str] = {
    "gsm": GSM,
    "unicode": UNICODE,
    "ucs2": UNICODE,
    "ucs-2": UNICODE,
    "binary": BINARY,
    "byte": BINARY,
    "auto": AUTO,
}


class EncodingError(ValueError):
    """A text does not fit the requested encoding, or the encoding is unknown."""


@dataclass(frozen=True)
class SmsInfo:
    """How a text is encoded and how many SMS parts it costs."""

    #: The encoding asked for: GSM, Unicode, Binary or Auto.
    requested: str
    #: The encoding actually used: GSM, Unicode or Binary.
    encoding: str
    #: Number of code points in the text (number of bytes for Binary).
    characters: int
    #: Septets (GSM), UTF-16 code units (Unicode) or bytes (Binary).
    units: int
    #: Number of SMS parts; 0 for an empty text.
    parts: int
    #: Capacity of one part in units (single-part capacity when parts <= 1).
    part_size: int
    #: Units still free in the last part (part_size for an empty text).
    remaining: int
    #: Distinct characters outside GSM 03.38, in order of first appearance.
    non_gsm: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly dictionary of the fields."""
        return {
            "requested": self.requested,
            "encoding": self.encoding,
            "characters": self.characters,
            "units": self.units,
            "parts": self.parts,
            "part_size": self.part_size,
            "remaining": self.remaining,
            "non_gsm": list(self.non_gsm),
        }


def normalize_encoding(value: str) -> str:
    """Return the canonical name (GSM, Unicode, Binary or Auto) of an encoding.

    The lookup is case-insensitive and accepts the aliases ``ucs2``/``ucs-2``
    for Unicode and ``byte`` for Binary.
    """
    if isinstance(value, str):
        canonical = _ALIASES.get(value.strip().lower())
        if canonical is not None:
            return canonical
    allowed = ", ".join(ENCODINGS)
    raise EncodingError(f"Unknown encoding {value!r}. Allowed values are: {allowed}.")


def is_gsm(text: str) -> bool:
    """Tell whether every character of ``text`` fits the GSM 03.38 alphabet."""
    return _GSM_CHARACTERS.issuperset(text)


def non_gsm_characters(text: str) -> tuple[str, ...]:
    """Return the distinct characters of ``text`` outside GSM 03.38.

    The characters are given in order of first appearance.
    """
    if _GSM_CHARACTERS.issuperset(text):
        return ()
    return tuple(dict.fromkeys(c for c in text if c not in _GSM_CHARACTERS))


def _describe(chars: Iterable[str]) -> str:
    return ", ".join(f"{c!r} (U+{ord(c):04X})" for c in chars)


def _check_binary(text: str) -> None:
    if not _HEX_DIGITS.issuperset(text):
        invalid = dict.fromkeys(c for c in text if c not in _HEX_DIGITS)
        raise EncodingError(
            "Binary text must contain only hexadecimal digits (0-9, a-f, A-F); "
            f"found {_describe(invalid)}."
        )
    if len(text) % 2:
        raise EncodingError("Binary text must be an even number of hexadecimal digits.")


def _resolve(text: str, encoding: str) -> tuple[str, str, tuple[str, ...]]:
    """Return (requested, used encoding, non-GSM characters) or raise."""
    requested = normalize_encoding(encoding)
    if requested == BINARY:
        _check_binary(text)
        return requested, BINARY, ()
    non_gsm = non_gsm_characters(text)
    if requested == GSM and non_gsm:
        raise EncodingError(
            "Text contains characters that are not in the GSM 03.38 alphabet: "
            f"{_describe(non_gsm)}."
        )
    if requested == AUTO:
        return requested, (UNICODE if non_gsm else GSM), non_gsm
    return requested, requested, non_gsm


def _widths(text: str, used: str) -> Iterable[int]:
    if used == GSM:
        ext = GSM_EXTENSION_CHARACTERS
        return (2 if c in ext else 1 for c in text)
    return (2 if c > _LAST_BMP else 1 for c in text)


def _units(text: str, used: str) -> int:
    if used == GSM:
        if GSM_EXTENSION_CHARACTERS.isdisjoint(text):
            return len(text)
        return len(text) + sum(map(text.count, GSM_EXTENSION_CHARACTERS))
    if used == UNICODE:
        return len(text.encode("utf-16-le", "surrogatepass")) // 2
    return len(text) // 2


def _pack(widths: Iterable[int], size: int) -> list[tuple[int, int]]:
    """Greedily pack characters of the given widths into parts of ``size``.

    Returns one ``(characters, units)`` pair per part. A character never
    straddles two parts: if it does not fit in what is left of a part, it
    starts the next one.
    """
    parts: list[tuple[int, int]] = []
    count = 0
    used = 0
    for width in widths:
        if used + width > size:
            parts.append((count, used))
            count = 0
            used = 0
        count += 1
        used += width
    if count:
        parts.append((count, used))
    return parts


def _layout(text: str, used: str, units: int) -> tuple[list[tuple[int, int]], int]:
    """Return the (characters, units) of each part and the part size."""
    single = SINGLE_PART_SIZE[used]
    if not text:
        return [], single
    characters = len(text) if used != BINARY else len(text) // 2
    if units <= single:
        return [(characters, units)], single
    size = MULTI_PART_SIZE[used]
    if units == characters:
        full, rest = divmod(units, size)
        layout = [(size, size)] * full
        if rest:
            layout.append((rest, rest))
        return layout, size
    return _pack(_widths(text, used), size), size


def analyze(text: str, encoding: str = AUTO) -> SmsInfo:
    """Describe how ``text`` is encoded and how many parts it costs.

    Raises :class:`EncodingError` when the encoding is unknown or when the
    text does not fit it (non-GSM characters with GSM, anything but an even
    number of hexadecimal digits with Binary). An empty text is accepted and
    costs 0 parts.
    """
    requested, used, non_gsm = _resolve(text, encoding)
    units = _units(text, used)
    layout, part_size = _layout(text, used, units)
    remaining = part_size - layout[-1][1] if layout else part_size
    return SmsInfo(
        requested=requested,
        encoding=used,
        characters=len(text) // 2 if used == BINARY else len(text),
        units=units,
        parts=len(layout),
        part_size=part_size,
        remaining=remaining,
        non_gsm=non_gsm,
    )


def validate(text: str, encoding: str = AUTO) -> SmsInfo:
    """Like :func:`analyze`, but an empty text is refused as well."""
    if not text:
        raise EncodingError("Text must not be empty.")
    return analyze(text, encoding)


def split_parts(text: str, encoding: str = AUTO) -> list[str]:
    """Return the contents of each SMS part of ``text``.

    For Binary the parts are hexadecimal strings (two digits per byte, in
    the case they were given). Joining the parts gives back ``text``.
    """
    _, used, _ = _resolve(text, encoding)
    layout, _ = _layout(text, used, _units(text, used))
    step = 2 if used == BINARY else 1
    parts: list[str] = []
    start = 0
    for characters, _units_in_part in layout:
        end = start + characters * step
        parts.append(text[start:end])
        start = end
    return parts
