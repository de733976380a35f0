"""A project that keeps django_mitto's tables on a database of their own.

tests/settings.py declares a second database, ``sms``; :class:`SmsRouter` sends every model of
django_mitto there and everything else to ``default``, as a project's router would. Sending
waits for the commit of *that* database, locks and writes there, and reports are applied there.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.test import Client

from django_mitto import services
from django_mitto.models import Batch, DeliveryReport, Message, Status
from django_mitto.signals import message_failed
from tests.test_views import callback_url

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "sms"])


class SmsRouter:
    """django_mitto's models on ``sms``, the rest on ``default``."""

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return "sms" if model._meta.app_label == "django_mitto" else None

    db_for_write = db_for_read


@pytest.fixture(autouse=True)
def routed(settings: Any) -> None:
    settings.DATABASE_ROUTERS = [f"{__name__}.SmsRouter"]


@pytest.fixture
def failed_seen() -> Any:
    seen: list[int] = []

    def on_failed(sender: Any, message: Message, **kwargs: Any) -> None:
        seen.append(message.pk)

    message_failed.connect(on_failed, weak=False)
    yield seen
    message_failed.disconnect(on_failed)


def on_default(model: type) -> int:
    return model.objects.using("default").count()


def test_a_message_is_sent_at_once_and_stored_on_its_own_database_only(mitto_sandbox) -> None:
    message = services.send_sms("+41791234567", "Hi")
    assert message._state.db == "sms"
    assert message.status == "sent" and message.provider_id
    stored = Message.objects.using("sms").get(pk=message.pk)
    assert (stored.status, stored.provider_id) == ("sent", message.provider_id)
    assert on_default(Message) == 0
    assert len(mitto_sandbox.messages) == 1


@pytest.mark.parametrize(
    ("send_on_save", "create"),
    [
        (True, lambda: services.send_sms("+41791234567", "Hi")),
        (False, lambda: services.send_sms("+41791234567", "Hi")),  # sent explicitly
        (True, lambda: Message.objects.create(recipient="+41791234567", text="Hi", sender="Shop")),
    ],
    ids=["send_sms", "send_sms-without-send-on-save", "save"],
)
def test_a_message_created_in_a_transaction_of_its_database_is_sent_when_that_commits(
    mitto_sandbox, settings, send_on_save, create
) -> None:
    settings.MITTO_SEND_ON_SAVE = send_on_save
    with transaction.atomic(using="sms"):
        message = create()
        assert message.status == "queued"
        assert mitto_sandbox.messages == []  # not before the commit that makes it real
    message.refresh_from_db()
    assert message.status == "sent" and message.provider_id
    assert len(mitto_sandbox.messages) == 1


def test_a_message_whose_transaction_rolls_back_is_never_sent(mitto_sandbox) -> None:
    with pytest.raises(RuntimeError), transaction.atomic(using="sms"):
        services.send_sms("+41791234567", "Hi")
        raise RuntimeError("the view failed after creating the message")
    assert Message.objects.using("sms").count() == 0
    assert mitto_sandbox.messages == []


def test_a_bulk_send_in_a_transaction_of_its_database_goes_out_when_that_commits(
    mitto_sandbox,
) -> None:
    with transaction.atomic(using="sms"):
        batch = services.send_bulk(["+41791234567", "+41791234568"], "Hi")
        assert mitto_sandbox.messages == []
    assert batch._state.db == "sms"
    statuses = set(
        Message.objects.using("sms").filter(batch=batch).values_list("status", flat=True)
    )
    assert statuses == {"sent"}
    assert len(mitto_sandbox.messages) == 2
    assert (on_default(Message), on_default(Batch)) == (0, 0)


def test_a_queued_message_is_claimed_and_sent_on_its_database(mitto_sandbox, settings) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    queued = Message.objects.create(recipient="+41791234567", text="Hi", sender="Shop")
    outcome = services.attempt_message(queued.pk)
    assert outcome.message.status == "sent"
    assert Message.objects.using("sms").get(pk=queued.pk).attempts == 1
    assert len(mitto_sandbox.messages) == 1


def test_mark_failed_changes_its_database_and_announces_after_that_commits(
    settings, failed_seen
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    first, second = (
        Message.objects.create(recipient=f"+4179123456{n}", text="Hi", sender="Shop")
        for n in (1, 2)
    )
    Message.objects.using("sms").update(status=Status.UNKNOWN)
    with transaction.atomic(using="sms"):
        assert services.mark_failed([first], by="ops") == 1
        assert failed_seen == []
    assert failed_seen == [first.pk]
    # Called outside any transaction, it opens one of its own there (its rows are locked).
    assert services.mark_failed([second.pk]) == 1
    assert failed_seen == [first.pk, second.pk]
    statuses = Message.objects.using("sms").order_by("pk").values_list("status", flat=True)
    assert list(statuses) == ["failed", "failed"]


def test_a_delivery_report_is_stored_and_applied_on_its_database(mitto_sandbox) -> None:
    message = services.send_sms("+41791234567", "Hi")
    response = Client().get(callback_url(), {"id": message.provider_id, "status": "delivered"})
    assert response.status_code == 200
    message.refresh_from_db()
    assert message.status == "delivered"
    stored = DeliveryReport.objects.using("sms").get()
    assert (stored.message_id, stored.outcome) == (message.pk, DeliveryReport.Outcome.APPLIED)
    assert on_default(DeliveryReport) == 0
