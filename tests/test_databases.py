"""A project that keeps django_mitto's tables on a database of their own.

tests/settings.py declares a second database, ``sms``; :class:`SmsRouter` sends every model of
django_mitto there and everything else to ``default``, as a project's router would. Sending
waits for the commit of *that* database, locks and writes there, and reports are applied there.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from django.test import Client

from django_mitto import optouts, services
from django_mitto.models import Batch, DeliveryReport, Message, OptOut, Status
from django_mitto.signals import message_failed
from tests.canned import Reply
from tests.test_views import callback_url

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "sms"])


class SmsRouter:
    """django_mitto's models on ``sms``, the rest on ``default``."""

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return "sms" if model._meta.app_label == "django_mitto" else None

    db_for_write = db_for_read

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True  # created_by: the user lives on ``default`` (both databases have its table)


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


def test_a_bulk_send_refused_in_a_later_chunk_leaves_nothing_on_its_database(
    mitto_sandbox, settings
) -> None:
    settings.MITTO_BULK_CHUNK_SIZE = 2  # the refused number is read in the second chunk
    with pytest.raises(ValidationError) as refused:
        services.send_bulk(["+41791234561", "+41791234562", "+41791234563", "12"], "Hi")
    assert "recipients" in refused.value.message_dict
    assert (Batch.objects.using("sms").count(), Message.objects.using("sms").count()) == (0, 0)
    assert mitto_sandbox.messages == []


def test_opt_outs_are_kept_and_read_on_their_database(mitto_sandbox) -> None:
    optouts.add_opt_out("+41791234567", source="STOP")
    assert OptOut.objects.using("sms").count() == 1 and on_default(OptOut) == 0
    assert optouts.opted_out_numbers(["+41791234567", "+41791234568"]) == {"+41791234567"}
    with pytest.raises(ValidationError) as refused:
        services.send_sms("+41791234567", "Hi")
    assert refused.value.error_dict["recipient"][0].code == "opted_out"
    batch = services.send_bulk(["+41791234567", "+41791234568"], "Hi")
    assert list(batch.messages.values_list("recipient", "status")) == [("+41791234568", "sent")]


