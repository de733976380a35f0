"""Validation of ``/sms`` and ``/smsbulk`` request bodies with Mitto's response codes.

The checks run in the order of the codes, so a request with several problems
gets the lowest code:

== ======================== ==========================================================
2  Invalid type             ``type`` not one of GSM, Unicode, Binary, Auto, Byte (any
                            case). A missing, null or empty ``type`` means GSM.
3  Empty message            ``text`` missing, null or empty.
4  Message text is invalid  ``text`` does not fit ``type``: characters outside GSM 03.38
                            with GSM, anything but an even number of hex digits with
                            Binary/Byte, or a value that is not a string.
5  Empty sender             ``from`` missing, null or empty.
6  Invalid sender           neither numeric (optional ``+`` then 3-14 digits) nor
                            alphanumeric (3-11 characters among ASCII letters, digits,
                            space and ``- _ . & ! ' # / , ( )``, not only digits, with at
                            least one letter or digit).
7  Empty receiver           ``to`` missing, null, empty, an empty list or a blank string.
8  Invalid receiver         a recipient is not E.164: optional ``+``, then 8-15 digits,
                            the first not 0. On ``/smsbulk`` one bad recipient rejects
                            the whole request; on ``/sms`` a list is invalid.
== ======================== ==========================================================

Numbers (JSON integers) are accepted where a string is expected, as a lenient
JSON deserializer would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django_mitto import encoding

__all__ = [
    "RESPONSE_TEXTS",
    "Accepted",
    "ValidationFailure",
    "is_valid_receiver",
    "is_valid_sender",
    "recipients_for_faults",
    "validate",
]

#: Mitto's ``responseText`` for each ``responseCode``.
RESPONSE_TEXTS: dict[int, str] = {
    0: "SMS sent",
    1: "Internal error",
    2: "Invalid type",
    3: "Empty message",
    4: "Message text is invalid",
    5: "Empty sender",
    6: "Invalid sender",
    7: "Empty receiver",
    8: "Invalid receiver",
    9: "Character set error",
}

_TYPES = frozenset({"gsm", "unicode", "binary", "auto", "byte"})
_NUMERIC_SENDER = re.compile(r"\+?[0-9]{3,14}")
_DIGITS_ONLY = re.compile(r"\+?[0-9]*")
_ALPHANUMERIC_SENDER = re.compile(r"[A-Za-z0-9 \-_.&!'#/,()]{3,11}")
_HAS_ALNUM = re.compile(r"[A-Za-z0-9]")
_RECEIVER = re.compile(r"\+?[1-9][0-9]{7,14}")


class ValidationFailure(Exception):
    """A request was refused with one of Mitto's response codes."""

    def __init__(self, code: int) -> None:
        super().__init__(RESPONSE_TEXTS[code])
        self.code = code
        self.text = RESPONSE_TEXTS[code]


@dataclass(frozen=True)
class Accepted:
    """What the sandbox keeps from a valid request."""

    recipients: tuple[str, ...]
    text: str
    encoding: str
    characters: int
    parts: int
    test: bool
    reference: str
    callback: str | None


def _scalar(value: Any) -> str | None:
    """Return a string for str/int values, None for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def is_valid_sender(sender: str) -> bool:
    """Tell whether ``sender`` is a valid numeric or alphanumeric sender ID."""
    if _DIGITS_ONLY.fullmatch(sender):
        return _NUMERIC_SENDER.fullmatch(sender) is not None
    return (
        _ALPHANUMERIC_SENDER.fullmatch(sender) is not None and _HAS_ALNUM.search(sender) is not None
    )


def is_valid_receiver(receiver: str) -> bool:
    """Tell whether ``receiver`` is an E.164 number (8-15 digits, optional ``+``)."""
    return _RECEIVER.fullmatch(receiver) is not None


def _recipients(value: Any, bulk: bool) -> tuple[str, ...]:
    if value is None or value == "" or value == []:
        raise ValidationFailure(7)
    if bulk:
        if isinstance(value, list):
            items = [_scalar(item) for item in value]
        else:
            single = _scalar(value)
            if single is None:
                raise ValidationFailure(8)
            if not single.strip():
                raise ValidationFailure(7)
            items = [item.strip() for item in single.split(",")]
    else:
        single = _scalar(value)
        if single is None:
            raise ValidationFailure(8)
        if not single.strip():
            raise ValidationFailure(7)
        items = [single]
    recipients: list[str] = []
    for item in items:
        if item is None or not is_valid_receiver(item):
            raise ValidationFailure(8)
        recipients.append(item)
    return tuple(recipients)


def validate(body: dict[str, Any], bulk: bool) -> Accepted:
    """Check a request body; raise :class:`ValidationFailure` with Mitto's code."""
    kind = body.get("type")
    if kind is None or kind == "":
        kind = "GSM"
    if not isinstance(kind, str) or kind.lower() not in _TYPES:
        raise ValidationFailure(2)
    requested = encoding.normalize_encoding(kind)

    raw_text = body.get("text")
    if raw_text is None or raw_text == "":
        raise ValidationFailure(3)
    text = _scalar(raw_text)
    if text is None:
        raise ValidationFailure(4)
    try:
        info = encoding.analyze(text, requested)
    except encoding.EncodingError:
        raise ValidationFailure(4) from None

    raw_sender = body.get("from")
    if raw_sender is None or raw_sender == "":
        raise ValidationFailure(5)
    sender = _scalar(raw_sender)
    if sender is None or not is_valid_sender(sender):
        raise ValidationFailure(6)

    recipients = _recipients(body.get("to"), bulk)

    test = body.get("test")
    reference = body.get("reference")
    callback = body.get("callback")
    return Accepted(
        recipients=recipients,
        text=text,
        encoding=info.encoding,
        characters=info.characters,
        parts=info.parts,
        test=test is True or (isinstance(test, str) and test.strip().lower() == "true"),
        reference="" if reference is None else str(reference),
        callback=callback.strip() if isinstance(callback, str) and callback.strip() else None,
    )


def recipients_for_faults(body: Any) -> frozenset[str]:
    """Best-effort recipients of a parsed body, normalized like fault recipients."""
    if not isinstance(body, dict):
        return frozenset()
    value = body.get("to")
    items: list[Any]
    if isinstance(value, list):
        items = value
    elif isinstance(value, str):
        items = value.split(",")
    elif value is None:
        return frozenset()
    else:
        items = [value]
    return frozenset(str(item).strip().lstrip("+") for item in items)
