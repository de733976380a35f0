"""Rules of the send service that the run over every one of its mutants found untested."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone

from django_mitto import services
from django_mitto.models import Batch, Message
from django_mitto.signals import message_failed

pytestmark = pytest.mark.django_db(transaction=True)


# -- mark_failed ------------------------------------------------------------------------------


def test_mark_failed_dates_its_note_in_the_local_time_zone(make_message, settings) -> None:
    settings.TIME_ZONE = "Asia/Kathmandu"  # UTC+05:45: no other zone gives these minutes
    message = make_message(status="unknown")
    before = timezone.localtime(timezone.now(), dt.timezone(dt.timedelta(hours=5, minutes=45)))
    assert services.mark_failed([message], by="ops") == 1
    message.refresh_from_db()
    found = re.fullmatch(
        r"Marked as failed by ops on (\d{4}-\d\d-\d\d \d\d:\d\d) (\S+)\.", message.error
    )
    assert found, message.error
    written = dt.datetime.strptime(found[1], "%Y-%m-%d %H:%M")
    assert abs(written - before.replace(tzinfo=None, second=0, microsecond=0)) <= dt.timedelta(
        minutes=1
    )
    assert found[2] == "+0545"


def test_mark_failed_works_without_time_zone_support(make_message, settings) -> None:
    settings.USE_TZ = False
    message = make_message(status="unknown")
    assert services.mark_failed([message], by="ops") == 1
    message.refresh_from_db()
    assert message.status == "failed"
    assert re.fullmatch(r"Marked as failed by ops on \d{4}-\d\d-\d\d \d\d:\d\d\.", message.error)


def test_mark_failed_is_announced_to_receivers_of_the_message_class(make_message) -> None:
    seen = []

    def on_failed(sender, message, error, **kwargs):
        seen.append((sender, message.pk, message.status, error))

    message_failed.connect(on_failed, sender=Message)
    try:
        message = make_message(status="unknown")
        assert services.mark_failed([message.pk]) == 1
    finally:
        message_failed.disconnect(on_failed, sender=Message)
    assert seen == [(Message, message.pk, "failed", None)]


# -- requeue_left_behind ------------------------------------------------------------------------


def _queued(n: int, **fields) -> Message:
    return Message.objects.create(recipient=f"+4179123456{n}", text="Hi", sender="Shop", **fields)


def test_requeue_left_behind_hands_over_the_oldest_first_up_to_its_limit(
    mitto_sandbox, settings
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    now = timezone.now()
    younger, older = _queued(1), _queued(2)  # created in this order: the older has the larger pk
    Message.objects.filter(pk=younger.pk).update(created_at=now - dt.timedelta(hours=1))
    Message.objects.filter(pk=older.pk).update(created_at=now - dt.timedelta(hours=2))
    assert services.requeue_left_behind(dt.timedelta(minutes=30), limit=1) == (1, 0)
    status = dict(Message.objects.values_list("pk", "status"))
    assert (status[older.pk], status[younger.pk]) == ("sent", "queued")


def test_requeue_left_behind_leaves_a_batch_queued_just_now(mitto_sandbox, settings) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    batch = Batch.objects.create(text="Bulk", sender="Shop", total=1)
    member = _queued(1, batch=batch)
    assert services.requeue_left_behind(dt.timedelta(minutes=30)) == (0, 0)
    member.refresh_from_db()
    assert member.status == "queued"
    assert mitto_sandbox.messages == []


# -- local_usage --------------------------------------------------------------------------------


def _sent(make_message, provider_id: str, when: dt.datetime) -> Message:
    message = make_message(provider_id=provider_id)
    Message.objects.filter(pk=message.pk).update(sent_at=when)
    return message


def test_local_usage_counts_no_message_without_a_mitto_id(make_message) -> None:
    noon = dt.datetime(2024, 3, 10, 12, 0, tzinfo=dt.timezone.utc)
    _sent(make_message, "id-1", noon)
    _sent(make_message, "", noon)  # never accepted by Mitto
    day = dt.date(2024, 3, 10)
    assert services.local_usage(day, day) == {"CHE": (1, 1)}


def test_local_usage_works_without_time_zone_support(make_message, settings) -> None:
    settings.USE_TZ = False
    _sent(make_message, "id-1", dt.datetime(2024, 3, 10, 23, 59))
    _sent(make_message, "id-2", dt.datetime(2024, 3, 11, 0, 0))
    day = dt.date(2024, 3, 10)
    assert services.local_usage(day, day) == {"CHE": (1, 1)}
