"""Validation shared by the model, the forms, the service and the command.

Every function raises :class:`django.core.exceptions.ValidationError`; callers that validate
several fields at once collect them into a dict keyed by field name, so each error names its field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import phonenumbers
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from . import encoding as enc
from .conf import conf
from .countries import ALPHA3
from .countries import UNKNOWN as UNKNOWN_COUNTRY

_ALNUM_SENDER = re.compile(r"^[A-Za-z0-9 .\-_&+]{3,11}$")
_NUMERIC_SENDER = re.compile(r"^\+?[0-9]{3,14}$")
_HEX = re.compile(r"^(?:[0-9A-Fa-f]{2})+$")

#: Control characters an SMS text may hold: tab, line feed, carriage return, and form feed
#: (GSM 03.38's page break). Every other control character (U+0000-U+001F, U+007F-U+009F) is
#: refused in a text; in a recipient, sender, reference or UDH every control character is.
TEXT_CONTROL_CHARACTERS = "\t\n\r\f"
#: A lone surrogate cannot be encoded (UTF-8 for the database and JSON, UCS-2 for the SMS).
_SURROGATES = "\ud800-\udfff"
_BAD_IN_TEXT = re.compile(f"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f{_SURROGATES}]")
_BAD_IN_FIELD = re.compile(f"[\x00-\x1f\x7f-\x9f{_SURROGATES}]")

#: Mitto's validity is in minutes; its default, 2880 (48 hours), is also the longest accepted.
MAX_VALIDITY = 2880
#: The GSM protocol identifier is one byte.
MAX_PID = 255
REFERENCE_MAX_LENGTH = 255
UDH_MAX_LENGTH = 280


def normalize_recipient(value: str, region: str | None = None) -> str:
    """Parse a phone number and return it in E.164 (``+41791234567``).

    A number without ``+`` or ``00`` needs a region: ``region`` or ``MITTO_DEFAULT_REGION``.
    """
    return parse_recipient(value, region)[0]


def parse_recipient(value: str, region: str | None = None) -> tuple[str, str]:
    """Parse a phone number once: its E.164 form and its ISO 3166-1 alpha-3 country
    (``("+41791234567", "CHE")``; ``"???"`` for a number of no single country).

    Raises ``ValidationError`` as :func:`normalize_recipient` does.
    """
    if value is not None:
        validate_str(value)
        # Surrounding whitespace (a tab or line break pasted from a spreadsheet) is dropped
        # below; a control character inside the number, or a NUL anywhere, is refused.
        _validate_characters(value.strip(), _BAD_IN_FIELD)
    raw = (value or "").strip()
    if not raw:
        raise ValidationError(_("Enter a recipient phone number."), code="required")
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    number = _parse_international(raw) if _INTERNATIONAL.fullmatch(raw) else None
    try:
        if number is None:
            region = (region if region is not None else conf.DEFAULT_REGION) or None
            number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            raise ValidationError(
                _(
                    "%(value)s has no country code: write it as +<country code><number>, "
                    "or set MITTO_DEFAULT_REGION."
                ),
                code="invalid",
                params={"value": value},
            ) from None
        raise ValidationError(
            _("%(value)s is not a phone number."), code="invalid", params={"value": value}
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise ValidationError(
            _("%(value)s is not a valid phone number."), code="invalid", params={"value": value}
        )
    return (
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        ALPHA3.get(phonenumbers.region_code_for_number(number) or "", UNKNOWN_COUNTRY),
    )


#: ``+`` and digits only, as most numbers of a campaign are written: read without the
#: general parser (see :func:`_parse_international`).
_INTERNATIONAL = re.compile(r"\+[1-9][0-9]{2,19}")


def _parse_international(raw: str) -> phonenumbers.PhoneNumber | None:
    """``phonenumbers.parse(raw)`` for ``+`` followed by digits, in a few steps instead of the
    general parser's many (it dominates a large send's validation); None where the general
    parser could read it otherwise, which then decides: an unknown country code, a national
    number of under 2 or over 17 digits, a leading zero (kept apart by phonenumbers), or one
    that starts with the country's national prefix (which phonenumbers may strip)."""
    digits = raw[1:]
    for size in (1, 2, 3):
        code = int(digits[:size])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return None
    national = digits[size:]
    if not 2 <= len(national) <= 17 or national[0] == "0":
        return None
    prefix = _national_prefix(code)
    if prefix is None or prefix.match(national):
        return None
    return phonenumbers.PhoneNumber(country_code=code, national_number=int(national))


