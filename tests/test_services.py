from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import types

import pytest
import requests
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models.signals import post_save
from django.utils import timezone

from django_mitto import sending, services
from django_mitto.backends import inline
from django_mitto.models import Batch, DeliveryReport, Message, OptOut
from django_mitto.signals import message_failed, message_sent
from tests.conftest import queued_batch

# Transactional: on_commit callbacks run as in production (the send happens after commit).
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def captured_signals():
    seen: dict[str, list] = {"sent": [], "failed": []}

    def on_sent(sender, message, result, **kwargs):
        seen["sent"].append((message.pk, result.id))

    def on_failed(sender, message, error, **kwargs):
        seen["failed"].append((message.pk, error))

    message_sent.connect(on_sent)
    message_failed.connect(on_failed)
    yield seen
    message_sent.disconnect(on_sent)
    message_failed.disconnect(on_failed)


def test_send_sms_sends_once_and_records_the_answer(mitto_sandbox, captured_signals) -> None:
    message = services.send_sms("+41 79 123 45 67", "Hello, World!", reference="order-1")
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert message.recipient == "+41791234567"
    (received,) = mitto_sandbox.messages
    assert message.provider_id == received["id"]
    assert received["body"]["from"] == "DjangoMitto"
    assert received["body"]["reference"] == "order-1"
    assert received["body"]["type"] == "GSM"
    assert message.response_code == 0
    assert message.response_text == "SMS sent"
    assert (message.text_length, message.segments) == (13, 1)
    assert message.sent_at is not None
    assert message.attempts == 1
    assert captured_signals["sent"] == [(message.pk, received["id"])]


def _statements(run):
    """The SQL statements ``run()`` executes, and how many transactions that write it commits
    (an autocommitted write, or the end of an ``atomic`` block)."""
    seen: list[str] = []
    commits = 0

    def execute(call, sql, params, many, context):
        nonlocal commits
        seen.append(sql)
        if not connection.in_atomic_block and not sql.lstrip().upper().startswith("SELECT"):
            commits += 1
        return call(sql, params, many, context)

    real_commit = connection.commit

    def commit():
        nonlocal commits
        commits += 1
        real_commit()

    connection.ensure_connection()
    connection.commit = commit
    try:
        with connection.execute_wrapper(execute):
            result = run()
    finally:
        del connection.commit
    return result, seen, commits


def test_send_sms_costs_three_queries_and_two_commits(mitto_sandbox) -> None:
    message, seen, commits = _statements(lambda: services.send_sms("+41791234567", "Hi"))
    verbs = [sql.split()[0].upper() for sql in seen]
    # The insert (the row created claimed, unless the number opted out), the answer, and, once
    # that is committed, the look for reports that came on the account URL before the id was
    # known.
    assert verbs == ["INSERT", "UPDATE", "SELECT"]
    assert "NOT EXISTS" in seen[0].upper()
    assert commits == 2
    assert message.status == "sent"


def test_send_sms_with_its_own_callback_url_costs_two_queries(mitto_sandbox, settings) -> None:
    settings.MITTO_CALLBACK_BASE_URL = "https://example.com"
    message, seen, commits = _statements(lambda: services.send_sms("+41791234567", "Hi"))
    assert message.status == "sent"
    # Its reports come on its own URL, which names it: none can wait for the id.
    assert [sql.split()[0].upper() for sql in seen] == ["INSERT", "UPDATE"]
    assert commits == 2
    assert mitto_sandbox.messages[0]["body"]["callback"].startswith("https://example.com/")


def test_opted_out_number_is_refused_by_the_insert_itself(mitto_sandbox) -> None:
    OptOut.objects.create(number="+41791234567")
    received = []

    def on_save(sender, instance, created, **kwargs):
        received.append(created)

    def send():
        with pytest.raises(ValidationError) as raised:
            services.send_sms("+41 79 123 45 67", "Hi")
        return raised.value

    post_save.connect(on_save, sender=Message)
    try:
        raised, seen, commits = _statements(send)
    finally:
        post_save.disconnect(on_save, sender=Message)
    assert "opted out" in str(raised.message_dict["recipient"])
    assert [sql.split()[0].upper() for sql in seen] == ["INSERT"]
    assert commits == 1
    assert received == []
    assert not Message.objects.exists()
    assert mitto_sandbox.messages == []


def test_message_returned_by_send_sms_is_the_row_as_stored(mitto_sandbox) -> None:
    message = services.send_sms("+41 79 123 45 67", "Grüße ✓", reference="r-1")
    stored = Message.objects.get(pk=message.pk)
    for field in Message._meta.concrete_fields:
        assert getattr(message, field.attname) == getattr(stored, field.attname), field.name
    assert (stored.country, stored.encoding, stored.segments) == ("CHE", "Unicode", 1)


def test_report_that_came_before_the_answer_is_applied_and_returned(mitto_sandbox) -> None:
    # A report on the account URL for the id the answer will carry, stored before the answer.
    from django_mitto.callbacks import ParsedReport, record_report

    mitto_sandbox.add_fault("latency", seconds=0.0)
    original = sending._write_sent

    def report_first(message, result, fields, now, **kwargs):
        record_report(
            ParsedReport(provider_id=result.id, status="Delivered"), method="POST", remote_addr=None
        )
        return original(message, result, fields, now, **kwargs)

    sending._write_sent = report_first
    try:
        message = services.send_sms("+41791234567", "Hi")
    finally:
        sending._write_sent = original
    assert message.status == "delivered"
    assert Message.objects.get(pk=message.pk).status == "delivered"


def test_saving_a_new_message_sends_it_after_commit(mitto_sandbox) -> None:
    with transaction.atomic():
        message = Message.objects.create(recipient="+41791234567", text="Hi", sender="Shop")
        assert mitto_sandbox.messages == []
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert len(mitto_sandbox.messages) == 1


def test_saving_an_existing_message_sends_nothing_more(mitto_sandbox) -> None:
    message = Message.objects.create(recipient="+41791234567", text="Hi", sender="Shop")
    message.metadata = {"note": "edited"}
    message.save()
    assert len(mitto_sandbox.messages) == 1


@pytest.mark.django_db(transaction=True)
def test_rolled_back_save_sends_nothing(mitto_sandbox) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        Message.objects.create(recipient="+41791234567", text="Hi", sender="Shop")
        raise RuntimeError("rollback")
    assert Message.objects.count() == 0
    assert mitto_sandbox.messages == []


def test_send_on_save_off_leaves_created_messages_queued(mitto_sandbox, settings) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    queued = Message.objects.create(recipient="+41791234567", text="Hi", sender="Shop")
    sent = services.send_sms("+41791234568", "Hi")
    queued.refresh_from_db()
    sent.refresh_from_db()
    assert queued.status == Message.Status.QUEUED
    assert sent.status == Message.Status.SENT
    assert [m["to"] for m in mitto_sandbox.messages] == ["41791234568"]


def test_send_message_on_a_message_already_sent_does_nothing(mitto_sandbox) -> None:
    message = services.send_sms("+41791234567", "Hi")
    again = services.send_message(message.pk)
    assert again.status == Message.Status.SENT
    assert len(mitto_sandbox.messages) == 1


def test_test_mode_marks_every_request_as_a_test(mitto_sandbox, settings) -> None:
    settings.MITTO_TEST_MODE = True
    message = services.send_sms("+41791234567", "Hi")
    message.refresh_from_db()
    assert message.test is True
    assert mitto_sandbox.messages[0]["body"]["test"] is True


def test_test_mode_marks_a_bulk_send_as_a_test(mitto_sandbox, settings) -> None:
    settings.MITTO_TEST_MODE = True
    batch = services.send_bulk(["+41791234567", "+41791234568"], "Hi")
    assert batch.test is True
    assert set(batch.messages.values_list("test", flat=True)) == {True}
    assert mitto_sandbox.messages[0]["body"]["test"] is True


def test_auto_encoding_resolves_and_counts_parts(mitto_sandbox) -> None:
    message = services.send_sms("+41791234567", "Grüezi 😀 " * 10)
    message.refresh_from_db()
    assert message.encoding == Message.Encoding.UNICODE
    assert message.segments == 2
    assert mitto_sandbox.messages[0]["body"]["type"] == "Unicode"


def test_per_message_callback_url_is_sent_when_base_url_is_set(mitto_sandbox, settings) -> None:
    settings.MITTO_CALLBACK_BASE_URL = "https://shop.example.com"
    message = services.send_sms("+41791234567", "Hi")
    callback = mitto_sandbox.messages[0]["body"]["callback"]
    assert callback.startswith(f"https://shop.example.com/mitto/callback/m{message.pk}.")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"recipient": "12"}, "recipient"),
        ({"recipient": "0791234567"}, "recipient"),
        ({"sender": "A"}, "sender"),
        ({"sender": "123456789012345"}, "sender"),
        ({"text": ""}, "text"),
        ({"text": "😀", "encoding": "GSM"}, "text"),
        ({"text": "abc", "encoding": "Binary"}, "text"),
        ({"encoding": "Morse"}, "encoding"),
        ({"udh": "XYZ"}, "udh"),
        ({"validity": -1}, "validity"),
        ({"pid": 300}, "pid"),
    ],
)
def test_invalid_input_is_refused_naming_the_field(mitto_sandbox, kwargs, field) -> None:
    args = {"recipient": "+41791234567", "text": "Hi", **kwargs}
    with pytest.raises(ValidationError) as info:
        services.send_sms(args.pop("recipient"), args.pop("text"), **args)
    assert field in info.value.message_dict
    assert Message.objects.count() == 0
    assert mitto_sandbox.messages == []


def test_no_sender_and_no_default_sender_is_refused_naming_the_setting(
    mitto_sandbox, settings
) -> None:
    settings.MITTO_DEFAULT_SENDER = ""
    for send, recipients in (
        (services.send_sms, "+41791234567"),
        (services.send_bulk, ["+41791234567"]),
    ):
        with pytest.raises(ValidationError) as info:
            send(recipients, "Hi")
        assert [(e.message, e.code) for e in info.value.error_dict["sender"]] == [
            ("Enter a sender, or set MITTO_DEFAULT_SENDER.", "required")
        ]
    assert (Message.objects.count(), Batch.objects.count()) == (0, 0)
    assert mitto_sandbox.messages == []


def test_national_number_uses_the_default_region(mitto_sandbox, settings) -> None:
    settings.MITTO_DEFAULT_REGION = "ch"
    message = services.send_sms("079 123 45 67", "Hi")
    assert message.recipient == "+41791234567"


def test_refusal_marks_the_message_failed_with_the_reason(
    mitto_sandbox, settings, captured_signals
) -> None:
    settings.MITTO_DEFAULT_SENDER = ""
    message = Message.objects.create(recipient="+41791234567", text="Hi", sender="")
    services.send_message(message)
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert "sender" in message.error
    assert mitto_sandbox.messages == []
    assert [pk for pk, _ in captured_signals["failed"]] == [message.pk]


def test_api_refusal_keeps_code_and_text(mitto_sandbox, settings, captured_signals) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    message = Message.objects.create(recipient="+4179", text="Hi", sender="Shop")  # not validated
    services.send_message(message)
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert "recipient" in message.error


def test_wrong_api_key_fails_with_a_clear_error(mitto_sandbox, settings, captured_signals) -> None:
    settings.MITTO_API_KEY = "wrong"
    message = services.send_sms("+41791234567", "Hi")
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert "HTTP 401" in message.error
    assert "MITTO_API_KEY" in message.error
    assert "wrong" not in message.error.replace("wrong-key", "")
    assert len(captured_signals["failed"]) == 1


def test_timeout_after_the_request_was_read_leaves_the_message_unknown(
    mitto_sandbox, settings
) -> None:
    settings.MITTO_TIMEOUT = 0.3
    mitto_sandbox.add_fault("timeout", seconds=1.5)
    message = services.send_sms("+41791234567", "Hi")
    message.refresh_from_db()
    assert message.status == Message.Status.UNKNOWN
    assert message.error.startswith("POST /sms: ReadTimeout (Mitto may have received the request).")
    assert message.error.endswith(sending.MAY_HAVE_BEEN_SENT)
    assert "may have been sent" in message.error
    services.send_message(message)  # never resent blindly
    assert len(mitto_sandbox.messages) == 1
    message.refresh_from_db()
    assert message.attempts == 1


def test_retryable_answer_is_retried_then_sent(mitto_sandbox) -> None:
    mitto_sandbox.add_fault("503", times=1)
    message = services.send_sms("+41791234567", "Hi")
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert message.attempts == 2
    assert len(mitto_sandbox.messages) == 1


