"""Validation shared by the model, the forms, the service and the command.

Every function raises :class:`django.core.exceptions.ValidationError`; callers that validate
several fields at once collect them into a dict keyed by field name, so each error names its field.
"""

from __future__ import annotations

import re

import phonenumbers
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from . import encoding as enc
from .conf import conf

_ALNUM_SENDER = re.compile(r"^[A-Za-z0-9 .\-_&+]{3,11}$")
_NUMERIC_SENDER = re.compile(r"^\+?[0-9]{3,14}$")
_HEX = re.compile(r"^(?:[0-9A-Fa-f]{2})+$")


def normalize_recipient(value: str, region: str | None = None) -> str:
    """Parse a phone number and return it in E.164 (``+41791234567``).

    A number without ``+`` or ``00`` needs a region: ``region`` or ``MITTO_DEFAULT_REGION``.
    """
    raw = (value or "").strip()
    if not raw:
        raise ValidationError(_("Enter a recipient phone number."), code="required")
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    region = (region if region is not None else conf.DEFAULT_REGION) or None
    try:
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
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def validate_sender(value: str) -> None:
    """A sender ID is 3-11 letters/digits, or a number of 3-14 digits (Mitto's rule)."""
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
    if value and not _HEX.fullmatch(value):
        raise ValidationError(
            _("The UDH is hexadecimal bytes (an even number of 0-9, A-F)."), code="invalid"
        )


def validate_text(text: str, encoding: str) -> enc.SmsInfo:
    """Check that ``text`` is not empty and fits ``encoding``; return its analysis."""
    try:
        return enc.validate(text, encoding)
    except enc.EncodingError as exc:
        raise ValidationError(str(exc), code="invalid") from None


def validate_encoding(value: str) -> str:
    try:
        return enc.normalize_encoding(value)
    except enc.EncodingError as exc:
        raise ValidationError(str(exc), code="invalid") from None
