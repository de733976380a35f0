"""The delivery-report payload: field aliases, types and clear errors for bad input.

Also the helpers that turn a request's query string and body into storable data.
"""

from __future__ import annotations

import functools
import math
import re
from datetime import datetime, timezone
from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from .callbacks import ParsedReport

_SURROGATES = re.compile("[\ud800-\udfff]")

#: Accepted names for each field, compared case-insensitively; the first one present wins.
ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "msgid", "messageid"),
    "status": ("status", "deliverystatus"),
    "errorcode": ("errorcode",),
    "reference": ("reference",),
    "receiver": ("receiver", "to"),
    "mccmnc": ("mccmnc",),
    "mcc": ("mcc",),
    "mnc": ("mnc",),
    "sendtime": ("sendtime",),
    "sendtimestamp": ("sendtimestamp",),
}

#: 9999-12-31 23:59:59 UTC: the last second a datetime can hold.
MAX_EPOCH_SECONDS = 253402300799

#: Names that make a request a delivery report (a request with none of them is a ping).
REPORT_FIELDS = frozenset(name for names in ALIASES.values() for name in names)


#: The accepted field names, as the 400 answer to a request with none of them lists them.
EXPECTED_FIELDS = (
    "id (or msgid, messageId), status (or deliveryStatus), errorCode, reference, "
    "receiver (or to), mccmnc (or mcc and mnc), sendTime, sendTimestamp"
)


def json_safe(value: Any, depth: int = 0) -> Any:
    """A JSON-storable copy of the input: no NUL characters and no lone surrogates (which
    PostgreSQL refuses), no uploaded files, bounded depth."""
    if depth > 20:
        return None
    if isinstance(value, str):
        return _SURROGATES.sub("\ufffd", value.replace("\x00", "\ufffd"))
    if isinstance(value, dict):
        return {json_safe(str(k)): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, depth + 1) for v in value]
    if isinstance(value, float) and not math.isfinite(value):  # NaN, inf: not JSON
        return None
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return json_safe(f"<{type(value).__name__}>")


def flatten(querydict: Any) -> dict[str, Any]:
    """A plain dict of a QueryDict: a key's single value, or the list of its values."""
    out: dict[str, Any] = {}
    for key in querydict:
        values = querydict.getlist(key)
        out[key] = values[0] if len(values) == 1 else values
    return out


def field_list(data: dict[str, Any]) -> str:
    """The received field names, for an error message: sorted, shortened, at most 20."""
    names = sorted({json_safe(str(key))[:40] for key in data})
    shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
    return shown or "-"


def report_fields(query: dict[str, Any], body: dict[str, Any] | None) -> dict[str, Any]:
    """The report's fields under their canonical names; the body wins over the query string."""
    return {**resolve_aliases(query), **resolve_aliases(body or {})}


def resolve_aliases(data: dict[str, Any]) -> dict[str, Any]:
    """Map the incoming keys (any case, any alias) to the canonical field names."""
    lowered: dict[str, Any] = {}
    for key, value in data.items():
        lowered.setdefault(str(key).lower(), value)
    out: dict[str, Any] = {}
    for canonical, names in ALIASES.items():
        for name in names:
            if name in lowered:
                out[canonical] = lowered[name]
                break
    return out


class _Text(serializers.CharField):
    def __init__(self, max_length: int, **kwargs: Any) -> None:
        super().__init__(
            max_length=max_length, required=False, allow_blank=True, trim_whitespace=True, **kwargs
        )

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, float) and data.is_integer():
            data = int(data)
        value = super().to_internal_value(data)
        if _SURROGATES.search(value):
            raise serializers.ValidationError(_("Not valid Unicode text."))
        return value


class DeliveryReportSerializer(serializers.Serializer):
    """Validates one delivery report (already mapped to canonical names by :func:`resolve_aliases`)."""

    id = _Text(64)
    status = _Text(32)
    errorcode = _Text(32)
    reference = _Text(255)
    receiver = _Text(32)
    mccmnc = _Text(6)
    mcc = _Text(3)
    mnc = _Text(3)
    sendtime = _Text(40)
    sendtimestamp = _Text(20)

    def __init__(self, *args: Any, id_required: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.id_required = id_required

    @property
    def fields(self) -> Any:
        # The declared fields, bound once per class to an instance never used for validation:
        # they keep no state of their own between validations, and copying and binding ten
        # fields for every report took a tenth of the view's time.
        return _bound_fields(type(self))

    def validate_mccmnc(self, value: str) -> str:
        if value and (not (value.isascii() and value.isdecimal()) or len(value) < 4):
            raise serializers.ValidationError(
                _("mccmnc is the MCC (3 digits) followed by the MNC.")
            )
        return value

    def validate_mcc(self, value: str) -> str:
        if value and not (value.isascii() and value.isdecimal()):
            raise serializers.ValidationError(_("mcc must be digits."))
        return value

    def validate_mnc(self, value: str) -> str:
        if value and not (value.isascii() and value.isdecimal()):
            raise serializers.ValidationError(_("mnc must be digits."))
        return value

    def validate_sendtimestamp(self, value: str) -> str:
        if value and not (
            value.isascii() and value.isdecimal() and int(value) <= MAX_EPOCH_SECONDS
        ):
            raise serializers.ValidationError(_("sendtimestamp must be Unix epoch seconds."))
        return value

    def validate_sendtime(self, value: str) -> str:
        if value and _parse_sendtime(value) is None:
            raise serializers.ValidationError(
                _("sendtime must look like 2024-05-31 12:00:00 (UTC).")
            )
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors = {}
        if not attrs.get("status"):
            errors["status"] = [_("A delivery report needs a status.")]
        if self.id_required and not attrs.get("id"):
            errors["id"] = [_("A delivery report needs the message id (id, msgid or messageId).")]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def to_report(self, payload: dict[str, Any]) -> ParsedReport:
        data = self.validated_data
        mcc, mnc = data.get("mcc", ""), data.get("mnc", "")
        if data.get("mccmnc"):
            mcc, mnc = data["mccmnc"][:3], data["mccmnc"][3:]
        sent_at = None
        if data.get("sendtimestamp"):
            sent_at = datetime.fromtimestamp(int(data["sendtimestamp"]), tz=timezone.utc)
        elif data.get("sendtime"):
            sent_at = _parse_sendtime(data["sendtime"])
        return ParsedReport(
            provider_id=data.get("id", ""),
            status=data.get("status", ""),
            error_code=data.get("errorcode", ""),
            reference=data.get("reference", ""),
            recipient=data.get("receiver", ""),
            mcc=mcc,
            mnc=mnc,
            sent_at=sent_at,
            payload=payload,
        )


@functools.lru_cache(maxsize=8)
def _bound_fields(serializer_class: type[serializers.Serializer]) -> Any:
    """``serializer_class``'s fields, bound to an instance of it made for this purpose only."""
    instance = serializer_class()
    # DRF's own ``fields`` (a cached property), read past the override below it.
    return serializers.Serializer.fields.__get__(instance, serializer_class)


def _parse_sendtime(value: str) -> datetime | None:
    text = value.strip().replace("T", " ").rstrip("Z")
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    return None