def test_a_message_put_back_to_retry_stamps_when_its_status_changed(
    mitto_sandbox, settings
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    message = Message.objects.create(recipient="+41791234567", text="Hi", sender="Shop")
    mitto_sandbox.add_fault("503", times=1)
    before = timezone.now()
    outcome = services.attempt_message(message.pk)
    assert outcome.retry
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("queued", 1)
    assert before <= message.status_changed_at <= timezone.now()


def test_429_waits_for_retry_after(mitto_sandbox, monkeypatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(inline.time, "sleep", waits.append)
    mitto_sandbox.add_fault("429", times=1, retry_after=1)
    message = services.send_sms("+41791234567", "Hi")
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert waits == [1.0]


def test_unreachable_mitto_is_retried_then_fails(settings, monkeypatch, captured_signals) -> None:
    monkeypatch.setattr(inline.time, "sleep", lambda s: None)
    settings.MITTO_API_URL = "http://127.0.0.1:9"
    message = services.send_sms("+41791234567", "Hi")
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.attempts == 3
    assert "Gave up after 3 attempts" in message.error
    assert len(captured_signals["failed"]) == 1


def test_missing_api_key_fails_the_message_with_the_setting_named(settings) -> None:
    settings.MITTO_API_KEY = ""
    message = services.send_sms("+41791234567", "Hi")
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert "MITTO_API_KEY" in message.error


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_threads_sending_the_same_message_make_one_request(mitto_sandbox, settings) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    message = Message.objects.create(recipient="+41791234567", text="Hi", sender="Shop")
    mitto_sandbox.add_fault("latency", seconds=0.2)
    barrier = threading.Barrier(2)
    results: list[str] = []

    def worker() -> None:
        try:
            barrier.wait()
            results.append(services.send_message(message.pk).status)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(mitto_sandbox.messages) == 1
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert message.attempts == 1
    assert sorted(results) == ["sending", "sent"]


# -- bulk -----------------------------------------------------------------------------------------


def test_send_bulk_sends_in_chunks_and_records_each_id(mitto_sandbox, settings) -> None:
    settings.MITTO_BULK_CHUNK_SIZE = 2
    numbers = [f"+4179123456{i}" for i in range(5)]
    batch = services.send_bulk(numbers, "Sale today", reference="promo")
    batch.refresh_from_db()
    assert batch.total == 5
    assert batch.completed_at is not None
    paths = [m["path"] for m in mitto_sandbox.messages]
    assert paths.count("/smsbulk") == 5
    assert len({m["body"]["to"].__repr__() for m in mitto_sandbox.messages}) == 3  # 3 requests
    by_number = {m["to"]: m["id"] for m in mitto_sandbox.messages}
    messages = list(batch.messages.order_by("pk"))
    assert [m.status for m in messages] == ["sent"] * 5
    assert all(m.provider_id == by_number[m.recipient.lstrip("+")] for m in messages)
    assert all(m.reference == "promo" for m in messages)


def test_send_bulk_reports_its_progress_when_asked(mitto_sandbox, settings) -> None:
    from django_mitto.optouts import add_opt_out

    settings.MITTO_BULK_CHUNK_SIZE = 2
    add_opt_out("+41791234562")
    calls: list[tuple[str, int]] = []
    batch = services.send_bulk(
        ["+41791234561", "+41791234562", "+41791234563"],
        "Hi",
        progress=lambda stage, count: calls.append((stage, count)),
    )
    # Chunk by chunk: the numbers checked, then the messages created (the opt-out is not).
    assert calls == [("validate", 2), ("insert", 1), ("validate", 1), ("insert", 1)]
    assert batch.total == 2
    assert len(mitto_sandbox.messages) == 2


def test_send_bulk_with_an_invalid_number_creates_nothing(mitto_sandbox) -> None:
    with pytest.raises(ValidationError) as info:
        services.send_bulk(["+41791234567", "12", "hello"], "Hi")
    assert "recipients" in info.value.message_dict
    assert "12" in info.value.message_dict["recipients"][0]
    assert Batch.objects.count() == 0
    assert Message.objects.count() == 0


def test_bulk_refusal_fails_the_chunk(mitto_sandbox, settings) -> None:
    settings.MITTO_API_KEY = "wrong"
    batch = services.send_bulk(["+41791234567", "+41791234568"], "Hi")
    assert set(batch.messages.values_list("status", flat=True)) == {"failed"}


def test_bulk_timeout_leaves_the_chunk_unknown(mitto_sandbox, settings) -> None:
    settings.MITTO_TIMEOUT = 0.3
    mitto_sandbox.add_fault("timeout", seconds=1.5)
    batch = services.send_bulk(["+41791234567", "+41791234568"], "Hi")
    assert set(batch.messages.values_list("status", flat=True)) == {"unknown"}


def test_bulk_references_are_per_recipient(mitto_sandbox) -> None:
    batch = services.send_bulk(["+41791234567", "+41791234568"], "Hi", references=["a", "b"])
    assert list(batch.messages.order_by("pk").values_list("reference", flat=True)) == ["a", "b"]


def test_bulk_rows_keep_every_character_of_text_and_references(mitto_sandbox) -> None:
    # On PostgreSQL the rows go in as COPY text, where tabs, line breaks and backslashes are
    # escapes; braces and quotes must come through as they are too.
    text = "Line 1\nLine 2\t{0} {x} \\N 'q' \"dq\" €"
    references = ["a\\b", "{0}", "{}", "x\"y'z", "\\N", "é"]
    numbers = [f"+4179123456{i}" for i in range(len(references))]
    batch = services.send_bulk(numbers, text, references=references, validity=60, flash=True)
    rows = list(
        batch.messages.order_by("pk").values_list(
            "recipient", "reference", "text", "validity", "flash", "metadata", "country"
        )
    )
    assert [row[:2] for row in rows] == list(zip(numbers, references))
    assert [row[2:] for row in rows] == [(text, 60, True, {}, "CHE")] * len(numbers)
    assert [m["body"]["text"] for m in mitto_sandbox.messages] == [text] * len(numbers)


def test_bulk_ids_with_quotes_backslashes_and_braces_are_stored_as_given(canned_api) -> None:
    # On PostgreSQL the ids travel as one array literal: its quoting must keep each id whole.
    from tests.canned import Reply

    ids = ['a"b', "c\\d", "e,f", "{g}", "NULL", "h'i"]
    numbers = [f"+4179123456{i}" for i in range(len(ids))]
    items = [{"id": id_, "to": n.lstrip("+"), "responseCode": 0} for id_, n in zip(ids, numbers)]
    canned_api.reply(Reply(200, {"responseCode": 0, "responseText": "OK", "messages": items}))
    batch = services.send_bulk(numbers, "Hi")
    assert list(batch.messages.order_by("pk").values_list("provider_id", "status")) == [
        (id_, "sent") for id_ in ids
    ]


def test_client_is_shared_per_configuration(settings) -> None:
    first = services.get_client()
    assert services.get_client() is first
    settings.MITTO_API_URL = "http://127.0.0.1:5801"
    assert services.get_client() is not first
    assert isinstance(first.session, requests.Session)


# -- answers that cannot tell, and failures around the request -----------------------------------


@pytest.mark.parametrize(
    ("status", "body", "content_type", "expected"),
    [
        (200, '{"id": "d88ae721", "responseCode": 0, "respo', "application/json", "unknown"),
        (502, "<html>Bad gateway</html>", "text/html", "unknown"),
        (200, '{"id": "d88ae721"}', "application/json", "unknown"),
        (400, "<html>Bad request</html>", "text/html", "failed"),
    ],
)
def test_answer_that_cannot_tell_leaves_the_message_unknown(
    canned_api, status, body, content_type, expected
) -> None:
    from tests.canned import Reply

    canned_api.reply(Reply(status, body, content_type=content_type))
    message = services.send_sms("+41791234567", "Hi")
    message.refresh_from_db()
    assert message.status == expected
    assert len(canned_api.requests) == 1  # never sent twice


def test_unreadable_bulk_answer_leaves_the_chunk_unknown(canned_api) -> None:
    from tests.canned import Reply

    canned_api.reply(Reply(504, "<html>Gateway timeout</html>", content_type="text/html"))
    batch = services.send_bulk(["+41791234567", "+41791234568"], "Hi")
    assert set(batch.messages.values_list("status", flat=True)) == {"unknown"}


def test_failure_before_the_request_fails_the_message_instead_of_leaving_it_sending(
    mitto_sandbox, settings
) -> None:
    settings.MITTO_CALLBACK_BASE_URL = "https://shop.example.com"
    settings.ROOT_URLCONF = "tests.urls_without_mitto"  # the callback URL cannot be built
    message = services.send_sms("+41791234567", "Hi")
    message.refresh_from_db()
    assert message.status == "failed"
    assert "NoReverseMatch" in message.error
    assert mitto_sandbox.messages == []


def test_unexpected_error_during_the_request_leaves_the_message_unknown(
    mitto_sandbox, monkeypatch
) -> None:
    from django_mitto.client import MittoClient

    def explode(self, *args, **kwargs):
        raise RuntimeError("bug in a library")

    monkeypatch.setattr(MittoClient, "send", explode)
    message = services.send_sms("+41791234567", "Hi")
    message.refresh_from_db()
    assert message.status == "unknown"
    assert "RuntimeError" in message.error


def test_failing_signal_receiver_stops_no_send(mitto_sandbox, settings) -> None:
    settings.MITTO_BULK_CHUNK_SIZE = 2

    def broken_receiver(sender, **kwargs):
        raise ValueError("a project's receiver is broken")

    message_sent.connect(broken_receiver)
    try:
        batch = services.send_bulk([f"+4179123456{i}" for i in range(5)], "Hi")
        single = services.send_sms("+41791234560", "Hi")
    finally:
        message_sent.disconnect(broken_receiver)
    assert set(batch.messages.values_list("status", flat=True)) == {"sent"}
    single.refresh_from_db()
    assert single.status == "sent"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"reference": "r" * 256}, "reference"), ({"udh": "AB" * 141}, "udh")],
)
def test_too_long_options_are_refused_naming_the_field(mitto_sandbox, kwargs, field) -> None:
    with pytest.raises(ValidationError) as info:
        services.send_sms("+41791234567", "Hi", **kwargs)
    assert field in info.value.message_dict
    with pytest.raises(ValidationError) as info:
        services.send_bulk(["+41791234567"], "Hi", **kwargs)
    assert field in info.value.message_dict
    with pytest.raises(ValidationError) as info:
        services.send_bulk(["+41791234567"], "Hi", references=["r" * 256])
    assert "references" in info.value.message_dict
    assert Message.objects.count() == 0


# -- malformed input (types, control characters, ranges, parts) -----------------------------------

MALFORMED = [
    ({"text": "Hi\x00there"}, "text"),
    ({"text": "Ring\x07"}, "text"),
    ({"text": "Hi \ud83d"}, "text"),
    ({"text": "\x1b[31mred"}, "text"),
    ({"text": "C1 \x85 next line"}, "text"),
    ({"text": 1234}, "text"),
    ({"text": None}, "text"),
    ({"text": b"Hi"}, "text"),
    ({"recipient": 41791234567}, "recipient"),
    ({"recipient": None}, "recipient"),
    ({"recipient": b"+41791234567"}, "recipient"),
    ({"recipient": "+41791234567\x00"}, "recipient"),
    ({"reference": "order\x00-1"}, "reference"),
    ({"reference": "order\n1"}, "reference"),
    ({"reference": "order \udc80"}, "reference"),
    ({"reference": 42}, "reference"),
    ({"sender": "Shop\x00"}, "sender"),
    ({"sender": 12345}, "sender"),
    ({"udh": "0500\x00"}, "udh"),
    ({"udh": b"050003"}, "udh"),
    ({"validity": 0}, "validity"),
    ({"validity": 2881}, "validity"),
    ({"validity": 10**12}, "validity"),
    ({"validity": "60"}, "validity"),
    ({"validity": True}, "validity"),
    ({"pid": -1}, "pid"),
    ({"pid": 256}, "pid"),
    ({"pid": 2**40}, "pid"),
    ({"pid": 1.5}, "pid"),
]


@pytest.mark.parametrize(("kwargs", "field"), MALFORMED)
def test_send_sms_refuses_malformed_input_naming_the_field(mitto_sandbox, kwargs, field) -> None:
    args = {"recipient": "+41791234567", "text": "Hi", **kwargs}
    with pytest.raises(ValidationError) as info:
        services.send_sms(args.pop("recipient"), args.pop("text"), **args)
    assert field in info.value.message_dict
    assert Message.objects.count() == 0
    assert mitto_sandbox.messages == []


@pytest.mark.parametrize(("kwargs", "field"), MALFORMED)
def test_send_bulk_refuses_malformed_input_naming_the_field(mitto_sandbox, kwargs, field) -> None:
    args = {"recipient": "+41791234567", "text": "Hi", **kwargs}
    recipient = args.pop("recipient")
    with pytest.raises(ValidationError) as info:
        services.send_bulk([recipient, "+41791234568"], args.pop("text"), **args)
    assert ("recipients" if field == "recipient" else field) in info.value.message_dict
    assert Message.objects.count() == 0
    assert Batch.objects.count() == 0
    assert mitto_sandbox.messages == []


@pytest.mark.parametrize(
    "metadata",
    [
        {"when": __import__("datetime").datetime(2026, 1, 1)},
        {"amount": float("nan")},
        {"amount": float("inf")},
        {"note": "a\x00b"},
        {"\ud800": 1},
        {"nested": [{"deep": {"x": "\udfff"}}]},
        ["not", "a", "dict"],
        "text",
    ],
)
def test_metadata_that_is_not_storable_json_is_refused(mitto_sandbox, metadata) -> None:
    with pytest.raises(ValidationError) as info:
        services.send_sms("+41791234567", "Hi", metadata=metadata)
    assert "metadata" in info.value.message_dict
    assert Message.objects.count() == 0


def test_json_metadata_is_kept(mitto_sandbox) -> None:
    metadata = {"order": 42, "tags": ["a", "ü"], "price": 9.5, "ok": None}
    message = services.send_sms("+41791234567", "Hi", metadata=metadata)
    message.refresh_from_db()
    assert message.metadata == metadata


@pytest.mark.parametrize(
    "recipients", ["+41791234567", b"+41791234567", 41791234567, None, [None], [41791234567]]
)
def test_send_bulk_refuses_recipients_of_the_wrong_type(mitto_sandbox, recipients) -> None:
    with pytest.raises(ValidationError) as info:
        services.send_bulk(recipients, "Hi")
    assert "recipients" in info.value.message_dict
    assert Batch.objects.count() == 0


@pytest.mark.parametrize("references", [["ok", "bad\x00"], ["ok", "line\nbreak"], ["ok", 7]])
def test_send_bulk_refuses_malformed_references(mitto_sandbox, references) -> None:
    with pytest.raises(ValidationError) as info:
        services.send_bulk(["+41791234567", "+41791234568"], "Hi", references=references)
    assert "references" in info.value.message_dict
    assert "#2" in info.value.message_dict["references"][0]
    assert Batch.objects.count() == 0


def test_line_breaks_tab_and_page_break_are_text(mitto_sandbox) -> None:
    text = "Line one\nLine two\r\nA\tB\fpage"
    message = services.send_sms("+41791234567", text)
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert mitto_sandbox.messages[0]["body"]["text"] == text


def test_text_over_max_parts_is_refused_saying_how_many_parts(mitto_sandbox, settings) -> None:
    text = "a" * (153 * 10 + 1)  # 11 GSM parts
    with pytest.raises(ValidationError) as info:
        services.send_sms("+41791234567", text)
    (error,) = info.value.message_dict["text"]
    assert "11" in error
    assert "MITTO_MAX_PARTS" in error
    with pytest.raises(ValidationError) as info:
        services.send_bulk(["+41791234567"], text)
    assert "11" in info.value.message_dict["text"][0]
    assert Message.objects.count() == 0
    settings.MITTO_MAX_PARTS = 11
    message = services.send_sms("+41791234567", text)
    message.refresh_from_db()
    assert (message.status, message.segments) == (Message.Status.SENT, 11)


