"""The checks every way in shares: types, control characters, ranges, JSON, parts."""

from __future__ import annotations

import datetime as dt

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
    assert type(value).__name__ in info.value.messages[0]


def test_max_parts_counts_in_the_encoding_actually_used(settings) -> None:
    settings.MITTO_MAX_PARTS = 1
    validators.validate_text("a" * 160, enc.AUTO)
    validators.validate_text("ж" * 70, enc.AUTO)
    with pytest.raises(ValidationError, match="2 SMS parts"):
        validators.validate_text("ж" * 71, enc.AUTO)
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
    with pytest.raises(ValidationError, match="2880"):
        validators.validate_validity(value)


@pytest.mark.parametrize("value", [-1, 256, "1", 1.0, False])
def test_pid_out_of_range_or_not_an_int_is_refused(value) -> None:
    with pytest.raises(ValidationError, match="255"):
        validators.validate_pid(value)


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
