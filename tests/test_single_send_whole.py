"""Rules of sending one message: invalid input, opt-outs per account, claim dates, sender, signal."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from django_mitto import services
from django_mitto.models import Message, OptOut
from django_mitto.signals import message_sent
from tests.canned import Reply

pytestmark = pytest.mark.django_db(transaction=True)

ACCEPTED = {"id": "d88ae721", "responseCode": 0, "responseText": "SMS sent successfully."}


@pytest.fixture
def marketing(mitto_sandbox: Any, settings: Any) -> Any:
    """A second account, "marketing", on the same sandbox, with its own default sender."""
    settings.MITTO_ACCOUNTS = {
        "marketing": {
            "API_KEY": settings.MITTO_API_KEY,
            "API_URL": mitto_sandbox.url,
            "DEFAULT_SENDER": "Promo",
        }
    }
    return mitto_sandbox


@pytest.fixture
def no_returning_from_update(monkeypatch: Any) -> None:
    """SQLite before 3.35 (like databases other than PostgreSQL): no RETURNING on an UPDATE, so
    a message's claim is an UPDATE and then a read."""
    monkeypatch.setattr(connection.Database, "sqlite_version_info", (3, 31, 1))


class InFlight:
    """Reads the message's row while its request is at the canned server (in its thread)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dt.datetime | None]] = []

    def __call__(self) -> None:
        from django.db import connection as thread_connection

        row = Message.objects.get()
        self.seen.append((row.status, row.status_changed_at))
        thread_connection.close()


# -- send_sms: input and opt-outs ------------------------------------------------------------


@pytest.mark.parametrize(
    "number", ["+4179123456\ud800", "+4179\x00123456"], ids=["surrogate", "nul"]
)
def test_a_recipient_that_is_no_phone_number_is_refused_as_such_even_unstorable(
    mitto_sandbox: Any, number: str
) -> None:
    # Not looked up among the opt-outs: a lone surrogate (and a NUL on PostgreSQL) cannot
    # even be passed to the database.
    with pytest.raises(ValidationError) as raised:
        services.send_sms(number, "Hi")
    assert list(raised.value.message_dict) == ["recipient"]
    assert Message.objects.count() == 0
    assert mitto_sandbox.messages == []


def test_in_a_transaction_a_number_opted_out_of_one_account_is_refused_there_only(
    marketing: Any,
) -> None:
    OptOut.objects.create(number="+41791234561", account="marketing")
    OptOut.objects.create(number="+41791234562", account="default")
    with transaction.atomic():
        with pytest.raises(ValidationError) as raised:
            services.send_sms("+41791234561", "Promo", account="marketing")
        assert list(raised.value.message_dict) == ["recipient"]
        with pytest.raises(ValidationError) as raised:
            services.send_sms("+41791234562", "Code")
        assert list(raised.value.message_dict) == ["recipient"]
        code = services.send_sms("+41791234561", "Code")
        promo = services.send_sms("+41791234562", "Promo", account="marketing")
    code.refresh_from_db()
    promo.refresh_from_db()
    assert (code.account, code.status) == ("default", "sent")
    assert (promo.account, promo.status) == ("marketing", "sent")
    assert sorted((m["to"], m["body"]["text"]) for m in marketing.messages) == [
        ("41791234561", "Code"),
        ("41791234562", "Promo"),
    ]


def test_ignore_opt_out_in_a_transaction_sends_to_the_opted_out_number_and_logs_it(
    mitto_sandbox: Any, caplog: Any
) -> None:
    OptOut.objects.create(number="+41791234567")
    with caplog.at_level(logging.WARNING, logger="django_mitto"), transaction.atomic():
        message = services.send_sms("+41791234567", "Your code is 1234", ignore_opt_out=True)
        assert message.status == "queued"
    message.refresh_from_db()
    assert (message.status, message.error) == ("sent", "")
    assert [m["to"] for m in mitto_sandbox.messages] == ["41791234567"]
    assert (
        f"SMS {message.pk} to +41791234567 sent although the number opted out "
        "(ignore_opt_out=True)" in caplog.text
    )


# -- the claim dates a message in flight --------------------------------------------------------


def test_a_message_sent_at_once_is_dated_from_its_claim_while_in_flight(canned_api: Any) -> None:
    in_flight = InFlight()
    canned_api.reply(Reply(body=ACCEPTED, before=in_flight))
    started = timezone.now()
    message = services.send_sms("+41791234567", "Hi")
    finished = timezone.now()
    assert message.status == "sent"
    ((status, changed_at),) = in_flight.seen
    assert status == "sending"
    assert changed_at is not None and started <= changed_at <= finished


def _queued_long_ago() -> Message:
    message = Message.objects.create(recipient="+41791234567", text="Hi", sender="Shop")
    # Put back in the queue an hour ago (a retry): the claim must date it anew.
    Message.objects.filter(pk=message.pk).update(
        status_changed_at=timezone.now() - dt.timedelta(hours=1)
    )
    return message


def _claimed_message_is_dated_from_its_claim(canned_api: Any) -> None:
    message = _queued_long_ago()
    in_flight = InFlight()
    canned_api.reply(Reply(body=ACCEPTED, before=in_flight))
    started = timezone.now()
    sent = services.send_message(message.pk)
    finished = timezone.now()
    assert (sent.status, sent.attempts) == ("sent", 1)
    ((status, changed_at),) = in_flight.seen
    assert status == "sending"
    assert changed_at is not None and started <= changed_at <= finished


def test_a_queued_message_is_dated_from_its_claim_while_in_flight(
    canned_api: Any, settings: Any
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    _claimed_message_is_dated_from_its_claim(canned_api)


@pytest.mark.sqlite  # an older SQLite is simulated
def test_without_update_returning_a_queued_message_is_dated_from_its_claim_while_in_flight(
    canned_api: Any, settings: Any, no_returning_from_update: None
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    _claimed_message_is_dated_from_its_claim(canned_api)


@pytest.mark.sqlite  # an older SQLite is simulated
def test_without_update_returning_sending_one_message_leaves_the_others_queued(
    mitto_sandbox: Any, settings: Any, no_returning_from_update: None
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    first = Message.objects.create(recipient="+41791234561", text="Hi", sender="Shop")
    other = Message.objects.create(recipient="+41791234562", text="Hi", sender="Shop")
    assert services.send_message(first.pk).status == "sent"
    other.refresh_from_db()
    assert (other.status, other.attempts, other.status_changed_at) == ("queued", 0, None)
    assert [m["to"] for m in mitto_sandbox.messages] == ["41791234561"]
    assert services.send_message(other.pk).status == "sent"
    assert [m["to"] for m in mitto_sandbox.messages] == ["41791234561", "41791234562"]


# -- the sender of a queued message ------------------------------------------------------------


def test_a_queued_message_without_sender_goes_out_with_its_accounts_default_sender(
    marketing: Any, settings: Any
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    settings.MITTO_DEFAULT_SENDER = ""  # the default account has none
    message = Message.objects.create(
        recipient="+41791234567", text="Hi", sender="", account="marketing"
    )
    sent = services.send_message(message.pk)
    assert (sent.status, sent.error) == ("sent", "")
    assert [m["body"]["from"] for m in marketing.messages] == ["Promo"]


# -- the message_sent signal ---------------------------------------------------------------------


def test_a_message_sent_at_once_is_announced_to_receivers_of_the_message_class(
    mitto_sandbox: Any,
) -> None:
    seen = []

    def on_sent(sender: Any, message: Message, result: Any, **kwargs: Any) -> None:
        seen.append((sender, message.pk, message.status, result.id == message.provider_id))

    message_sent.connect(on_sent, sender=Message)
    try:
        message = services.send_sms("+41791234567", "Hi")
    finally:
        message_sent.disconnect(on_sent, sender=Message)
    assert message.status == "sent"
    assert seen == [(Message, message.pk, "sent", True)]
