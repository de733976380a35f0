"""The shared validators: each error names what is wrong, with a code, and nothing more passes."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError

from django_mitto import validators


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
