"""The shared validators: types, control characters, ranges, JSON, parts; each error names
what is wrong, with a code, and nothing more passes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given
from hypothesis import strategies as st

from django_mitto import encoding as enc
from django_mitto import validators
from django_mitto.admin.bulk import BulkSendForm
from django_mitto.models import Batch, Message

# -- text -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("char", ["\t", "\n", "\r", "\f"])
def test_line_breaks_tab_and_page_break_are_allowed_in_a_text(char) -> None:
    validators.validate_text(f"one{char}two", enc.AUTO)


@pytest.mark.parametrize(
    "char", ["\x00", "\x01", "\x07", "\x08", "\x0b", "\x1b", "\x1f", "\x7f", "\x85", "\x9f"]
)
def test_other_control_characters_are_refused_in_a_text_by_code_point(char) -> None:
    with pytest.raises(ValidationError) as info:
        validators.validate_text(f"one{char}two", enc.AUTO)
    assert f"U+{ord(char):04X}" in info.value.messages[0]
    assert info.value.error_list[0].code == "control_character"


@given(st.text(alphabet=st.characters(categories=["Cc"])).filter(lambda s: s.strip("\t\n\r\f")))
def test_no_control_character_but_the_four_gets_through(text) -> None:
    with pytest.raises(ValidationError):
        validators.validate_text_characters("x" + text)


@given(st.text(alphabet=st.characters(exclude_categories=["Cc", "Cs"]), min_size=1))
def test_text_without_control_characters_or_surrogates_passes_the_character_check(text) -> None:
    validators.validate_text_characters(text)
    validators.validate_plain(text)


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", "😀\ud83d"])
def test_lone_surrogates_are_refused(text) -> None:
    with pytest.raises(ValidationError) as info:
        validators.validate_text(text, enc.UNICODE)
    assert info.value.error_list[0].code == "surrogate"
    assert "U+D" in info.value.messages[0]


@pytest.mark.parametrize("value", [123, None, b"Hi", ["Hi"], 1.5])
def test_a_text_must_be_a_str_and_the_error_names_the_type(value) -> None:
    with pytest.raises(ValidationError) as info:
        validators.validate_text(value, enc.AUTO)
    assert info.value.messages == [f"Expected text, got {type(value).__name__}."]
    assert info.value.error_list[0].code == "invalid_type"


def test_max_parts_counts_in_the_encoding_actually_used(settings) -> None:
    settings.MITTO_MAX_PARTS = 1
    validators.validate_text("a" * 160, enc.AUTO)
    validators.validate_text("ж" * 70, enc.AUTO)
    with pytest.raises(ValidationError) as info:
        validators.validate_text("ж" * 71, enc.AUTO)
    assert info.value.messages == [
        "This text takes 2 SMS parts, more than MITTO_MAX_PARTS allows (1). Shorten it."
    ]
    assert info.value.error_list[0].code == "too_many_parts"
    with pytest.raises(ValidationError, match="2 SMS parts"):
        validators.validate_text("ab" * 141, enc.BINARY)


# -- short fields ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["ref\t1", "ref\n1", "ref\x00", "\x1b", "r\udc00"])
def test_a_reference_has_no_control_character_at_all(value) -> None:
    with pytest.raises(ValidationError):
        validators.validate_reference(value)


def test_a_reference_of_255_characters_passes_and_256_do_not() -> None:
    validators.validate_reference("r" * 255)
    with pytest.raises(ValidationError, match="256"):
        validators.validate_reference("r" * 256)


@pytest.mark.parametrize("value", ["Shop\x00", "Shop\n", 12345, b"Shop"])
def test_a_sender_with_control_characters_or_of_the_wrong_type_is_refused(value) -> None:
    with pytest.raises(ValidationError):
        validators.validate_sender(value)


@pytest.mark.parametrize("value", [41791234567, b"+41791234567", ["+41791234567"]])
def test_a_recipient_of_the_wrong_type_is_refused_naming_the_type(value) -> None:
    with pytest.raises(ValidationError) as info:
        validators.normalize_recipient(value)
    assert type(value).__name__ in info.value.messages[0]


def test_a_missing_recipient_is_required() -> None:
    with pytest.raises(ValidationError) as info:
        validators.normalize_recipient(None)
    assert info.value.error_list[0].code == "required"


@pytest.mark.parametrize("value", [None, 1, 60, 2880])
def test_validity_from_1_to_2880_minutes_passes(value) -> None:
    validators.validate_validity(value)


@pytest.mark.parametrize("value", [0, -5, 2881, 10**12, "60", 60.0, True])
def test_validity_out_of_range_or_not_an_int_is_refused(value) -> None:
    with pytest.raises(ValidationError) as info:
        validators.validate_validity(value)
    assert info.value.messages == [
        "The validity is a whole number of minutes from 1 to 2880 (48 hours)."
    ]
    assert info.value.error_list[0].code == "invalid"


@pytest.mark.parametrize("value", [-1, 256, "1", 1.0, False])
def test_pid_out_of_range_or_not_an_int_is_refused(value) -> None:
    with pytest.raises(ValidationError) as info:
        validators.validate_pid(value)
    assert info.value.messages == ["The protocol id is a whole number from 0 to 255."]
    assert info.value.error_list[0].code == "invalid"


def test_check_fields_names_every_bad_field_and_nothing_else() -> None:
    errors = validators.check_fields(
        {
            "recipient": "+41791234567",
            "text": "ok\x00",
            "reference": "fine",
            "validity": 3000,
            "pid": 0,
            "metadata": {"d": dt.date(2026, 1, 1)},
        }
    )
    assert set(errors) == {"text", "validity", "metadata"}


def test_deeply_nested_metadata_is_refused_not_a_crash() -> None:
    deep: dict = {}
    for _ in range(100_000):
        deep = {"x": deep}
    with pytest.raises(ValidationError):
        validators.validate_metadata(deep)


# -- the admin's bulk form ----------------------------------------------------------------------


def bulk_data(**overrides: str) -> dict[str, str]:
    return {
        "numbers": "+41791234561\n+41791234562",
        "sender": "DjangoMitto",
        "text": "Our shop opens at 9 tomorrow.",
        "encoding": "Auto",
        "reference": "",
        **overrides,
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"text": "Ring\x07"}, "text"),
        ({"text": "\x1b[1mBold"}, "text"),
        ({"reference": "spring\tsale"}, "reference"),
        ({"reference": "spring\x1bsale"}, "reference"),
        ({"text": "a" * (153 * 10 + 1)}, "text"),
    ],
)
def test_bulk_form_refuses_malformed_input_on_its_field(changes, field) -> None:
    form = BulkSendForm(bulk_data(**changes), region="CH")
    assert not form.is_valid()
    assert set(form.errors) == {field}
    assert Batch.objects.count() == 0


@pytest.mark.django_db
def test_bulk_form_says_how_many_parts_a_too_long_text_takes(settings) -> None:
    settings.MITTO_MAX_PARTS = 3
    form = BulkSendForm(bulk_data(text="ж" * 300), region="CH")
    assert not form.is_valid()
    (error,) = form.errors["text"]
    assert "5 SMS parts" in error
    assert "MITTO_MAX_PARTS" in error


@pytest.mark.django_db
def test_bulk_csv_reference_with_a_control_character_rejects_its_row() -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile(
        "list.csv", b"number;reference\n+41791234561;ok\n+41791234562;bad\x07ref\n"
    )
    form = BulkSendForm(bulk_data(numbers=""), {"csv_file": upload}, region="CH")
    assert form.is_valid(), form.errors
    assert form.preview.numbers == ["+41791234561"]
    (rejected,) = form.preview.rejected
    assert rejected.entry.raw == "+41791234562"
    assert "U+0007" in rejected.reason


@pytest.mark.django_db
def test_bulk_form_keeps_line_breaks_in_the_text() -> None:
    form = BulkSendForm(bulk_data(text="Sale!\r\nToday only"), region="CH")
    assert form.is_valid(), form.errors
    assert Message.objects.count() == 0


def error_of(call: Any, *args: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        call(*args)
    return info.value


# -- recipients -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+41 79 123 45 67", None, "+41791234567"),
        ("0041791234567", None, "+41791234567"),
        ("  +41791234567\t", None, "+41791234567"),
        ("079 123 45 67", "CH", "+41791234567"),
        ("030 1234567", "DE", "+49301234567"),
    ],
)
def test_recipient_is_normalised_to_e164(raw: str, region: str | None, expected: str) -> None:
    assert validators.normalize_recipient(raw, region) == expected


def test_recipient_without_country_code_uses_the_default_region(settings: Any) -> None:
    settings.MITTO_DEFAULT_REGION = "CH"
    assert validators.normalize_recipient("079 123 45 67") == "+41791234567"
    # An explicit region wins over the setting.
    assert validators.normalize_recipient("030 1234567", "DE") == "+49301234567"


@pytest.mark.parametrize("raw", ["", "   ", None])
def test_missing_recipient_is_required(raw: Any) -> None:
    error = error_of(validators.normalize_recipient, raw)
    assert (error.code, error.messages) == ("required", ["Enter a recipient phone number."])


def test_national_number_without_a_region_says_how_to_fix_it(settings: Any) -> None:
    settings.MITTO_DEFAULT_REGION = ""
    error = error_of(validators.normalize_recipient, "079 123 45 67")
    assert error.code == "invalid"
    assert error.messages == [
        "079 123 45 67 has no country code: write it as +<country code><number>, "
        "or set MITTO_DEFAULT_REGION."
    ]


def test_text_is_not_a_phone_number() -> None:
    error = error_of(validators.normalize_recipient, "+41 hello", "CH")
    assert (error.code, error.messages) == ("invalid", ["+41 hello is not a phone number."])


def test_impossible_number_is_not_valid() -> None:
    error = error_of(validators.normalize_recipient, "+41 12", "CH")
    assert (error.code, error.messages) == ("invalid", ["+41 12 is not a valid phone number."])


# -- sender ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sender",
    [
        "Shp",
        "DjangoMitto",
        "My Shop",
        "A.B-C_D&E+F",
        "X12345",  # letters then digits: alphanumeric, not a short number
        "123",
        "12345678901234",
        "+41791234567",
    ],
)
def test_valid_senders_pass(sender: str) -> None:
    assert validators.validate_sender(sender) is None


@pytest.mark.parametrize("sender", ["", None])
def test_missing_sender_is_required(sender: Any) -> None:
    error = error_of(validators.validate_sender, sender)
    assert error.code == "required"
    assert error.messages == ["Enter a sender, or set MITTO_DEFAULT_SENDER."]


@pytest.mark.parametrize("sender", ["12", "123456789012345", "+12"])
def test_numeric_sender_has_3_to_14_digits(sender: str) -> None:
    error = error_of(validators.validate_sender, sender)
    assert (error.code, error.messages) == ("invalid", ["A numeric sender has 3 to 14 digits."])


@pytest.mark.parametrize("sender", ["Sh", "TwelveLetter", "Shop!", "Café", "ab\ncd"])
def test_alphanumeric_sender_has_3_to_11_allowed_characters(sender: str) -> None:
    error = error_of(validators.validate_sender, sender)
    assert error.code == "invalid"
    assert error.messages == [
        "A sender is 3 to 11 letters and digits (or a number of 3 to 14 digits); "
        f"“{sender}” is not."
    ]


# -- UDH, text, encoding --------------------------------------------------------------------------


@pytest.mark.parametrize("udh", ["", "050003CC0201", "0a0b"])
def test_valid_udh_passes(udh: str) -> None:
    assert validators.validate_udh(udh) is None


@pytest.mark.parametrize("udh", ["0", "050003CC020", "GG", "05 00"])
def test_udh_is_whole_hexadecimal_bytes(udh: str) -> None:
    error = error_of(validators.validate_udh, udh)
    assert error.code == "invalid"
    assert error.messages == ["The UDH is hexadecimal bytes (an even number of 0-9, A-F)."]


def test_validate_text_returns_the_analysis() -> None:
    info = validators.validate_text("Hello", "Auto")
    assert (info.encoding, info.characters, info.parts) == ("GSM", 5, 1)


@pytest.mark.parametrize(
    ("text", "encoding", "message"),
    [
        ("", "GSM", "Text must not be empty."),
        (
            "Hi",
            "Binary",
            "Binary text must contain only hexadecimal digits (0-9, a-f, A-F); "
            "found 'H' (U+0048), 'i' (U+0069).",
        ),
    ],
)
def test_text_that_does_not_fit_says_why(text: str, encoding: str, message: str) -> None:
    error = error_of(validators.validate_text, text, encoding)
    assert (error.code, error.messages) == ("invalid", [message])


@pytest.mark.parametrize(
    ("value", "expected"), [("gsm", "GSM"), ("UNICODE", "Unicode"), ("Auto", "Auto")]
)
def test_encoding_names_are_normalised(value: str, expected: str) -> None:
    assert validators.validate_encoding(value) == expected


def test_unknown_encoding_lists_the_allowed_ones() -> None:
    error = error_of(validators.validate_encoding, "latin-1")
    assert error.code == "invalid"
    assert error.messages == [
        "Unknown encoding 'latin-1'. Allowed values are: GSM, Unicode, Binary, Auto."
    ]


def test_a_refusal_names_five_control_characters_then_says_there_are_more() -> None:
    five = "".join(chr(c) for c in range(1, 6))
    with pytest.raises(ValidationError) as info:
        validators.validate_text(f"a{five}b", enc.AUTO)
    assert info.value.messages == [
        "Contains control characters that cannot be sent: U+0001, U+0002, U+0003, U+0004, U+0005."
    ]
    with pytest.raises(ValidationError) as info:
        validators.validate_text(f"a{five}\x06b", enc.AUTO)
    assert info.value.messages == [
        "Contains control characters that cannot be sent: U+0001, U+0002, U+0003, U+0004, U+0005 …."
    ]


@pytest.mark.parametrize(("value", "name"), [([1, 2], "list"), ("x", "str"), (3, "int")])
def test_metadata_that_is_not_a_dict_is_refused_naming_its_type(value, name) -> None:
    with pytest.raises(ValidationError) as info:
        validators.validate_metadata(value)
    assert info.value.messages == [f"Metadata is a dict, not {name}."]
    assert info.value.error_list[0].code == "invalid_type"


def test_metadata_that_is_no_json_is_refused_saying_why() -> None:
    with pytest.raises(ValidationError) as info:
        validators.validate_metadata({"d": dt.date(2026, 1, 1)})
    assert info.value.messages == [
        "Metadata must be JSON-serialisable: Object of type date is not JSON serializable."
    ]
    assert info.value.error_list[0].code == "invalid"


# -- "+<digits>" numbers are read without the general parser: the same result as it ------------

_COUNTRY_CODES = sorted(__import__("phonenumbers").COUNTRY_CODE_TO_REGION_CODE)


def _general_parse(raw: str) -> tuple[str, str] | str:
    """What parse_recipient answers when every number goes through phonenumbers.parse."""
    import phonenumbers

    from django_mitto.countries import ALPHA3, UNKNOWN

    try:
        number = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException:
        return "error"
    if not phonenumbers.is_valid_number(number):
        return "error"
    return (
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        ALPHA3.get(phonenumbers.region_code_for_number(number) or "", UNKNOWN),
    )


@given(
    code=st.one_of(st.sampled_from(_COUNTRY_CODES), st.integers(1, 999)),
    national=st.text("0123456789", min_size=0, max_size=18),
)
def test_plain_international_numbers_read_as_the_general_parser_reads_them(
    code: int, national: str
) -> None:
    raw = f"+{code}{national}"
    try:
        got: tuple[str, str] | str = validators.parse_recipient(raw, "CH")
    except ValidationError:
        got = "error"
    assert got == _general_parse(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "+41791234567",  # read directly
        "+390612345678",  # Italy: a leading zero, which phonenumbers keeps apart
        "+78001234567",  # Russia: starts with its national prefix 8
        "+12125550123",  # NANP: 1 is both the country code and the national prefix
        "+789123456789",  # Russia: its national prefix 8 written, then a mobile number
        "+112015550123",  # NANP: the national prefix 1 written after the country code
        "+4407911123456",  # a national trunk 0 written after the country code
        "+999123456",  # no such country code
    ],
)
def test_numbers_the_direct_reading_leaves_to_the_general_parser_read_the_same(raw) -> None:
    import phonenumbers

    from django_mitto.validators import _parse_international

    direct = _parse_international(raw)
    if direct is not None:
        assert direct == phonenumbers.parse(raw, None)
    try:
        got: tuple[str, str] | str = validators.parse_recipient(raw)
    except ValidationError:
        got = "error"
    assert got == _general_parse(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+41791234567", ("+41791234567", "CHE")),  # a country code of two digits
        ("+12015550123", ("+12015550123", "USA")),  # of one digit
        ("+420601123456", ("+420601123456", "CZE")),  # of three digits
        ("0041791234567", ("+41791234567", "CHE")),  # 00 for +
        ("+80012345678", ("+80012345678", "???")),  # a code of no country (freephone)
        ("+4112", "+4112 is not a valid phone number."),  # the shortest national number read
        ("+41" + "1" * 17, f"+41{'1' * 17} is not a valid phone number."),  # the longest
    ],
)
def test_plain_international_numbers_are_read_without_the_general_parser(
    raw, expected, monkeypatch
) -> None:
    # The general parser dominates a large send's validation: numbers written as + and digits,
    # as most numbers of a campaign are, are read without it.
    import phonenumbers

    def general_parser(*args: object) -> None:
        raise AssertionError(f"phonenumbers.parse{args} was called")

    monkeypatch.setattr(phonenumbers, "parse", general_parser)
    try:
        got: tuple[str, str] | str = validators.parse_recipient(raw)
    except ValidationError as refused:
        got = " ".join(refused.messages)
    assert got == expected


def test_a_national_number_too_long_to_read_is_refused_as_the_general_parser_refuses_it() -> None:
    raw = "+41" + "1" * 18
    with pytest.raises(ValidationError) as info:
        validators.parse_recipient(raw)
    assert info.value.messages == [f"{raw} is not a phone number."]


def test_a_national_prefix_after_the_country_code_is_dropped_as_phonenumbers_does() -> None:
    assert validators.normalize_recipient("+789123456789") == "+79123456789"
    assert validators.normalize_recipient("+112015550123") == "+12015550123"


@pytest.mark.parametrize(
    ("validator", "limit"),
    [(validators.validate_reference, 255), (validators.validate_udh, 280)],
)
def test_a_value_over_its_length_is_refused_with_the_code_max_length(validator, limit) -> None:
    validator("A" * limit)
    with pytest.raises(ValidationError) as refused:
        validator("A" * (limit + 2))
    assert refused.value.code == "max_length"
    assert refused.value.params == {"length": limit + 2, "max": limit}


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ({"note": "a\x00b"}, "Contains control characters that cannot be sent: U+0000."),
        (
            {"nested": [{"deep": {"\ud800": 1}}]},
            "Contains a lone surrogate (U+D800): this is not valid Unicode text.",
        ),
    ],
    ids=["nul", "surrogate"],
)
def test_metadata_with_a_nul_or_a_lone_surrogate_is_refused_naming_it(value, why) -> None:
    with pytest.raises(ValidationError) as info:
        validators.validate_metadata(value)
    assert info.value.messages == [f"Metadata cannot be stored: {why}"]
    assert info.value.error_list[0].code == "invalid"
