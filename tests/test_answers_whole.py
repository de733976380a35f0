"""What an accepted answer writes on its message: the id up to its length, Mitto's words cut to
the column, the note when no id came back; and no error logged for a retry Mitto did not time."""

from __future__ import annotations

import logging

import pytest

from django_mitto import services
from django_mitto.models import Message
from tests.canned import Reply

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_answer_without_an_id_leaves_a_note_that_says_so_and_quotes_it(canned_api) -> None:
    canned_api.reply(Reply(body={"responseCode": 0, "responseText": "OK"}))
    message = services.send_sms("+41791234567", "Hi")
    assert message.status == "sent" and message.provider_id == ""
    assert message.error == (
        "Mitto accepted the message (responseCode 0) but its answer has no message id, so "
        'delivery reports cannot be matched by id. Answer: {"responseCode": 0, "responseText": '
        '"OK"}'
    )


def test_an_id_of_exactly_the_columns_length_is_stored(canned_api) -> None:
    longest = "a" * Message._meta.get_field("provider_id").max_length
    canned_api.reply(Reply(body={"id": longest, "responseCode": 0}))
    message = services.send_sms("+41791234567", "Hi")
    assert (message.status, message.provider_id, message.error) == ("sent", longest, "")


def test_mittos_long_response_text_is_cut_to_the_column(canned_api) -> None:
    canned_api.reply(Reply(body={"id": "abc-1", "responseCode": 0, "responseText": "x" * 300}))
    message = services.send_sms("+41791234567", "Hi")
    message.refresh_from_db()
    assert message.status == "sent" and message.provider_id == "abc-1"
    assert len(message.response_text) == 255


def test_a_refused_connection_pauses_no_account_and_logs_no_error(settings, caplog) -> None:
    settings.MITTO_API_URL = "http://127.0.0.1:9"
    settings.MITTO_SEND_ON_SAVE = False
    queued = Message.objects.create(recipient="+41791234567", text="Hi", sender="Shop")
    with caplog.at_level(logging.WARNING):
        outcome = services.attempt_message(queued.pk)
    assert outcome.retry
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("send", ["single", "bulk"])
def test_an_unknown_encoding_is_refused_on_its_field_with_the_reason(canned_api, send) -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as refused:
        if send == "single":
            services.send_sms("+41791234567", "Hi", encoding="EBCDIC")
        else:
            services.send_bulk(["+41791234567"], "Hi", encoding="EBCDIC")
    (error,) = refused.value.error_dict["encoding"]
    assert error.code == "invalid"
    assert "EBCDIC" in error.message
    assert canned_api.requests == [] and not Message.objects.exists()
