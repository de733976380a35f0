"""Task backends as classes: the base class owns retries and backoff, a backend only schedules.

A backend written in one file (``tests/custom_backend.py``) is enough; chunks of a batch are
tasks of their own, each claimed once.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from django_mitto import sending, services
from django_mitto.backends import get_backend
from django_mitto.backends.base import TaskBackend
from django_mitto.backends.inline import InlineBackend
from django_mitto.exceptions import MittoConfigurationError
from django_mitto.models import Message
from tests.custom_backend import ListBackend

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def listed(settings, mitto_sandbox):
    """The one-file backend, configured, with an empty list."""
    settings.MITTO_TASK_BACKEND = "tests.custom_backend.ListBackend"
    ListBackend.scheduled.clear()
    ListBackend.pending.clear()
    backend = get_backend()
    assert isinstance(backend, ListBackend)
    yield backend
    ListBackend.scheduled.clear()
    ListBackend.pending.clear()


def test_custom_backend_in_one_file_sends_when_its_worker_runs(listed, mitto_sandbox) -> None:
    message = services.send_sms("+41791234567", "Later")
    assert message.status == "queued"
    assert mitto_sandbox.messages == []
    assert listed.scheduled == [("message", (message.pk,), 0.0)]
    listed.drain()
    message.refresh_from_db()
    assert message.status == "sent"
    assert message.provider_id == mitto_sandbox.messages[0]["id"]


def test_custom_backend_gets_retries_and_backoff_from_the_base_class(listed, mitto_sandbox) -> None:
    mitto_sandbox.add_fault("503", times=2)
    message = services.send_sms("+41791234567", "Again")
    listed.drain()
    message.refresh_from_db()
    assert message.status == "sent"
    assert message.attempts == 3
    # Exponential backoff from base_delay: 0.25 s, then 0.5 s.
    assert [delay for _, _, delay in listed.scheduled] == [0.0, 0.25, 0.5]
    assert len(mitto_sandbox.messages) == 1


def test_retry_after_of_a_429_is_the_delay(listed, mitto_sandbox) -> None:
    mitto_sandbox.add_fault("429", times=1, retry_after=7)
    services.send_sms("+41791234567", "Slow down")
    listed.drain()
    assert [delay for _, _, delay in listed.scheduled] == [0.0, 7.0]


def test_custom_backend_gives_up_after_max_attempts(listed, settings) -> None:
    settings.MITTO_API_URL = "http://127.0.0.1:9"
    settings.MITTO_MAX_ATTEMPTS = 2
    message = services.send_sms("+41791234567", "Nobody there")
    listed.drain()
    message.refresh_from_db()
    assert message.status == "failed"
    assert "Gave up after 2 attempts" in message.error
    assert len(listed.scheduled) == 2


def test_batch_is_one_task_per_chunk(listed, mitto_sandbox, settings) -> None:
    settings.MITTO_BULK_CHUNK_SIZE = 10
    batch = services.send_bulk([f"+417912345{i:02d}" for i in range(25)], "Sale")
    assert listed.scheduled == [("batch", (batch.pk,), 0.0)]
    listed.drain()
    kinds = [kind for kind, _, _ in listed.scheduled]
    assert kinds == ["batch", "chunk", "chunk", "chunk"]
    assert [len(args[1]) for kind, args, _ in listed.scheduled if kind == "chunk"] == [10, 10, 5]
    assert batch.messages.filter(status="sent").count() == 25
    assert len(mitto_sandbox.messages) == 25
    batch.refresh_from_db()
    assert batch.completed_at is not None


def test_chunk_that_mitto_did_not_get_is_retried_alone(listed, mitto_sandbox, settings) -> None:
    settings.MITTO_BULK_CHUNK_SIZE = 10
    mitto_sandbox.add_fault("503", times=1)
    batch = services.send_bulk([f"+417912345{i:02d}" for i in range(15)], "Sale")
    listed.drain()
    chunks = [(args, delay) for kind, args, delay in listed.scheduled if kind == "chunk"]
    # The first chunk came back 503 and was scheduled again, with its rows, after the backoff.
    assert len(chunks) == 3
    assert chunks[2] == (chunks[0][0], 0.25)
    assert batch.messages.filter(status="sent").count() == 15
    assert len(mitto_sandbox.messages) == 15


def test_a_chunk_handed_out_twice_is_sent_once(mitto_sandbox, settings) -> None:
    settings.MITTO_TASK_BACKEND = "tests.custom_backend.ListBackend"
    ListBackend.pending.clear()
    batch = services.send_bulk([f"+417912345{i:02d}" for i in range(5)], "Once")
    ListBackend.pending.clear()
    (ids,) = sending.plan_batch(batch)
    first = sending.attempt_chunk(batch, ids)
    second = sending.attempt_chunk(batch, ids)
    assert not first.retry and not second.retry
    assert len(mitto_sandbox.messages) == 5
    assert batch.messages.filter(status="sent").count() == 5


@pytest.mark.postgres
def test_a_chunk_raced_by_two_workers_is_sent_once(mitto_sandbox, settings) -> None:
    settings.MITTO_TASK_BACKEND = "tests.custom_backend.ListBackend"
    ListBackend.pending.clear()
    batch = services.send_bulk([f"+4179123{i:04d}" for i in range(200)], "Race")
    ListBackend.pending.clear()
    (ids,) = sending.plan_batch(batch)
    mitto_sandbox.add_fault("latency", seconds=0.2)
    barrier = threading.Barrier(4)

    def worker() -> None:
        try:
            barrier.wait()
            sending.attempt_chunk(batch.pk, ids)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(mitto_sandbox.messages) == 200
    assert len({m["id"] for m in mitto_sandbox.messages}) == 200
    assert batch.messages.filter(status="sent").count() == 200


def test_inline_backend_sends_a_batch_in_its_task_and_a_retry_after_it(
    mitto_sandbox, settings, monkeypatch
) -> None:
    from django_mitto.backends import inline

    settings.MITTO_TASK_BACKEND = "tests.custom_backend.ListBackend"
    settings.MITTO_BULK_CHUNK_SIZE = 2
    batch = services.send_bulk(["+41791234561", "+41791234562", "+41791234563"], "x")
    ListBackend.pending.clear()
    mitto_sandbox.add_fault("503", times=1)
    monkeypatch.setattr(inline.time, "sleep", lambda seconds: None)
    ran: list[tuple[str, str]] = []

    class Recording(InlineBackend):
        def run(self, kind, *args):
            ran.append(("start", kind))
            super().run(kind, *args)
            ran.append(("end", kind))

    Recording().enqueue_batch(batch.pk)
    # Both chunks are sent by the batch's task; the one refused is tried again after it,
    # not inside it.
    assert ran == [("start", "batch"), ("end", "batch"), ("start", "chunk"), ("end", "chunk")]
    assert len(mitto_sandbox.messages) == 3
    assert batch.messages.filter(status="sent").count() == 3


def test_send_sms_returns_the_row_a_backend_sent_when_the_save_committed(
    settings, mitto_sandbox
) -> None:
    settings.MITTO_TASK_BACKEND = "tests.custom_backend.EagerBackend"
    message = services.send_sms("+41791234567", "At once")
    (received,) = mitto_sandbox.messages
    assert (message.status, message.provider_id, message.attempts) == ("sent", received["id"], 1)
    # Inside a transaction nothing is sent before the commit: the message is returned queued.
    with transaction.atomic():
        later = services.send_sms("+41791234568", "After the commit")
        assert (later.status, len(mitto_sandbox.messages)) == ("queued", 1)
    later.refresh_from_db()
    assert later.status == "sent"


def test_unusable_backend_is_a_configuration_error_at_use_time(settings) -> None:
    settings.MITTO_TASK_BACKEND = "tests.custom_backend.NotABackend"
    with pytest.raises(MittoConfigurationError, match="MITTO_TASK_BACKEND"):
        get_backend()


def test_schedule_is_all_a_backend_must_write() -> None:
    with pytest.raises(NotImplementedError):
        TaskBackend().enqueue_message(1)


def test_attempt_returns_an_explicit_outcome(mitto_sandbox, settings) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    message = Message.objects.create(recipient="+41791234567", text="Hi")
    mitto_sandbox.add_fault("429", times=1, retry_after=3)
    outcome = sending.attempt_message(message.pk)
    assert (outcome.retry, outcome.retry_after, outcome.message.status) == (True, 3.0, "queued")
    assert not hasattr(outcome.message, "retry_after")
    outcome = sending.attempt_message(message.pk)
    assert (outcome.retry, outcome.message.status) == (False, "sent")


def test_inline_backend_has_two_chunk_requests_under_way_at_once(
    mitto_sandbox, settings, monkeypatch
) -> None:
    from django_mitto.client import MittoClient

    settings.MITTO_BULK_CHUNK_SIZE = 2
    real_send_bulk = MittoClient.send_bulk
    # Each request waits until another one is under way too: sent one after the other, the
    # first would wait in vain and its chunk would not be sent.
    both = threading.Barrier(2, timeout=10)
    threads: set[str] = set()

    def send_bulk(self, to, *args, **kwargs):
        threads.add(threading.current_thread().name)
        both.wait()
        return real_send_bulk(self, to, *args, **kwargs)

    monkeypatch.setattr(MittoClient, "send_bulk", send_bulk)
    batch = services.send_bulk([f"+4179123456{i}" for i in range(8)], "Hi")
    assert batch.messages.filter(status="sent").count() == 8
    assert len(mitto_sandbox.messages) == 8
    # The requests ran beside the caller's thread, which claimed and recorded every chunk.
    assert threading.current_thread().name not in threads


def test_chunks_left_unsent_when_the_caller_stops_early_are_not_left_sending(
    mitto_sandbox, settings
) -> None:
    settings.MITTO_TASK_BACKEND = "tests.custom_backend.ListBackend"
    settings.MITTO_BULK_CHUNK_SIZE = 2
    batch = services.send_bulk([f"+4179123456{i}" for i in range(6)], "Hi")
    outcomes = sending.attempt_chunks(batch.pk, sending.plan_batch(batch.pk))
    first = next(outcomes)
    outcomes.close()  # the caller stops after the first chunk's outcome
    assert not first.retry
    statuses = list(batch.messages.order_by("pk").values_list("status", flat=True))
    # The first chunk landed; the second was already claimed and under way: it is recorded
    # too; the third was never claimed.
    assert statuses == ["sent"] * 4 + ["queued"] * 2
    assert len(mitto_sandbox.messages) == 4
