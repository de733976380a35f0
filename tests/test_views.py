"""The delivery-report endpoint: routing, field aliases, authentication, answers, cost, races."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from rest_framework import serializers
from rest_framework.test import APIClient

from django_mitto import callbacks, sending
from django_mitto.client import SendResult
from django_mitto.models import Batch, DeliveryReport, Message, Status
from django_mitto.serializers import REPORT_FIELDS, DeliveryReportSerializer, resolve_aliases
from django_mitto.signals import delivery_report_received, message_status_changed

SECRET = "callback-secret"
FORBIDDEN = {"detail": "Forbidden."}
Outcome = DeliveryReport.Outcome


def callback_url(token: str = SECRET) -> str:
    return reverse("django_mitto:callback", kwargs={"token": token})


# -- fixtures -------------------------------------------------------------------------------------


class SignalLog:
    """What the delivery-report signals announced (thread-safe)."""

    def __init__(self) -> None:
        self.received: list[tuple[int, int | None]] = []
        self.changed: list[tuple[int, str, str]] = []
        self.lock = threading.Lock()

    def on_received(self, sender: Any, report: DeliveryReport, message: Any, **kw: Any) -> None:
        with self.lock:
            self.received.append((report.pk, message.pk if message else None))

    def on_changed(
        self, sender: Any, message: Message, old_status: str, new_status: str, **kw: Any
    ) -> None:
        with self.lock:
            self.changed.append((message.pk, old_status, new_status))


@pytest.fixture
def signals() -> Iterator[SignalLog]:
    log = SignalLog()
    delivery_report_received.connect(log.on_received, weak=False)
    message_status_changed.connect(log.on_changed, weak=False)
    yield log
    delivery_report_received.disconnect(log.on_received)
    message_status_changed.disconnect(log.on_changed)


@pytest.fixture
def message(make_message: Callable[..., Message]) -> Message:
    return make_message(provider_id="abc-123")


@pytest.fixture
def api() -> APIClient:
    return APIClient(enforce_csrf_checks=True)


def post_json(client: Client, url: str, data: Any) -> Any:
    return client.post(url, json.dumps(data), content_type="application/json")


def post_form(client: Client, url: str, data: dict[str, str]) -> Any:
    return client.post(url, urlencode(data), content_type="application/x-www-form-urlencoded")


def status_of(message: Message) -> str:
    return Message.objects.values_list("status", flat=True).get(pk=message.pk)


# -- route and methods ----------------------------------------------------------------------------


def test_callback_url_is_named_and_takes_a_token() -> None:
    assert callback_url("tok") == "/mitto/callback/tok/"


def test_get_with_a_query_string_applies_the_report(client: Client, message: Message) -> None:
    response = client.get(callback_url(), {"id": "abc-123", "status": "delivered"})
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "outcome": "applied"}
    assert status_of(message) == Status.DELIVERED


def test_post_with_a_json_body_applies_the_report(api: APIClient, message: Message) -> None:
    response = api.post(callback_url(), {"msgid": "abc-123", "status": "DELIVRD"}, format="json")
    assert response.status_code == 200
    assert response.json()["outcome"] == Outcome.APPLIED
    assert status_of(message) == Status.DELIVERED


def test_post_with_a_form_body_applies_the_report(client: Client, message: Message) -> None:
    response = post_form(client, callback_url(), {"id": "abc-123", "status": "delivered"})
    assert response.status_code == 200, response.content
    assert status_of(message) == Status.DELIVERED


def test_multipart_report_with_a_file_part_is_stored(client: Client, message: Message) -> None:
    upload = SimpleUploadedFile("note.txt", b"hello")
    response = client.post(
        callback_url(), {"id": "abc-123", "status": "delivered", "attachment": upload}
    )
    assert response.status_code == 200, response.content
    assert status_of(message) == Status.DELIVERED


def test_query_string_on_a_post_counts_too(api: APIClient, message: Message) -> None:
    url = callback_url() + "?" + urlencode({"id": "abc-123", "errorcode": "0"})
    response = api.post(url, {"status": "delivered"}, format="json")
    assert response.status_code == 200
    stored = DeliveryReport.objects.get()
    assert (stored.provider_id, stored.status, stored.error_code) == ("abc-123", "delivered", "0")
    assert stored.payload == {
        "query": {"id": "abc-123", "errorcode": "0"},
        "body": {"status": "delivered"},
    }
    assert status_of(message) == Status.DELIVERED


def test_csrf_token_is_not_required(message: Message) -> None:
    api = APIClient(enforce_csrf_checks=True)
    api.cookies["csrftoken"] = "x" * 32  # a session-like client, still no token sent
    response = api.post(callback_url(), {"id": "abc-123", "status": "delivered"}, format="json")
    assert response.status_code == 200
    assert status_of(message) == Status.DELIVERED


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_other_methods_are_not_allowed(api: APIClient, message: Message, method: str) -> None:
    response = getattr(api, method)(
        callback_url(), {"id": "abc-123", "status": "delivered"}, format="json"
    )
    assert response.status_code == 405
    assert status_of(message) == Status.SENT
    assert not DeliveryReport.objects.exists()


def test_head_answers_200(client: Client, db: None) -> None:
    response = client.head(callback_url())
    assert response.status_code == 200
    assert not DeliveryReport.objects.exists()


def test_get_without_a_query_answers_200_and_stores_nothing(client: Client, db: None) -> None:
    response = client.get(callback_url())
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert not DeliveryReport.objects.exists()


def test_ping_with_a_wrong_token_is_refused(client: Client, db: None) -> None:
    assert client.get(callback_url("wrong")).status_code == 403
    assert client.head(callback_url("wrong")).status_code == 403


# -- field aliases --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["id", "ID", "msgid", "MsgId", "messageId", "MESSAGEID"])
def test_every_id_alias_finds_the_message(client: Client, message: Message, key: str) -> None:
    response = client.get(callback_url(), {key: "abc-123", "status": "delivered"})
    assert response.json()["outcome"] == Outcome.APPLIED
    assert DeliveryReport.objects.get().message_id == message.pk


@pytest.mark.parametrize("key", ["status", "STATUS", "deliveryStatus", "deliverystatus"])
def test_every_status_alias_is_read(client: Client, message: Message, key: str) -> None:
    response = client.get(callback_url(), {"id": "abc-123", key: "UNDELIV"})
    assert response.json()["outcome"] == Outcome.APPLIED
    assert status_of(message) == Status.UNDELIVERED


@pytest.mark.parametrize("key", ["errorcode", "errorCode", "ERRORCODE"])
def test_error_code_alias_is_read(client: Client, message: Message, key: str) -> None:
    client.get(callback_url(), {"id": "abc-123", "status": "UNDELIV", key: "34"})
    assert DeliveryReport.objects.get().error_code == "34"
    message.refresh_from_db()
    assert message.error_code == "34"


@pytest.mark.parametrize("key", ["reference", "Reference"])
def test_reference_is_read(client: Client, message: Message, key: str) -> None:
    client.get(callback_url(), {"id": "abc-123", "status": "sent", key: "order-7"})
    assert DeliveryReport.objects.get().reference == "order-7"


@pytest.mark.parametrize("key", ["receiver", "Receiver", "to", "TO"])
def test_receiver_alias_is_read(client: Client, message: Message, key: str) -> None:
    client.get(callback_url(), {"id": "abc-123", "status": "sent", key: "41791234567"})
    assert DeliveryReport.objects.get().recipient == "41791234567"


@pytest.mark.parametrize(
    ("fields", "mcc", "mnc"),
    [
        ({"mccmnc": "22801"}, "228", "01"),
        ({"MccMnc": "310260"}, "310", "260"),
        ({"mcc": "228", "mnc": "1"}, "228", "1"),
        ({"MCC": "262", "MNC": "07"}, "262", "07"),
        ({"mccmnc": "22801", "mcc": "999", "mnc": "99"}, "228", "01"),
    ],
)
def test_network_codes_are_read(
    client: Client, message: Message, fields: dict[str, str], mcc: str, mnc: str
) -> None:
    client.get(callback_url(), {"id": "abc-123", "status": "delivered", **fields})
    stored = DeliveryReport.objects.get()
    assert (stored.mcc, stored.mnc) == (mcc, mnc)
    message.refresh_from_db()
    assert (message.mcc, message.mnc) == (mcc, mnc)


MAY_31_NOON = datetime(2024, 5, 31, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "fields",
    [
        {"sendtime": "2024-05-31 12:00:00"},
        {"SendTime": "2024-05-31T12:00:00Z"},
        {"sendtimestamp": "1717156800"},
        {"sendTimestamp": "1717156800", "sendtime": "1999-01-01 00:00:00"},
    ],
)
def test_send_time_is_read(client: Client, message: Message, fields: dict[str, str]) -> None:
    response = client.get(callback_url(), {"id": "abc-123", "status": "delivered", **fields})
    assert response.status_code == 200
    assert DeliveryReport.objects.get().provider_sent_at == MAY_31_NOON


@pytest.mark.parametrize(
    "fields",
    [
        {"id": "abc-123", "msgid": "other", "messageId": "other"},
        {"msgid": "abc-123", "messageId": "other"},
        {"messageId": "abc-123", "to": "other"},
    ],
)
def test_first_present_id_alias_wins(
    client: Client, message: Message, make_message, fields: dict[str, str]
) -> None:
    other = make_message(provider_id="other")
    client.get(callback_url(), {**fields, "status": "delivered"})
    assert status_of(message) == Status.DELIVERED
    assert status_of(other) == Status.SENT


def test_status_wins_over_delivery_status(client: Client, message: Message) -> None:
    client.get(callback_url(), {"id": "abc-123", "deliveryStatus": "failed", "status": "delivered"})
    assert status_of(message) == Status.DELIVERED


def test_json_numbers_are_read_as_text(api: APIClient, make_message) -> None:
    numeric = make_message(provider_id="12345")
    body = {"id": 12345, "status": "delivered", "errorcode": 0, "sendtimestamp": 1717156800.0}
    response = api.post(callback_url(), body, format="json")
    assert response.status_code == 200
    stored = DeliveryReport.objects.get()
    assert (stored.message_id, stored.error_code) == (numeric.pk, "0")
    assert stored.provider_sent_at == MAY_31_NOON


# -- authentication -------------------------------------------------------------------------------


def test_rotated_secrets_are_both_accepted_and_others_refused(
    client: Client, message: Message, settings: Any
) -> None:
    settings.MITTO_CALLBACK_SECRET = ["new", "old"]
    report = {"id": "abc-123", "status": "sent"}
    assert client.get(callback_url("new"), report).status_code == 200
    assert client.get(callback_url("old"), report).status_code == 200
    refused = client.get(callback_url(SECRET), report)
    assert refused.status_code == 403
    assert refused.json() == FORBIDDEN
    assert DeliveryReport.objects.count() == 2


def test_message_token_needs_no_id(client: Client, make_message) -> None:
    message = make_message(status=Status.SENDING)
    response = client.get(callback_url(callbacks.message_token(message)), {"status": "delivered"})
    assert response.json()["outcome"] == Outcome.APPLIED
    assert status_of(message) == Status.DELIVERED
    assert DeliveryReport.objects.get().message_id == message.pk


def test_message_token_works_without_any_configured_secret(
    client: Client, make_message, settings: Any
) -> None:
    settings.MITTO_CALLBACK_SECRET = ""
    message = make_message(status=Status.SENDING)
    response = client.get(callback_url(callbacks.message_token(message)), {"status": "delivered"})
    assert response.status_code == 200
    assert status_of(message) == Status.DELIVERED


def test_token_of_one_message_cannot_be_altered_to_reach_another(
    client: Client, make_message
) -> None:
    first = make_message(provider_id="first")
    second = make_message(provider_id="second")
    token = callbacks.message_token(first)
    value, signature = token.split(".", 1)
    for forged in (
        f"m{second.pk}.{signature}",
        f"b{first.pk}.{signature}",
        f"{value}.{signature[::-1]}",
        f"{value}.",
    ):
        response = client.get(callback_url(forged), {"id": "second", "status": "delivered"})
        assert response.status_code == 403, forged
        assert response.json() == FORBIDDEN
    assert status_of(first) == Status.SENT
    assert status_of(second) == Status.SENT
    assert not DeliveryReport.objects.exists()


def test_message_token_applies_to_its_own_message_only(client: Client, make_message) -> None:
    first = make_message(provider_id="first")
    second = make_message(provider_id="second")
    url = callback_url(callbacks.message_token(first))
    response = client.get(url, {"id": "second", "status": "delivered"})
    assert response.status_code == 200
    assert response.json()["outcome"] == Outcome.MISMATCHED
    assert status_of(first) == status_of(second) == Status.SENT
    assert client.get(url, {"id": "first", "status": "delivered"}).status_code == 200
    assert status_of(first) == Status.DELIVERED
    assert status_of(second) == Status.SENT


def test_batch_token_is_accepted_and_matches_by_id(client: Client, make_message) -> None:
    batch = Batch.objects.create(text="Hello", total=1)
    member = make_message(provider_id="in-batch", batch=batch)
    url = callback_url(callbacks.batch_token(batch))
    assert client.get(url, {"status": "delivered"}).status_code == 400  # the id is needed
    response = client.get(url, {"id": "in-batch", "status": "delivered"})
    assert response.json()["outcome"] == Outcome.APPLIED
    assert status_of(member) == Status.DELIVERED


def test_batch_token_only_reaches_messages_of_its_batch(client: Client, make_message) -> None:
    batch = Batch.objects.create(text="Hello", total=1)
    other_batch = Batch.objects.create(text="Hello", total=1)
    outsider = make_message(provider_id="outsider", batch=other_batch)
    response = client.get(
        callback_url(callbacks.batch_token(batch)), {"id": "outsider", "status": "delivered"}
    )
    assert response.status_code in (200, 403)
    assert status_of(outsider) == Status.SENT


def test_wrong_token_and_wrong_address_get_the_same_answer(
    client: Client, message: Message, settings: Any
) -> None:
    report = {"id": "abc-123", "status": "delivered"}
    wrong_token = client.get(callback_url("not-the-secret"), report)
    settings.MITTO_CALLBACK_ALLOWED_IPS = ["10.0.0.0/8"]
    wrong_address = client.get(callback_url(), report, REMOTE_ADDR="192.0.2.1")
    assert wrong_token.status_code == wrong_address.status_code == 403
    assert wrong_token.content == wrong_address.content
    assert wrong_token.json() == FORBIDDEN
    assert status_of(message) == Status.SENT
    assert not DeliveryReport.objects.exists()


def test_no_token_configured_refuses_the_account_url(
    client: Client, message: Message, settings: Any
) -> None:
    settings.MITTO_CALLBACK_SECRET = ""
    response = client.get(callback_url(), {"id": "abc-123", "status": "delivered"})
    assert response.status_code == 403
    settings.MITTO_CALLBACK_SECRET = []
    assert client.get(callback_url(), {"id": "abc-123", "status": "delivered"}).status_code == 403
    assert status_of(message) == Status.SENT


@pytest.mark.parametrize(("address", "code"), [("10.1.2.3", 200), ("192.168.1.10", 403)])
def test_allowed_ips_check_the_remote_address(
    client: Client, message: Message, settings: Any, address: str, code: int
) -> None:
    settings.MITTO_CALLBACK_ALLOWED_IPS = ["10.0.0.0/8"]
    response = client.get(
        callback_url(), {"id": "abc-123", "status": "delivered"}, REMOTE_ADDR=address
    )
    assert response.status_code == code
    if code == 200:
        assert DeliveryReport.objects.get().remote_addr == address


@pytest.mark.parametrize(
    ("header", "remote", "code"),
    [("10.0.0.5", "192.0.2.1", 200), ("192.0.2.1", "10.0.0.5", 403), ("", "10.0.0.5", 200)],
)
def test_ip_header_is_used_instead_of_remote_addr(
    client: Client, message: Message, settings: Any, header: str, remote: str, code: int
) -> None:
    settings.MITTO_CALLBACK_ALLOWED_IPS = ["10.0.0.0/8"]
    settings.MITTO_CALLBACK_IP_HEADER = "X-Real-IP"
    extra = {"HTTP_X_REAL_IP": header} if header else {}
    response = client.get(
        callback_url(), {"id": "abc-123", "status": "delivered"}, REMOTE_ADDR=remote, **extra
    )
    assert response.status_code == code
    if code == 200:
        assert DeliveryReport.objects.get().remote_addr == (header or remote)


@pytest.mark.parametrize(
    ("address", "code"), [("2a06:b080:a001:8641::12", 200), ("2001:db8::12", 403)]
)
def test_allowed_ips_take_ipv6_ranges(
    client: Client, message: Message, settings: Any, address: str, code: int
) -> None:
    settings.MITTO_CALLBACK_ALLOWED_IPS = ["2a06:b080:a001:8641::/64"]
    response = client.get(
        callback_url(), {"id": "abc-123", "status": "delivered"}, REMOTE_ADDR=address
    )
    assert response.status_code == code


@pytest.mark.parametrize(
    "body", ['{"id": "abc-123", "status"', "[1, 2]"], ids=["malformed", "list"]
)
def test_wrong_token_is_refused_before_the_body_is_read(
    client: Client, message: Message, body: str
) -> None:
    response = client.post(callback_url("wrong"), body, content_type="application/json")
    assert response.status_code == 403


# -- processing -----------------------------------------------------------------------------------


def test_accepted_report_is_stored_with_everything_it_said(
    client: Client, message: Message
) -> None:
    query = {
        "msgid": "abc-123",
        "status": "DELIVRD",
        "errorcode": "0",
        "reference": "order-7",
        "receiver": "41791234567",
        "mccmnc": "22801",
        "sendtime": "2024-05-31 12:00:00",
        "price": "0.05",
    }
    response = client.get(callback_url(), query, REMOTE_ADDR="198.51.100.7")
    assert response.json() == {"status": "ok", "outcome": "applied"}
    stored = DeliveryReport.objects.get()
    assert stored.message_id == message.pk
    assert stored.payload == {"query": query}
    assert stored.method == "GET"
    assert stored.remote_addr == "198.51.100.7"
    assert (stored.provider_id, stored.status, stored.mapped_status) == (
        "abc-123",
        "DELIVRD",
        Status.DELIVERED,
    )
    assert (stored.error_code, stored.reference, stored.recipient) == (
        "0",
        "order-7",
        "41791234567",
    )
    assert (stored.mcc, stored.mnc) == ("228", "01")
    assert stored.provider_sent_at == MAY_31_NOON
    assert stored.outcome == Outcome.APPLIED
    assert stored.received_at is not None

    message.refresh_from_db()
    assert message.status == Status.DELIVERED
    assert (message.delivery_status, message.error_code) == ("DELIVRD", "0")
    assert (message.mcc, message.mnc) == ("228", "01")
    assert message.status_changed_at is not None


def test_json_report_keeps_the_raw_body_and_method(api: APIClient, message: Message) -> None:
    body = {"messageId": "abc-123", "status": "delivered", "extra": {"nested": [1, None]}}
    api.post(callback_url(), body, format="json")
    stored = DeliveryReport.objects.get()
    assert stored.method == "POST"
    assert stored.payload == {"query": {}, "body": body}


def test_nul_characters_in_the_raw_payload_are_stored_replaced(
    api: APIClient, message: Message
) -> None:
    body = {"id": "abc-123", "status": "delivered", "note\x00": "a\x00b"}
    response = api.post(callback_url(), body, format="json")
    assert response.status_code == 200
    assert DeliveryReport.objects.get().payload["body"]["note\ufffd"] == "a\ufffdb"


ALL_WORDS = {
    "DELIVRD": Status.DELIVERED,
    "UNDELIV": Status.UNDELIVERED,
    "EXPIRED": Status.EXPIRED,
    "REJECTD": Status.REJECTED,
    "DELETED": Status.FAILED,
    "ACCEPTD": Status.SENT,
    "ENROUTE": Status.SENT,
    "UNKNOWN": Status.SENT,
    "Delivered": Status.DELIVERED,
    "UNDELIVERED": Status.UNDELIVERED,
    "Undeliverable": Status.UNDELIVERED,
    "failed": Status.FAILED,
    "Expired": Status.EXPIRED,
    "Rejected": Status.REJECTED,
    "SENT": Status.SENT,
    "Buffered": Status.SENT,
    "accepted": Status.SENT,
}


@pytest.mark.parametrize(("word", "expected"), sorted(ALL_WORDS.items()))
def test_status_word_moves_the_message_through_the_view(
    client: Client, make_message, word: str, expected: str
) -> None:
    message = make_message(status=Status.SENDING)
    response = client.get(callback_url(callbacks.message_token(message)), {"status": word})
    assert response.json()["outcome"] == Outcome.APPLIED
    message.refresh_from_db()
    assert (message.status, message.delivery_status) == (expected, word)


def test_unknown_status_word_is_stored_and_changes_nothing(
    client: Client, message: Message, signals: SignalLog, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = client.get(callback_url(), {"id": "abc-123", "status": "PENDING_X"})
    assert response.status_code == 200
    assert response.json()["outcome"] == Outcome.UNKNOWN_STATUS
    stored = DeliveryReport.objects.get()
    assert (stored.status, stored.mapped_status, stored.message_id) == ("PENDING_X", "", message.pk)
    message.refresh_from_db()
    assert (message.status, message.delivery_status) == (Status.SENT, "")
    assert signals.changed == []
    assert signals.received == [(stored.pk, message.pk)]


@pytest.mark.parametrize("late", ["sent", "buffered"])
def test_out_of_order_report_leaves_the_message_delivered(
    client: Client, message: Message, late: str
) -> None:
    client.get(callback_url(), {"id": "abc-123", "status": "delivered"})
    response = client.get(callback_url(), {"id": "abc-123", "status": late})
    assert response.status_code == 200
    assert response.json()["outcome"] == Outcome.STALE
    message.refresh_from_db()
    assert (message.status, message.delivery_status) == (Status.DELIVERED, "delivered")
    assert DeliveryReport.objects.count() == 2


def test_duplicate_report_changes_nothing(
    client: Client, message: Message, signals: SignalLog, django_capture_on_commit_callbacks
) -> None:
    report = {"id": "abc-123", "status": "delivered", "errorcode": "0"}
    with django_capture_on_commit_callbacks(execute=True):
        first = client.get(callback_url(), report)
    message.refresh_from_db()
    snapshot = (message.status, message.delivery_status, message.status_changed_at)
    with django_capture_on_commit_callbacks(execute=True):
        second = client.get(callback_url(), report)
    assert first.json()["outcome"] == Outcome.APPLIED
    assert second.json()["outcome"] == Outcome.DUPLICATE
    message.refresh_from_db()
    assert (message.status, message.delivery_status, message.status_changed_at) == snapshot
    assert signals.changed == [(message.pk, Status.SENT, Status.DELIVERED)]
    assert len(signals.received) == 2
    assert DeliveryReport.objects.count() == 2


def test_signals_are_sent_only_after_commit(
    client: Client, message: Message, signals: SignalLog, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks() as pending:
        response = client.get(callback_url(), {"id": "abc-123", "status": "delivered"})
    assert response.status_code == 200
    assert signals.received == []
    assert signals.changed == []
    for callback in pending:
        callback()
    assert signals.changed == [(message.pk, Status.SENT, Status.DELIVERED)]
    assert len(signals.received) == 1


@pytest.mark.django_db(transaction=True)
def test_signals_fire_at_once_in_autocommit(
    client: Client, make_message, signals: SignalLog
) -> None:
    message = make_message(provider_id="auto-1")
    client.get(callback_url(), {"id": "auto-1", "status": "buffered"})
    client.get(callback_url(), {"id": "auto-1", "status": "delivered"})
    client.get(callback_url(), {"id": "auto-1", "status": "delivered"})
    assert signals.changed == [(message.pk, Status.SENT, Status.DELIVERED)]
    assert len(signals.received) == 3


def test_early_report_on_the_account_url_waits_for_the_send(
    client: Client, make_message, signals: SignalLog, django_capture_on_commit_callbacks
) -> None:
    message = make_message(status=Status.SENDING)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.get(callback_url(), {"id": "late-id", "status": "DELIVRD"})
    assert response.status_code == 200
    assert response.json()["outcome"] == Outcome.UNMATCHED
    early = DeliveryReport.objects.get()
    assert early.message_id is None
    assert signals.received == [(early.pk, None)]

    with django_capture_on_commit_callbacks(execute=True):
        sending._record_sent(message, SendResult(id="late-id", response_text="SMS sent"))
    message.refresh_from_db()
    assert (message.status, message.provider_id) == (Status.DELIVERED, "late-id")
    early.refresh_from_db()
    assert (early.message_id, early.outcome) == (message.pk, Outcome.APPLIED)
    assert signals.changed == [(message.pk, Status.SENT, Status.DELIVERED)]


def test_early_report_is_applied_once_the_id_is_set_by_update(client: Client, make_message) -> None:
    message = make_message(status=Status.SENDING)
    client.get(callback_url(), {"id": "late-id", "status": "undeliverable", "errorcode": "1"})
    Message.objects.filter(pk=message.pk).update(status=Status.SENT, provider_id="late-id")
    message.refresh_from_db()
    assert callbacks.apply_pending_reports(message) == 1
    message.refresh_from_db()
    assert (message.status, message.error_code) == (Status.UNDELIVERED, "1")
    assert DeliveryReport.objects.get().message_id == message.pk


def test_early_report_on_the_message_token_is_not_undone_by_the_send(
    client: Client, make_message, signals: SignalLog, django_capture_on_commit_callbacks
) -> None:
    message = make_message(status=Status.SENDING)
    url = callback_url(callbacks.message_token(message))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.get(url, {"msgid": "late-id", "status": "delivered"})
    assert response.json()["outcome"] == Outcome.APPLIED
    assert status_of(message) == Status.DELIVERED

    with django_capture_on_commit_callbacks(execute=True):
        sending._record_sent(message, SendResult(id="late-id", response_text="SMS sent"))
    message.refresh_from_db()
    assert (message.status, message.provider_id) == (Status.DELIVERED, "late-id")
    assert signals.changed == [(message.pk, Status.SENDING, Status.DELIVERED)]
    assert DeliveryReport.objects.get().outcome == Outcome.APPLIED


# -- answers to bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "delivered"}, "id"),
        ({"id": "   ", "status": "delivered"}, "id"),
        ({"id": "abc-123"}, "status"),
        ({"id": "abc-123", "status": ""}, "status"),
        ({"id": "abc-123", "status": "x" * 33}, "status"),
        ({"id": "x" * 65, "status": "delivered"}, "id"),
        ({"id": "abc-123", "status": "delivered", "sendtimestamp": "yesterday"}, "sendtimestamp"),
        ({"id": "abc-123", "status": "delivered", "sendtimestamp": "-1"}, "sendtimestamp"),
        ({"id": "abc-123", "status": "delivered", "sendtime": "31/05/2024 12:00"}, "sendtime"),
        ({"id": "abc-123", "status": "delivered", "sendtime": "2024-02-30 12:00:00"}, "sendtime"),
        ({"id": "abc-123", "status": "delivered", "mccmnc": "22a01"}, "mccmnc"),
        ({"id": "abc-123", "status": "delivered", "mccmnc": "228"}, "mccmnc"),
        ({"id": "abc-123", "status": "delivered", "mcc": "ab"}, "mcc"),
        ({"id": "abc-123", "status": "delivered", "mnc": "1x"}, "mnc"),
        ({"id": "abc-123", "status": "deliv\x00ered"}, "status"),
    ],
)
def test_malformed_report_gets_400_naming_the_field(
    client: Client, message: Message, query: dict[str, str], field: str
) -> None:
    response = client.get(callback_url(), query)
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert status_of(message) == Status.SENT


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"id": "abc-123", "status": {"word": "delivered"}}, "status"),
        ({"id": ["abc-123"], "status": "delivered"}, "id"),
        ({"id": "abc-123", "status": None}, "status"),
        ({"id": "abc-123", "status": True}, "status"),
        ({"id": "abc-123", "status": "delivered", "sendtimestamp": "17e8"}, "sendtimestamp"),
    ],
)
def test_malformed_json_field_gets_400_naming_the_field(
    api: APIClient, message: Message, body: dict[str, Any], field: str
) -> None:
    response = api.post(callback_url(), body, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert status_of(message) == Status.SENT


def test_a_subclass_of_the_report_serializer_keeps_its_own_fields() -> None:
    class WithNetwork(DeliveryReportSerializer):
        network = serializers.CharField(max_length=8, required=False)

    extended = WithNetwork(data={"id": "a", "status": "delivered", "network": "swisscom1"})
    assert not extended.is_valid()
    assert set(extended.errors) == {"network"}
    plain = DeliveryReportSerializer(data={"id": "a", "status": "delivered", "network": "x"})
    assert plain.is_valid(), plain.errors
    assert "network" not in plain.validated_data
    assert "network" not in DeliveryReportSerializer().fields
    assert set(WithNetwork().fields) == {*DeliveryReportSerializer().fields, "network"}


def test_reports_validated_in_many_threads_at_once_keep_their_own_fields_and_errors() -> None:
    # The serializer's fields are shared by every instance (bound once per class): validations
    # running at the same time in a server's threads must not see each other's values or errors.
    payloads: list[tuple[dict[str, Any], dict[str, Any] | None, set[str]]] = []
    for n in range(40):
        good = {"id": f"id-{n}", "status": "delivered", "mccmnc": f"2280{n % 10}"}
        payloads.append((good, {**good, "mccmnc": good["mccmnc"]}, set()))
        bad = {"id": f"id-{n}", "status": "", "mcc": f"x{n}", "sendtimestamp": "soon"}
        payloads.append((bad, None, {"mcc", "sendtimestamp"}))
    outcomes: list[str] = []
    start = threading.Barrier(8)

    def validate(offset: int) -> None:
        start.wait()
        for i in range(300):
            data, validated, errors = payloads[(offset + i) % len(payloads)]
            serializer = DeliveryReportSerializer(data=data)
            if serializer.is_valid():
                got = {k: v for k, v in serializer.validated_data.items() if v != ""}
                outcomes.append("ok" if validated is not None and got == validated else f"{got}")
            else:
                ok = validated is None and set(serializer.errors) == errors
                outcomes.append("ok" if ok else f"{data} -> {dict(serializer.errors)}")

    threads = [threading.Thread(target=validate, args=(k * 7,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 8 * 300
    assert [o for o in outcomes if o != "ok"] == []


@pytest.mark.parametrize(
    "body", ["[]", '[{"id": "abc-123", "status": "delivered"}]', '"text"', "42", "null", "{"]
)
def test_body_that_is_not_a_json_object_gets_400(
    client: Client, message: Message, body: str
) -> None:
    response = client.post(callback_url(), body, content_type="application/json")
    assert response.status_code == 400
    assert "body" in response.json()["errors"]
    assert status_of(message) == Status.SENT


def test_no_id_is_fine_on_a_message_token_but_status_is_still_needed(
    client: Client, make_message
) -> None:
    message = make_message(status=Status.SENDING)
    response = client.get(callback_url(callbacks.message_token(message)), {"errorcode": "0"})
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["status"]


def test_sendtimestamp_beyond_year_9999_gets_400(client: Client, message: Message) -> None:
    client.raise_request_exception = False
    response = client.get(
        callback_url(), {"id": "abc-123", "status": "delivered", "sendtimestamp": "999999999999"}
    )
    assert response.status_code == 400
    assert "sendtimestamp" in response.json()["errors"]


def test_sendtimestamp_with_superscript_digits_gets_400(client: Client, message: Message) -> None:
    client.raise_request_exception = False
    response = client.get(
        callback_url(), {"id": "abc-123", "status": "delivered", "sendtimestamp": "17171²"}
    )
    assert response.status_code == 400
    assert "sendtimestamp" in response.json()["errors"]


def test_deeply_nested_json_body_is_no_500(client: Client, message: Message) -> None:
    # Python up to 3.12 refuses this depth (400); 3.13's parser reads it, and the report is
    # stored with the deep part cut off (200). Either way, no 500.
    client.raise_request_exception = False
    body = '{"id": "abc-123", "status": "delivered", "x": ' + "[" * 5000 + "]" * 5000 + "}"
    response = client.post(callback_url(), body, content_type="application/json")
    assert response.status_code in (200, 400)


def test_lone_surrogate_in_an_extra_json_field_is_no_500(client: Client, message: Message) -> None:
    client.raise_request_exception = False
    body = '{"id": "abc-123", "status": "delivered", "note": "\\ud800", "\\udfff": 1}'
    response = client.post(callback_url(), body, content_type="application/json")
    assert response.status_code in (200, 400)


def test_lone_surrogate_in_a_report_field_gets_400(client: Client, message: Message) -> None:
    body = '{"id": "abc-123", "status": "deliv\\ud800"}'
    response = client.post(callback_url(), body, content_type="application/json")
    assert response.status_code == 400
    assert "status" in response.json()["errors"]


def test_unsupported_content_type_is_refused_without_a_500(
    client: Client, message: Message
) -> None:
    response = client.post(callback_url(), "id=abc-123&status=delivered", content_type="text/plain")
    assert response.status_code == 400
    assert DeliveryReport.objects.get().outcome == Outcome.UNPARSED
    assert status_of(message) == Status.SENT


# -- cost -----------------------------------------------------------------------------------------


def test_applying_one_report_takes_three_queries_two_on_postgresql(
    client: Client, message: Message, django_assert_num_queries
) -> None:
    from django.db import connection

    # README: SELECT the message, then INSERT the report and the conditional UPDATE of the
    # message (one statement on PostgreSQL, WITH ... INSERT; two in a transaction elsewhere).
    with django_assert_num_queries(2 if connection.vendor == "postgresql" else 3) as captured:
        response = post_json(client, callback_url(), {"id": "abc-123", "status": "delivered"})
    assert response.json()["outcome"] == Outcome.APPLIED
    statements = " ".join(q["sql"] for q in captured.captured_queries)
    assert "INSERT INTO" in statements and "UPDATE" in statements
    message.refresh_from_db()
    assert message.status == Status.DELIVERED
    assert DeliveryReport.objects.get().outcome == Outcome.APPLIED


def test_duplicate_and_unmatched_reports_take_at_most_three_queries(
    client: Client, message: Message, django_assert_num_queries
) -> None:
    client.get(callback_url(), {"id": "abc-123", "status": "delivered"})
    # A duplicate: SELECT and INSERT; nothing to update.
    with django_assert_num_queries(2):
        duplicate = client.get(callback_url(), {"id": "abc-123", "status": "delivered"})
    # Unmatched: SELECT, INSERT, and one more SELECT in case the send recorded the id meanwhile.
    with django_assert_num_queries(3):
        unmatched = client.get(callback_url(), {"id": "nobody", "status": "delivered"})
    assert duplicate.json()["outcome"] == Outcome.DUPLICATE
    assert unmatched.json()["outcome"] == Outcome.UNMATCHED


def test_refused_requests_and_pings_touch_no_table(
    client: Client, message: Message, django_assert_num_queries
) -> None:
    with django_assert_num_queries(0):
        assert client.get(callback_url("wrong"), {"id": "abc-123"}).status_code == 403
        assert client.get(callback_url()).status_code == 200
        assert client.head(callback_url()).status_code == 200


def test_malformed_request_is_one_insert(
    client: Client, message: Message, django_assert_num_queries
) -> None:
    with django_assert_num_queries(1):
        assert client.get(callback_url(), {"id": "abc-123"}).status_code == 400
    assert DeliveryReport.objects.get().outcome == Outcome.UNPARSED


# -- property tests -------------------------------------------------------------------------------

TARGET_ID = "target-0001"
# Past the year-9999 limit of datetime: the serializer must refuse these, not fail.
MAX_EPOCH = 10**13
FIELD_NAMES = sorted(
    REPORT_FIELDS | {"ID", "MsgId", "messageId", "deliveryStatus", "errorCode", "MccMnc", "TO"}
)
STATUS_WORDS = [*callbacks.STATUS_WORDS, "DELIVRD", "Delivered", "mystery", ""]
ODD = [
    "\x00",
    "a\x00b",
    "\u202e",
    "\ufeff",
    "e\u0301",
    "\U0001d7d8\U0001d7d9",
    "١٢٣",
    "\U0001f600",
    "\n",
    " ",
    "%00",
    "'; --",
    "x" * 70,
]

odd_text = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=16),
    st.sampled_from(ODD),
)
keys = st.one_of(st.sampled_from(FIELD_NAMES), odd_text)
values = st.one_of(
    odd_text,
    st.sampled_from(STATUS_WORDS),
    st.sampled_from([TARGET_ID, f" {TARGET_ID} ", "1717156800", "22801", "2024-05-31 12:00:00"]),
    st.integers(0, MAX_EPOCH).map(str),
)
ID_VALUES = st.one_of(st.sampled_from([TARGET_ID, f" {TARGET_ID}\t", "other-id", ""]), odd_text)
STATUS_VALUES = st.one_of(st.sampled_from(STATUS_WORDS), odd_text)


@st.composite
def report_like(draw: st.DrawFn, extra_values: st.SearchStrategy[Any]) -> dict[str, Any]:
    """A dict that has an id and a status under some alias, plus random extra fields."""
    data = draw(st.dictionaries(keys, extra_values, max_size=5))
    data[draw(st.sampled_from(["id", "msgid", "messageId", "MSGID"]))] = draw(ID_VALUES)
    data[draw(st.sampled_from(["status", "deliveryStatus", "Status"]))] = draw(STATUS_VALUES)
    return data


text_reports = st.one_of(st.dictionaries(keys, values, max_size=8), report_like(values))
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    values,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=10,
)
json_bodies = st.one_of(
    report_like(json_values), st.dictionaries(keys, json_values, max_size=8), json_values
)
query_strings = st.one_of(st.just({}), text_reports)
# Mostly the right secret, so that most examples get past authentication.
tokens = st.sampled_from([*[SECRET] * 6, "wrong-token", "m1.forged"])
PROPERTY_SETTINGS = hsettings(
    max_examples=int(os.environ.get("MITTO_HYPOTHESIS_EXAMPLES", "150")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def watched(make_message: Callable[..., Message]) -> tuple[Message, Message]:
    """A message the generated data may name, and one whose id it can never produce."""
    target = make_message(provider_id=TARGET_ID)
    guard = make_message(provider_id=f"guard-{uuid.uuid4()}")
    return target, guard


def _reset(target: Message) -> None:
    Message.objects.filter(pk=target.pk).update(
        status=Status.SENT, delivery_status="", error_code="", mcc="", mnc=""
    )


def _check_outcome(
    response: Any, data: Any, token: str, target: Message, guard: Message, reports_before: int
) -> None:
    assert response.status_code in (200, 400, 403), response.content
    if token != SECRET:
        assert response.status_code in (400, 403)
    guard_state = Message.objects.values_list("status", "delivery_status").get(pk=guard.pk)
    assert guard_state == (Status.SENT, "")
    target_state = Message.objects.values_list("status", "delivery_status").get(pk=target.pk)
    stored = DeliveryReport.objects.count() - reports_before
    outcome = response.json().get("outcome") if response.status_code != 403 else None
    # Every authenticated request is stored: read (200) or raw as unparsed (400).
    assert stored == (1 if outcome else 0)
    assert response.status_code != 400 or outcome == Outcome.UNPARSED
    event(f"{response.status_code} {outcome or ''}".strip())
    if target_state != (Status.SENT, ""):
        # Only a valid report naming the target may change it.
        assert outcome == Outcome.APPLIED
        assert isinstance(data, dict)
        assert str(resolve_aliases(data)["id"]).strip() == TARGET_ID


@PROPERTY_SETTINGS
@given(query=text_reports, token=tokens)
def test_any_query_string_gets_200_400_or_403_and_changes_only_its_message(
    client: Client, watched: tuple[Message, Message], query: dict[str, str], token: str
) -> None:
    target, guard = watched
    _reset(target)
    before = DeliveryReport.objects.count()
    response = client.get(callback_url(token), query)
    _check_outcome(response, query, token, target, guard, before)


@PROPERTY_SETTINGS
@given(body=json_bodies, query=query_strings, token=tokens)
def test_any_json_body_gets_200_400_or_403_and_changes_only_its_message(
    client: Client, watched: tuple[Message, Message], body: Any, query: dict[str, str], token: str
) -> None:
    # The view reads each source through the aliases, then lets the body win: so does the check.
    merged = {**resolve_aliases(query), **resolve_aliases(body)} if isinstance(body, dict) else body
    target, guard = watched
    _reset(target)
    before = DeliveryReport.objects.count()
    url = callback_url(token) + ("?" + urlencode(query) if query else "")
    response = post_json(client, url, body)
    _check_outcome(response, merged, token, target, guard, before)


@PROPERTY_SETTINGS
@given(form=text_reports, token=tokens, multipart=st.booleans())
def test_any_form_body_gets_200_400_or_403_and_changes_only_its_message(
    client: Client,
    watched: tuple[Message, Message],
    form: dict[str, str],
    token: str,
    multipart: bool,
) -> None:
    target, guard = watched
    _reset(target)
    before = DeliveryReport.objects.count()
    url = callback_url(token)
    response = client.post(url, form) if multipart else post_form(client, url, form)
    _check_outcome(response, form, token, target, guard, before)


# -- concurrency (PostgreSQL) ---------------------------------------------------------------------


def _burst(url: str, bodies: list[dict[str, str]]) -> list[Any]:
    """POST every body at the same moment, one thread and one connection each."""
    barrier = threading.Barrier(len(bodies))
    results: list[Any] = [None] * len(bodies)

    def post(index: int, body: dict[str, str]) -> None:
        try:
            client = Client()
            barrier.wait(timeout=30)
            results[index] = post_json(client, url, body)
        except BaseException as exc:  # reported by the assertion below
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=item) for item in enumerate(bodies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_simultaneous_identical_reports_change_the_status_once(
    make_message, signals: SignalLog
) -> None:
    message = make_message(provider_id="race-1")
    results = _burst(callback_url(), [{"id": "race-1", "status": "delivered"}] * 20)
    assert [getattr(r, "status_code", r) for r in results] == [200] * 20
    assert Counter(r.json()["outcome"] for r in results) == {"applied": 1, "duplicate": 19}
    message.refresh_from_db()
    assert (message.status, message.delivery_status) == (Status.DELIVERED, "delivered")
    assert DeliveryReport.objects.filter(message=message).count() == 20
    assert Counter(DeliveryReport.objects.values_list("outcome", flat=True)) == {
        "applied": 1,
        "duplicate": 19,
    }
    assert signals.changed == [(message.pk, Status.SENT, Status.DELIVERED)]
    assert len(signals.received) == 20


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_mixed_burst_of_reports_ends_delivered_with_one_change(
    make_message, signals: SignalLog
) -> None:
    message = make_message(provider_id="race-2")
    bodies = [{"id": "race-2", "status": "delivered"}] * 8
    bodies += [{"id": "race-2", "status": "buffered"}] * 6
    bodies += [{"id": "race-2", "status": "sent"}] * 6
    results = _burst(callback_url(), bodies)
    assert [getattr(r, "status_code", r) for r in results] == [200] * 20
    delivered = Counter(r.json()["outcome"] for r in results[:8])
    assert delivered == {"applied": 1, "duplicate": 7}
    message.refresh_from_db()
    assert (message.status, message.delivery_status) == (Status.DELIVERED, "delivered")
    assert DeliveryReport.objects.filter(message=message).count() == 20
    assert signals.changed == [(message.pk, Status.SENT, Status.DELIVERED)]
    assert len(signals.received) == 20


def test_numbers_too_large_for_json_are_stored_without_a_500(
    client: Client, message: Message
) -> None:
    body = '{"id": "abc-123", "status": "delivered", "price": 1e400, "other": -1e400}'
    response = client.post(callback_url(), body, content_type="application/json")
    assert response.status_code == 200
    report = DeliveryReport.objects.get()
    assert report.payload["body"]["price"] is None


def test_callback_view_runs_outside_atomic_requests() -> None:
    from django.urls import resolve

    view = resolve(callback_url()).func
    assert "default" in getattr(view, "_non_atomic_requests", set())


def test_failing_receiver_does_not_turn_a_stored_report_into_a_500(
    client: Client, message: Message
) -> None:
    from django_mitto.signals import message_status_changed

    def broken_receiver(sender, **kwargs):
        raise ValueError("a project's receiver is broken")

    message_status_changed.connect(broken_receiver)
    try:
        response = client.get(callback_url(), {"id": "abc-123", "status": "delivered"})
    finally:
        message_status_changed.disconnect(broken_receiver)
    assert response.status_code == 200
    assert status_of(message) == Status.DELIVERED
