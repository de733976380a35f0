"""Checking the options of a message before it is created (and again before it is sent)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError

from . import encoding as enc
from . import validators
from .conf import conf


def clean_options(
    *,
    sender: str | None,
    encoding: str,
    text: str,
    udh: str,
    validity: int | None,
    pid: int | None,
    errors: dict[str, Any],
    reference: str = "",
    metadata: Any = None,
    default_sender: str | None = None,
) -> tuple[str, str, enc.SmsInfo | None]:
    """Check a message's options; put each fault in ``errors`` under its field name.

    Returns the sender (the default sender when none is given), the encoding and the text's
    size (None when the text or encoding is invalid).
    """
    if default_sender is None:
        default_sender = conf.DEFAULT_SENDER
    sender = (sender if sender is not None else default_sender) or ""
    # None stands for "not given" for the optional text fields.
    udh = "" if udh is None else udh
    reference = "" if reference is None else reference
    try:
        validators.validate_sender(sender)
    except ValidationError as exc:
        errors["sender"] = exc
    info = None
    try:
        encoding = validators.validate_encoding(encoding)
    except ValidationError as exc:
        errors["encoding"] = exc
        # The text's own faults (type, characters) are still worth naming.
        try:
            validators.validate_text_characters(text)
        except ValidationError as text_exc:
            errors["text"] = text_exc
    else:
        try:
            info = validators.validate_text(text, encoding)
        except ValidationError as exc:
            errors["text"] = exc
    try:
        validators.validate_udh(udh)
    except ValidationError as exc:
        errors["udh"] = exc
    checked = {"reference": reference, "validity": validity, "pid": pid, "metadata": metadata}
    errors.update(validators.check_fields(checked))
    return sender, encoding, info
