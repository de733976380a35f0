"""Tests for django_mitto.encoding (SMS encoding and segmentation)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from django_mitto.encoding import (
    AUTO,
    BINARY,
    ENCODINGS,
    GSM,
    GSM_BASIC_CHARACTERS,
    GSM_EXTENSION_CHARACTERS,
    MULTI_PART_SIZE,
    SINGLE_PART_SIZE,
    UNICODE,
    EncodingError,
    SmsInfo,
    _build_gsm_tables,
    analyze,
    is_gsm,
    non_gsm_characters,
    normalize_encoding,
    split_parts,
    validate,
)

VECTORS_FILE = Path(__file__).with_name("encoding_vectors.json")
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))

EURO = "\u20ac"
SMILE = "\U0001f600"

BASIC_ALPHABET = "".join(sorted(GSM_BASIC_CHARACTERS))
GSM_ALPHABET = "".join(sorted(GSM_BASIC_CHARACTERS | GSM_EXTENSION_CHARACTERS))

gsm_basic_texts = st.text(alphabet=BASIC_ALPHABET, max_size=700)
gsm_texts = st.text(alphabet=GSM_ALPHABET, max_size=700)
mixed_texts = st.text(
    alphabet=st.one_of(
        st.sampled_from(GSM_ALPHABET),
        st.sampled_from(["\u4e2d", "\u00e7", "\u0301", "`", SMILE, "\U0001f44d"]),
        st.characters(),
    ),
    max_size=500,
)
hex_texts = st.binary(max_size=400).map(bytes.hex)


def units_of(text: str, encoding: str) -> int:
    """Reference unit count of one piece of text, character by character."""
    if encoding == BINARY:
        return len(text) // 2
    if encoding == GSM:
        return sum(2 if c in GSM_EXTENSION_CHARACTERS else 1 for c in text)
    return sum(2 if ord(c) > 0xFFFF else 1 for c in text)


# --- shared vectors ---------------------------------------------------------


def test_vectors_file_is_a_list_of_well_formed_vectors() -> None:
    assert len(VECTORS) >= 30
    for vector in VECTORS:
        assert set(vector) >= {"text", "encoding", "expect"}
        assert vector["encoding"] in ENCODINGS
        assert set(vector["expect"]) == {"encoding", "units", "parts", "remaining"}


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_analyze_matches_shared_vector(vector: dict[str, Any]) -> None:
    info = analyze(vector["text"], vector["encoding"])
    got = {key: getattr(info, key) for key in vector["expect"]}
    assert got == vector["expect"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_split_parts_agrees_with_shared_vector(vector: dict[str, Any]) -> None:
    parts = split_parts(vector["text"], vector["encoding"])
    assert len(parts) == vector["expect"]["parts"]
    assert "".join(parts) == vector["text"]


# --- the GSM 03.38 tables -----------------------------------------------------


def test_gsm_tables_have_the_standard_sizes() -> None:
    # 128 codes minus the escape code; 10 characters in the extension table.
    assert len(GSM_BASIC_CHARACTERS) == 127
    assert frozenset("\f^{}\\[~]|" + EURO) == GSM_EXTENSION_CHARACTERS
    assert not GSM_BASIC_CHARACTERS & GSM_EXTENSION_CHARACTERS


#: The GSM 03.38 default alphabet (3GPP TS 23.038), codes 0x00 to 0x7F in order; 0x1B is the
#: escape to the extension table, not a character.
GSM_0338_DEFAULT_ALPHABET = (
    "@\u00a3$\u00a5\u00e8\u00e9\u00f9\u00ec\u00f2\u00c7\n\u00d8\u00f8\r\u00c5\u00e5"
    "\u0394_\u03a6\u0393\u039b\u03a9\u03a0\u03a8\u03a3\u0398\u039e\x1b\u00c6\u00e6\u00df\u00c9"
    " !\"#\u00a4%&'()*+,-./"
    "0123456789:;<=>?"
    "\u00a1ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZ\u00c4\u00d6\u00d1\u00dc\u00a7"
    "\u00bfabcdefghijklmno"
    "pqrstuvwxyz\u00e4\u00f6\u00f1\u00fc\u00e0"
)
#: Its extension table (two septets each: the escape, then the code).
GSM_0338_EXTENSION_TABLE = "\f^{}\\[~]|" + EURO


def test_gsm_tables_derived_from_the_codec_are_the_published_tables() -> None:
    # Called here, not only read from the module: the tables are built once, at import.
    basic, extension = _build_gsm_tables()
    assert len(GSM_0338_DEFAULT_ALPHABET) == 128
    assert basic == frozenset(GSM_0338_DEFAULT_ALPHABET) - {"\x1b"}
    assert extension == frozenset(GSM_0338_EXTENSION_TABLE)
    assert (basic, extension) == (GSM_BASIC_CHARACTERS, GSM_EXTENSION_CHARACTERS)


def test_gsm_tables_contain_only_characters_that_round_trip_through_the_codec() -> None:
    for char in GSM_BASIC_CHARACTERS:
        encoded = char.encode("gsm03.38")
        assert len(encoded) == 1
        assert encoded.decode("gsm03.38") == char
    for char in GSM_EXTENSION_CHARACTERS:
        encoded = char.encode("gsm03.38")
        assert len(encoded) == 2
        assert encoded[0] == 0x1B
        assert encoded.decode("gsm03.38") == char


def test_no_other_bmp_character_is_accepted_by_the_codec() -> None:
    known = GSM_BASIC_CHARACTERS | GSM_EXTENSION_CHARACTERS | {"\x1b"}
    for code in range(0x10000):
        char = chr(code)
        if char in known or 0xD800 <= code <= 0xDFFF:
            continue
        with pytest.raises(UnicodeEncodeError):
            char.encode("gsm03.38")


@pytest.mark.parametrize(
    "char", ["\r", "\n", " ", "@", "$", "\u00e9", "\u00c7", "\u00e0", "\u03a9"]
)
def test_character_is_in_the_gsm_basic_alphabet(char: str) -> None:
    assert char in GSM_BASIC_CHARACTERS
    assert analyze(char).units == 1


@pytest.mark.parametrize(
    "char",
    ["\u00e7", "\u0301", "`", "\x1b", "\x00", "\u00a0", "\u00c0", "\u2126", SMILE, "\u4e2d"],
)
def test_character_is_not_gsm(char: str) -> None:
    assert not is_gsm(char)
    assert non_gsm_characters("a" + char) == (char,)
    assert analyze(char).encoding == UNICODE


def test_escape_control_character_is_not_counted_as_gsm() -> None:
    # The codec encodes U+001B to the bare escape code, which decodes to nothing.
    assert "\x1b".encode("gsm03.38").decode("gsm03.38") == ""
    assert not is_gsm("\x1b")


def test_decomposed_accent_is_two_characters_and_forces_unicode() -> None:
    info = analyze("e\u0301")
    assert info.characters == 2
    assert info.encoding == UNICODE
    assert info.non_gsm == ("\u0301",)
    assert analyze("\u00e9").encoding == GSM


# --- GSM ------------------------------------------------------------------------


def test_extension_character_costs_two_septets() -> None:
    info = analyze("a" + EURO + "[")
    assert (info.characters, info.units, info.parts, info.remaining) == (3, 5, 1, 155)


def test_extension_character_is_never_split_across_parts() -> None:
    text = "a" * 152 + EURO + "b" * 10
    parts = split_parts(text)
    assert parts == ["a" * 152, EURO + "b" * 10]
    info = analyze(text)
    assert (info.parts, info.part_size, info.remaining) == (2, 153, 141)


def test_greedy_packing_can_need_more_parts_than_the_unit_count_suggests() -> None:
    text = "a" * 152 + EURO + "a" * 152
    info = analyze(text)
    assert info.units == 306
    assert math.ceil(info.units / 153) == 2
    assert info.parts == 3
    assert split_parts(text) == ["a" * 152, EURO + "a" * 151, "a"]


def test_requesting_gsm_for_text_with_emoji_names_the_characters() -> None:
    with pytest.raises(EncodingError) as excinfo:
        analyze("Hi " + SMILE + " and \u4e2d" + SMILE, GSM)
    message = str(excinfo.value)
    assert message.startswith("Text contains characters that are not in the GSM 03.38 alphabet: ")
    assert SMILE in message
    assert "\u4e2d" in message
    assert "U+1F600" in message
    assert message.count(SMILE) == 1


def test_requesting_gsm_for_gsm_text_is_accepted() -> None:
    info = analyze("Price: 5" + EURO, GSM)
    assert (info.requested, info.encoding, info.units) == (GSM, GSM, 10)


# --- Unicode ----------------------------------------------------------------------


def test_emoji_is_never_split_across_parts() -> None:
    text = "a" * 66 + SMILE * 3
    assert split_parts(text) == ["a" * 66, SMILE * 3]
    info = analyze(text)
    assert (info.units, info.parts, info.remaining) == (72, 2, 61)


def test_the_last_bmp_character_costs_one_unit_when_parts_are_packed() -> None:
    # The emoji makes the units outnumber the characters, so each character's width counts.
    text = SMILE + "\uffff" * 70
    assert [len(p) for p in split_parts(text)] == [66, 5]
    assert (analyze(text).units, analyze(text).parts) == (72, 2)


def test_unicode_can_be_requested_for_gsm_text() -> None:
    info = analyze("Hello", "ucs2")
    assert (info.requested, info.encoding, info.part_size) == (UNICODE, UNICODE, 70)
    assert info.non_gsm == ()


def test_unicode_info_reports_the_non_gsm_characters_in_order() -> None:
    info = analyze("\u4e2da" + SMILE + "\u4e2d\u00e7", UNICODE)
    assert info.non_gsm == ("\u4e2d", SMILE, "\u00e7")


# --- Binary -----------------------------------------------------------------------


def test_binary_counts_bytes_and_splits_into_hex_strings() -> None:
    text = "Ab" * 141
    info = analyze(text, BINARY)
    assert (info.characters, info.units, info.parts, info.remaining) == (141, 141, 2, 127)
    assert json.dumps(info.as_dict()["characters"]) == "141"
    parts = split_parts(text, BINARY)
    assert [len(p) for p in parts] == [268, 14]
    assert "".join(parts) == text


def test_binary_with_odd_number_of_digits_is_refused() -> None:
    with pytest.raises(
        EncodingError, match=r"^Binary text must be an even number of hexadecimal digits\.$"
    ):
        analyze("abc", BINARY)


@pytest.mark.parametrize("text", ["zz", "0x1f", "de ad", "12-34", "\u0661\u0662"])
def test_binary_with_non_hex_characters_names_them(text: str) -> None:
    with pytest.raises(EncodingError) as excinfo:
        analyze(text, BINARY)
    message = str(excinfo.value)
    assert "hexadecimal" in message
    for char in set(text) - set("0123456789abcdefABCDEF"):
        assert repr(char) in message


def test_binary_info_has_no_non_gsm_characters() -> None:
    assert analyze("00ff", BINARY).non_gsm == ()


# --- empty text, validate, as_dict ------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_empty_text_costs_no_part(encoding: str) -> None:
    info = analyze("", encoding)
    assert info.parts == 0
    assert info.units == 0
    assert info.remaining == info.part_size
    assert split_parts("", encoding) == []


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_validate_refuses_empty_text(encoding: str) -> None:
    with pytest.raises(EncodingError, match=r"^Text must not be empty\.$"):
        validate("", encoding)


def test_validate_returns_the_same_info_as_analyze() -> None:
    assert validate("Hello " + SMILE) == analyze("Hello " + SMILE)


def test_validate_refuses_text_that_does_not_fit_the_encoding() -> None:
    with pytest.raises(EncodingError):
        validate(SMILE, GSM)
    with pytest.raises(EncodingError):
        validate("abc", BINARY)


def test_as_dict_is_json_friendly() -> None:
    info = analyze("a" + SMILE)
    data = info.as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data == {
        "requested": AUTO,
        "encoding": UNICODE,
        "characters": 2,
        "units": 3,
        "parts": 1,
        "part_size": 70,
        "remaining": 67,
        "non_gsm": [SMILE],
    }


def test_sms_info_is_immutable() -> None:
    info = analyze("a")
    with pytest.raises(AttributeError):
        info.parts = 2  # type: ignore[misc]
    assert isinstance(info, SmsInfo)


# --- normalize_encoding -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("GSM", GSM),
        ("gsm", GSM),
        ("Gsm", GSM),
        ("Unicode", UNICODE),
        ("UNICODE", UNICODE),
        ("ucs2", UNICODE),
        ("UCS-2", UNICODE),
        ("binary", BINARY),
        ("BINARY", BINARY),
        ("byte", BINARY),
        ("auto", AUTO),
        ("AUTO", AUTO),
        (" Auto ", AUTO),
    ],
)
def test_normalize_encoding_accepts_case_variants_and_aliases(value: str, expected: str) -> None:
    assert normalize_encoding(value) == expected


@pytest.mark.parametrize("value", ["foo", "", "utf-8", "gsm7x"])
def test_normalize_encoding_refuses_unknown_values_listing_allowed_ones(value: str) -> None:
    with pytest.raises(EncodingError) as excinfo:
        normalize_encoding(value)
    message = str(excinfo.value)
    assert repr(value) in message
    for allowed in ENCODINGS:
        assert allowed in message


def test_analyze_refuses_unknown_encoding() -> None:
    with pytest.raises(EncodingError, match="Allowed values"):
        analyze("hello", "foo")


def test_encoding_error_is_a_value_error() -> None:
    assert issubclass(EncodingError, ValueError)


# --- properties -------------------------------------------------------------------


@given(gsm_basic_texts)
def test_gsm_basic_text_part_count_follows_the_formula(text: str) -> None:
    n = len(text)
    expected = 0 if n == 0 else 1 if n <= 160 else math.ceil(n / 153)
    info = analyze(text)
    assert info.encoding == GSM
    assert info.units == n
    assert info.parts == expected
    if n > 160:
        assert info.remaining == 153 * expected - n


@given(gsm_texts)
def test_gsm_text_never_needs_fewer_parts_than_its_units_allow(text: str) -> None:
    info = analyze(text, GSM)
    assert info.units == units_of(text, GSM)
    if info.units > 160:
        assert info.parts >= math.ceil(info.units / 153)
        # Each pushed escape pair wastes at most one septet per part.
        assert info.parts <= math.ceil(info.units / 152)


@given(mixed_texts)
def test_split_parts_joins_back_and_respects_the_part_size(text: str) -> None:
    info = analyze(text)
    parts = split_parts(text)
    assert "".join(parts) == text
    assert len(parts) == info.parts
    assert all(parts)
    for part in parts:
        assert units_of(part, info.encoding) <= info.part_size
    if parts:
        assert info.remaining == info.part_size - units_of(parts[-1], info.encoding)
        # Greedy: nothing of the next part would have fitted in the previous one.
        for previous, current in itertools.pairwise(parts):
            first = units_of(current[0], info.encoding)
            assert units_of(previous, info.encoding) + first > info.part_size


@given(mixed_texts, st.sampled_from([GSM, UNICODE]))
def test_split_parts_with_explicit_encoding_joins_back(text: str, encoding: str) -> None:
    if encoding == GSM and not is_gsm(text):
        with pytest.raises(EncodingError):
            split_parts(text, encoding)
        return
    parts = split_parts(text, encoding)
    assert "".join(parts) == text
    size = (SINGLE_PART_SIZE if len(parts) <= 1 else MULTI_PART_SIZE)[encoding]
    assert all(units_of(p, encoding) <= size for p in parts)


@given(hex_texts)
def test_binary_split_parts_joins_back_and_respects_the_part_size(text: str) -> None:
    info = analyze(text, BINARY)
    parts = split_parts(text, BINARY)
    assert "".join(parts) == text
    assert info.units == info.characters == len(text) // 2
    assert all(len(p) // 2 <= info.part_size for p in parts)
    assert info.parts == len(parts)


@given(mixed_texts)
def test_auto_picks_gsm_exactly_when_text_is_gsm(text: str) -> None:
    info = analyze(text, AUTO)
    assert (info.encoding == GSM) == is_gsm(text)
    assert info.requested == AUTO


@given(mixed_texts)
def test_non_gsm_is_empty_exactly_when_text_is_gsm(text: str) -> None:
    non_gsm = non_gsm_characters(text)
    assert (non_gsm == ()) == is_gsm(text)
    assert len(set(non_gsm)) == len(non_gsm)
    assert set(non_gsm) == {
        c for c in text if c not in GSM_BASIC_CHARACTERS | GSM_EXTENSION_CHARACTERS
    }
    assert analyze(text).non_gsm == non_gsm


@given(mixed_texts)
def test_requesting_gsm_fails_exactly_when_text_is_not_gsm(text: str) -> None:
    if is_gsm(text):
        assert analyze(text, GSM).encoding == GSM
    else:
        with pytest.raises(EncodingError) as excinfo:
            analyze(text, GSM)
        message = str(excinfo.value)
        for char in non_gsm_characters(text):
            assert f"U+{ord(char):04X}" in message


@settings(max_examples=50)
@given(st.text(max_size=20).filter(lambda t: not set(t) <= set("0123456789abcdefABCDEF")))
def test_binary_refuses_any_non_hex_text(text: str) -> None:
    with pytest.raises(EncodingError):
        analyze(text, BINARY)
