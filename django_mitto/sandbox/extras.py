"""Mitto's endpoints besides sending, in the sandbox: conversion tracking and usage by country.

``POST /sms/converted`` (body ``{"messageId": "..."}``)
    200 (``"OK"``) for a message the sandbox accepted, and the message's record gets
    ``converted_at``; 404 with a JSON string for an unknown id (or the id of a record dropped
    already, beyond ``keep``); 400 with a JSON string when
    conversion tracking is off (``sandbox.conversion_enabled = False``, or
    ``PATCH /_sandbox/extras {"conversion_enabled": false}``), as Mitto answers for an account
    without the feature; 429 and the other faults through the usual fault list.
``POST /usage/bycountry`` (body ``{"startDate", "endDate", "accountName"}``)
    Usage computed from the messages the sandbox accepted and still keeps (``keep``; test calls
    excluded, as Mitto
    charges nothing for them), per ISO 3166-1 alpha-3 country: ``messagesCount`` (messages)
    and ``cost`` (parts times ``usage_price``), both as strings, like Mitto's documented
    fields. ``usage_shape`` chooses the form of the answer: ``"list"`` (default,
    ``[{"country", "messagesCount", "cost"}]``) or ``"object"`` (keyed by country), the two
    readings of Mitto's documentation. Dates are ``YYYY-MM-DD`` or ``YYYYMMDD``, both ends
    included, compared with the UTC date the message was accepted; a missing field gets 400
    naming it.
``GET|PATCH /_sandbox/extras``
    Read or change ``conversion_enabled``, ``usage_shape`` and ``usage_price``.

Both API endpoints check ``X-Mitto-API-Key`` like ``/sms`` (401) and take faults.
"""

from __future__ import annotations

import argparse
import datetime
import json
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from django_mitto.countries import country_of
from django_mitto.sandbox import faults as _faults

if TYPE_CHECKING:
    from django_mitto.sandbox.core import Sandbox
    from django_mitto.sandbox.server import SandboxRequestHandler

__all__ = ["ROUTES", "configure", "handle", "options", "usage_by_country"]

CONVERTED = "/sms/converted"
USAGE = "/usage/bycountry"
CONTROL = "/_sandbox/extras"

#: Paths this module answers (lower case, without a trailing slash).
ROUTES = frozenset({CONVERTED, USAGE, CONTROL})

FEATURE_OFF_TEXT = "Conversion rate tracking is not enabled for this customer account"

DEFAULTS: dict[str, Any] = {
    "conversion_enabled": True,
    "usage_shape": "list",
    "usage_price": "0.05",
}


def options(sandbox: Sandbox) -> dict[str, Any]:
    """The current extra settings of a sandbox (attributes, with their defaults)."""
    return {name: getattr(sandbox, name, default) for name, default in DEFAULTS.items()}


def _set_options(sandbox: Sandbox, values: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(values) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"Unknown setting(s): {', '.join(unknown)}")
    if "conversion_enabled" in values and not isinstance(values["conversion_enabled"], bool):
        raise ValueError("conversion_enabled must be true or false")
    if "usage_shape" in values and values["usage_shape"] not in ("list", "object"):
        raise ValueError('usage_shape must be "list" or "object"')
    if "usage_price" in values:
        try:
            price = Decimal(str(values["usage_price"]))
        except InvalidOperation:
            raise ValueError("usage_price must be a number") from None
        if not price.is_finite() or price < 0:
            raise ValueError("usage_price must be a non-negative number")
        values = {**values, "usage_price": str(price)}
    for name, value in values.items():
        setattr(sandbox, name, value)
    return options(sandbox)


def _date(value: Any) -> datetime.date | None:
    text = str(value or "").strip()
    for pattern in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    return None


