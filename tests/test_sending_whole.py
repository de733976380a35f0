"""Rules of the send service's writes: its own row only, while still ours; answers kept."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection as thread_connection
from django.utils import timezone

from django_mitto import sending, services
from django_mitto.callbacks import ParsedReport, record_report
from django_mitto.models import Message
from tests.canned import Reply
from tests.conftest import announced_failures, queued_batch

pytestmark = pytest.mark.django_db(transaction=True)

ACCEPTED = {"responseCode": 0, "responseText": "SMS sent successfully."}
REFUSED = {"responseCode": 8, "responseText": "Invalid sender"}
BAD_GATEWAY = "<html>Bad gateway</html>"


def _queued(n: int, **fields) -> Message:
    """A message stored ``queued`` and not handed to the task backend (MITTO_SEND_ON_SAVE off)."""
    return Message.objects.create(recipient=f"+4179123456{n}", text="Hi", sender="Shop", **fields)


def _report_on_its_own_url(message: Message, provider_id: str) -> None:
    """A delivery report on the message's own callback URL (runs in the server's thread)."""
    record_report(
        ParsedReport(provider_id=provider_id, status="Delivered", payload={"query": {}}),
        method="POST",
        remote_addr=None,
        message_pk=message.pk,
    )
    thread_connection.close()


# -- a single message: only its own row, and only while it is still ours --------------------------


def test_a_refused_message_fails_alone_leaving_another_workers_message_sending(
    canned_api, settings
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    message = _queued(1)
    elsewhere = _queued(2)
    Message.objects.filter(pk=elsewhere.pk).update(status="sending")  # claimed by another worker
    canned_api.reply(Reply(400, REFUSED))
    outcome = sending.attempt_message(message.pk)
    assert (outcome.message.status, outcome.message.response_code) == ("failed", 8)
    elsewhere.refresh_from_db()
    assert (elsewhere.status, elsewhere.error, elsewhere.response_code) == ("sending", "", None)


def _flagged_stuck() -> None:
    """mitto_dispatch's mark_stuck_unknown while Mitto is slow (runs in the server's thread)."""
    sending.mark_stuck_unknown(dt.timedelta(0))
    thread_connection.close()


def test_a_refusal_that_comes_after_the_message_was_flagged_stuck_keeps_the_flag(
    canned_api, settings
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    message = _queued(1)

    canned_api.reply(Reply(400, REFUSED, before=_flagged_stuck))
    with announced_failures() as failed:
        sending.attempt_message(message.pk)
    message.refresh_from_db()
    assert (message.status, message.error) == ("unknown", sending.STUCK_ERROR)
    assert failed == []  # it did not fail: nobody is told it did
    assert len(canned_api.requests) == 1


def test_a_busy_answer_after_the_message_was_flagged_stuck_does_not_queue_it_again(
    canned_api, settings
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    message = _queued(1)

    canned_api.reply(Reply(503, {"responseCode": 1, "responseText": "Busy"}, before=_flagged_stuck))
    sending.attempt_message(message.pk)
    message.refresh_from_db()
    # Someone may be checking it: queued again, it would be sent a second time.
    assert (message.status, message.error) == ("unknown", sending.STUCK_ERROR)


def test_a_refused_chunk_announces_only_the_rows_it_failed(canned_api, settings) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    batch, (flagged, other) = queued_batch("+41791234561", "+41791234562")

    def one_flagged_stuck() -> None:  # someone flags one row while Mitto is slow
        Message.objects.filter(pk=flagged.pk).update(
            status="unknown", error=sending.STUCK_ERROR, status_changed_at=timezone.now()
        )
        thread_connection.close()

    canned_api.reply(Reply(400, REFUSED, before=one_flagged_stuck))
    with announced_failures() as failed:
        sending.attempt_chunk(batch, [flagged.pk, other.pk])
    status = dict(Message.objects.values_list("pk", "status"))
    assert (status[flagged.pk], status[other.pk]) == ("unknown", "failed")
    assert failed == [(other.pk, "failed")]


def test_a_refused_chunk_whose_row_was_deleted_meanwhile_announces_the_others(
    canned_api, settings
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    batch, (deleted, other) = queued_batch("+41791234561", "+41791234562")

    def one_deleted() -> None:  # the retention purge, or someone in the admin
        Message.objects.filter(pk=deleted.pk).delete()
        thread_connection.close()

    canned_api.reply(Reply(400, REFUSED, before=one_deleted))
    with announced_failures() as failed:
        sending.attempt_chunk(batch, [deleted.pk, other.pk])
    assert list(Message.objects.values_list("pk", "status")) == [(other.pk, "failed")]
    assert failed == [(other.pk, "failed")]


def test_a_report_that_came_while_the_answer_was_lost_is_not_overwritten_as_unknown(
    canned_api, settings
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    message = _queued(1)
    canned_api.reply(
        Reply(
            502,
            BAD_GATEWAY,
            content_type="text/html",
            before=lambda: _report_on_its_own_url(message, "m-1"),
        )
    )
    outcome = sending.attempt_message(message.pk)
    assert not outcome.retry
    message.refresh_from_db()
    assert (message.status, message.error) == ("delivered", "")


# -- Mitto's code and text ----------------------------------------------------------------------


def test_an_answer_without_response_code_keeps_its_body_as_the_response_text(
    canned_api, settings
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    message = _queued(1)
    canned_api.reply(Reply(502, BAD_GATEWAY, content_type="text/html"))
    sending.attempt_message(message.pk)
    message.refresh_from_db()
    assert message.status == "unknown"
    assert (message.response_code, message.response_text) == (None, BAD_GATEWAY)


def test_a_chunk_answered_without_response_code_keeps_the_body_as_the_response_text(
    canned_api, settings
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    batch, members = queued_batch("+41791234561", "+41791234562")
    canned_api.reply(Reply(502, BAD_GATEWAY, content_type="text/html"))
    sending.attempt_chunk(batch, [m.pk for m in members])
    rows = list(batch.messages.values_list("status", "response_code", "response_text"))
    assert rows == [("unknown", None, BAD_GATEWAY)] * 2


# -- an answer that cannot be stored ----------------------------------------------------------------


def test_an_unstorable_answer_ends_its_error_asking_to_check_before_sending_again(
    canned_api, settings
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    _queued(0, status="sent", provider_id="dup-1")
    message = _queued(1)
    canned_api.reply(Reply(body={"id": "dup-1", **ACCEPTED}))
    sending.attempt_message(message.pk)
    message.refresh_from_db()
    assert message.status == "unknown"
    assert message.error.endswith(
        ". Mitto accepted the request (responseCode 0): check before sending it again."
    ), message.error


def test_an_answer_refused_by_the_database_never_names_the_message_itself_as_the_ids_owner(
    canned_api, settings, monkeypatch
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    message = _queued(1)

    def stuck_then_reported() -> None:
        # While Mitto is slow, mitto_dispatch flags the message stuck, then a report on its own
        # URL gives it its Mitto id: the answer then brings an id the message already has.
        sending.mark_stuck_unknown(dt.timedelta(0))
        _report_on_its_own_url(message, "m-1")

    canned_api.reply(Reply(body={"id": "m-1", **ACCEPTED}, before=stuck_then_reported))
    real = sending._answer_fields

    def refused(result, now, **kwargs):
        fields, note = real(result, now, **kwargs)
        fields["segments"] = -1  # a value the database refuses (a constraint: IntegrityError)
        return fields, note

    monkeypatch.setattr(sending, "_answer_fields", refused)
    sending.attempt_message(message.pk)
    message.refresh_from_db()
    assert (message.status, message.provider_id) == ("delivered", "m-1")
    assert message.error.startswith("Mitto's answer could not be stored (IntegrityError)."), (
        message.error
    )
    assert "already has" not in message.error


# -- bulk answers ---------------------------------------------------------------------------------


def test_a_bulk_answer_whose_items_name_no_number_is_paired_with_the_recipients_in_order(
    canned_api, settings
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    batch, members = queued_batch("+41791234561", "+41791234562")
    canned_api.reply(Reply(body={**ACCEPTED, "ids": ["a-1", "b-2"]}))
    sending.attempt_chunk(batch, [m.pk for m in members])
    rows = dict(batch.messages.values_list("recipient", "provider_id"))
    assert rows == {"+41791234561": "a-1", "+41791234562": "b-2"}
    assert set(batch.messages.values_list("status", flat=True)) == {"sent"}


def test_the_rows_of_a_chunk_stored_one_by_one_are_stamped_when_they_were_sent(
    canned_api, settings
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    numbers = ["+41791234561", "+41791234562", "+41791234563"]
    batch, members = queued_batch(*numbers)
    items = [
        {"id": "ok-1", "to": "41791234561"},
        {"id": "twice", "to": "41791234562"},  # the same id twice: stored row by row
        {"id": "twice", "to": "41791234563"},
    ]
    canned_api.reply(Reply(body={**ACCEPTED, "messages": items}))
    before = timezone.now()
    sending.attempt_chunk(batch, [m.pk for m in members])
    rows = {m.recipient: m for m in batch.messages.all()}
    assert (rows[numbers[0]].status, rows[numbers[0]].provider_id) == ("sent", "ok-1")
    assert {rows[n].status for n in numbers[1:]} == {"sent", "unknown"}
    for row in rows.values():
        assert row.status_changed_at is not None, row.recipient
        assert before <= row.status_changed_at <= timezone.now()


def test_a_chunk_with_nothing_left_to_claim_names_its_batch(settings) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    batch, members = queued_batch("+41791234561", "+41791234562")
    Message.objects.filter(batch=batch).update(status="sent")  # sent by another worker
    outcome = sending.attempt_chunk(batch, [m.pk for m in members])
    assert (outcome.batch_pk, outcome.ids, outcome.retry) == (batch.pk, [], False)


# -- mark_stuck_unknown ---------------------------------------------------------------------------


def test_mark_stuck_unknown_leaves_a_message_sending_for_less_than_the_age_given(
    make_message,
) -> None:
    recent = make_message(status="sending")
    Message.objects.filter(pk=recent.pk).update(
        status_changed_at=timezone.now() - dt.timedelta(minutes=10)
    )
    assert services.mark_stuck_unknown(dt.timedelta(minutes=30)) == 0
    recent.refresh_from_db()
    assert (recent.status, recent.error) == ("sending", "")
