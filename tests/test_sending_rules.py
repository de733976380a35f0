"""Rules of sending one message: who hears of a failure, the attempt limit, the unknown stamp."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from django_mitto import sending, services
from django_mitto.models import Message
from django_mitto.signals import message_failed
from tests.canned import Reply

pytestmark = pytest.mark.django_db(transaction=True)

ACCEPTED = {"responseCode": 0, "responseText": "SMS sent successfully."}


def test_a_refused_message_is_announced_to_receivers_of_the_message_class(canned_api) -> None:
    seen = []

    def on_failed(sender, message, error, **kwargs):
        seen.append((sender, message.pk, message.status, error.response_code))

    message_failed.connect(on_failed, sender=Message)
    try:
        canned_api.reply(Reply(400, {"responseCode": 8, "responseText": "Invalid sender"}))
        message = services.send_sms("+41791234567", "Hi")
    finally:
        message_failed.disconnect(on_failed, sender=Message)
    assert message.status == "failed"
    assert seen == [(Message, message.pk, "failed", 8)]


def test_attempt_claimed_gives_up_at_its_own_max_attempts(canned_api, settings) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    settings.MITTO_MAX_ATTEMPTS = 5
    created = Message.objects.create(recipient="+41791234567", text="Hi", sender="Shop")
    claimed = sending._claim(created.pk)
    assert claimed is not None and claimed.status == "sending"
    canned_api.reply(Reply(503, {"responseCode": 1, "responseText": "Busy"}))
    outcome = sending.attempt_claimed(claimed, max_attempts=1)
    assert not outcome.retry
    claimed.refresh_from_db()
    assert (claimed.status, claimed.attempts) == ("failed", 1)
    assert "1 attempt" in claimed.error
    assert len(canned_api.requests) == 1


def test_an_answer_that_cannot_be_stored_stamps_when_the_message_became_unknown(
    canned_api, monkeypatch
) -> None:
    answered_at = []

    def while_in_flight() -> None:
        time.sleep(0.01)
        answered_at.append(timezone.now())

    canned_api.reply(Reply(body={"id": "abc-3", **ACCEPTED}, before=while_in_flight))
    real = sending._answer_fields

    def unbounded(result, now, **kwargs):
        fields, note = real(result, now, **kwargs)
        fields["segments"] = -1  # a value the database refuses
        return fields, note

    monkeypatch.setattr(sending, "_answer_fields", unbounded)
    message = services.send_sms("+41791234567", "Hi")
    message.refresh_from_db()
    assert message.status == "unknown"
    assert "could not be stored" in message.error
    assert answered_at[0] <= message.status_changed_at <= timezone.now()


BUSY = {"responseCode": 1, "responseText": "Busy"}


def late_answer() -> Reply:
    """An answer that comes after the client's timeout: Mitto may have the message."""
    return Reply(body={"id": "late", **ACCEPTED}, before=lambda: time.sleep(1.0))


def test_a_busy_answer_is_kept_on_the_message_and_a_later_timeout_leaves_it(
    canned_api, settings
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    settings.MITTO_TIMEOUT = 0.3
    created = Message.objects.create(recipient="+41791234567", text="Hi", sender="Shop")
    canned_api.reply(Reply(503, BUSY), late_answer())
    first = sending.attempt_message(created.pk)
    assert first.retry
    created.refresh_from_db()
    assert (created.status, created.response_code, created.response_text) == ("queued", 1, "Busy")
    sending.attempt_message(created.pk)
    created.refresh_from_db()
    assert created.status == "unknown"
    assert "ReadTimeout" in created.error and "may have been sent" in created.error
    assert (created.response_code, created.response_text) == (1, "Busy")
    assert len(canned_api.requests) == 2


def test_a_chunk_answered_busy_then_timing_out_keeps_the_busy_answer(
    canned_api, settings, monkeypatch
) -> None:
    from django_mitto.backends import inline

    monkeypatch.setattr(inline.time, "sleep", lambda seconds: None)
    settings.MITTO_TIMEOUT = 0.3
    canned_api.reply(Reply(503, BUSY), late_answer())
    batch = services.send_bulk(["+41791234567", "+41791234568"], "Hi")
    rows = list(batch.messages.values_list("status", "response_code", "response_text", "error"))
    assert [row[:3] for row in rows] == [("unknown", 1, "Busy")] * 2
    assert all("may have been sent" in row[3] for row in rows)
    assert len(canned_api.requests) == 2
