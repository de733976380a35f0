"""The callback view keeps everything it is given, keeps each token to its own message, and finds
messages whose Mitto id was never learned (issue 8, items 2 to 4)."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from unittest import mock
from urllib.parse import urlencode

import pytest
from django.core import signing
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from django_mitto import callbacks
from django_mitto.models import Batch, DeliveryReport, Message, Status
from tests.test_views import FORBIDDEN, callback_url, post_form, post_json, status_of

Outcome = DeliveryReport.Outcome


@pytest.fixture
def message(make_message: Callable[..., Message]) -> Message:
    return make_message(provider_id="abc-123")


def only_report() -> DeliveryReport:
    return DeliveryReport.objects.get()


# -- item 2: nothing dropped ----------------------------------------------------------------------


@pytest.mark.parametrize("send", [post_json, post_form], ids=["json", "form"])
def test_post_with_no_known_field_is_stored_unparsed_and_answered_400(
    client: Client, message: Message, send: Callable[..., Any]
) -> None:
    response = send(client, callback_url(), {"msg_ref": "abc-123", "state": "DELIVRD"})
    assert response.status_code == 400
    answer = response.json()
    assert answer["outcome"] == Outcome.UNPARSED
    expected = " ".join(answer["errors"]["fields"])
    for name in ("id", "msgid", "messageId", "status", "deliveryStatus", "reference"):
        assert name in expected
    assert "msg_ref" in expected and "state" in expected  # what came, so the fix is obvious
    stored = only_report()
    assert stored.outcome == Outcome.UNPARSED
    assert stored.message is None
    assert stored.payload["body"] == {"msg_ref": "abc-123", "state": "DELIVRD"}
    assert stored.field_names() == ["msg_ref", "state"]
    assert status_of(message) == Status.SENT


@pytest.mark.parametrize("query", [{"ping": "1"}, {"price": "0.05", "currency": "EUR"}])
def test_get_with_no_known_field_is_stored_unparsed(
    client: Client, db: None, query: dict[str, str]
) -> None:
    response = client.get(callback_url(), query)
    assert response.status_code == 400
    assert response.json()["outcome"] == Outcome.UNPARSED
    assert only_report().payload["query"] == query


def test_malformed_report_is_stored_unparsed_with_the_field_named(
    client: Client, message: Message
) -> None:
    response = client.get(callback_url(), {"id": "abc-123", "status": "delivered", "mcc": "ab"})
    assert response.status_code == 400
    assert "mcc" in response.json()["errors"]
    stored = only_report()
    assert (stored.outcome, stored.provider_id, stored.status) == (
        Outcome.UNPARSED,
        "abc-123",
        "delivered",
    )
    assert status_of(message) == Status.SENT


@pytest.mark.parametrize("body", ["[1, 2]", "{", '"text"'])
def test_body_that_is_not_a_json_object_is_stored_raw(
    client: Client, message: Message, body: str
) -> None:
    response = client.post(callback_url(), body, content_type="application/json")
    assert response.status_code == 400
    assert "body" in response.json()["errors"]
    stored = only_report()
    assert stored.outcome == Outcome.UNPARSED
    assert body in json.dumps(stored.payload) or stored.payload.get("raw_body") == body


def test_unsupported_content_type_is_stored_raw_and_answered_400(
    client: Client, message: Message
) -> None:
    response = client.post(callback_url(), "id=abc-123&status=delivered", content_type="text/plain")
    assert response.status_code == 400
    assert "body" in response.json()["errors"]
    stored = only_report()
    assert stored.payload["raw_body"] == "id=abc-123&status=delivered"
    assert stored.payload["content_type"] == "text/plain"
    assert status_of(message) == Status.SENT


def test_empty_post_head_and_bare_get_are_reachability_checks(client: Client, db: None) -> None:
    assert client.post(callback_url(), "", content_type="application/json").status_code == 200
    assert client.post(callback_url()).status_code == 200  # a multipart form with no part
    assert post_json(client, callback_url(), {}).status_code == 200
    assert client.head(callback_url()).status_code == 200
    assert client.get(callback_url()).json()["status"] == "ok"
    assert not DeliveryReport.objects.exists()


@pytest.mark.parametrize("debug", [False, True])
def test_callback_url_without_its_trailing_slash_takes_the_post(
    client: Client, message: Message, settings: Any, debug: bool
) -> None:
    settings.DEBUG = debug
    settings.APPEND_SLASH = True
    url = callback_url().rstrip("/")
    response = post_json(client, url, {"id": "abc-123", "status": "delivered"})
    assert response.status_code == 200
    assert response.json()["outcome"] == Outcome.APPLIED
    assert status_of(message) == Status.DELIVERED
    assert client.get(url, {"id": "abc-123", "status": "delivered"}).status_code == 200


def test_message_token_url_without_its_trailing_slash_works(client: Client, make_message) -> None:
    message = make_message(status=Status.SENDING)
    url = callback_url(callbacks.message_token(message)).rstrip("/")
    assert post_form(client, url, {"status": "delivered"}).status_code == 200
    assert status_of(message) == Status.DELIVERED


@pytest.mark.parametrize(
    ("query", "body", "expected"),
    [
        ({"id": "abc-123", "STATUS": "sent"}, {"status": "delivered"}, Status.DELIVERED),
        ({"id": "abc-123", "status": "delivered"}, {"Status": "sent"}, Status.SENT),
        ({"id": "abc-123", "deliveryStatus": "delivered"}, {"status": "buffered"}, Status.SENT),
        ({"ID": "nobody"}, {"msgid": "abc-123"}, None),
    ],
)
def test_body_wins_over_the_query_string_whatever_the_case(
    client: Client,
    message: Message,
    query: dict[str, str],
    body: dict[str, str],
    expected: str | None,
) -> None:
    Message.objects.filter(pk=message.pk).update(status=Status.SENDING)
    body = {"status": "delivered", **body} if expected is None else body
    response = post_form(client, callback_url() + "?" + urlencode(query), body)
    assert response.status_code == 200, response.content
    assert status_of(message) == (expected or Status.DELIVERED)
    assert only_report().message_id == message.pk


@pytest.mark.parametrize("kind", ["json", "form", "multipart"])
def test_oversized_body_gets_the_json_400_and_is_stored_unparsed(
    client: Client, message: Message, settings: Any, kind: str
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 200
    data = {"id": "abc-123", "status": "delivered", "note": "x" * 400}
    if kind == "json":
        response = post_json(client, callback_url(), data)
    elif kind == "form":
        response = post_form(client, callback_url(), data)
    else:
        response = client.post(callback_url(), data)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert "body" in response.json()["errors"]
    stored = only_report()
    assert stored.outcome == Outcome.UNPARSED
    assert stored.payload["content_length"] > 200
    assert stored.payload["raw_body"]  # the start of what came, for whoever looks
    assert status_of(message) == Status.SENT


@pytest.mark.parametrize("where", ["form", "multipart", "query", "json"])
def test_too_many_fields_get_the_json_400_and_are_stored_unparsed(
    client: Client, message: Message, settings: Any, where: str
) -> None:
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 5
    data = {"id": "abc-123", "status": "delivered", **{f"f{i}": "1" for i in range(10)}}
    if where == "form":
        response = post_form(client, callback_url(), data)
    elif where == "multipart":
        response = client.post(callback_url(), data)
    elif where == "json":
        response = post_json(client, callback_url(), data)
    else:
        response = client.get(callback_url(), data)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["outcome"] == Outcome.UNPARSED
    assert only_report().outcome == Outcome.UNPARSED
    assert status_of(message) == Status.SENT


def test_multipart_file_part_is_kept_by_name(client: Client, message: Message) -> None:
    upload = SimpleUploadedFile("note.txt", b"hello")
    response = client.post(callback_url(), {"state": "DELIVRD", "attachment": upload})
    assert response.status_code == 400
    assert only_report().field_names() == ["attachment", "state"]


def test_mitto_reports_lists_unparsed_reports_with_the_fields_seen(
    client: Client, message: Message
) -> None:
    post_json(client, callback_url() + "?source=mitto", {"msg_ref": "abc-123", "state": "x"})
    client.get(callback_url(), {"id": "abc-123", "status": "delivered"})
    out = _call("mitto_reports", "--unparsed")
    assert "msg_ref" in out and "state" in out and "source" in out
    assert "1 report" in out
    assert "abc-123" not in out.split("msg_ref")[0]  # the applied one is not listed
    everything = _call("mitto_reports")
    assert "2 reports" in everything and "applied" in everything


def test_mitto_reports_never_prints_a_token(client: Client, make_message) -> None:
    message = make_message(status=Status.SENDING)
    token = callbacks.message_token(message)
    post_json(client, callback_url(token), {"state": "x"})
    out = _call("mitto_reports", "--unparsed")
    assert f"message {message.pk}" in out
    assert token not in out and token.rsplit(".", 1)[-1] not in out


def test_admin_filters_delivery_reports_by_outcome(
    admin_client: Client, client: Client, message: Message
) -> None:
    post_json(client, callback_url(), {"msg_ref": "abc-123", "state": "x"})
    client.get(callback_url(), {"id": "nobody", "status": "delivered"})
    url = reverse("admin:django_mitto_deliveryreport_changelist")
    page = admin_client.get(url, {"outcome__exact": Outcome.UNPARSED}).content.decode()
    assert "msg_ref, state" in page
    assert "nobody" not in page
    page = admin_client.get(url).content.decode()
    assert "Unparsed" in page  # the filter offers the choice


def _call(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# -- item 3: a token never reaches beyond its message ---------------------------------------------


def test_token_of_a_deleted_message_reaches_no_other_message(client: Client, make_message) -> None:
    gone = make_message(provider_id="gone-id")
    token = callbacks.message_token(gone)
    gone.delete()
    other = make_message(provider_id="other-id")
    for report in (
        {"id": "other-id", "status": "delivered"},
        {"status": "delivered"},
        {"id": "gone-id", "status": "delivered"},
    ):
        response = client.get(callback_url(token), report)
        assert response.status_code == 403
        assert response.json() == FORBIDDEN
    assert status_of(other) == Status.SENT
    # Later, another message taking that id does not pick anything up either.
    late = make_message(provider_id="")
    Message.objects.filter(pk=late.pk).update(provider_id="gone-id")
    callbacks.apply_pending_reports(Message.objects.get(pk=late.pk))
    assert status_of(late) == Status.SENT


def test_message_token_with_the_id_of_another_message_is_mismatched(
    client: Client, make_message
) -> None:
    first = make_message(provider_id="first")
    second = make_message(provider_id="second")
    response = client.get(
        callback_url(callbacks.message_token(first)), {"id": "second", "status": "delivered"}
    )
    assert response.status_code == 200
    assert response.json()["outcome"] == Outcome.MISMATCHED
    assert status_of(first) == status_of(second) == Status.SENT
    stored = only_report()
    assert (stored.outcome, stored.message_id) == (Outcome.MISMATCHED, first.pk)


def test_message_token_with_an_id_other_than_its_own_is_mismatched(
    client: Client, make_message
) -> None:
    first = make_message(provider_id="first")
    response = client.get(
        callback_url(callbacks.message_token(first)), {"id": "stranger", "status": "delivered"}
    )
    assert response.json()["outcome"] == Outcome.MISMATCHED
    assert status_of(first) == Status.SENT
    assert Message.objects.get(pk=first.pk).provider_id == "first"


def test_token_of_a_message_without_id_and_the_id_of_another_is_mismatched(
    client: Client, make_message
) -> None:
    unknown = make_message(status=Status.UNKNOWN, provider_id="")
    other = make_message(provider_id="taken")
    response = client.get(
        callback_url(callbacks.message_token(unknown)), {"id": "taken", "status": "delivered"}
    )
    assert response.json()["outcome"] == Outcome.MISMATCHED
    assert status_of(unknown) == Status.UNKNOWN
    assert status_of(other) == Status.SENT
    assert Message.objects.get(pk=unknown.pk).provider_id == ""


def test_new_tokens_carry_a_timestamp(db: None) -> None:
    token = callbacks.message_token(17)
    assert token.startswith("m17.")
    assert token.count(".") == 2
    assert callbacks.check_token(token).message_pk == 17


def _minted_ago(seconds: float, make: Callable[[int], str], pk: int) -> str:
    with mock.patch("time.time", return_value=time.time() - seconds):
        return make(pk)


def test_expired_message_token_is_refused(client: Client, make_message, settings: Any) -> None:
    settings.MITTO_CALLBACK_TOKEN_MAX_AGE = 3600
    message = make_message(status=Status.SENDING)
    old = _minted_ago(7200, callbacks.message_token, message.pk)
    fresh = _minted_ago(60, callbacks.message_token, message.pk)
    response = client.get(callback_url(old), {"status": "delivered"})
    assert response.status_code == 403
    assert response.json() == FORBIDDEN
    assert not DeliveryReport.objects.exists()
    assert client.get(callback_url(fresh), {"status": "delivered"}).status_code == 200
    assert status_of(message) == Status.DELIVERED


def test_expired_batch_token_is_refused(client: Client, make_message, settings: Any) -> None:
    settings.MITTO_CALLBACK_TOKEN_MAX_AGE = 3600
    batch = Batch.objects.create(text="Hello", total=1)
    make_message(provider_id="in-batch", batch=batch)
    old = _minted_ago(7200, callbacks.batch_token, batch.pk)
    assert client.get(callback_url(old), {"id": "in-batch", "status": "x"}).status_code == 403


def test_an_expired_token_is_refused_and_logged_with_what_it_names(
    client: Client, make_message, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.MITTO_CALLBACK_TOKEN_MAX_AGE = 3600
    message = make_message(status=Status.SENDING)
    batch = Batch.objects.create(text="Hello", total=1)
    expired = {
        f"message {message.pk}": _minted_ago(7200, callbacks.message_token, message.pk),
        f"batch {batch.pk}": _minted_ago(7200, callbacks.batch_token, batch.pk),
    }
    for scope, token in expired.items():
        assert callbacks.check_token(token) == callbacks.TokenCheck(False, expired=True)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="django_mitto.callbacks"):
            assert client.get(callback_url(token), {"status": "delivered"}).status_code == 403
        assert f"the callback token of {scope} has expired" in caplog.text
    assert status_of(message) == Status.SENDING


def test_default_max_age_is_seven_days(make_message) -> None:
    token = _minted_ago(6 * 86400, callbacks.message_token, 5)
    assert callbacks.check_token(token).valid
    token = _minted_ago(8 * 86400, callbacks.message_token, 5)
    assert not callbacks.check_token(token).valid


@pytest.mark.parametrize("value", [None, 0])
def test_no_max_age_means_no_expiry(settings: Any, value: Any) -> None:
    settings.MITTO_CALLBACK_TOKEN_MAX_AGE = value
    token = _minted_ago(400 * 86400, callbacks.message_token, 5)
    assert callbacks.check_token(token).message_pk == 5


def test_tokens_of_messages_sent_before_expiry_existed_are_still_accepted(
    client: Client, make_message, settings: Any
) -> None:
    settings.MITTO_CALLBACK_TOKEN_MAX_AGE = 60
    message = make_message(status=Status.SENDING)
    legacy = signing.Signer(salt="django_mitto.callback", sep=".").sign(f"m{message.pk}")
    assert legacy.count(".") == 1
    assert client.get(callback_url(legacy), {"status": "delivered"}).status_code == 200
    assert status_of(message) == Status.DELIVERED


def test_timestamp_of_a_token_cannot_be_altered(make_message) -> None:
    token = _minted_ago(8 * 86400, callbacks.message_token, 5)
    value, _stamp, signature = token.split(".")
    fresh_stamp = signing.b62_encode(int(time.time()))
    assert not callbacks.check_token(f"{value}.{fresh_stamp}.{signature}").valid
    assert not callbacks.check_token(f"{value}.{signature}").valid


# -- item 4: reports for messages whose id we never learned ---------------------------------------


def _make(make_message: Callable[..., Message], recipient: str, **fields: Any) -> Message:
    message = make_message(**fields)
    Message.objects.filter(pk=message.pk).update(recipient=recipient)
    message.refresh_from_db()
    return message


@pytest.fixture
def lost_batch(make_message: Callable[..., Message]) -> tuple[Batch, list[Message]]:
    """A bulk send that timed out: every row unknown, no Mitto id."""
    batch = Batch.objects.create(text="Hello", total=3)
    rows = [
        _make(make_message, number, status=Status.UNKNOWN, batch=batch, reference=ref)
        for number, ref in (
            ("+41791234501", ""),
            ("+41791234502", "order-1"),
            ("+41791234502", "order-2"),
        )
    ]
    return batch, rows


def test_batch_report_for_a_row_without_id_is_matched_by_receiver(
    client: Client, lost_batch: tuple[Batch, list[Message]]
) -> None:
    batch, rows = lost_batch
    url = callback_url(callbacks.batch_token(batch))
    response = client.get(url, {"id": "learned-1", "status": "delivered", "to": "41791234501"})
    assert response.json()["outcome"] == Outcome.APPLIED
    row = Message.objects.get(pk=rows[0].pk)
    assert (row.status, row.provider_id) == (Status.DELIVERED, "learned-1")
    assert only_report().message_id == row.pk
    # The next report for that id finds it by id.
    again = client.get(url, {"id": "learned-1", "status": "delivered"})
    assert again.json()["outcome"] == Outcome.DUPLICATE


def test_batch_report_uses_the_reference_to_tell_rows_apart(
    client: Client, lost_batch: tuple[Batch, list[Message]]
) -> None:
    batch, rows = lost_batch
    url = callback_url(callbacks.batch_token(batch))
    response = client.get(
        url,
        {
            "id": "learned-2",
            "status": "delivered",
            "receiver": "+41791234502",
            "reference": "order-2",
        },
    )
    assert response.json()["outcome"] == Outcome.APPLIED
    assert Message.objects.get(pk=rows[2].pk).provider_id == "learned-2"
    assert Message.objects.get(pk=rows[1].pk).provider_id == ""


def test_batch_report_matching_two_rows_stays_unmatched(
    client: Client, lost_batch: tuple[Batch, list[Message]]
) -> None:
    batch, _rows = lost_batch
    url = callback_url(callbacks.batch_token(batch))
    response = client.get(url, {"id": "who", "status": "delivered", "receiver": "41791234502"})
    assert response.json()["outcome"] == Outcome.UNMATCHED
    assert {m.provider_id for m in Message.objects.filter(batch=batch)} == {""}
    assert {m.status for m in Message.objects.filter(batch=batch)} == {Status.UNKNOWN}


def test_batch_report_never_reaches_a_row_of_another_batch(
    client: Client, lost_batch: tuple[Batch, list[Message]], make_message
) -> None:
    batch, _rows = lost_batch
    other = Batch.objects.create(text="Hello", total=1)
    outsider = _make(make_message, "+41791234599", status=Status.UNKNOWN, batch=other)
    url = callback_url(callbacks.batch_token(batch))
    response = client.get(url, {"id": "x-1", "status": "delivered", "receiver": "41791234599"})
    assert response.json()["outcome"] == Outcome.UNMATCHED
    assert status_of(outsider) == Status.UNKNOWN


def test_message_token_records_the_id_it_learns(client: Client, make_message) -> None:
    message = make_message(status=Status.UNKNOWN, provider_id="")
    response = client.get(
        callback_url(callbacks.message_token(message)), {"id": "learned", "status": "delivered"}
    )
    assert response.json()["outcome"] == Outcome.APPLIED
    stored = Message.objects.get(pk=message.pk)
    assert (stored.status, stored.provider_id) == (Status.DELIVERED, "learned")


def test_an_id_is_learned_only_by_a_message_still_without_one(make_message) -> None:
    # The report was matched to a message without id; meanwhile the send path recorded one.
    message = make_message(status=Status.UNKNOWN, provider_id="")
    matched = Message.objects.get(pk=message.pk)
    Message.objects.filter(pk=message.pk).update(provider_id="from-the-send")
    assert callbacks._learn_id(matched, "from-a-report") is False
    assert Message.objects.get(pk=message.pk).provider_id == "from-the-send"
    # The same id recorded meanwhile: the report is about this message all the same.
    assert callbacks._learn_id(matched, "from-the-send") is True
    # An id another message holds is never learned.
    make_message(provider_id="taken")
    other = make_message(status=Status.UNKNOWN, provider_id="")
    assert callbacks._learn_id(other, "taken") is False
    assert Message.objects.get(pk=other.pk).provider_id == ""


def test_learned_id_also_takes_the_reports_that_waited_on_the_account_url(
    client: Client, make_message
) -> None:
    message = make_message(status=Status.UNKNOWN, provider_id="")
    early = client.get(callback_url(), {"id": "learned", "status": "buffered"})
    assert early.json()["outcome"] == Outcome.UNMATCHED
    client.get(callback_url(callbacks.message_token(message)), {"id": "learned", "status": "sent"})
    assert DeliveryReport.objects.filter(message=message).count() == 2


def test_account_url_matches_a_message_accepted_without_id_by_receiver(
    client: Client, make_message
) -> None:
    message = make_message(status=Status.SENT, provider_id="", reference="r-1")
    response = client.get(
        callback_url(),
        {"id": "late-id", "status": "delivered", "receiver": "41791234567", "reference": "r-1"},
    )
    assert response.json()["outcome"] == Outcome.APPLIED
    stored = Message.objects.get(pk=message.pk)
    assert (stored.status, stored.provider_id) == (Status.DELIVERED, "late-id")


def test_account_url_matches_by_receiver_only_a_message_without_id(
    client: Client, make_message
) -> None:
    batch = Batch.objects.create(text="Hello", total=1)
    order = _make(make_message, "+41791234501", status=Status.SENT, reference="order-1")
    holder = _make(make_message, "+41791234503", status=Status.SENT, provider_id="other")
    waiting = _make(make_message, "+41791234503", status=Status.SENT)
    bulk_row = _make(make_message, "+41791234504", status=Status.SENT, batch=batch)

    def report(provider_id: str, receiver: str, **more: str) -> Any:
        query = {"id": provider_id, "status": "delivered", "receiver": receiver, **more}
        return client.get(callback_url(), query).json()["outcome"]

    # Same reference, another number: not that message.
    assert report("x-1", "41791234502", reference="order-1") == Outcome.UNMATCHED
    # A message that has its id already is no candidate: the one without id is.
    assert report("x-3", "41791234503") == Outcome.APPLIED
    # A row of a bulk send is found the same way on the account URL.
    assert report("x-4", "41791234504") == Outcome.APPLIED
    ids = dict(Message.objects.values_list("pk", "provider_id"))
    assert ids == {order.pk: "", holder.pk: "other", waiting.pk: "x-3", bulk_row.pk: "x-4"}
    assert status_of(order) == Status.SENT


def test_account_url_does_not_guess_between_two_messages_without_id(
    client: Client, make_message
) -> None:
    first = make_message(status=Status.SENT, provider_id="")
    second = make_message(status=Status.SENT, provider_id="")
    response = client.get(
        callback_url(), {"id": "late-id", "status": "delivered", "receiver": "+41791234567"}
    )
    assert response.json()["outcome"] == Outcome.UNMATCHED
    assert status_of(first) == status_of(second) == Status.SENT


def test_account_url_fallback_ignores_old_and_unknown_messages(
    client: Client, make_message
) -> None:
    unknown = make_message(status=Status.UNKNOWN, provider_id="")
    old = make_message(status=Status.SENT, provider_id="")
    Message.objects.filter(pk=old.pk).update(created_at=old.created_at.replace(year=2020))
    response = client.get(
        callback_url(), {"id": "late-id", "status": "delivered", "receiver": "+41791234567"}
    )
    assert response.json()["outcome"] == Outcome.UNMATCHED
    assert status_of(unknown) == Status.UNKNOWN and status_of(old) == Status.SENT


def _applied_queries() -> int:
    """SELECT, INSERT and UPDATE; on PostgreSQL the last two are one statement."""
    from django.db import connection

    return 2 if connection.vendor == "postgresql" else 3


def test_normal_applied_report_takes_three_queries(
    client: Client, message: Message, django_assert_num_queries
) -> None:
    with django_assert_num_queries(_applied_queries()):
        response = post_json(
            client, callback_url(), {"id": "abc-123", "status": "delivered", "to": "41791234567"}
        )
    assert response.json()["outcome"] == Outcome.APPLIED


def test_applied_report_on_a_message_token_takes_three_queries(
    client: Client, message: Message, django_assert_num_queries
) -> None:
    url = callback_url(callbacks.message_token(message))
    with django_assert_num_queries(_applied_queries()):
        response = client.get(url, {"id": "abc-123", "status": "delivered"})
    assert response.json()["outcome"] == Outcome.APPLIED


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("on", ["account URL", "message URL"])
def test_applied_report_reads_few_columns_unordered_and_commits_once(
    client: Client, make_message, on: str
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from bench._common import Counted

    message = make_message(provider_id="abc-123")
    url = callback_url(callbacks.message_token(message)) if on == "message URL" else callback_url()
    report = {"id": "abc-123", "status": "delivered", "to": "41791234567"}
    with CaptureQueriesContext(connection) as captured, Counted().active() as counted:
        response = client.get(url, report)
    assert response.json()["outcome"] == Outcome.APPLIED
    assert (counted.queries, counted.commits) == (_applied_queries(), 1)
    select, *writes = [
        q["sql"] for q in captured.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")
    ]
    assert select.startswith("SELECT") and "ORDER BY" not in select
    # Only the columns the rules read: never the text, the recipient, the timestamps.
    assert '"text"' not in select and '"recipient",' not in select
    if connection.vendor == "postgresql":
        # The report stored and the message moved on in one statement: no BEGIN, no COMMIT.
        assert len(writes) == 1 and len(captured.captured_queries) == 2
        assert writes[0].startswith("WITH changed AS (UPDATE") and "INSERT INTO" in writes[0]
    else:
        insert, update = writes
        assert insert.startswith("INSERT") and update.startswith("UPDATE")
    assert status_of(message) == Status.DELIVERED


def test_api_client_posts_are_handled_like_any_other(message: Message) -> None:
    api = APIClient(enforce_csrf_checks=True)
    response = api.post(
        callback_url(), {"MessageId": "abc-123", "Status": "DELIVRD"}, format="json"
    )
    assert response.status_code == 200
    assert status_of(message) == Status.DELIVERED


# -- the setting ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["3600", -1, True, [60]])
def test_check_refuses_a_max_age_that_is_not_seconds(settings: Any, value: Any) -> None:
    from django_mitto.checks import check_settings

    settings.MITTO_CALLBACK_TOKEN_MAX_AGE = value
    assert "django_mitto.E013" in [m.id for m in check_settings()]


@pytest.mark.parametrize("value", [None, 0, 60, 86400.5])
def test_check_accepts_seconds_or_none(settings: Any, value: Any) -> None:
    from django_mitto.checks import check_settings

    settings.MITTO_CALLBACK_TOKEN_MAX_AGE = value
    assert "django_mitto.E013" not in [m.id for m in check_settings()]


def test_max_age_setting_reads_none_and_zero_as_no_expiry(settings: Any) -> None:
    from django_mitto.conf import conf

    assert conf.CALLBACK_TOKEN_MAX_AGE == 7 * 24 * 3600
    settings.MITTO_CALLBACK_TOKEN_MAX_AGE = 0
    assert conf.CALLBACK_TOKEN_MAX_AGE is None
    settings.MITTO_CALLBACK_TOKEN_MAX_AGE = None
    assert conf.CALLBACK_TOKEN_MAX_AGE is None


def test_field_names_of_a_too_large_or_too_crowded_request_are_read_from_its_raw_text(
    client: Client, message: Message, settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 3
    post_form(client, callback_url(), {"a": "1", "b": "2", "c": "3", "d": "4"})
    client.get(callback_url(), {"w": "1", "x": "2", "y": "3", "z": "4"})
    crowded_body, crowded_query = DeliveryReport.objects.order_by("pk")
    assert crowded_body.field_names() == ["a", "b", "c", "d"]
    assert crowded_query.field_names() == ["w", "x", "y", "z"]
    out = _call("mitto_reports", "--unparsed")
    assert "fields: a, b, c, d" in out and "fields: w, x, y, z" in out


def test_batch_rows_still_sending_wait_for_the_bulk_answer(client: Client, make_message) -> None:
    batch = Batch.objects.create(text="Hello", total=1)
    row = _make(make_message, "+41791234501", status=Status.SENDING, batch=batch)
    url = callback_url(callbacks.batch_token(batch))
    response = client.get(url, {"id": "early", "status": "delivered", "to": "41791234501"})
    assert response.json()["outcome"] == Outcome.UNMATCHED
    assert Message.objects.get(pk=row.pk).provider_id == ""
    # The bulk answer records the id: the stored report is applied then.
    Message.objects.filter(pk=row.pk).update(status=Status.SENT, provider_id="early")
    callbacks.apply_pending_reports(Message.objects.get(pk=row.pk))
    assert status_of(row) == Status.DELIVERED


def test_message_token_of_a_send_in_flight_applies_without_learning_the_id(
    client: Client, make_message
) -> None:
    message = make_message(status=Status.SENDING, provider_id="")
    response = client.get(
        callback_url(callbacks.message_token(message)), {"id": "early", "status": "delivered"}
    )
    assert response.json()["outcome"] == Outcome.APPLIED
    stored = Message.objects.get(pk=message.pk)
    assert (stored.status, stored.provider_id) == (Status.DELIVERED, "")


def test_reports_that_came_while_a_bulk_send_timed_out_are_matched_once_it_gave_up(
    client: Client, make_message
) -> None:
    batch = Batch.objects.create(text="Hello", total=2)
    first = _make(make_message, "+41791234501", status=Status.SENDING, batch=batch)
    second = _make(make_message, "+41791234502", status=Status.SENDING, batch=batch)
    url = callback_url(callbacks.batch_token(batch))
    client.get(url, {"id": "id-1", "status": "delivered", "to": "41791234501"})
    client.get(url, {"id": "id-2", "status": "expired", "to": "41791234503"})  # nobody's
    client.get(callback_url(), {"id": "id-9", "status": "delivered", "to": "41791234502"})
    assert only_unmatched_count() == 3
    # The bulk send times out: its rows become unknown.
    Message.objects.filter(batch=batch).update(status=Status.UNKNOWN)
    assert callbacks.apply_pending_batch_reports(batch) == 1
    row = Message.objects.get(pk=first.pk)
    assert (row.status, row.provider_id) == (Status.DELIVERED, "id-1")
    # The report for another number, and the one on the account URL, are left alone.
    assert status_of(second) == Status.UNKNOWN
    assert only_unmatched_count() == 2
    assert callbacks.apply_pending_batch_reports(batch.pk) == 0


def test_reports_held_for_a_bulk_send_are_each_linked_to_the_row_they_are_about(
    client: Client, make_message
) -> None:
    batch = Batch.objects.create(text="Hello", total=2)
    # Two rows to one number, told apart by their reference.
    first = _make(make_message, "+41791234501", status=Status.SENDING, batch=batch, reference="r-1")
    second = _make(
        make_message, "+41791234501", status=Status.SENDING, batch=batch, reference="r-2"
    )
    url = callback_url(callbacks.batch_token(batch))
    client.get(url, {"id": "id-0", "status": "expired", "to": "41791234509"})  # nobody's, first
    client.get(url, {"id": "id-2", "status": "delivered", "to": "41791234501", "reference": "r-2"})
    client.get(
        url, {"id": "id-1", "status": "undelivered", "to": "41791234501", "reference": "r-1"}
    )
    Message.objects.filter(batch=batch).update(status=Status.UNKNOWN)
    assert callbacks.apply_pending_batch_reports(batch) == 2
    rows = {m.pk: (m.status, m.provider_id) for m in Message.objects.filter(batch=batch)}
    assert rows == {
        first.pk: (Status.UNDELIVERED, "id-1"),
        second.pk: (Status.DELIVERED, "id-2"),
    }
    linked = dict(DeliveryReport.objects.values_list("provider_id", "message_id"))
    assert linked == {"id-0": None, "id-1": first.pk, "id-2": second.pk}
    assert only_unmatched_count() == 1


def test_a_held_report_goes_to_the_row_that_got_its_id_before_any_row_without_one(
    client: Client, make_message
) -> None:
    batch = Batch.objects.create(text="Hello", total=2)
    named = _make(make_message, "+41791234501", status=Status.SENDING, batch=batch)
    unnamed = _make(make_message, "+41791234501", status=Status.SENDING, batch=batch)
    url = callback_url(callbacks.batch_token(batch))
    client.get(url, {"id": "id-1", "status": "delivered", "to": "41791234501"})
    # The bulk send stopped half-way: one row got its id, the other none.
    Message.objects.filter(pk=named.pk).update(status=Status.UNKNOWN, provider_id="id-1")
    Message.objects.filter(pk=unnamed.pk).update(status=Status.UNKNOWN)
    assert callbacks.apply_pending_batch_reports(batch) == 1
    assert (status_of(named), status_of(unnamed)) == (Status.DELIVERED, Status.UNKNOWN)


def test_a_report_stored_unread_on_a_batch_url_never_names_a_row(make_message) -> None:
    batch = Batch.objects.create(text="Hello", total=1)
    row = _make(make_message, "+41791234501", status=Status.UNKNOWN, batch=batch)
    callbacks.store_unparsed(
        {"body": "id-1 delivered 41791234501", "scope": f"batch {batch.pk}"},
        method="POST",
        remote_addr=None,
        fields={"id": "id-1", "receiver": "41791234501"},
    )
    assert callbacks.apply_pending_batch_reports(batch) == 0
    assert Message.objects.get(pk=row.pk).provider_id == ""
    assert status_of(row) == Status.UNKNOWN


def only_unmatched_count() -> int:
    return DeliveryReport.objects.filter(outcome=Outcome.UNMATCHED, message__isnull=True).count()


def test_reports_on_a_token_url_record_its_scope_not_its_token(
    client: Client, make_message
) -> None:
    message = make_message(provider_id="abc-123")
    token = callbacks.message_token(message)
    client.get(callback_url(token), {"id": "abc-123", "status": "delivered"})
    stored = only_report()
    assert stored.payload["scope"] == f"message {message.pk}"
    assert token not in json.dumps(stored.payload)


@pytest.mark.parametrize(
    ("body", "outcome"),
    [
        (b'{"id": "abc-123", "status": "delivered"}', Outcome.APPLIED),
        (b"id=abc-123&status=delivered", Outcome.APPLIED),
        (b"abc-123 delivered", Outcome.UNPARSED),
        (b'{"id": "abc-123", "status"', Outcome.UNPARSED),
        (b"\xff\xfe", Outcome.UNPARSED),
    ],
)
def test_body_without_content_type_is_read_or_stored_never_taken_for_a_ping(
    client: Client, message: Message, body: bytes, outcome: str
) -> None:
    response = client.generic("POST", callback_url(), body, content_type="")
    assert response.json()["outcome"] == outcome
    assert response.status_code == (200 if outcome == Outcome.APPLIED else 400)
    assert only_report().outcome == outcome


def test_applied_report_on_a_batch_url_takes_three_queries(
    client: Client, make_message, django_assert_num_queries
) -> None:
    batch = Batch.objects.create(text="Hello", total=1)
    member = make_message(provider_id="in-batch", batch=batch)
    url = callback_url(callbacks.batch_token(batch))
    with django_assert_num_queries(_applied_queries()):
        response = client.get(url, {"id": "in-batch", "status": "delivered", "to": "41791234567"})
    assert response.json()["outcome"] == Outcome.APPLIED
    assert status_of(member) == Status.DELIVERED


# -- concurrency (PostgreSQL) ---------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_simultaneous_reports_with_different_ids_teach_one_id_only(make_message) -> None:
    from tests.test_views import _burst

    message = make_message(status=Status.UNKNOWN, provider_id="")
    url = callback_url(callbacks.message_token(message))
    bodies = [{"id": f"id-{i % 2}", "status": "delivered"} for i in range(12)]
    results = _burst(url, bodies)
    assert [getattr(r, "status_code", r) for r in results] == [200] * 12
    learned = Message.objects.get(pk=message.pk).provider_id
    assert learned in ("id-0", "id-1")
    outcomes = Counter((r.provider_id == learned, r.outcome) for r in DeliveryReport.objects.all())
    # Every report with the other id is mismatched; those with the learned id apply once.
    assert outcomes[(False, Outcome.MISMATCHED)] == 6
    assert outcomes[(True, Outcome.APPLIED)] == 1
    assert outcomes[(True, Outcome.DUPLICATE)] == 5
    assert status_of(message) == Status.DELIVERED


# -- the send side hands waiting batch reports over once it gives up on its rows -----------------


def test_mitto_dispatch_applies_the_reports_that_waited_for_stuck_batch_rows(
    client: Client, make_message
) -> None:
    batch = Batch.objects.create(text="Hello", total=1)
    row = _make(make_message, "+41791234501", status=Status.SENDING, batch=batch)
    Message.objects.filter(pk=row.pk).update(status_changed_at="2000-01-01T00:00:00Z")
    url = callback_url(callbacks.batch_token(batch))
    client.get(url, {"id": "id-1", "status": "delivered", "to": "41791234501"})
    assert only_unmatched_count() == 1

    call_command("mitto_dispatch", "--sending-for", "60", stdout=mock.Mock())

    stored = Message.objects.get(pk=row.pk)
    assert (stored.status, stored.provider_id) == (Status.DELIVERED, "id-1")
    assert only_unmatched_count() == 0


def test_bulk_send_that_times_out_applies_the_reports_that_came_meanwhile(
    client: Client,
    settings: Any,
    db: None,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django_mitto.backends.inline import InlineBackend
    from django_mitto.client import MittoClient
    from django_mitto.exceptions import MittoTransportError
    from django_mitto.services import send_bulk

    settings.MITTO_API_URL = "http://127.0.0.1:9"
    # The report is posted from inside the request, in this test's transaction: the request
    # must run in this thread (the inline backend otherwise makes it from another).
    monkeypatch.setattr(InlineBackend, "chunks_in_flight", 1)

    def report_then_time_out(self: MittoClient, to: list[str], *args: Any, **kwargs: Any) -> None:
        # Mitto took the request and reported on the first number before the answer was lost.
        batch = Batch.objects.get()
        response = client.get(
            callback_url(callbacks.batch_token(batch)),
            {"id": "learned-1", "status": "delivered", "to": to[0]},
        )
        assert response.json()["outcome"] == Outcome.UNMATCHED
        raise MittoTransportError("POST /smsbulk: ReadTimeout.", request_sent=True)

    with (
        mock.patch.object(MittoClient, "send_bulk", report_then_time_out),
        django_capture_on_commit_callbacks(execute=True),
    ):
        batch = send_bulk(["+41791234501", "+41791234502"], "Hello")

    rows = {m.recipient: m for m in Message.objects.filter(batch=batch)}
    assert (rows["+41791234501"].status, rows["+41791234501"].provider_id) == (
        Status.DELIVERED,
        "learned-1",
    )
    assert rows["+41791234502"].status == Status.UNKNOWN
    assert only_unmatched_count() == 0