def test_ten_parts_are_accepted_by_default(mitto_sandbox) -> None:
    message = services.send_sms("+41791234567", "ж" * 67 * 10)  # 10 Unicode parts
    message.refresh_from_db()
    assert (message.status, message.segments) == (Message.Status.SENT, 10)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"text": "a\x00b"}, "text"),
        ({"text": "bad \ud800"}, "text"),
        ({"text": b"bytes"}, "text"),
        ({"text": None}, "text"),
        ({"reference": "r\x00"}, "reference"),
        ({"recipient": 41791234567}, "recipient"),
        ({"validity": 10**12}, "validity"),
        ({"pid": 300}, "pid"),
        ({"metadata": {"x": float("nan")}}, "metadata"),
    ],
)
def test_message_saved_directly_with_a_malformed_value_is_refused(
    mitto_sandbox, fields, field
) -> None:
    # The same on SQLite and PostgreSQL (which could not even store a NUL): refused, not stored.
    values = {"recipient": "+41791234567", "text": "Hi", "sender": "Shop", **fields}
    with pytest.raises(ValidationError) as info:
        Message.objects.create(**values)
    assert field in info.value.message_dict
    assert Message.objects.count() == 0
    assert mitto_sandbox.messages == []


def test_message_saved_directly_over_max_parts_fails_with_the_reason(mitto_sandbox) -> None:
    message = Message.objects.create(recipient="+41791234567", text="b" * 2000, sender="Shop")
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert "14 SMS parts" in message.error
    assert "MITTO_MAX_PARTS" in message.error
    assert mitto_sandbox.messages == []


def test_message_with_a_control_character_written_by_update_fails_at_send(
    mitto_sandbox, settings
) -> None:
    # A row changed behind save()'s back (an UPDATE) is still checked before it is sent.
    settings.MITTO_SEND_ON_SAVE = False
    message = Message.objects.create(recipient="+41791234567", text="Hi", sender="Shop")
    Message.objects.filter(pk=message.pk).update(text="Hi\x07", reference="ref\x1b")
    services.send_message(message.pk)
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert "text: " in message.error
    assert "U+0007" in message.error
    assert "reference: " in message.error
    assert mitto_sandbox.messages == []


def test_none_for_an_optional_option_means_not_given(mitto_sandbox) -> None:
    message = services.send_sms("+41791234567", "Hi", reference=None, udh=None, sender=None)
    message.refresh_from_db()
    assert (message.status, message.reference, message.udh) == (Message.Status.SENT, "", "")
    assert message.sender == "DjangoMitto"


# -- every reply shape, and answers that cannot be stored as they are -----------------------------

ACCEPTED = {"responseCode": 0, "responseText": "SMS sent successfully."}


def test_send_sms_returns_the_message_as_the_send_left_it(mitto_sandbox) -> None:
    message = services.send_sms("+41791234567", "Hi")
    assert message.status == Message.Status.SENT  # no refresh_from_db() needed
    assert message.provider_id == mitto_sandbox.messages[0]["id"]


def test_send_sms_inside_a_transaction_returns_it_queued(mitto_sandbox) -> None:
    with transaction.atomic():
        message = services.send_sms("+41791234567", "Hi")
        assert message.status == Message.Status.QUEUED
    message.refresh_from_db()
    assert message.status == Message.Status.SENT


@pytest.mark.parametrize(
    "body",
    [
        {"ids": ["715118ef01aa4480bbd67324a0459b0b"], **ACCEPTED},
        {"messageId": "715118ef01aa4480bbd67324a0459b0b", **ACCEPTED},
    ],
)
def test_documented_ids_answer_records_the_id(canned_api, body) -> None:
    from tests.canned import Reply

    canned_api.reply(Reply(body=body))
    message = services.send_sms("+41791234567", "Hi")
    assert message.status == "sent"
    assert message.provider_id == "715118ef01aa4480bbd67324a0459b0b"
    assert message.error == ""


def test_accepted_answer_without_id_is_sent_but_flagged(canned_api, caplog) -> None:
    from tests.canned import Reply

    canned_api.reply(Reply(body={"responseCode": 0, "responseText": "SMS sent", "textLength": 2}))
    message = services.send_sms("+41791234567", "Hi")
    assert message.status == "sent"
    assert message.provider_id == ""
    assert "no message id" in message.error
    assert '"responseText": "SMS sent"' in message.error  # the answer is kept
    warnings = [
        r for r in caplog.records if r.levelname == "WARNING" and "no message id" in r.getMessage()
    ]
    assert len(warnings) == 1


def test_message_flagged_without_id_shows_the_reason_in_the_admin(canned_api, admin_client) -> None:
    from django.urls import reverse

    from tests.canned import Reply

    canned_api.reply(Reply(body={"responseCode": 0, "responseText": "SMS sent"}))
    message = services.send_sms("+41791234567", "Hi")
    page = admin_client.get(reverse("admin:django_mitto_message_change", args=[message.pk]))
    assert page.status_code == 200
    assert "no message id" in page.content.decode()


def test_over_long_id_is_not_stored_and_never_raises(canned_api) -> None:
    from tests.canned import Reply

    long_id = "f" * 65
    canned_api.reply(Reply(body={"id": long_id, **ACCEPTED}))
    message = services.send_sms("+41791234567", "Hi")
    assert message.status == "sent"
    assert message.provider_id == ""
    assert "cannot be stored" in message.error and long_id in message.error
    assert len(canned_api.requests) == 1


def test_id_already_used_by_another_message_ends_unknown_with_the_answer(canned_api) -> None:
    from tests.canned import Reply

    canned_api.reply(
        Reply(body={"id": "dup-1", **ACCEPTED}), Reply(body={"id": "dup-1", **ACCEPTED})
    )
    first = services.send_sms("+41791234567", "Hi")
    second = services.send_sms("+41791234568", "Hi")  # must not raise IntegrityError
    assert (first.status, first.provider_id) == ("sent", "dup-1")
    assert (second.status, second.provider_id) == ("unknown", "")
    assert f"message {first.pk} already has" in second.error
    assert "dup-1" in second.error and "check before sending it again" in second.error
    services.send_message(second.pk)  # an unknown message is never resent blindly
    assert len(canned_api.requests) == 2


@pytest.mark.parametrize(
    "answer",
    [
        {"messageParts": 100_000, "textLength": -3},
        {"messageParts": -1, "textLength": 10**12},
        {"timestamp": "2019-04-13T17:51:06.3091182+99:99"},
        {"timestamp": "0001-01-01T00:30:00+01:00"},
        {"timestamp": "9999-12-31T23:59:59-01:00"},
        {"timestamp": "2150-01-01T00:00:00Z"},
        {"responseText": "SMS\u0000sent \ud800", "to": "\u0000"},
    ],
)
def test_absurd_fields_of_an_accepted_answer_are_bounded(canned_api, answer) -> None:
    from django.utils import timezone

    from tests.canned import Reply

    canned_api.reply(Reply(body={"id": "abc-1", **ACCEPTED, **answer}))
    before = timezone.now()
    message = services.send_sms("+41791234567", "Hi")
    assert (message.status, message.provider_id) == ("sent", "abc-1")
    assert (message.segments, message.text_length) == (1, 2)  # ours, not the absurd ones
    assert before <= message.sent_at <= timezone.now()
    assert "\u0000" not in message.response_text


def test_damaged_id_is_not_stored(canned_api) -> None:
    from tests.canned import Reply

    canned_api.reply(Reply(body={"id": "abc\u0000def", **ACCEPTED}))
    message = services.send_sms("+41791234567", "Hi")
    assert (message.status, message.provider_id) == ("sent", "")
    assert "cannot be stored" in message.error


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [(500, 1, "unknown"), (502, 1, "unknown"), (500, 8, "failed"), (400, 1, "failed")],
)
def test_server_error_is_unknown_unless_its_code_proves_a_refusal(
    canned_api, status, code, expected
) -> None:
    from tests.canned import Reply

    canned_api.reply(Reply(status, {"responseCode": code, "responseText": "Internal error"}))
    message = services.send_sms("+41791234567", "Hi")
    assert message.status == expected
    assert message.response_code == code
    assert len(canned_api.requests) == 1


@pytest.mark.parametrize("segments", [-1, 10**20])
def test_database_refusing_the_answer_ends_unknown_without_raising(
    canned_api, monkeypatch, segments
) -> None:
    from tests.canned import Reply

    canned_api.reply(Reply(body={"id": "abc-2", **ACCEPTED}))
    real = sending._answer_fields

    def unbounded(result, now, **kwargs):
        fields, note = real(result, now, **kwargs)
        fields["segments"] = segments  # what an unbounded messageParts would write
        return fields, note

    monkeypatch.setattr(sending, "_answer_fields", unbounded)
    before = timezone.now()
    message = services.send_sms("+41791234567", "Hi")
    assert message.status == "unknown"
    assert "could not be stored" in message.error and "abc-2" in message.error
    # It names what the database raised.
    assert re.search(r"could not be stored \(\w+Error\)", message.error), message.error
    message.refresh_from_db()
    assert before <= message.status_changed_at <= timezone.now()


def test_bulk_answer_with_ids_and_message_id_items_is_recorded(canned_api) -> None:
    from tests.canned import Reply

    canned_api.reply(
        Reply(
            body={
                **ACCEPTED,
                "messages": [
                    {"ids": ["a-1"], "to": "41791234567"},
                    {"messageId": "b-2", "to": "41791234568"},
                ],
            }
        )
    )
    batch = services.send_bulk(["+41791234567", "+41791234568"], "Hi")
    rows = dict(batch.messages.values_list("recipient", "provider_id"))
    assert rows == {"+41791234567": "a-1", "+41791234568": "b-2"}
    assert set(batch.messages.values_list("status", flat=True)) == {"sent"}


def test_bulk_answer_with_unstorable_ids_writes_every_other_row(canned_api, caplog) -> None:
    from tests.canned import Reply

    canned_api.reply(Reply(body={"id": "taken", **ACCEPTED}))
    taken = services.send_sms("+41791234560", "Hi")
    canned_api.reply(
        Reply(
            body={
                **ACCEPTED,
                "messages": [
                    {"id": "ok-1", "to": "41791234561", "messageParts": 10**9},
                    {"id": "taken", "to": "41791234562"},
                    {"id": "x" * 100, "to": "41791234563"},
                    {"to": "41791234564"},
                    {"id": "twice", "to": "41791234565"},
                    {"id": "twice", "to": "41791234566"},
                ],
            }
        )
    )
    numbers = [f"+4179123456{i}" for i in range(1, 7)]
    batch = services.send_bulk(numbers, "Hi")  # must not raise
    rows = {
        m.recipient: (m.status, m.provider_id, m.error, m.segments) for m in batch.messages.all()
    }
    assert rows["+41791234561"][:2] == ("sent", "ok-1") and rows["+41791234561"][3] == 1
    assert rows["+41791234562"][:2] == ("unknown", "")
    assert f"message {taken.pk} already has" in rows["+41791234562"][2]
    assert rows["+41791234563"][:2] == ("sent", "")
    assert "cannot be stored" in rows["+41791234563"][2]
    assert rows["+41791234564"][:2] == ("sent", "")
    assert "no message id" in rows["+41791234564"][2]
    assert sorted(rows[n][0] for n in ("+41791234565", "+41791234566")) == ["sent", "unknown"]
    assert not batch.messages.filter(status="sending").exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("2 of 6 SMS sent without a usable Mitto id" in w for w in warnings)


# -- rules a one-line change would break ----------------------------------------------------------


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    """The pauses the inline backend takes between attempts (not actually waited)."""
    from django_mitto.backends import inline

    seen: list[float] = []
    monkeypatch.setattr(inline.time, "sleep", seen.append)
    return seen


@pytest.mark.parametrize("fault", ["429", "503"])
def test_bulk_chunk_refused_with_429_or_503_is_retried_then_sent(
    mitto_sandbox, waits, fault
) -> None:
    mitto_sandbox.add_fault(fault, times=1)
    batch = services.send_bulk(["+41791234567", "+41791234568"], "Hi")
    messages = list(batch.messages.order_by("pk"))
    assert [(m.status, m.attempts) for m in messages] == [("sent", 2), ("sent", 2)]
    assert all(m.provider_id for m in messages)
    assert len(waits) == 1
    # The refused request was not recorded: Mitto got the messages once.
    assert sorted(m["to"] for m in mitto_sandbox.messages) == ["41791234567", "41791234568"]
    batch.refresh_from_db()
    assert batch.completed_at is not None


def test_bulk_server_error_with_internal_error_code_is_unknown(canned_api) -> None:
    from tests.canned import Reply

    canned_api.reply(Reply(500, {"responseCode": 1, "responseText": "Internal error"}))
    batch = services.send_bulk(["+41791234567", "+41791234568"], "Hi")
    assert set(batch.messages.values_list("status", flat=True)) == {"unknown"}


def test_bulk_chunk_whose_connection_is_refused_is_retried_then_fails(settings, waits) -> None:
    settings.MITTO_API_URL = "http://127.0.0.1:9"
    batch = services.send_bulk(["+41791234567", "+41791234568"], "Hi")
    messages = list(batch.messages.order_by("pk"))
    assert [(m.status, m.attempts) for m in messages] == [("failed", 3), ("failed", 3)]
    assert all("never reached Mitto" in m.error for m in messages)
    assert len(waits) == 2


def test_bulk_send_carries_its_signed_batch_callback_url(mitto_sandbox, settings) -> None:
    from django_mitto import callbacks

    settings.MITTO_CALLBACK_BASE_URL = "https://shop.example.com"
    batch = services.send_bulk(["+41791234567", "+41791234568"], "Hi")
    bodies = {repr(m["body"]) for m in mitto_sandbox.messages}
    assert len(bodies) == 1  # one request for the two recipients
    callback = mitto_sandbox.messages[0]["body"]["callback"]
    # The token holds its time of signing: read it from the URL rather than sign another.
    prefix = "https://shop.example.com/mitto/callback/"
    assert callback.startswith(prefix) and callback.endswith("/")
    token = callback[len(prefix) : -1]
    assert token.split(".")[0] == callbacks.batch_token(batch).split(".")[0]
    assert callbacks.check_token(token) == callbacks.TokenCheck(True, batch_pk=batch.pk)


def test_message_already_sending_is_not_sent_again(mitto_sandbox, make_message) -> None:
    message = make_message(status=Message.Status.SENDING)
    returned = services.send_message(message.pk)
    assert returned.status == Message.Status.SENDING
    assert mitto_sandbox.messages == []
    message.refresh_from_db()
    assert (message.status, message.attempts) == (Message.Status.SENDING, 0)