_NO_PREFIX = re.compile(r"(?!)")  # matches nothing
_prefixes: dict[int, re.Pattern[str] | None] = {}


def _national_prefix(code: int) -> re.Pattern[str] | None:
    """The pattern of the national prefix phonenumbers strips for country code ``code`` (one
    that matches nothing when there is none); None when phonenumbers has no metadata."""
    if code not in _prefixes:
        region = phonenumbers.region_code_for_country_code(code)
        metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(code, region)
        if metadata is None:
            _prefixes[code] = None
        else:
            pattern = metadata.national_prefix_for_parsing
            _prefixes[code] = re.compile(pattern) if pattern else _NO_PREFIX
    return _prefixes[code]


def validate_sender(value: str) -> None:
    """A sender ID is 3-11 letters/digits, or a number of 3-14 digits (Mitto's rule)."""
    if value is not None:
        validate_str(value)
    value = value or ""
    if not value:
        raise ValidationError(_("Enter a sender, or set MITTO_DEFAULT_SENDER."), code="required")
    if _NUMERIC_SENDER.fullmatch(value):
        return
    if value.lstrip("+").isdigit():
        raise ValidationError(_("A numeric sender has 3 to 14 digits."), code="invalid")
    if not _ALNUM_SENDER.fullmatch(value):
        raise ValidationError(
            _(
                "A sender is 3 to 11 letters and digits (or a number of 3 to 14 digits); "
                "“%(value)s” is not."
            ),
            code="invalid",
            params={"value": value},
        )


def validate_udh(value: str) -> None:
    """A user data header is hexadecimal bytes, at most 140 of them."""
    validate_str(value)
    if value and not _HEX.fullmatch(value):
        raise ValidationError(
            _("The UDH is hexadecimal bytes (an even number of 0-9, A-F)."), code="invalid"
        )
    _validate_length(value, UDH_MAX_LENGTH)


def validate_text(text: str, encoding: str) -> enc.SmsInfo:
    """Check that ``text`` is not empty, fits ``encoding`` and ``MITTO_MAX_PARTS``; analyse it."""
    validate_text_characters(text)
    try:
        info = enc.validate(text, encoding)
    except enc.EncodingError as exc:
        raise ValidationError(str(exc), code="invalid") from None
    validate_parts(info)
    return info


def validate_text_characters(value: str) -> None:
    """A text is a ``str`` with no control character but tab, CR, LF and FF, no lone surrogate."""
    validate_str(value)
    _validate_characters(value, _BAD_IN_TEXT)


def validate_parts(info: enc.SmsInfo) -> None:
    """Refuse a text that takes more than ``MITTO_MAX_PARTS`` SMS parts, saying how many it takes."""
    limit = conf.MAX_PARTS
    if info.parts > limit:
        raise ValidationError(
            _(
                "This text takes %(parts)d SMS parts, more than MITTO_MAX_PARTS allows "
                "(%(max)d). Shorten it."
            ),
            code="too_many_parts",
            params={"parts": info.parts, "max": limit},
        )


def validate_str(value: Any) -> None:
    """Refuse anything but a ``str`` (an int, ``None``, bytes...), naming the type given."""
    if not isinstance(value, str):
        raise ValidationError(
            _("Expected text, got %(type)s."),
            code="invalid_type",
            params={"type": type(value).__name__},
        )


def validate_plain(value: str) -> None:
    """A ``str`` without any control character or lone surrogate (for short fields)."""
    validate_str(value)
    _validate_characters(value, _BAD_IN_FIELD)


def validate_reference(value: str) -> None:
    """A reference is at most 255 characters, none of them a control character."""
    validate_plain(value)
    _validate_length(value, REFERENCE_MAX_LENGTH)


