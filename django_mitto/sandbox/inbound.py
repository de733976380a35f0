"""Replies (MO messages) in the sandbox: pushed to the inbound URL like Mitto's two-way SMS.

``POST /_sandbox/inbound`` (body ``{"from": "+41791234567", "to": "DjangoMitto", "text":
"STOP"}``)
    Delivers one reply at once to the inbound URL as a JSON POST
    (``{"id", "from", "to", "text", "receivedAt"}``) and answers 200 with what happened
    (``http_status``, ``ok``, ``error``); 400 naming a missing field; 409 when no inbound URL
    is set.
``GET /_sandbox/inbound``
    The replies delivered so far (the last ``keep`` of them), with the outcome of each.
``PATCH /_sandbox/inbound``
    Change ``inbound_url`` and ``auto_reply`` at run time (``null`` turns either off).

With ``auto_reply`` set (``--auto-reply TEXT``), every message whose final status is
``delivered`` (not test calls) is answered with that text, from its recipient to its sender,
once its delivery report is due (``report_delay`` after it was accepted).
"""

from __future__ import annotations

import argparse
import datetime
import json
import threading
import urllib.error
import urllib.request
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

from django_mitto.sandbox import reports as _reports

if TYPE_CHECKING:
    from django_mitto.sandbox.core import Sandbox
    from django_mitto.sandbox.server import SandboxRequestHandler

__all__ = ["ROUTES", "after_send", "configure", "deliver", "handle", "options"]

INBOUND = "/_sandbox/inbound"

#: Paths this module answers (lower case, without a trailing slash).
ROUTES = frozenset({INBOUND})

DEFAULTS: dict[str, Any] = {"inbound_url": None, "auto_reply": None}

_lock = threading.Lock()


def options(sandbox: Sandbox) -> dict[str, Any]:
    """The current inbound settings of a sandbox."""
    return {name: getattr(sandbox, name, default) for name, default in DEFAULTS.items()}


def _set_options(sandbox: Sandbox, values: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(values) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"Unknown setting(s): {', '.join(unknown)}")
    url = values.get("inbound_url")
    if url is not None and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
        raise ValueError("inbound_url must be an http(s) URL or null")
    reply = values.get("auto_reply")
    if reply is not None and not (isinstance(reply, str) and reply):
        raise ValueError("auto_reply must be a text or null")
    for name, value in values.items():
        setattr(sandbox, name, value)
    return options(sandbox)


def _delivered(sandbox: Sandbox) -> deque[dict[str, Any]]:
    """The replies pushed so far: the last ``sandbox.keep`` of them."""
    with _lock:
        if not hasattr(sandbox, "_inbound_log"):
            sandbox._inbound_log = deque(maxlen=sandbox.keep)  # type: ignore[attr-defined]
        return sandbox._inbound_log  # type: ignore[attr-defined]


def deliver(sandbox: Sandbox, sender: str, recipient: str, text: str) -> dict[str, Any]:
    """POST one reply to the inbound URL now; return the record of what happened."""
    url = options(sandbox)["inbound_url"]
    reply = {
        "id": str(uuid.uuid4()),
        "from": sender,
        "to": recipient,
        "text": text,
        "receivedAt": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
    }
    record: dict[str, Any] = {"reply": reply, "url": url, "http_status": None, "error": None}
    request = urllib.request.Request(
        url,
        data=json.dumps(reply, ensure_ascii=False).encode("utf-8"),
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "django-mitto-sandbox"},
    )
    try:
        with _reports._opener.open(request, timeout=sandbox.callback_timeout) as response:
            response.read()
            record["http_status"] = response.status
    except urllib.error.HTTPError as exc:
        record["http_status"] = exc.code
        exc.close()
    except Exception as exc:  # network errors: recorded, never raised
        record["error"] = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
    record["ok"] = record["http_status"] is not None and 200 <= record["http_status"] < 300
    log = _delivered(sandbox)
    with _lock:
        log.append(record)
    if sandbox.log_requests:
        _reports_log(
            f"reply from {sender} -> POST {url} {record['http_status'] or record['error']}"
        )
    return record


def _reports_log(line: str) -> None:
    from django_mitto.sandbox.core import _log

    _log(line)


def after_send(sandbox: Sandbox) -> None:
    """Schedule the auto-replies to the messages accepted since the last call."""
    text = options(sandbox)["auto_reply"]
    if not text or not options(sandbox)["inbound_url"]:
        return
    with sandbox._lock:
        # Every record up to this sequence number is marked already: only newer ones are read.
        upto = getattr(sandbox, "_auto_replied_upto", 0)
        fresh = sandbox._messages.after(upto)
        for record in fresh:
            record.auto_replied = True
        if fresh:
            sandbox._auto_replied_upto = fresh[-1].seq  # type: ignore[attr-defined]
    for record in fresh:
        if record.request.test or _reports.final_status(record.to)[0] != _reports.DELIVERED:
            continue
        body = record.request.body if isinstance(record.request.body, dict) else {}
        timer = threading.Timer(
            sandbox.report_delay,
            deliver,
            (sandbox, "+" + record.to.lstrip("+"), str(body.get("from") or ""), text),
        )
        timer.daemon = True
        timer.start()


def handle(
    handler: SandboxRequestHandler,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    keep_alive: bool,
) -> bool:
    """Answer one request to ``/_sandbox/inbound``; return True to keep the connection."""
    sandbox = handler.server.sandbox
    if method == "GET":
        return handler._send_json(200, list(_delivered(sandbox)), keep_alive)
    try:
        data = handler._json_object(body)
    except ValueError as exc:
        return handler._send_json(400, {"error": str(exc)}, keep_alive)
    if method == "PATCH":
        try:
            return handler._send_json(200, _set_options(sandbox, data), keep_alive)
        except ValueError as exc:
            return handler._send_json(400, {"error": str(exc)}, keep_alive)
    if method != "POST":
        return handler._send_json(
            405, {"error": "Use GET, POST or PATCH"}, keep_alive, b"Allow: GET, POST, PATCH\r\n"
        )
    for name in ("from", "text"):
        if not isinstance(data.get(name), str) or not data[name].strip():
            return handler._send_json(400, {"error": f"{name} is required"}, keep_alive)
    if not options(sandbox)["inbound_url"]:
        return handler._send_json(
            409,
            {"error": "No inbound URL: start with --inbound-url or PATCH /_sandbox/inbound"},
            keep_alive,
        )
    record = deliver(sandbox, data["from"], str(data.get("to") or ""), data["text"])
    return handler._send_json(200, record, keep_alive)


def configure(sandbox: Sandbox, args: argparse.Namespace) -> dict[str, Any]:
    """Apply the reply options of the command line (raises ``ValueError`` for a bad value)."""
    return _set_options(
        sandbox, {"inbound_url": args.inbound_url or None, "auto_reply": args.auto_reply or None}
    )