def test_batch_messages_already_sending_are_not_sent_again(mitto_sandbox, settings) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    batch = Batch.objects.create(sender="Shop", text="Hi", total=2)
    busy = Message.objects.create(batch=batch, recipient="+41791234567", text="Hi", sender="Shop")
    queued = Message.objects.create(batch=batch, recipient="+41791234568", text="Hi", sender="Shop")
    Message.objects.filter(pk=busy.pk).update(status=Message.Status.SENDING)
    services.send_batch(batch.pk)
    assert [m["to"] for m in mitto_sandbox.messages] == ["41791234568"]
    busy.refresh_from_db()
    queued.refresh_from_db()
    assert (busy.status, busy.attempts) == (Message.Status.SENDING, 0)
    assert (queued.status, queued.attempts) == (Message.Status.SENT, 1)


def test_connect_timeout_is_retried_as_never_sent_then_fails(
    settings, waits, full_backlog_url, captured_signals
) -> None:
    settings.MITTO_API_URL = full_backlog_url
    settings.MITTO_TIMEOUT = 0.3
    message = services.send_sms("+41791234567", "Hi")
    message.refresh_from_db()
    assert (message.status, message.attempts) == (Message.Status.FAILED, 3)
    assert message.error == (
        "POST /sms: ConnectTimeout (the request never reached Mitto). Gave up after 3 attempts."
    )
    assert len(waits) == 2
    assert len(captured_signals["failed"]) == 1


def test_bulk_connect_timeout_is_retried_as_never_sent_then_fails(
    settings, waits, full_backlog_url
) -> None:
    settings.MITTO_API_URL = full_backlog_url
    settings.MITTO_TIMEOUT = 0.3
    batch = services.send_bulk(["+41791234567", "+41791234568"], "Hi")
    assert list(batch.messages.values_list("status", "attempts")) == [("failed", 3)] * 2


def test_a_chunk_claims_only_the_rows_still_queued(mitto_sandbox, settings) -> None:
    # send_batch reads the queued ids, then claims them: a worker may have claimed some between
    # the two, and the claim itself must leave those alone.
    settings.MITTO_SEND_ON_SAVE = False
    batch = Batch.objects.create(sender="Shop", text="Hi", total=2)
    taken = Message.objects.create(batch=batch, recipient="+41791234567", text="Hi", sender="Shop")
    free = Message.objects.create(batch=batch, recipient="+41791234568", text="Hi", sender="Shop")
    Message.objects.filter(pk=taken.pk).update(status=Message.Status.SENDING)
    services.attempt_chunk(batch, [taken.pk, free.pk])
    assert [m["to"] for m in mitto_sandbox.messages] == ["41791234568"]
    assert list(batch.messages.order_by("pk").values_list("status", "attempts")) == [
        (Message.Status.SENDING, 0),
        (Message.Status.SENT, 1),
    ]


def _errors(call, *args, **kwargs) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as info:
        call(*args, **kwargs)
    return info.value.message_dict


VALIDITY_RANGE = "The validity is a whole number of minutes from 1 to 2880 (48 hours)."
PID_RANGE = "The protocol id is a whole number from 0 to 255."


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"reference": "r" * 256}, "reference", "256 characters; at most 255 are allowed."),
        ({"udh": "AB" * 141}, "udh", "282 characters; at most 280 are allowed."),
        ({"validity": 0}, "validity", VALIDITY_RANGE),
        ({"validity": 2881}, "validity", VALIDITY_RANGE),
        ({"validity": True}, "validity", VALIDITY_RANGE),
        ({"pid": "1"}, "pid", PID_RANGE),
        ({"pid": 256}, "pid", PID_RANGE),
        ({"pid": -1}, "pid", PID_RANGE),
    ],
)
def test_option_errors_name_the_limit(mitto_sandbox, kwargs, field, message) -> None:
    assert _errors(services.send_sms, "+41791234567", "Hi", **kwargs) == {field: [message]}
    assert Message.objects.count() == 0


def test_options_at_their_limits_are_sent(mitto_sandbox) -> None:
    message = services.send_sms(
        "+41791234567", "Hi", reference="r" * 255, udh="AB" * 140, validity=2880, pid=255
    )
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    body = mitto_sandbox.messages[0]["body"]
    assert (len(body["reference"]), len(body["udh"]), body["validity"], body["pid"]) == (
        255,
        280,
        2880,
        255,
    )


def test_every_option_reaches_mitto_and_the_message(mitto_sandbox) -> None:
    message = services.send_sms(
        "+41791234567",
        "Hi",
        sender="Shop",
        encoding="Unicode",
        reference="order-9",
        udh="050003CC0201",
        validity=60,
        pid=64,
        flash=1,
        test=1,
        metadata={"order": 9},
    )
    message.refresh_from_db()
    body = mitto_sandbox.messages[0]["body"]
    assert {k: body.get(k) for k in ("from", "type", "reference", "udh", "validity", "pid")} == {
        "from": "Shop",
        "type": "Unicode",
        "reference": "order-9",
        "udh": "050003CC0201",
        "validity": 60,
        "pid": 64,
    }
    assert (body.get("flash"), body.get("test")) == (True, True)
    assert (message.flash, message.test, message.metadata) == (True, True, {"order": 9})
    assert "callback" not in body


def test_unset_options_are_left_out_and_the_default_sender_used(mitto_sandbox) -> None:
    message = services.send_sms("+41791234567", "Hi")
    message.refresh_from_db()
    body = mitto_sandbox.messages[0]["body"]
    assert sorted(body) == ["from", "text", "to", "type"]
    assert body["from"] == message.sender == "DjangoMitto"
    assert (message.flash, message.test, message.metadata, message.reference) == (
        False,
        False,
        {},
        "",
    )


def test_bulk_errors_name_each_bad_recipient_and_the_reference_rules(mitto_sandbox) -> None:
    assert _errors(services.send_bulk, [], "Hi") == {"recipients": ["Give at least one recipient."]}
    errors = _errors(services.send_bulk, ["+41791234567", "+41 12"], "Hi")
    assert errors == {
        "recipients": ["Invalid recipients: +41 12: +41 12 is not a valid phone number."]
    }
    many = _errors(services.send_bulk, [f"+41 {n}" for n in range(22)], "Hi")["recipients"][0]
    assert many.count("is not") == 20
    assert many.endswith(" … and 2 more")
    assert _errors(services.send_bulk, ["+41791234567"], "Hi", references=["a", "b"]) == {
        "references": ["references must have one item per recipient."]
    }
    assert _errors(services.send_bulk, ["+41791234567"], "Hi", references=["r" * 256]) == {
        "references": ["Invalid references: #1: 256 characters; at most 255 are allowed."]
    }
    assert Batch.objects.count() == 0


def test_a_bad_recipient_that_is_no_string_is_named_as_given(mitto_sandbox) -> None:
    errors = _errors(services.send_bulk, ["+41791234567", 4112], "Hi")
    assert errors["recipients"][0].startswith("Invalid recipients: 4112: ")
    assert Batch.objects.count() == 0


def test_bulk_batch_records_its_options(mitto_sandbox) -> None:
    batch = services.send_bulk(
        ["+41791234567"], "Hi", reference="promo", udh="0A0B", validity=30, flash=True, test=True
    )
    assert batch.options == {"udh": "0A0B", "validity": 30, "flash": True, "reference": "promo"}
    assert (batch.test, batch.total, batch.encoding, batch.sender) == (
        True,
        1,
        "GSM",
        "DjangoMitto",
    )
    message = batch.messages.get()
    assert (message.text_length, message.segments, message.udh, message.validity) == (
        2,
        1,
        "0A0B",
        30,
    )
    body = mitto_sandbox.messages[0]["body"]
    assert (body["reference"], body["udh"], body["validity"], body["flash"], body["test"]) == (
        "promo",
        "0A0B",
        30,
        True,
        True,
    )


def test_bulk_answer_items_are_matched_by_number_whatever_their_order(canned_api) -> None:
    from tests.canned import Reply

    # Mitto's clock, a little behind ours (a timestamp days away is not believed).
    stamp = (timezone.now() - dt.timedelta(minutes=5)).replace(microsecond=0)
    canned_api.reply(
        Reply(
            body={
                "responseCode": 0,
                "responseText": "SMS sent",
                "messages": [
                    {"id": "id-3", "to": "41791234563", "messageParts": 2},
                    {"id": "id-1", "to": "41791234561", "timestamp": f"{stamp:%Y-%m-%dT%H:%M:%S}Z"},
                    {"id": "", "to": "41791234562"},
                ],
            }
        )
    )
    numbers = ["+41791234561", "+41791234562", "+41791234563"]
    batch = services.send_bulk(numbers, "Hi")
    rows = {
        m.recipient: (m.status, m.provider_id, m.segments, m.error, m.response_text)
        for m in batch.messages.all()
    }
    # The item with an empty id was accepted: sent, but flagged as unmatchable by id.
    flagged = rows["+41791234562"]
    assert flagged[:3] == ("sent", "", 1) and flagged[4] == "SMS sent"
    assert "no message id" in flagged[3]
    assert rows == {
        "+41791234561": ("sent", "id-1", 1, "", "SMS sent"),
        "+41791234562": flagged,
        "+41791234563": ("sent", "id-3", 2, "", "SMS sent"),
    }
    first = batch.messages.get(recipient="+41791234561")
    assert first.sent_at == stamp
    batch.refresh_from_db()
    assert batch.completed_at is not None


def test_bulk_refusal_keeps_code_and_text_and_fails_each_message(
    canned_api, captured_signals
) -> None:
    from tests.canned import Reply

    canned_api.reply(Reply(400, {"responseCode": 6, "responseText": "Invalid sender"}))
    batch = services.send_bulk(["+41791234561", "+41791234562"], "Hi")
    rows = set(batch.messages.values_list("status", "response_code", "response_text", "error"))
    assert rows == {
        (
            "failed",
            6,
            "Invalid sender",
            "Mitto refused the message: responseCode 6 (Invalid sender), HTTP 400.",
        )
    }
    assert sorted(pk for pk, _ in captured_signals["failed"]) == sorted(
        batch.messages.values_list("pk", flat=True)
    )
    assert len(canned_api.requests) == 1


def test_bulk_receivers_get_each_message_once_as_stored(mitto_sandbox, settings) -> None:
    settings.MITTO_BULK_CHUNK_SIZE = 2
    seen: list[tuple[int, str, str, str, str]] = []

    def on_sent(sender, message, result, **kwargs):
        seen.append((message.pk, message.status, message.provider_id, result.id, message.text))

    message_sent.connect(on_sent)
    try:
        batch = services.send_bulk(["+41791234561", "+41791234562", "+41791234563"], "Hi")
    finally:
        message_sent.disconnect(on_sent)
    stored = list(batch.messages.order_by("pk").values_list("pk", "provider_id"))
    assert [(pk, status, pid, text) for pk, status, pid, _id, text in seen] == [
        (pk, "sent", pid, "Hi") for pk, pid in stored
    ]
    assert all(pid and pid == result_id for _pk, _s, pid, result_id, _t in seen)


def test_bulk_refusal_hands_receivers_the_failed_messages(canned_api) -> None:
    from tests.canned import Reply

    canned_api.reply(Reply(400, {"responseCode": 6, "responseText": "Invalid sender"}))
    seen: list[tuple[str, int | None, str]] = []

    def on_failed(sender, message, error, **kwargs):
        seen.append((message.status, message.response_code, message.recipient))

    message_failed.connect(on_failed)
    try:
        services.send_bulk(["+41791234561", "+41791234562"], "Hi")
    finally:
        message_failed.disconnect(on_failed)
    assert sorted(seen) == [("failed", 6, "+41791234561"), ("failed", 6, "+41791234562")]


def test_queued_message_that_became_invalid_fails_with_each_reason(
    mitto_sandbox, make_message, captured_signals
) -> None:
    message = make_message(status=Message.Status.QUEUED, sender="A", udh="XYZ")
    returned = services.send_message(message.pk)
    assert returned.status == Message.Status.FAILED
    assert returned.error == (
        "sender: A sender is 3 to 11 letters and digits (or a number of 3 to 14 digits); "
        "“A” is not.; udh: The UDH is hexadecimal bytes (an even number of 0-9, A-F)."
    )
    assert returned.attempts == 1
    assert mitto_sandbox.messages == []
    assert captured_signals["failed"] == [(message.pk, None)]


def test_send_bulk_reads_a_generator_once_chunk_by_chunk(mitto_sandbox, settings) -> None:
    settings.MITTO_BULK_CHUNK_SIZE = 3
    read: list[int] = []

    def numbers():
        for i in range(10):
            read.append(i)
            yield f"+4179123450{i}"

    batch = services.send_bulk(numbers(), "Hi", references=(f"r{i}" for i in range(10)))
    assert read == list(range(10))
    assert batch.total == 10
    assert sorted(batch.messages.values_list("reference", flat=True)) == [
        f"r{i}" for i in range(10)
    ]
    assert len(mitto_sandbox.messages) == 10


def test_send_bulk_sends_a_number_given_twice_once(mitto_sandbox, settings) -> None:
    settings.MITTO_BULK_CHUNK_SIZE = 2
    given = ["+41791234501", "+41 79 123 45 02", "+41791234503", "0041791234501", "+41791234502"]
    batch = services.send_bulk(given, "Hi", references=["a", "b", "c", "d", "e"])
    assert (batch.total, batch.duplicates) == (3, 2)
    # The first occurrence is kept, with its own reference.
    assert dict(batch.messages.values_list("recipient", "reference")) == {
        "+41791234501": "a",
        "+41791234502": "b",
        "+41791234503": "c",
    }
    assert sorted(m["to"] for m in mitto_sandbox.messages) == [
        "41791234501",
        "41791234502",
        "41791234503",
    ]
    batch.refresh_from_db()
    assert batch.total == 3


def test_send_bulk_with_a_bad_number_late_in_the_stream_creates_nothing(
    mitto_sandbox, settings
) -> None:
    settings.MITTO_BULK_CHUNK_SIZE = 2
    given = [f"+4179123450{i}" for i in range(7)] + ["not a number"]
    with pytest.raises(ValidationError) as caught:
        services.send_bulk(iter(given), "Hi")
    assert "not a number" in caught.value.message_dict["recipients"][0]
    # The chunks inserted before the bad number was read are rolled back.
    assert (Batch.objects.count(), Message.objects.count()) == (0, 0)
    assert mitto_sandbox.messages == []