def validate_validity(value: int | None) -> None:
    """``None`` (Mitto's default) or a whole number of minutes from 1 to 2880."""
    if not _is_int_in(value, 1, MAX_VALIDITY):
        raise ValidationError(
            _("The validity is a whole number of minutes from 1 to %(max)d (48 hours)."),
            code="invalid",
            params={"max": MAX_VALIDITY},
        )


def validate_pid(value: int | None) -> None:
    """``None`` (Mitto's default) or a protocol identifier from 0 to 255."""
    if not _is_int_in(value, 0, MAX_PID):
        raise ValidationError(
            _("The protocol id is a whole number from 0 to %(max)d."),
            code="invalid",
            params={"max": MAX_PID},
        )


def validate_metadata(value: Any) -> None:
    """``None`` or a dict that can be stored as JSON on every database.

    ``NaN`` and infinities, NUL characters and lone surrogates are JSON to Python's ``json``
    module but not to PostgreSQL's ``jsonb``: they are refused here, on SQLite as well.
    """
    if value is None:
        return
    if not isinstance(value, dict):
        raise ValidationError(
            _("Metadata is a dict, not %(type)s."),
            code="invalid_type",
            params={"type": type(value).__name__},
        )
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValidationError(
            _("Metadata must be JSON-serialisable: %(error)s."),
            code="invalid",
            params={"error": str(exc)[:200]},
        ) from None
    for item in _json_strings(value):
        try:
            _validate_characters(item, _NUL_OR_SURROGATE)
        except ValidationError as exc:
            raise ValidationError(
                _("Metadata cannot be stored: %(error)s"),
                code="invalid",
                params={"error": " ".join(exc.messages)},
            ) from None


#: What check_fields() checks, by field name.
FIELD_CHECKS: dict[str, Callable[[Any], None]] = {
    "recipient": validate_plain,
    "sender": validate_plain,
    "text": validate_text_characters,
    "reference": validate_reference,
    "udh": validate_plain,
    "validity": validate_validity,
    "pid": validate_pid,
    "metadata": validate_metadata,
}


def check_fields(values: Mapping[str, Any]) -> dict[str, ValidationError]:
    """Check the type, characters and range of each value given; return the errors by field.

    These checks hold whatever the settings and the phone number: a value failing one can
    never be sent, and may not even be storable (NUL on PostgreSQL, a lone surrogate anywhere).
    """
    errors: dict[str, ValidationError] = {}
    for name, value in values.items():
        try:
            FIELD_CHECKS[name](value)
        except ValidationError as exc:
            errors[name] = exc
    return errors


_NUL_OR_SURROGATE = re.compile(f"[\x00{_SURROGATES}]")


def _validate_characters(value: str, pattern: re.Pattern[str]) -> None:
    found = list(dict.fromkeys(pattern.findall(value)))
    if not found:
        return
    surrogates = [c for c in found if "\ud800" <= c <= "\udfff"]
    if surrogates:
        raise ValidationError(
            _("Contains a lone surrogate (%(chars)s): this is not valid Unicode text."),
            code="surrogate",
            params={"chars": _code_points(surrogates)},
        )
    raise ValidationError(
        _("Contains control characters that cannot be sent: %(chars)s."),
        code="control_character",
        params={"chars": _code_points(found)},
    )


def _code_points(chars: list[str]) -> str:
    shown = ", ".join(f"U+{ord(c):04X}" for c in chars[:5])
    return shown + (" …" if len(chars) > 5 else "")


def _validate_length(value: str, limit: int) -> None:
    if len(value) > limit:
        raise ValidationError(
            _("%(length)d characters; at most %(max)d are allowed."),
            code="max_length",
            params={"length": len(value), "max": limit},
        )


def _is_int_in(value: Any, low: int, high: int) -> bool:
    if value is None:
        return True
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _json_strings(value: Any) -> Iterator[str]:
    """Every string (keys included) in a JSON-serialisable value, without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def validate_encoding(value: str) -> str:
    try:
        return enc.normalize_encoding(value)
    except enc.EncodingError as exc:
        raise ValidationError(str(exc), code="invalid") from None
