"""No callback secret or token ever reaches a log record (issue 8, item 5)."""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pytest
from django.test import Client

from django_mitto import callbacks
from django_mitto.models import Batch, DeliveryReport, Message, Status
from tests.test_views import SECRET, callback_url, post_form, post_json


class Everything(logging.Handler):
    """Keeps every record, formatted the way a handler would print it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        # Whatever else a handler could print: the request a record carries (django.request,
        # django.security, django.server), the exception, every extra attribute.
        request = getattr(record, "request", None)
        extra = {k: repr(v) for k, v in vars(record).items() if k not in ("msg", "args")}
        path = getattr(request, "get_full_path", lambda: "")()
        self.lines.append(f"{text} {path} {json.dumps(extra)}")


@pytest.fixture
def captured() -> Iterator[Everything]:
    handler = Everything()
    names = [None, *logging.root.manager.loggerDict]
    loggers = [logging.getLogger(name) for name in names]
    loggers = [lg for lg in loggers if isinstance(lg, logging.Logger)]
    saved = [(lg, lg.level, lg.disabled) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
        lg.disabled = False
    # Loggers created during the test (django.request is made on first use) start at NOTSET
    # and so log at DEBUG through the root, where the handler also is.
    yield handler
    for lg, level, disabled in saved:
        lg.removeHandler(handler)
        lg.setLevel(level)
        lg.disabled = disabled


def _minted_ago(seconds: float, make: Callable[[int], str], pk: int) -> str:
    with mock.patch("time.time", return_value=time.time() - seconds):
        return make(pk)


def test_no_token_or_secret_in_any_log_record(
    client: Client, make_message: Callable[..., Message], settings: Any, captured: Everything
) -> None:
    client.raise_request_exception = False
    # DEBUG: django.db.backends logs every SQL statement with its parameters, and a URL
    # without its trailing slash would meet APPEND_SLASH's strictest form.
    settings.DEBUG = True
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4000
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 50
    settings.MITTO_CALLBACK_TOKEN_MAX_AGE = 3600
    known = make_message(provider_id="known-id")
    pending = make_message(status=Status.SENDING)
    gone = make_message(provider_id="gone-id")
    batch = Batch.objects.create(text="Hello", total=1)
    make_message(provider_id="batch-id", batch=batch)

    good = {
        "secret": SECRET,
        "message": callbacks.message_token(pending),
        "known": callbacks.message_token(known),
        "batch": callbacks.batch_token(batch),
    }
    gone_token = callbacks.message_token(gone)
    gone.delete()
    bad = {
        "wrong": "wrong-secret-value",
        "forged": f"m{known.pk}.not-a-signature-at-all",
        "expired": _minted_ago(7200, callbacks.message_token, pending.pk),
        "other": callbacks.message_token(known).replace(f"m{known.pk}.", f"m{pending.pk}."),
        "deleted": gone_token,
    }
    bodies: list[tuple[str, Callable[[Client, str], Any]]] = [
        ("good", lambda c, u: c.get(u, {"id": "known-id", "status": "delivered"})),
        ("unknown id", lambda c, u: c.get(u, {"id": "nobody", "status": "delivered"})),
        ("json", lambda c, u: post_json(c, u, {"msgid": "batch-id", "status": "DELIVRD"})),
        ("form", lambda c, u: post_form(c, u, {"id": "known-id", "status": "weird-word"})),
        ("no fields", lambda c, u: post_json(c, u, {"state": "x"})),
        ("not json", lambda c, u: c.post(u, "{", content_type="application/json")),
        ("list", lambda c, u: c.post(u, "[1]", content_type="application/json")),
        ("bad field", lambda c, u: c.get(u, {"id": "known-id", "status": "x", "mcc": "ab"})),
        ("too big", lambda c, u: post_json(c, u, {"id": "known-id", "note": "x" * 5000})),
        ("too many", lambda c, u: post_form(c, u, {f"k{i}": "v" for i in range(60)})),
        ("many query", lambda c, u: c.get(u, {f"k{i}": "v" for i in range(60)})),
        ("text", lambda c, u: c.post(u, "id=1&status=x", content_type="text/plain")),
        ("ping", lambda c, u: c.get(u)),
        ("head", lambda c, u: c.head(u)),
        ("put", lambda c, u: c.put(u, "{}", content_type="application/json")),
        ("no slash", lambda c, u: c.get(u.rstrip("/"), {"id": "known-id", "status": "sent"})),
    ]
    tokens = {**good, **bad}
    seen: set[int] = set()
    requests = 0
    for (_, token), (_, send) in itertools.islice(
        itertools.cycle(itertools.product(tokens.items(), bodies)), 208
    ):
        response = send(client, callback_url(token))
        seen.add(response.status_code)
        assert response.status_code in (200, 400, 403, 405), response.content
        requests += 1
    assert requests >= 200
    assert {200, 400, 403} <= seen
    assert DeliveryReport.objects.filter(outcome=DeliveryReport.Outcome.UNPARSED).exists()
    loggers = {line.split()[0] for line in captured.lines}
    assert {"django_mitto.callbacks", "django.db.backends"} <= loggers, loggers
    secrets = {SECRET, *tokens.values()}
    secrets |= {t.rsplit(".", 1)[-1] for t in tokens.values() if "." in t}
    for line in captured.lines:
        for secret in secrets:
            assert secret not in line, line


def test_refused_callback_is_still_logged_without_its_token(
    client: Client, db: None, captured: Everything
) -> None:
    response = client.get(callback_url("wrong-secret-value"), {"id": "x", "status": "delivered"})
    assert response.status_code == 403
    refused = [line for line in captured.lines if line.startswith("django_mitto.callbacks")]
    assert refused and "refused" in refused[0]
    assert not any("wrong-secret-value" in line for line in captured.lines)


def test_unforeseen_error_is_answered_503_and_logged_without_the_path(
    client: Client, make_message: Callable[..., Message], captured: Everything
) -> None:
    from django.db import DatabaseError

    make_message(provider_id="known-id")
    client.raise_request_exception = False
    # The database failing mid-report: a fault the sandbox cannot produce.
    with mock.patch("django_mitto.views.record_report", side_effect=DatabaseError("down")):
        response = client.get(callback_url(), {"id": "known-id", "status": "delivered"})
    assert response.status_code == 503  # Mitto retries later; nothing was stored
    assert response["Retry-After"] == "60"
    assert any("could not be handled" in line for line in captured.lines)
    assert not any(SECRET in line for line in captured.lines)