@pytest.mark.django_db
def test_messages_are_indexed_by_batch_once() -> None:
    # (batch, status) serves every lookup by batch; an index on the column alone would only
    # slow down the inserts of a bulk send.
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Message._meta.db_table)
    indexed = [c["columns"] for c in constraints.values() if c["index"] and not c["primary_key"]]
    assert ["batch_id", "status"] in indexed
    assert ["batch_id"] not in indexed


def test_bulk_rows_keep_tabs_line_breaks_and_backslashes(mitto_sandbox, settings) -> None:
    # The rows are inserted with COPY on PostgreSQL: what its text format escapes must survive.
    settings.MITTO_BULK_CHUNK_SIZE = 2
    text = "Line 1\nLine 2\ttab \\N \\ backslash; “quotes” ✓"
    batch = services.send_bulk(
        ["+41791234561", "+41791234562", "+41791234563"], text, references=["a\\b", "", "c d"]
    )
    rows = list(batch.messages.order_by("pk").values_list("text", "reference", "metadata"))
    assert rows == [(text, "a\\b", {}), (text, "", {}), (text, "c d", {})]
    assert {m["body"]["text"] for m in mitto_sandbox.messages} == {text}


# -- what a sample of the send service's mutants showed untested ---------------------------------


def _age(messages: list[Message], **fields) -> None:
    Message.objects.filter(pk__in=[m.pk for m in messages]).update(**fields)


def test_requeue_left_behind_hands_over_only_what_is_still_queued(mitto_sandbox, settings) -> None:
    settings.MITTO_SEND_ON_SAVE = False  # as if the process died before its after-commit send
    old = timezone.now() - dt.timedelta(hours=1)
    left = Message.objects.create(recipient="+41791234561", text="Left behind", sender="Shop")
    done = Message.objects.create(recipient="+41791234562", text="Sent already", sender="Shop")
    fresh = Message.objects.create(recipient="+41791234563", text="Just queued", sender="Shop")
    batch = Batch.objects.create(text="Bulk", sender="Shop", total=2)
    members = [
        Message.objects.create(recipient=f"+4179123457{i}", text="Bulk", sender="Shop", batch=batch)
        for i in range(2)
    ]
    _age([left, done, *members], created_at=old)
    _age([done], status="sent")
    assert services.requeue_left_behind(dt.timedelta(minutes=30)) == (1, 1)
    status = dict(Message.objects.values_list("pk", "status"))
    assert (status[left.pk], status[done.pk], status[fresh.pk]) == ("sent", "sent", "queued")
    assert [status[m.pk] for m in members] == ["sent", "sent"]
    assert sorted(m["to"] for m in mitto_sandbox.messages) == [
        "41791234561",
        "41791234570",
        "41791234571",
    ]


def test_mark_failed_changes_and_announces_only_the_messages_given(
    make_message, captured_signals
) -> None:
    chosen, other = make_message(status="unknown"), make_message(status="unknown")
    failed_before = make_message(status="failed")
    assert services.mark_failed([chosen], by="alice") == 1
    status = dict(Message.objects.values_list("pk", "status"))
    assert (status[chosen.pk], status[other.pk], status[failed_before.pk]) == (
        "failed",
        "unknown",
        "failed",
    )
    assert captured_signals["failed"] == [(chosen.pk, None)]


def test_mark_stuck_unknown_marks_only_what_is_still_sending_and_completes_its_batch(
    make_message,
) -> None:
    old = timezone.now() - dt.timedelta(hours=1)
    batch = Batch.objects.create(text="Bulk", sender="Shop", total=2)
    stuck = make_message(status="sending", batch=batch)
    delivered = make_message(status="sent", batch=batch)
    sent_long_ago = make_message(status="sent")
    just_claimed = make_message(status="sending")
    _age([stuck, delivered, sent_long_ago], status_changed_at=old)
    assert services.mark_stuck_unknown(dt.timedelta(minutes=30)) == 1
    status = dict(Message.objects.values_list("pk", "status"))
    assert [status[m.pk] for m in (stuck, delivered, sent_long_ago, just_claimed)] == [
        "unknown",
        "sent",
        "sent",
        "sending",
    ]
    stuck.refresh_from_db()
    assert stuck.error == sending.STUCK_ERROR
    batch.refresh_from_db()
    assert batch.completed_at is not None


def test_a_batch_completes_while_unrelated_single_messages_are_still_queued(
    mitto_sandbox, settings
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    Message.objects.create(recipient="+41791234560", text="Waiting", sender="Shop")
    batch, _ = queued_batch("+41791234561", "+41791234562")
    services.send_batch(batch)
    batch.refresh_from_db()
    assert set(batch.messages.values_list("status", flat=True)) == {"sent"}
    assert batch.completed_at is not None


def test_plan_batch_marks_complete_a_batch_with_nothing_left_to_send(settings) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    batch, _ = queued_batch("+41791234561", "+41791234562")
    Message.objects.filter(batch=batch).update(status="sent")
    assert services.plan_batch(batch) == []
    batch.refresh_from_db()
    assert batch.completed_at is not None


def test_a_refused_chunk_fails_only_its_own_rows(canned_api, settings) -> None:
    from tests.canned import Reply

    settings.MITTO_SEND_ON_SAVE = False
    elsewhere = Message.objects.create(recipient="+41791234560", text="Hi", sender="Shop")
    Message.objects.filter(pk=elsewhere.pk).update(status="sending")  # another worker's send
    batch, members = queued_batch("+41791234561", "+41791234562")
    canned_api.reply(Reply(400, {"responseCode": 8, "responseText": "Invalid sender"}))
    services.send_batch(batch)
    status = dict(Message.objects.values_list("pk", "status"))
    assert [status[m.pk] for m in members] == ["failed", "failed"]
    assert status[elsewhere.pk] == "sending"


def test_a_recipient_missing_from_the_bulk_answer_is_unknown(canned_api, settings) -> None:
    from tests.canned import Reply

    settings.MITTO_SEND_ON_SAVE = False
    batch, (first, second) = queued_batch("+41791234561", "+41791234562")
    canned_api.reply(
        Reply(body={"responseCode": 0, "messages": [{"id": "a1", "to": "41791234561"}]})
    )
    services.send_batch(batch)
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.provider_id) == ("sent", "a1")
    assert second.status == "unknown"
    assert second.error.startswith("Mitto's bulk answer has no item for this recipient")


def test_attempt_chunk_gives_up_after_the_attempts_it_is_given(mitto_sandbox, settings) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    settings.MITTO_MAX_ATTEMPTS = 5
    batch, members = queued_batch("+41791234561", "+41791234562")
    mitto_sandbox.add_fault("error_503")
    outcome = services.attempt_chunk(batch, [m.pk for m in members], max_attempts=1)
    assert (outcome.retry, outcome.attempts) == (False, 1)
    assert set(batch.messages.values_list("status", flat=True)) == {"failed"}


def test_a_bulk_send_without_options_records_and_sends_none(mitto_sandbox) -> None:
    batch = services.send_bulk(["+41791234561", "+41791234562"], "Hi")
    batch.refresh_from_db()
    assert batch.options == {}
    assert set(batch.messages.values_list("reference", flat=True)) == {""}
    (received,) = mitto_sandbox.messages[:1]
    assert set(received["body"]) == {"from", "to", "text", "type"}


def test_send_bulk_refuses_a_single_string_as_recipients_naming_its_type(mitto_sandbox) -> None:
    with pytest.raises(ValidationError) as info:
        services.send_bulk("+41791234567", "Hi")
    assert info.value.message_dict["recipients"] == [
        "recipients must be a list of phone numbers, not str."
    ]
    assert Batch.objects.count() == 0


def test_numbers_opted_out_in_every_chunk_of_a_bulk_send_are_left_out(
    mitto_sandbox, settings
) -> None:
    from django_mitto import optouts

    settings.MITTO_BULK_CHUNK_SIZE = 2
    optouts.add_opt_out("+41791234561")
    optouts.add_opt_out("+41791234563")
    numbers = ["+41791234561", "+41791234562", "+41791234563", "+41791234564", "+41791234565"]
    batch = services.send_bulk(numbers, "Sale today")
    assert batch.opted_out_numbers == ["+41791234561", "+41791234563"]
    assert batch.opted_out == 2
    assert sorted(batch.messages.values_list("recipient", flat=True)) == [
        "+41791234562",
        "+41791234564",
        "+41791234565",
    ]


def test_a_message_put_back_in_the_queue_leaves_other_sends_alone(mitto_sandbox, settings) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    elsewhere = Message.objects.create(recipient="+41791234560", text="Hi", sender="Shop")
    Message.objects.filter(pk=elsewhere.pk).update(status="sending")  # another worker's send
    message = Message.objects.create(recipient="+41791234561", text="Hi", sender="Shop")
    mitto_sandbox.add_fault("error_503", times=1)
    outcome = services.attempt_message(message.pk)
    assert outcome.retry is True
    status = dict(Message.objects.values_list("pk", "status"))
    assert (status[message.pk], status[elsewhere.pk]) == ("queued", "sending")


def test_bulk_messages_carry_their_counts_while_queued(mitto_sandbox) -> None:
    with transaction.atomic():
        batch = services.send_bulk(["+41791234561", "+41791234562"], "x" * 161)
        counts = set(batch.messages.values_list("status", "text_length", "segments"))
    assert counts == {("queued", 161, 2)}


@pytest.fixture
def no_returning_from_insert(monkeypatch):
    """A database that cannot return the new row's id from an INSERT (SQLite before 3.35)."""
    from django_mitto import sql

    monkeypatch.setattr(connection.features, "can_return_columns_from_insert", False)
    sql._insert_sql.cache_clear()
    yield
    sql._insert_sql.cache_clear()


@pytest.mark.sqlite  # an older SQLite is simulated
def test_send_sms_without_insert_returning_still_refuses_opted_out_numbers(
    mitto_sandbox, no_returning_from_insert
) -> None:
    OptOut.objects.create(number="+41791234567")
    with pytest.raises(ValidationError) as raised:
        services.send_sms("+41791234567", "Hi")
    assert "recipient" in raised.value.message_dict
    message = services.send_sms("+41791234568", "Hi")
    assert message.status == "sent"
    assert Message.objects.get().pk == message.pk
    assert [m["to"] for m in mitto_sandbox.messages] == ["41791234568"]


@pytest.mark.sqlite  # an older SQLite is simulated
def test_a_database_that_cannot_return_updated_rows_still_claims_each_send_once(
    mitto_sandbox, monkeypatch, settings
) -> None:
    # SQLite before 3.35 (and other databases) cannot return rows from an UPDATE: the claim
    # is then an UPDATE and a read.
    monkeypatch.setattr(connection.Database, "sqlite_version_info", (3, 31, 1))
    settings.MITTO_SEND_ON_SAVE = False  # the message is claimed by the send below
    message = Message.objects.create(recipient="+41791234567", text="Hi", sender="Shop")
    sent = services.attempt_message(message.pk)
    assert (sent.retry, sent.message.status, sent.message.attempts) == (False, "sent", 1)
    again = services.attempt_message(message.pk)
    assert (again.retry, again.message.status, again.message.attempts) == (False, "sent", 1)
    batch = services.send_bulk(["+41791234561", "+41791234562"], "Hi")
    assert set(batch.messages.values_list("status", "attempts")) == {("sent", 1)}
    # One request for the message (not two), one record per recipient of the bulk request.
    assert [m["path"] for m in mitto_sandbox.messages] == ["/sms", "/smsbulk", "/smsbulk"]


def test_an_unknown_account_is_refused_naming_the_known_ones(mitto_sandbox) -> None:
    with pytest.raises(ValidationError) as info:
        services.send_sms("+41791234567", "Hi", account="shop-eu")
    assert info.value.message_dict["account"] == [
        "Unknown Mitto account 'shop-eu'; known accounts: default."
    ]
    assert Message.objects.count() == 0


def test_dropping_the_duplicates_of_a_bulk_send_keeps_other_messages_to_those_numbers(
    mitto_sandbox,
) -> None:
    earlier = services.send_sms("+41791234561", "Earlier")
    earlier_batch = services.send_bulk(["+41791234561", "+41791234562"], "Earlier bulk")
    batch = services.send_bulk(["+41791234561", "+41791234562", "+41791234561"], "Hi")
    assert batch.total == 2
    assert sorted(batch.messages.values_list("recipient", flat=True)) == [
        "+41791234561",
        "+41791234562",
    ]
    assert Message.objects.filter(pk=earlier.pk).exists()
    assert earlier_batch.messages.count() == 2


def test_an_id_that_cannot_be_stored_on_a_message_a_report_moved_meanwhile_is_explained(
    canned_api, settings, make_message
) -> None:
    from django.db import connection as thread_connection

    from tests.canned import Reply

    holder = make_message(status="sent", provider_id="d88ae721")
    message = Message.objects.create(recipient="+41791234561", text="Hi", sender="Shop")

    def report_arrives() -> None:  # a report on the message's own URL, in the server's thread
        Message.objects.filter(pk=message.pk).update(status="delivered")
        thread_connection.close()

    canned_api.reply(Reply(body={"id": "d88ae721", "responseCode": 0}, before=report_arrives))
    services.send_message(message)
    message.refresh_from_db()
    assert (message.status, message.provider_id) == ("delivered", "")
    assert message.error.startswith(
        f"Mitto's answer gives the id d88ae721, which message {holder.pk} already has: the "
        "answer may not be about this message, and the id was not stored."
    )


@pytest.mark.parametrize("stored", ["at once", "row by row"])
def test_reports_that_came_before_a_bulk_answer_are_applied_to_its_rows(
    mitto_sandbox, monkeypatch, stored
) -> None:
    # Mitto reported on every recipient (on the account URL, by id) before its bulk answer
    # carrying those ids was stored.
    from django_mitto.callbacks import ParsedReport, record_report

    if stored == "row by row":

        def refused(rows, names):
            raise RuntimeError("the answer cannot be stored at once")

        monkeypatch.setattr(sending, "_bulk_write", refused)
    original = sending._write_bulk_sent

    def reports_first(batch, accepted, done):
        for _row, item, _fields in accepted:
            record_report(
                ParsedReport(provider_id=item.id, status="Delivered"),
                method="POST",
                remote_addr=None,
            )
        return original(batch, accepted, done)

    sending._write_bulk_sent = reports_first
    try:
        batch = services.send_bulk(["+41791234567", "+41791234568"], "Hi")
    finally:
        sending._write_bulk_sent = original
    rows = Message.objects.filter(batch=batch)
    assert sorted((m.recipient, m.status) for m in rows) == [
        ("+41791234567", "delivered"),
        ("+41791234568", "delivered"),
    ]
    assert sorted(DeliveryReport.objects.values_list("message_id", "outcome")) == sorted(
        (m.pk, "applied") for m in rows
    )