def usage_by_country(
    sandbox: Sandbox, start: datetime.date, end: datetime.date
) -> dict[str, dict[str, Any]]:
    """Messages (not test calls) accepted between two UTC dates, both included, per country."""
    price = Decimal(str(options(sandbox)["usage_price"]))
    totals: dict[str, dict[str, Any]] = {}
    with sandbox._lock:
        records = [
            (r.to, r.received_at[:10], r.request.message_parts)
            for r in sandbox._messages
            if not r.request.test
        ]
    for number, day, parts in records:
        if not start.isoformat() <= day <= end.isoformat():
            continue
        row = totals.setdefault(country_of(number), {"messages": 0, "parts": 0})
        row["messages"] += 1
        row["parts"] += int(parts or 0)
    return {
        country: {
            "messagesCount": str(row["messages"]),
            "cost": str((price * row["parts"]).quantize(Decimal("0.0001"))),
        }
        for country, row in sorted(totals.items())
    }


def _convert(sandbox: Sandbox, data: Any) -> tuple[int, Any]:
    if not isinstance(data, dict):
        return 400, "The body must be a JSON object"
    message_id = data.get("messageId")
    if not isinstance(message_id, str) or not message_id.strip():
        return 400, "messageId is required"
    if not options(sandbox)["conversion_enabled"]:
        return 400, FEATURE_OFF_TEXT
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat()
    with sandbox._lock:
        record = sandbox._messages.find(message_id.strip())
        if record is not None:
            if record.converted_at is None:
                record.converted_at = stamp
            return 200, "OK"
    return 404, f'No convertible message found for id "{message_id.strip()}"'


def _usage(sandbox: Sandbox, data: Any) -> tuple[int, Any]:
    if not isinstance(data, dict):
        return 400, "The body must be a JSON object"
    for name in ("startDate", "endDate", "accountName"):
        if not str(data.get(name) or "").strip():
            return 400, f"{name} is required"
    start, end = _date(data["startDate"]), _date(data["endDate"])
    if start is None:
        return 400, "startDate must be YYYY-MM-DD or YYYYMMDD"
    if end is None:
        return 400, "endDate must be YYYY-MM-DD or YYYYMMDD"
    if end < start:
        return 400, "endDate is before startDate"
    by_country = usage_by_country(sandbox, start, end)
    if options(sandbox)["usage_shape"] == "object":
        return 200, by_country
    return 200, [{"country": country, **row} for country, row in by_country.items()]


def handle(
    handler: SandboxRequestHandler,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    keep_alive: bool,
) -> bool:
    """Answer one request to a path in :data:`ROUTES`; return True to keep the connection."""
    sandbox = handler.server.sandbox
    if path == CONTROL:
        if method == "GET":
            return handler._send_json(200, options(sandbox), keep_alive)
        if method in ("POST", "PATCH"):
            try:
                values = handler._json_object(body)
                current = _set_options(sandbox, values)
            except (TypeError, ValueError) as exc:
                return handler._send_json(400, {"error": str(exc)}, keep_alive)
            return handler._send_json(200, current, keep_alive)
        return handler._send_json(
            405, {"error": "Use GET or PATCH"}, keep_alive, b"Allow: GET, POST, PATCH\r\n"
        )
    if method != "POST":
        payload = {"responseCode": 405, "responseText": "Method not allowed"}
        return handler._reply(405, payload, "json", keep_alive, b"Allow: POST\r\n")
    faults = sandbox.faults
    lost: _faults.Fault | None = None
    if faults.active:
        latency, fault = faults.take(frozenset())
        if latency:
            sandbox.stopping.wait(latency)
        if fault is not None and fault.kind == _faults.TIMEOUT:
            lost = fault
        elif fault is not None:
            return handler._apply_fault(fault, "json", keep_alive)
    api_key = sandbox.api_key
    if api_key is not None and headers.get("x-mitto-api-key") != api_key:
        payload = {"responseCode": 401, "responseText": "Invalid or no API Key specified"}
        return handler._reply(401, payload, "json", keep_alive)
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    status, answer = (_convert if path == CONVERTED else _usage)(sandbox, data)
    if lost is not None:
        sandbox.stopping.wait(lost.seconds)
        return False
    return handler._send_json(status, answer, keep_alive)


def configure(sandbox: Sandbox, args: argparse.Namespace) -> dict[str, Any]:
    """Apply the command-line options of these endpoints (raises ``ValueError`` for a bad value)."""
    return _set_options(
        sandbox,
        {
            "conversion_enabled": not args.conversion_disabled,
            "usage_shape": args.usage_shape,
            "usage_price": args.usage_price,
        },
    )
