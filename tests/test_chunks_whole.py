"""Rules of a bulk chunk: what it claims, where and when, what its failure writes; its batch alone."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.db import connection as thread_connection

from django_mitto import sending, services
from django_mitto.models import Message
from tests.canned import Reply
from tests.conftest import announced_failures, queued_batch

pytestmark = pytest.mark.django_db(transaction=True)

ACCEPTED = {"responseCode": 0, "responseText": "SMS sent successfully."}
REFUSED = {"responseCode": 8, "responseText": "Invalid sender"}


# -- the batch's completion -------------------------------------------------------------------


def test_a_batch_sent_to_the_end_completes_alone_leaving_another_batch_incomplete(
    mitto_sandbox: Any, settings: Any
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    done, (first,) = queued_batch("+41791234561")
    waiting, (other,) = queued_batch("+41791234562")
    services.attempt_chunk(done, [first.pk])
    done.refresh_from_db()
    waiting.refresh_from_db()
    assert done.completed_at is not None
    assert waiting.completed_at is None  # its message is still queued
    assert Message.objects.get(pk=other.pk).status == "queued"


# -- what a chunk claims ----------------------------------------------------------------------


def test_a_chunk_given_another_batchs_messages_claims_and_sends_none_of_them(
    mitto_sandbox: Any, settings: Any
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    batch, _ = queued_batch("+41791234561")
    _other_batch, (foreign,) = queued_batch("+41791234562")
    outcome = services.attempt_chunk(batch, [foreign.pk])
    assert not outcome.retry
    foreign.refresh_from_db()
    assert (foreign.status, foreign.attempts, foreign.provider_id) == ("queued", 0, "")
    assert mitto_sandbox.messages == []


@pytest.fixture
def no_returning_from_update(monkeypatch: Any) -> None:
    """SQLite before 3.35 (like databases other than PostgreSQL): no RETURNING on an UPDATE, so
    a chunk's claim is an UPDATE and then a read."""
    monkeypatch.setattr(connection.Database, "sqlite_version_info", (3, 31, 1))


@pytest.mark.sqlite  # an older SQLite is simulated
def test_without_update_returning_a_chunk_sends_only_the_rows_it_claimed(
    mitto_sandbox: Any, settings: Any, no_returning_from_update: None
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    batch, (already, left) = queued_batch("+41791234561", "+41791234562")
    services.attempt_chunk(batch, [already.pk])  # sent before: no longer queued
    already.refresh_from_db()
    assert already.status == "sent" and already.provider_id
    services.attempt_chunk(batch, [already.pk, left.pk])
    assert [m["to"] for m in mitto_sandbox.messages] == ["41791234561", "41791234562"]
    sent_before = Message.objects.get(pk=already.pk)
    assert (sent_before.attempts, sent_before.provider_id) == (1, already.provider_id)
    assert Message.objects.get(pk=left.pk).status == "sent"


class LaggingReplicaRouter:
    """A primary and a read replica: django_mitto's writes go to ``sms``, and its messages are
    read from ``default``, a replica that has not caught up (here: it never does)."""

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return "sms" if model._meta.app_label == "django_mitto" else None

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        if model is Message:
            return "default"
        return self.db_for_write(model, **hints)

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True


@pytest.mark.sqlite  # an older SQLite is simulated
@pytest.mark.django_db(transaction=True, databases=["default", "sms"])
def test_without_update_returning_a_chunks_claim_is_read_back_from_the_database_written(
    mitto_sandbox: Any, settings: Any, no_returning_from_update: None
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    settings.DATABASE_ROUTERS = [f"{__name__}.LaggingReplicaRouter"]
    batch, members = queued_batch("+41791234561", "+41791234562")
    services.attempt_chunk(batch.pk, [m.pk for m in members])
    assert [m["to"] for m in mitto_sandbox.messages] == ["41791234561", "41791234562"]
    stored = Message.objects.using("sms").filter(pk__in=[m.pk for m in members])
    assert sorted(stored.values_list("status", "attempts")) == [("sent", 1), ("sent", 1)]


# -- a chunk in flight ------------------------------------------------------------------------


def test_a_chunk_in_flight_is_dated_from_its_claim_so_mitto_dispatch_can_flag_it_stuck(
    canned_api: Any, settings: Any
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    batch, members = queued_batch("+41791234561", "+41791234562")
    flagged: list[int] = []

    def flagged_stuck() -> None:  # mitto_dispatch's mark_stuck_unknown, while Mitto is slow
        flagged.append(sending.mark_stuck_unknown(dt.timedelta(0)))
        thread_connection.close()

    canned_api.reply(Reply(400, REFUSED, before=flagged_stuck))
    services.attempt_chunk(batch, [m.pk for m in members])
    assert flagged == [2]
    stored = Message.objects.filter(pk__in=[m.pk for m in members])
    assert set(stored.values_list("status", "error")) == {("unknown", sending.STUCK_ERROR)}


def test_a_refused_chunk_leaves_alone_its_row_that_a_later_chunk_claimed_meanwhile(
    canned_api: Any, settings: Any
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    batch, (row,) = queued_batch("+41791234561")
    queued_again = threading.Event()

    def flagged_stuck_then_claimed_again() -> None:  # while Mitto is slow to refuse the first
        sending.mark_stuck_unknown(dt.timedelta(0))
        Message.objects.filter(pk=row.pk).update(status="queued")  # queued again by someone
        queued_again.set()
        for _ in range(200):  # until the second chunk has claimed it (at most 2 s)
            if Message.objects.filter(pk=row.pk, status="sending").exists():
                break
            time.sleep(0.01)
        thread_connection.close()

    canned_api.reply(
        Reply(400, REFUSED, before=flagged_stuck_then_claimed_again),
        Reply(body={**ACCEPTED, "messages": [{"id": "m-2", "to": "41791234561"}]}),
    )

    def chunks() -> Iterator[list[int]]:
        yield [row.pk]
        assert queued_again.wait(5)
        yield [row.pk]

    with announced_failures() as failed:
        outcomes = list(sending.attempt_chunks(batch, chunks(), in_flight=2))
    assert len(outcomes) == 2 and len(canned_api.requests) == 2
    assert failed == []  # the refusal was of the first chunk's request, not of the row's send
    row.refresh_from_db()
    assert (row.status, row.provider_id, row.attempts) == ("sent", "m-2", 2)