def test_bulk_errors_list_every_bad_recipient_and_reference_with_the_code_invalid(
    mitto_sandbox,
) -> None:
    with pytest.raises(ValidationError) as info:
        services.send_bulk(["+41 12", "+41 13"], "Hi")
    assert [(e.message, e.code) for e in info.value.error_dict["recipients"]] == [
        (
            "Invalid recipients: +41 12: +41 12 is not a valid phone number.; "
            "+41 13: +41 13 is not a valid phone number.",
            "invalid",
        )
    ]
    with pytest.raises(ValidationError) as info:
        services.send_bulk(["+41791234561", "+41791234562"], "Hi", references=["r" * 256] * 2)
    assert [(e.message, e.code) for e in info.value.error_dict["references"]] == [
        (
            "Invalid references: #1: 256 characters; at most 255 are allowed.; "
            "#2: 256 characters; at most 255 are allowed.",
            "invalid",
        )
    ]
    assert Batch.objects.count() == 0


@pytest.mark.parametrize("references", [["r-1"], ["r-1", "r-2", "r-3"]])
def test_bulk_references_not_one_per_recipient_are_refused_with_the_code_invalid(
    mitto_sandbox, references
) -> None:
    with pytest.raises(ValidationError) as info:
        services.send_bulk(["+41791234561", "+41791234562"], "Hi", references=references)
    assert [(e.message, e.code) for e in info.value.error_dict["references"]] == [
        ("references must have one item per recipient.", "invalid")
    ]
    assert Batch.objects.count() == 0


def test_send_bulk_reads_national_numbers_in_the_region_given_else_the_default_one(
    mitto_sandbox, settings
) -> None:
    settings.MITTO_DEFAULT_REGION = "CH"
    batch = services.send_bulk(["079 123 45 61"], "Hi")
    assert list(batch.messages.values_list("recipient", "country")) == [("+41791234561", "CHE")]
    settings.MITTO_DEFAULT_REGION = "DE"
    batch = services.send_bulk(["079 123 45 62"], "Hi", region="CH")
    assert list(batch.messages.values_list("recipient", "country")) == [("+41791234562", "CHE")]