def test_an_id_refused_by_its_database_inside_a_transaction_there_leaves_it_usable(
    canned_api, settings
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    holder = Message.objects.create(recipient="+41791234561", text="Hi", sender="Shop")
    Message.objects.filter(pk=holder.pk).update(status="sent", provider_id="d88ae721")
    queued = Message.objects.create(recipient="+41791234562", text="Hi", sender="Shop")
    canned_api.reply(Reply(body={"id": "d88ae721", "responseCode": 0}))
    with transaction.atomic(using="sms"):
        services.attempt_message(queued.pk)
        # The refused UPDATE ran in a savepoint: the transaction goes on (PostgreSQL would
        # refuse every later statement of an aborted one).
        assert Message.objects.filter(status="unknown").count() == 1
    queued.refresh_from_db()
    assert queued.status == "unknown" and queued.provider_id == ""
    assert "which message" in queued.error


def test_a_report_on_a_messages_own_url_teaches_its_id_on_its_database(
    mitto_sandbox, settings
) -> None:
    from django_mitto import callbacks

    settings.MITTO_CALLBACK_BASE_URL = "http://testserver"
    settings.MITTO_SEND_ON_SAVE = False
    message = Message.objects.create(recipient="+41791234567", text="Hi", sender="Shop")
    Message.objects.filter(pk=message.pk).update(status="unknown")  # its answer was lost
    url = callbacks.callback_url_for_message(message)
    response = Client().get(url, {"id": "learned-1", "status": "delivered"})
    assert response.status_code == 200
    stored = Message.objects.using("sms").get(pk=message.pk)
    assert (stored.provider_id, stored.status) == ("learned-1", "delivered")


@pytest.mark.sqlite  # on PostgreSQL the report and the message's change are one statement
def test_a_report_and_the_change_it_makes_are_committed_together_on_its_database(
    mitto_sandbox, monkeypatch
) -> None:
    from django.db import DatabaseError

    from django_mitto import callbacks
    from django_mitto.callbacks import ParsedReport

    message = services.send_sms("+41791234567", "Hi")

    def update_fails(*args: Any, **kwargs: Any) -> int:
        raise DatabaseError("the message's UPDATE failed")

    monkeypatch.setattr(callbacks, "_update_message", update_fails)
    with pytest.raises(DatabaseError):
        callbacks.record_report(
            ParsedReport(message.provider_id, "delivered", payload={"query": {}}),
            method="POST",
            remote_addr="127.0.0.1",
        )
    # Rolled back with the change that failed: Mitto's next try is stored and applied whole.
    assert DeliveryReport.objects.using("sms").count() == 0


def test_an_id_refused_while_a_report_teaches_it_inside_a_transaction_there_leaves_it_usable(
    monkeypatch, settings
) -> None:
    from django_mitto import callbacks
    from django_mitto.callbacks import ParsedReport

    settings.MITTO_SEND_ON_SAVE = False
    holder = Message.objects.create(recipient="+41791234561", text="Hi", sender="Shop")
    message = Message.objects.create(recipient="+41791234562", text="Hi", sender="Shop")
    Message.objects.filter(pk=message.pk).update(status="unknown")  # its answer was lost
    learn_id = callbacks._learn_id

    def taken_meanwhile(learner: Message, provider_id: str) -> bool:
        # The send of another message records this id between the lookup and the learning.
        Message.objects.filter(pk=holder.pk).update(status="sent", provider_id=provider_id)
        return learn_id(learner, provider_id)

    monkeypatch.setattr(callbacks, "_learn_id", taken_meanwhile)
    with transaction.atomic(using="sms"):
        stored = callbacks.record_report(
            ParsedReport("learned-1", "delivered", payload={"query": {}}),
            method="POST",
            remote_addr="127.0.0.1",
            message_pk=message.pk,
        )
        # The refused UPDATE ran in a savepoint there: the transaction goes on (PostgreSQL
        # refuses every later statement of an aborted one).
        assert Message.objects.filter(provider_id="learned-1").count() == 1
    assert stored.outcome == DeliveryReport.Outcome.MISMATCHED
    message.refresh_from_db()
    assert (message.provider_id, message.status) == ("", "unknown")


def test_a_report_recorded_in_a_transaction_of_its_database_is_announced_when_that_commits(
    mitto_sandbox,
) -> None:
    from django_mitto import callbacks
    from django_mitto.callbacks import ParsedReport
    from django_mitto.signals import message_status_changed

    message = services.send_sms("+41791234567", "Hi")
    changes: list[tuple[int, str]] = []

    def on_changed(sender: Any, message: Message, new_status: str, **kwargs: Any) -> None:
        changes.append((message.pk, new_status))

    message_status_changed.connect(on_changed, weak=False)
    try:
        with transaction.atomic(using="sms"):
            callbacks.record_report(
                ParsedReport(message.provider_id, "delivered", payload={"query": {}}),
                method="POST",
                remote_addr="127.0.0.1",
            )
            assert changes == []  # not before the report is committed
    finally:
        message_status_changed.disconnect(on_changed)
    assert changes == [(message.pk, "delivered")]


@pytest.fixture
def atomic_requests_on_sms() -> Any:
    from django.db import connections

    settings_dict = connections["sms"].settings_dict
    before = settings_dict["ATOMIC_REQUESTS"]
    settings_dict["ATOMIC_REQUESTS"] = True
    yield
    settings_dict["ATOMIC_REQUESTS"] = before


def test_a_report_is_committed_at_once_under_atomic_requests_on_its_database(
    mitto_sandbox, atomic_requests_on_sms, monkeypatch
) -> None:
    from django_mitto import views

    message = services.send_sms("+41791234567", "Hi")
    in_transaction: list[bool] = []

    def recorded(*args: Any, **kwargs: Any) -> Any:
        report = record_report(*args, **kwargs)
        # Committed, hence visible to the send path in another process, before the view answers.
        in_transaction.append(transaction.get_connection("sms").in_atomic_block)
        return report

    record_report = views.record_report
    monkeypatch.setattr(views, "record_report", recorded)
    response = Client().get(callback_url(), {"id": message.provider_id, "status": "delivered"})
    assert response.status_code == 200
    assert in_transaction == [False]
    message.refresh_from_db()
    assert message.status == "delivered"


def test_the_admin_sends_copies_again_on_its_database(admin_client, mitto_sandbox) -> None:
    from django.contrib.admin import helpers
    from django.urls import reverse

    originals = [
        Message.objects.create(recipient="+41791234567", text="Again", sender="Shop", status="sent")
        for _ in range(2)
    ]
    response = admin_client.post(
        reverse("admin:django_mitto_message_changelist"),
        {"action": "send_again", helpers.ACTION_CHECKBOX_NAME: [m.pk for m in originals]},
    )
    assert response.status_code == 302
    copies = Message.objects.using("sms").exclude(pk__in=[m.pk for m in originals])
    assert sorted(copies.values_list("status", flat=True)) == ["sent", "sent"]
    assert len(mitto_sandbox.messages) == 2 and on_default(Message) == 0