def test_requeue_left_behind_hands_over_no_batch_with_nothing_left_queued(
    mitto_sandbox, settings
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    _batch, members = queued_batch("+41791234561", "+41791234562")
    _age(members, created_at=timezone.now() - dt.timedelta(hours=1), status="sent")
    assert services.requeue_left_behind(dt.timedelta(minutes=30)) == (0, 0)
    assert mitto_sandbox.messages == []


def test_message_with_a_validity_written_by_update_fails_at_send(mitto_sandbox, settings) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    message = Message.objects.create(recipient="+41791234567", text="Hi", sender="Shop")
    Message.objects.filter(pk=message.pk).update(validity=10**6)
    services.send_message(message.pk)
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert f"validity: {VALIDITY_RANGE}" in message.error
    assert mitto_sandbox.messages == []


def test_a_bulk_chunk_told_to_wait_pauses_its_own_account(mitto_sandbox, settings) -> None:
    from django_mitto import throttle

    settings.MITTO_SEND_ON_SAVE = False
    batch, members = queued_batch("+41791234561", "+41791234562")
    mitto_sandbox.add_fault("429", times=1, retry_after=30)
    try:
        outcome = services.attempt_chunk(batch, [m.pk for m in members])
        assert (outcome.retry, outcome.retry_after) == (True, 30.0)
        # Every process sending for the account waits, not only this one.
        assert 25 < throttle.paused_for(batch.account) <= 30
    finally:
        throttle._cache().delete(f"{throttle._PREFIX}:pause:{batch.account}")


@pytest.mark.parametrize("in_flight", [1, 2])
def test_attempt_chunks_gives_up_after_the_attempts_it_is_given(
    mitto_sandbox, settings, in_flight
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    settings.MITTO_MAX_ATTEMPTS = 5
    batch, members = queued_batch("+41791234561", "+41791234562")
    mitto_sandbox.add_fault("error_503")
    chunks = [[m.pk] for m in members]
    outcomes = list(sending.attempt_chunks(batch, chunks, max_attempts=1, in_flight=in_flight))
    assert [(o.retry, o.attempts) for o in outcomes] == [(False, 1), (False, 1)]
    assert set(batch.messages.values_list("status", flat=True)) == {"failed"}


def test_a_sent_chunk_says_it_took_one_attempt_and_needs_no_retry(mitto_sandbox, settings) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    batch, members = queued_batch("+41791234561", "+41791234562")
    outcome = services.attempt_chunk(batch, [m.pk for m in members])
    assert (outcome.batch_pk, outcome.ids, outcome.retry, outcome.attempts) == (
        batch.pk,
        [],
        False,
        1,
    )
    assert set(batch.messages.values_list("status", flat=True)) == {"sent"}


def test_a_bulk_answer_is_stored_at_once_not_row_by_row(mitto_sandbox, caplog) -> None:
    # Rows that differ (each its own id) and columns they share (status, times): one write
    # for the chunk. Storing row by row is the fallback for an answer the database refuses.
    batch = services.send_bulk(["+41791234561", "+41791234562", "+41791234563"], "Hi")
    rows = list(batch.messages.order_by("pk"))
    assert [m.status for m in rows] == ["sent", "sent", "sent"]
    assert len({m.provider_id for m in rows}) == 3 and all(m.provider_id for m in rows)
    assert not [r for r in caplog.records if "row by row" in r.getMessage()]


def test_a_bulk_answer_without_counts_is_stored_at_once_keeping_ours(canned_api, caplog) -> None:
    # Mitto's bulk items may leave out messageParts and textLength: the rows keep the counts
    # measured here, and the chunk is still written at once, not row by row.
    from django.test.utils import CaptureQueriesContext

    from tests.canned import Reply

    numbers = ["+41791234561", "+41791234562", "+41791234563"]
    items = [{"id": f"id-{i}", "to": n.lstrip("+")} for i, n in enumerate(numbers)]
    items[1].update(messageParts=2, textLength=200)  # one item gives them
    canned_api.reply(Reply(200, {"responseCode": 0, "responseText": "OK", "messages": items}))
    text = "ą" * 80  # 2 parts in UCS-2, 80 characters, as measured here
    with CaptureQueriesContext(connection) as queries:
        batch = services.send_bulk(numbers, text)
    rows = list(batch.messages.order_by("pk").values_list("provider_id", "status", "segments",
                                                          "text_length"))  # fmt: skip
    assert rows == [("id-0", "sent", 2, 80), ("id-1", "sent", 2, 200), ("id-2", "sent", 2, 80)]
    assert not [r for r in caplog.records if "row by row" in r.getMessage()]
    # The answer's rows written in two statements (with and without Mitto's counts).
    writes = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("UPDATE")]
    per_row = [sql for sql in writes if "id-0" in sql or "id-2" in sql]
    assert len(per_row) <= 1, per_row


@pytest.mark.parametrize("mitto_sandbox_options", [{"answer_counts": False}])
def test_answers_without_counts_keep_our_counts_single_and_bulk(mitto_sandbox, caplog) -> None:
    # Mitto's documentation promises neither textLength nor messageParts: the sandbox told to
    # leave them out, a send and a bulk send are recorded whole with the counts measured here.
    text = "ą" * 80  # Unicode: 2 parts, 80 characters
    message = services.send_sms("+41791234567", text)
    message.refresh_from_db()
    assert (message.status, message.segments, message.text_length) == ("sent", 2, 80)
    assert message.provider_id == mitto_sandbox.messages[0]["id"]
    batch = services.send_bulk(["+41791234561", "+41791234562"], text)
    rows = list(batch.messages.order_by("pk").values_list("status", "segments", "text_length"))
    assert rows == [("sent", 2, 80)] * 2
    assert set(batch.messages.values_list("provider_id", flat=True)) == {
        m["id"] for m in mitto_sandbox.messages[1:]
    }
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_large_bulk_insert_refreshes_the_statistics_on_postgresql(
    mitto_sandbox, monkeypatch
) -> None:
    from django.test.utils import CaptureQueriesContext

    from django_mitto import creating

    monkeypatch.setattr(creating._BulkStream, "ANALYZE_FROM", 3)  # 10 000 rows otherwise
    with CaptureQueriesContext(connection) as queries:
        batch = services.send_bulk(["+41791234561", "+41791234562", "+41791234563"], "Hi")
    analyzed = [q["sql"] for q in queries if q["sql"].upper().startswith("ANALYZE")]
    table = connection.ops.quote_name(Message._meta.db_table)
    assert analyzed == ([f"ANALYZE {table}"] if connection.vendor == "postgresql" else [])
    assert set(batch.messages.values_list("status", flat=True)) == {"sent"}


@pytest.mark.parametrize(
    ("recipients", "references", "field"),
    [
        (["12", "+41791234562", "+41791234563", "+41791234564"], None, "recipients"),
        (
            ["+41791234561", "+41791234562", "+41791234563", "+41791234564"],
            ["bad\x00", "r-2", "r-3", "r-4"],
            "references",
        ),
    ],
    ids=["bad number", "bad reference"],
)
def test_a_bulk_send_inserts_nothing_after_its_first_fault_and_only_checks_the_rest(
    mitto_sandbox, settings, recipients, references, field
) -> None:
    settings.MITTO_BULK_CHUNK_SIZE = 2
    calls: list[tuple[str, int]] = []
    with pytest.raises(ValidationError) as caught:
        services.send_bulk(
            recipients,
            "Hi",
            references=references,
            progress=lambda stage, count: calls.append((stage, count)),
        )
    assert list(caught.value.message_dict) == [field]
    # The fault is in the first chunk: every chunk is still checked, none is inserted.
    assert calls == [("validate", 2), ("validate", 2)]
    assert (Batch.objects.count(), Message.objects.count()) == (0, 0)
    assert mitto_sandbox.messages == []


def test_a_claim_is_one_update_that_returns_the_rows_it_claimed(mitto_sandbox, settings) -> None:
    if connection.vendor == "sqlite" and connection.Database.sqlite_version_info < (3, 35):
        pytest.skip("SQLite before 3.35 cannot return rows from an UPDATE")
    settings.MITTO_SEND_ON_SAVE = False
    message = Message.objects.create(recipient="+41791234567", text="Hi", sender="Shop")
    outcome, seen, _commits = _statements(lambda: services.attempt_message(message.pk))
    assert (outcome.message.status, outcome.message.attempts) == ("sent", 1)
    # The claim returns the row it moved to "sending": no read before the request.
    assert [sql.split()[0].upper() for sql in seen] == ["UPDATE", "UPDATE", "SELECT"]
    assert " RETURNING " in seen[0].upper()
    batch, members = queued_batch("+41791234561", "+41791234562")
    claimed, seen, _commits = _statements(
        lambda: sending._claim_chunk(
            batch, [m.pk for m in members], sending.uuid.uuid4(), timezone.now()
        )
    )
    assert [(row.pk, row.recipient, row.attempts) for row in claimed] == [
        (members[0].pk, "+41791234561", 1),
        (members[1].pk, "+41791234562", 1),
    ]
    assert len(seen) == 1 and " RETURNING " in seen[0].upper()


def test_a_bulk_chunk_given_up_keeps_mittos_code_and_text(canned_api, settings) -> None:
    from tests.canned import Reply

    settings.MITTO_SEND_ON_SAVE = False
    batch, members = queued_batch("+41791234561", "+41791234562")
    canned_api.reply(Reply(429, {"responseCode": 12, "responseText": "Too many requests"}))
    outcome = services.attempt_chunk(batch, [m.pk for m in members], max_attempts=1)
    assert (outcome.retry, outcome.attempts) == (False, 1)
    rows = set(batch.messages.values_list("status", "response_code", "response_text"))
    assert rows == {("failed", 12, "Too many requests")}
    assert all(
        error.endswith("Gave up after 1 attempts.")
        for error in batch.messages.values_list("error", flat=True)
    )


def test_mark_failed_announces_only_what_it_changed_not_what_had_failed_before(
    make_message, captured_signals
) -> None:
    checked = make_message(status="unknown")
    failed_before = make_message(status="failed", error="Refused by Mitto.")
    assert services.mark_failed([checked, failed_before.pk], by="alice") == 1
    assert captured_signals["failed"] == [(checked.pk, None)]
    failed_before.refresh_from_db()
    assert failed_before.error == "Refused by Mitto."


def test_mark_failed_without_a_name_says_when_and_not_by_whom(make_message) -> None:
    message = make_message(status="unknown")
    assert services.mark_failed([message]) == 1
    message.refresh_from_db()
    assert re.fullmatch(r"Marked as failed on \d{4}-\d\d-\d\d \d\d:\d\d.*\.", message.error)


def test_mark_failed_writes_its_note_alone_or_after_the_error_already_there(make_message) -> None:
    bare = make_message(status="unknown")
    explained = make_message(status="unknown", error="Timed out.")
    assert services.mark_failed([bare, explained], by="alice") == 2
    bare.refresh_from_db()
    explained.refresh_from_db()
    assert re.fullmatch(r"Marked as failed by alice on \d{4}-\d\d-\d\d \d\d:\d\d.*\.", bare.error)
    assert explained.error == "Timed out.\n" + bare.error


def test_a_bulk_chunk_is_copied_into_postgresql_not_inserted_row_by_row(
    mitto_sandbox, settings
) -> None:
    from django.test.utils import CaptureQueriesContext

    settings.MITTO_BULK_CHUNK_SIZE = 2
    with CaptureQueriesContext(connection) as queries:
        batch = services.send_bulk(["+41791234561", "+41791234562", "+41791234563"], "Hi")
    table = connection.ops.quote_name(Message._meta.db_table)
    inserts = [q["sql"] for q in queries if f"INSERT INTO {table} " in q["sql"]]
    # PostgreSQL with psycopg 3: one COPY per chunk, which runs outside Django's statements;
    # elsewhere one INSERT per chunk, run for each row of it (``executemany``).
    copies = connection.vendor == "postgresql" and connection.Database.__name__ == "psycopg"
    assert len(inserts) == (0 if copies else 2)
    assert sorted(batch.messages.values_list("recipient", "status")) == [
        ("+41791234561", "sent"),
        ("+41791234562", "sent"),
        ("+41791234563", "sent"),
    ]


def test_a_chunk_whose_shared_values_have_no_copy_text_is_still_written_row_by_row(
    mitto_sandbox, monkeypatch
) -> None:
    from django_mitto import sql

    real = sql.copy_text

    def no_dates(value):
        if isinstance(value, dt.datetime):
            raise TypeError("No COPY text for datetime")
        return real(value)

    # The COPY is then fed row by row (PostgreSQL); the other databases never use COPY.
    monkeypatch.setattr(sql, "copy_text", no_dates)
    batch = services.send_bulk(["+41791234561", "+4915112345678"], "Hi", references=["r-1", "r-2"])
    rows = list(batch.messages.order_by("pk").values_list("recipient", "country", "reference"))
    assert rows == [("+41791234561", "CHE", "r-1"), ("+4915112345678", "DEU", "r-2")]
    assert set(batch.messages.values_list("status", flat=True)) == {"sent"}


def test_send_sms_refuses_a_bad_recipient_with_the_validators_words() -> None:
    with pytest.raises(ValidationError) as info:
        services.send_sms("+41 12", "Hi")
    (error,) = info.value.error_dict["recipient"]
    assert error.messages == ["+41 12 is not a valid phone number."]
    assert Message.objects.count() == 0


def test_send_bulk_without_recipients_is_refused_with_the_code_required() -> None:
    with pytest.raises(ValidationError) as info:
        services.send_bulk([], "Hi")
    (error,) = info.value.error_dict["recipients"]
    assert (error.code, error.message) == ("required", "Give at least one recipient.")


def test_a_bad_encoding_still_names_the_texts_own_fault_on_text() -> None:
    errors = _errors(services.send_sms, "+41791234567", "Hi\x07", encoding="EBCDIC")
    assert sorted(errors) == ["encoding", "text"]
    assert errors["text"] == ["Contains control characters that cannot be sent: U+0007."]


def test_message_with_a_recipient_written_by_update_fails_at_send_naming_it(
    mitto_sandbox, settings
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    message = Message.objects.create(recipient="+41791234567", text="Hi", sender="Shop")
    Message.objects.filter(pk=message.pk).update(recipient="+41 12")
    services.send_message(message.pk)
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert "recipient: +41 12 is not a valid phone number." in message.error
    assert mitto_sandbox.messages == []


def test_a_claim_stamps_when_the_message_started_sending(settings) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    message = Message.objects.create(recipient="+41791234567", text="Hi", sender="Shop")
    Message.objects.filter(pk=message.pk).update(status_changed_at=None)
    before = timezone.now()
    claimed = sending._claim(message.pk)
    assert claimed is not None
    message.refresh_from_db()
    assert (message.status, message.attempts) == (Message.Status.SENDING, 1)
    assert before <= message.status_changed_at <= timezone.now()
    assert claimed.status_changed_at == message.status_changed_at


def test_a_sent_message_is_read_back_when_its_waiting_reports_failed_halfway(
    mitto_sandbox, monkeypatch
) -> None:
    # The reports that came before the id was known were applied in part, then the database
    # failed: the message returned is the row as it now is, not the answer alone.
    def half_applied(message, *args, **kwargs):
        Message.objects.filter(pk=message.pk).update(status=Message.Status.DELIVERED)
        raise RuntimeError("connection lost")

    monkeypatch.setattr(sending, "apply_pending_reports", half_applied)
    message = services.send_sms("+41791234567", "Hi")
    assert message.status == Message.Status.DELIVERED
    assert message.provider_id == mitto_sandbox.messages[0]["id"]


def test_each_send_waits_its_accounts_turn_a_chunk_counting_its_recipients(
    mitto_sandbox, monkeypatch, settings
) -> None:
    from django_mitto import throttle

    turns = []
    monkeypatch.setattr(throttle, "acquire", lambda *args, **kwargs: turns.append(args))
    services.send_sms("+41791234567", "Hi")
    assert turns == [("default", 1)]
    settings.MITTO_SEND_ON_SAVE = False
    batch, members = queued_batch("+41791234561", "+41791234562", "+41791234563")
    services.attempt_chunk(batch, [m.pk for m in members])
    assert turns[1:] == [(batch.account, 3)]


# -- the survivors of a fifth sample (seed 5) -----------------------------------------------------


def test_an_id_that_cannot_be_stored_is_explained_in_full(canned_api) -> None:
    from tests.canned import Reply

    long_id = "f" * 65
    canned_api.reply(Reply(body={"id": long_id, **ACCEPTED}))
    message = services.send_sms("+41791234567", "Hi")
    assert (message.status, message.provider_id) == ("sent", "")
    assert message.error == (
        "Mitto accepted the message (responseCode 0) but its id cannot be stored (more than 64 "
        f"characters, or not printable ASCII): '{long_id}'. Delivery reports cannot be matched "
        "by id."
    )


def test_attempt_message_gives_up_after_the_attempts_it_is_given(mitto_sandbox, settings) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    settings.MITTO_MAX_ATTEMPTS = 5
    message = Message.objects.create(recipient="+41791234567", text="Hi", sender="Shop")
    mitto_sandbox.add_fault("error_503")
    outcome = services.attempt_message(message.pk, max_attempts=1)
    assert (outcome.retry, outcome.attempts) == (False, 1)
    assert outcome.message.status == Message.Status.FAILED
    assert outcome.message.error.endswith("Gave up after 1 attempts.")


def test_a_message_put_back_in_the_queue_says_why_it_was_not_sent(mitto_sandbox, settings) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    message = Message.objects.create(recipient="+41791234567", text="Hi", sender="Shop")
    mitto_sandbox.add_fault("error_503", times=1)
    outcome = services.attempt_message(message.pk)
    assert outcome.retry is True
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    assert "503" in message.error
    services.attempt_message(message.pk)
    message.refresh_from_db()
    assert (message.status, message.error) == (Message.Status.SENT, "")


def test_message_with_a_protocol_id_written_by_update_fails_at_send_naming_it(
    mitto_sandbox, settings
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    message = Message.objects.create(recipient="+41791234567", text="Hi", sender="Shop")
    Message.objects.filter(pk=message.pk).update(pid=300)
    services.send_message(message.pk)
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.error == f"pid: {PID_RANGE}"
    assert mitto_sandbox.messages == []


def test_a_sent_chunk_stamps_when_its_rows_changed_status(mitto_sandbox, settings) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    batch, members = queued_batch("+41791234561", "+41791234562")
    before = timezone.now()
    services.attempt_chunk(batch, [m.pk for m in members])
    rows = list(batch.messages.values_list("status", "status_changed_at"))
    assert [status for status, _ in rows] == ["sent", "sent"]
    after = timezone.now()
    for _, changed in rows:
        assert changed is not None and before <= changed <= after


def test_a_failed_chunk_is_announced_to_receivers_of_the_message_class(
    canned_api, settings
) -> None:
    from tests.canned import Reply

    settings.MITTO_SEND_ON_SAVE = False
    seen = []

    def on_failed(sender, message, error, **kwargs):
        seen.append((sender, message.pk, message.status, error.response_code))

    message_failed.connect(on_failed, sender=Message)
    try:
        batch, members = queued_batch("+41791234561", "+41791234562")
        canned_api.reply(Reply(400, {"responseCode": 8, "responseText": "Invalid sender"}))
        services.attempt_chunk(batch, [m.pk for m in members])
    finally:
        message_failed.disconnect(on_failed, sender=Message)
    assert sorted(seen) == [(Message, m.pk, "failed", 8) for m in members]


def test_a_refused_chunk_leaves_alone_a_row_another_worker_claimed_meanwhile(
    canned_api, settings
) -> None:
    import uuid

    from django.db import connection as thread_connection

    from tests.canned import Reply

    settings.MITTO_SEND_ON_SAVE = False
    batch, (first, second) = queued_batch("+41791234561", "+41791234562")

    def claimed_elsewhere() -> None:  # put back in the queue and claimed by another worker
        Message.objects.filter(pk=second.pk).update(claim=uuid.uuid4())
        thread_connection.close()

    canned_api.reply(
        Reply(400, {"responseCode": 8, "responseText": "Invalid sender"}, before=claimed_elsewhere)
    )
    services.attempt_chunk(batch, [first.pk, second.pk])
    status = dict(Message.objects.values_list("pk", "status"))
    assert (status[first.pk], status[second.pk]) == ("failed", "sending")


def test_attempt_chunks_closed_early_gives_up_after_the_attempts_it_is_given(
    mitto_sandbox, settings
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    settings.MITTO_MAX_ATTEMPTS = 5
    batch, members = queued_batch("+41791234561", "+41791234562")
    mitto_sandbox.add_fault("error_503")
    outcomes = sending.attempt_chunks(batch, [[m.pk] for m in members], max_attempts=1)
    assert isinstance(outcomes, types.GeneratorType)
    first = next(outcomes)
    outcomes.close()  # the second chunk was already on its way: its answer is still recorded
    assert (first.retry, first.attempts) == (False, 1)
    assert list(batch.messages.values_list("status", "attempts")) == [("failed", 1)] * 2


def test_a_refused_chunk_keeps_at_most_255_characters_of_mittos_text(canned_api, settings) -> None:
    from tests.canned import Reply

    settings.MITTO_SEND_ON_SAVE = False
    batch, members = queued_batch("+41791234561", "+41791234562")
    words = "Invalid sender. " * 20  # 320 characters
    canned_api.reply(Reply(400, {"responseCode": 8, "responseText": words}))
    services.attempt_chunk(batch, [m.pk for m in members])
    rows = set(batch.messages.values_list("status", "response_code", "response_text"))
    assert rows == {("failed", 8, words[:255])}


def test_a_refused_message_keeps_at_most_255_characters_of_mittos_text(canned_api) -> None:
    from tests.canned import Reply

    words = "Invalid sender. " * 20  # 320 characters
    canned_api.reply(Reply(400, {"responseCode": 8, "responseText": words}))
    message = services.send_sms("+41791234567", "Hi")
    message.refresh_from_db()
    assert (message.status, message.response_code) == ("failed", 8)
    assert message.response_text == words[:255]


@pytest.mark.parametrize(("status", "code", "expected"), [(400, 6, "failed"), (500, 1, "unknown")])
def test_a_chunk_answered_with_a_code_but_no_text_keeps_the_code_and_no_text(
    canned_api, settings, status, code, expected
) -> None:
    from tests.canned import Reply

    settings.MITTO_SEND_ON_SAVE = False
    batch, members = queued_batch("+41791234561", "+41791234562")
    canned_api.reply(Reply(status, {"responseCode": code}))
    services.attempt_chunk(batch, [m.pk for m in members])
    rows = set(batch.messages.values_list("status", "response_code", "response_text"))
    assert rows == {(expected, code, "")}


def test_a_chunk_of_a_removed_account_fails_unsent_naming_the_account(
    mitto_sandbox, settings
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    batch = Batch.objects.create(text="Bulk", sender="Shop", total=2, account="gone")
    members = [
        Message.objects.create(recipient=n, text="Bulk", sender="Shop", batch=batch, account="gone")
        for n in ("+41791234561", "+41791234562")
    ]
    outcome = services.attempt_chunk(batch, [m.pk for m in members])
    assert outcome.retry is False
    rows = set(batch.messages.values_list("status", "error"))
    expected = "No Mitto account named 'gone' in MITTO_ACCOUNTS; known accounts: default."
    assert rows == {("failed", expected)}
    assert mitto_sandbox.messages == []


# -- seed 6 -----------------------------------------------------------------------------------


def test_send_bulk_refuses_a_single_string_as_recipients_with_the_code_invalid_type(
    mitto_sandbox,
) -> None:
    with pytest.raises(ValidationError) as info:
        services.send_bulk("+41791234567", "Hi")
    (error,) = info.value.error_dict["recipients"]
    assert (error.code, error.params) == ("invalid_type", {"type": "str"})


def test_a_completed_batch_keeps_when_it_completed_when_a_chunk_is_tried_again(
    mitto_sandbox, settings
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    batch, members = queued_batch("+41791234561", "+41791234562")
    services.send_batch(batch)
    batch.refresh_from_db()
    completed = batch.completed_at
    assert completed is not None
    # A task delivered twice (at-least-once brokers) tries the chunk again: nothing is claimed.
    outcome = services.attempt_chunk(batch, [m.pk for m in members])
    assert outcome.ids == [] and len(mitto_sandbox.messages) == 2
    batch.refresh_from_db()
    assert batch.completed_at == completed


def test_an_unknown_outcome_leaves_other_sends_alone(mitto_sandbox, settings) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    settings.MITTO_TIMEOUT = 0.3
    elsewhere = Message.objects.create(recipient="+41791234560", text="Hi", sender="Shop")
    Message.objects.filter(pk=elsewhere.pk).update(status="sending")  # another worker's send
    message = Message.objects.create(recipient="+41791234561", text="Hi", sender="Shop")
    mitto_sandbox.add_fault("timeout", seconds=1.5)
    outcome = services.attempt_message(message.pk)
    assert outcome.message.status == "unknown"
    elsewhere.refresh_from_db()
    assert (elsewhere.status, elsewhere.error) == ("sending", "")


def test_mark_stuck_unknown_stamps_when_the_status_changed(make_message) -> None:
    stuck = make_message(status="sending")
    _age([stuck], status_changed_at=timezone.now() - dt.timedelta(hours=1))
    before = timezone.now()
    assert services.mark_stuck_unknown(dt.timedelta(minutes=30)) == 1
    stuck.refresh_from_db()
    assert stuck.status == "unknown"
    assert before <= stuck.status_changed_at <= timezone.now()


def test_usage_counts_nothing_locally_for_a_country_only_mitto_reports(
    canned_api, settings
) -> None:
    from decimal import Decimal

    from tests.canned import Reply

    settings.MITTO_API_KEY = "usage-key"
    settings.MITTO_ACCOUNT_NAME = "Shop AG"
    canned_api.reply(Reply(body=[{"country": "AUT", "messagesCount": 3, "cost": "0.21"}]))
    today = dt.datetime.now(dt.timezone.utc).date()
    report = services.usage(today, today)
    (row,) = report.rows
    assert (row.country, row.mitto_messages, row.mitto_cost) == ("AUT", 3, Decimal("0.21"))
    assert (row.local_messages, row.local_parts, row.difference) == (0, 0, 3)
    assert report.local_messages == 0 and not row.matches


class AppLabelRouter:
    """A database router as projects write them: by the app of the model it is asked about."""

    def db_for_read(self, model, **hints):
        return "default" if model._meta.app_label == "django_mitto" else None

    db_for_write = db_for_read


def test_a_project_whose_router_routes_by_app_sends_single_and_bulk_messages(
    mitto_sandbox, settings, captured_signals, caplog
) -> None:
    settings.DATABASE_ROUTERS = [f"{__name__}.AppLabelRouter"]
    at_once = services.send_sms("+41791234560", "Hi")  # sent in-process, created claimed
    assert at_once.status == "sent"
    settings.MITTO_SEND_ON_SAVE = False
    queued = Message.objects.create(recipient="+41791234561", text="Hi", sender="Shop")
    assert services.attempt_message(queued.pk).message.status == "sent"  # claimed, then sent
    settings.MITTO_SEND_ON_SAVE = True
    batch = services.send_bulk(["+41791234562", "+41791234563"], "Bulk")
    assert set(batch.messages.values_list("status", flat=True)) == {"sent"}
    assert not [r for r in caplog.records if "row by row" in r.getMessage()]  # stored at once
    settings.MITTO_API_KEY = "wrong"
    refused = services.send_bulk(["+41791234564", "+41791234565"], "Bulk")
    assert set(refused.messages.values_list("status", flat=True)) == {"failed"}
    assert sorted(pk for pk, _ in captured_signals["failed"]) == sorted(
        refused.messages.values_list("pk", flat=True)
    )
    assert len(mitto_sandbox.messages) == 4


def test_a_failed_chunk_no_receiver_listens_to_is_not_read_back(canned_api, settings) -> None:
    from django.test.utils import CaptureQueriesContext

    from tests.canned import Reply

    settings.MITTO_SEND_ON_SAVE = False

    def fail_a_chunk() -> int:
        batch, members = queued_batch("+41791234561", "+41791234562")
        canned_api.reply(Reply(400, {"responseCode": 8, "responseText": "Invalid sender"}))
        with CaptureQueriesContext(connection) as queries:
            services.attempt_chunk(batch, [m.pk for m in members])
        assert set(batch.messages.values_list("status", flat=True)) == {"failed"}
        return len(queries)

    fail_a_chunk()  # (whatever the first call reads once)
    assert not message_failed.has_listeners(Message)
    unheard = fail_a_chunk()

    def on_failed(sender, message, error, **kwargs):
        pass

    message_failed.connect(on_failed, sender=Message)
    try:
        heard = fail_a_chunk()
    finally:
        message_failed.disconnect(on_failed, sender=Message)
    # The rows are read whole (one query) only for someone to announce them to.
    assert heard == unheard + 1


@pytest.mark.parametrize("count", [1, 3], ids=["one row", "three rows"])
def test_a_chunks_answer_is_written_in_one_statement_for_what_differs(
    mitto_sandbox, caplog, count
) -> None:
    from django.test.utils import CaptureQueriesContext

    numbers = [f"+4179123456{n}" for n in range(1, count + 1)]
    with CaptureQueriesContext(connection) as queries:
        batch = services.send_bulk(numbers, "Hi")
    assert set(batch.messages.values_list("status", flat=True)) == {"sent"}
    assert not [r for r in caplog.records if "row by row" in r.getMessage()]
    unnest = [q["sql"] for q in queries if "FROM unnest(" in q["sql"]]
    case = [q["sql"] for q in queries if q["sql"].startswith("UPDATE") and " CASE " in q["sql"]]
    if connection.vendor == "postgresql" and count > 1:
        # The rows' own ids by one UPDATE ... FROM unnest, not one CASE per row and column.
        assert (len(unnest), case) == (1, [])
    else:
        assert unnest == []
        assert len(case) == (1 if count > 1 else 0)


def test_an_answer_refused_for_another_reason_names_it_even_when_the_id_is_taken(
    canned_api, monkeypatch
) -> None:
    from tests.canned import Reply

    owner = Message.objects.create(
        recipient="+41791234560", text="Hi", sender="Shop", status="sent", provider_id="abc-3"
    )
    canned_api.reply(Reply(body={"id": "abc-3", **ACCEPTED}))
    real = sending._answer_fields

    def unbounded(result, now, **kwargs):
        fields, note = real(result, now, **kwargs)
        fields["segments"] = 10**20  # refused by the driver before the id is ever compared
        return fields, note

    monkeypatch.setattr(sending, "_answer_fields", unbounded)
    message = services.send_sms("+41791234567", "Hi")
    assert message.status == "unknown"
    assert re.match(
        r"Mitto's answer could not be stored \(\w+Error\)\. Answer: .*abc-3", message.error
    ), message.error
    assert f"message {owner.pk} already has" not in message.error


def test_an_answer_whose_id_is_taken_inside_a_transaction_leaves_the_transaction_usable(
    canned_api, settings
) -> None:
    from tests.canned import Reply

    settings.MITTO_SEND_ON_SAVE = False
    owner = Message.objects.create(
        recipient="+41791234560", text="Hi", sender="Shop", status="sent", provider_id="dup-1"
    )
    message = Message.objects.create(recipient="+41791234561", text="Hi", sender="Shop")
    canned_api.reply(Reply(body={"id": "dup-1", **ACCEPTED}))
    with transaction.atomic():
        # The refused write is undone alone (a savepoint): on PostgreSQL a failed statement
        # would otherwise abort the caller's whole transaction.
        sent = services.attempt_message(message.pk).message
        assert sent.status == "unknown"
        later = Message.objects.create(recipient="+41791234562", text="Later", sender="Shop")
    sent.refresh_from_db()
    assert sent.status == "unknown" and sent.provider_id == ""
    assert sent.error.startswith(
        f"Mitto's answer gives the id dup-1, which message {owner.pk} already has"
    )
    assert Message.objects.filter(pk=later.pk).exists()


# -- the sweep of _land ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "retry"),
    [
        ({"status": 503, "body": {"responseText": "Busy"}, "headers": {"Retry-After": "7"}}, True),
        ({"status": 400, "body": {"responseCode": 8, "responseText": "Invalid sender"}}, False),
        ({"body": {**ACCEPTED, "messages": []}}, False),
    ],
    ids=["busy", "refused", "accepted"],
)
def test_a_chunks_outcome_names_its_batch_and_its_attempts(
    canned_api, settings, reply, retry
) -> None:
    from tests.canned import Reply

    settings.MITTO_SEND_ON_SAVE = False
    settings.MITTO_MAX_ATTEMPTS = 3
    batch, members = queued_batch("+41791234561", "+41791234562")
    canned_api.reply(Reply(**reply))
    try:
        outcome = services.attempt_chunk(batch, [m.pk for m in members])
    finally:
        from django_mitto import throttle

        throttle._cache().delete(f"{throttle._PREFIX}:pause:{batch.account}")  # for what follows
    expected = (
        sending.ChunkOutcome(batch.pk, [m.pk for m in members], True, 7.0, 1)
        if retry
        else sending.ChunkOutcome(batch.pk, [], False, None, 1)
    )
    assert outcome == expected


def test_a_recipient_missing_mid_answer_is_unknown_and_the_next_ones_are_recorded(
    canned_api, settings
) -> None:
    from tests.canned import Reply

    settings.MITTO_SEND_ON_SAVE = False
    batch, members = queued_batch("+41791234561", "+41791234562", "+41791234563")
    items = [{"id": "a1", "to": "41791234561"}, {"id": "a3", "to": "41791234563"}]
    canned_api.reply(Reply(body={"responseCode": 0, "messages": items}))
    services.attempt_chunk(batch, [m.pk for m in members])
    first, missing, third = Message.objects.filter(batch=batch).order_by("pk")
    assert [(m.status, m.provider_id) for m in (first, missing, third)] == [
        ("sent", "a1"),
        ("unknown", ""),
        ("sent", "a3"),
    ]
    assert re.fullmatch(
        r"Mitto's bulk answer has no item for this recipient: it may have been sent\. "
        r"Answer: \{.*\"a3\".*\}",
        missing.error,
    ), missing.error
    # Stamped when the answer was recorded, as the rows sent, not when the chunk was claimed.
    assert missing.status_changed_at == first.status_changed_at == third.status_changed_at


def test_a_recipient_missing_from_a_chunks_answer_leaves_other_sends_alone(
    canned_api, settings
) -> None:
    from tests.canned import Reply

    settings.MITTO_SEND_ON_SAVE = False
    elsewhere = Message.objects.create(recipient="+41791234560", text="Hi", sender="Shop")
    Message.objects.filter(pk=elsewhere.pk).update(status="sending")  # another worker's send
    batch, members = queued_batch("+41791234561", "+41791234562")
    canned_api.reply(
        Reply(body={"responseCode": 0, "messages": [{"id": "a1", "to": "41791234561"}]})
    )
    services.attempt_chunk(batch, [m.pk for m in members])
    assert sorted(batch.messages.values_list("recipient", "status")) == [
        ("+41791234561", "sent"),
        ("+41791234562", "unknown"),
    ]
    elsewhere.refresh_from_db()
    assert (elsewhere.status, elsewhere.error) == ("sending", "")


def test_a_sent_chunk_is_announced_to_receivers_of_the_message_class(mitto_sandbox, settings):
    settings.MITTO_SEND_ON_SAVE = False
    seen = []

    def on_sent(sender, message, result, **kwargs):
        seen.append((sender, message.pk, message.status, result.id == message.provider_id))

    message_sent.connect(on_sent, sender=Message)
    try:
        batch, members = queued_batch("+41791234561", "+41791234562")
        services.attempt_chunk(batch, [m.pk for m in members])
    finally:
        message_sent.disconnect(on_sent, sender=Message)
    assert sorted(seen) == [(Message, m.pk, "sent", True) for m in members]


@pytest.mark.parametrize(
    "reply",
    [
        {"status": 400, "body": {"responseCode": 8, "responseText": "Invalid sender"}},
        {"body": {"responseCode": 0, "messages": [{"id": "a1", "to": "41791234561"}]}},
    ],
    ids=["refused", "missing from the answer"],
)
def test_a_row_flagged_stuck_while_its_chunk_was_in_flight_keeps_that_flag(
    canned_api, settings, reply
) -> None:
    from django.db import connection as thread_connection

    from tests.canned import Reply

    settings.MITTO_SEND_ON_SAVE = False
    batch, (first, second) = queued_batch("+41791234561", "+41791234562")

    def flagged_stuck() -> None:  # mitto_dispatch's mark_stuck_unknown, while Mitto is slow
        Message.objects.filter(pk=second.pk).update(status="unknown", error=sending.STUCK_ERROR)
        thread_connection.close()

    canned_api.reply(Reply(**reply, before=flagged_stuck))
    services.attempt_chunk(batch, [first.pk, second.pk])
    second.refresh_from_db()
    assert (second.status, second.error) == ("unknown", sending.STUCK_ERROR)
    assert Message.objects.get(pk=first.pk).status in ("failed", "sent")


def test_a_report_that_came_for_a_recipient_missing_from_the_answer_is_applied(
    canned_api, settings
) -> None:
    from django.db import connection as thread_connection

    from django_mitto.callbacks import ParsedReport, record_report
    from tests.canned import Reply

    settings.MITTO_SEND_ON_SAVE = False
    batch, (first, second) = queued_batch("+41791234561", "+41791234562")

    def report_arrives() -> None:  # on the batch's URL, while the chunk is in flight
        parsed = ParsedReport(
            provider_id="m2",
            status="Delivered",
            recipient="41791234562",
            payload={"scope": f"batch {batch.pk}"},  # as the view stores it
        )
        record_report(parsed, method="POST", remote_addr=None, batch_pk=batch.pk)
        thread_connection.close()

    items = [{"id": "m1", "to": "41791234561"}]  # none for the second recipient
    canned_api.reply(Reply(body={"responseCode": 0, "messages": items}, before=report_arrives))
    services.attempt_chunk(batch, [first.pk, second.pk])
    second.refresh_from_db()
    assert (second.status, second.provider_id) == ("delivered", "m2")
    report = DeliveryReport.objects.get(provider_id="m2")
    assert (report.message_id, report.outcome) == (second.pk, "applied")


# -- the sweep of _attempt ------------------------------------------------------------------------


def test_a_message_that_cannot_be_prepared_is_announced_failed_with_the_error(
    mitto_sandbox, settings, captured_signals
) -> None:
    from django_mitto.exceptions import MittoConfigurationError

    settings.MITTO_SEND_ON_SAVE = False
    message = Message.objects.create(recipient="+41791234561", text="Hi", sender="Shop")
    settings.MITTO_API_KEY = ""  # removed from the settings after the message was queued
    outcome = services.attempt_message(message.pk)
    assert (outcome.message.status, outcome.retry) == ("failed", False)
    assert "MITTO_API_KEY" in outcome.message.error
    ((pk, error),) = captured_signals["failed"]
    assert pk == message.pk
    assert isinstance(error, MittoConfigurationError) and str(error) == outcome.message.error
    assert mitto_sandbox.messages == []


def test_a_message_told_to_wait_pauses_its_own_account(mitto_sandbox, settings) -> None:
    from django_mitto import throttle

    settings.MITTO_SEND_ON_SAVE = False
    message = Message.objects.create(recipient="+41791234561", text="Hi", sender="Shop")
    mitto_sandbox.add_fault("429", times=1, retry_after=30)
    try:
        outcome = services.attempt_message(message.pk)
        assert (outcome.retry, outcome.retry_after) == (True, 30.0)
        # Every process sending for the account waits, not only this one.
        assert 25 < throttle.paused_for(message.account) <= 30
    finally:
        throttle._cache().delete(f"{throttle._PREFIX}:pause:{message.account}")


# -- the sweep of attempt_chunks --------------------------------------------------------------------


def test_attempt_chunks_names_the_batch_of_a_chunk_with_nothing_left_to_send(
    mitto_sandbox, settings
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    batch, members = queued_batch("+41791234561", "+41791234562")
    services.send_batch(batch)
    # Handed over again (a task delivered twice): every row is sent already, nothing is claimed.
    outcomes = list(sending.attempt_chunks(batch, [[members[0].pk], [members[1].pk]]))
    assert outcomes == [sending.ChunkOutcome(batch.pk), sending.ChunkOutcome(batch.pk)]
    assert len(mitto_sandbox.messages) == 2
