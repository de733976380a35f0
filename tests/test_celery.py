"""The Celery backend with a real Redis broker and a real worker process (PostgreSQL pass only:
the worker and the tests must share one database)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from django_mitto import services
from django_mitto.models import Message
from tests.conftest import process_env, require_part

pytestmark = [pytest.mark.postgres, pytest.mark.celery, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent
BROKER = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")


def redis_available() -> bool:
    try:
        import redis
    except ImportError:
        return False
    try:
        return bool(redis.Redis.from_url(BROKER, socket_connect_timeout=1).ping())
    except redis.exceptions.RedisError:
        return False


@pytest.fixture
def worker(mitto_sandbox, settings):
    """A Celery worker (2 processes) on Redis, sending to the sandbox."""
    require_part(redis_available(), f"Redis is not reachable at {BROKER}")
    import redis

    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    redis.Redis.from_url(BROKER).delete(queue)  # only this run's queue: others may share Redis
    from tests.celery_app import app  # noqa: F401  (the app the tasks are sent with)

    settings.MITTO_TASK_BACKEND = "celery"
    env = process_env(
        mitto_sandbox.url,
        MITTO_TASK_BACKEND="celery",
        CELERY_BROKER_URL=BROKER,
        MITTO_TEST_CELERY_QUEUE=queue,
        MITTO_BULK_CHUNK_SIZE="10",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker", "--concurrency=2",
         "--loglevel=WARNING", "--without-heartbeat", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    yield mitto_sandbox
    process.terminate()
    try:
        output, _ = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    assert "Traceback" not in output, output


def wait_until(check, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def test_worker_sends_a_saved_message(worker) -> None:
    message = services.send_sms("+41791234561", "Hi from a worker")
    message.refresh_from_db()
    assert message.status in ("queued", "sending", "sent")  # handed over, not sent in this process
    assert wait_until(lambda: Message.objects.get(pk=message.pk).status == "sent")
    message.refresh_from_db()
    assert message.provider_id == worker.messages[0]["id"]


def test_worker_retries_when_mitto_asks_to_come_back(worker) -> None:
    worker.add_fault("503", times=1)
    message = services.send_sms("+41791234561", "Hi")
    assert wait_until(lambda: Message.objects.get(pk=message.pk).status == "sent")
    message.refresh_from_db()
    assert message.attempts == 2
    assert len(worker.messages) == 1


def test_worker_sends_a_batch_in_chunks(worker) -> None:
    batch = services.send_bulk([f"+417912345{i:02d}" for i in range(25)], "Sale")
    assert wait_until(lambda: batch.messages.filter(status="sent").count() == 25)
    assert len({tuple(m["body"]["to"]) for m in worker.messages}) == 3


def test_many_messages_are_each_sent_exactly_once(worker) -> None:
    messages = [services.send_sms(f"+417912345{i:02d}", f"Message {i}") for i in range(60)]
    # Enqueue every one a second time: the claim makes the duplicates no-ops.
    from django_mitto.tasks import send_message_task

    for message in messages:
        send_message_task.delay(message.pk)
    assert wait_until(lambda: Message.objects.filter(status="sent").count() == 60)
    time.sleep(0.5)
    assert len(worker.messages) == 60
    assert sorted(m["body"]["text"] for m in worker.messages) == sorted(
        f"Message {i}" for i in range(60)
    )


def test_tasks_queued_by_name_by_earlier_versions_still_run(worker, settings) -> None:
    from tests.celery_app import app
    from tests.custom_backend import ListBackend

    # Create the rows without handing them to Celery, then queue them as older versions did.
    settings.MITTO_TASK_BACKEND = "tests.custom_backend.ListBackend"
    batch = services.send_bulk([f"+417912345{i:02d}" for i in range(15)], "Old batch")
    message = services.send_sms("+41791234599", "Old message")
    ListBackend.pending.clear()
    ListBackend.scheduled.clear()
    app.send_task("django_mitto.send_batch", (batch.pk, 1))
    app.send_task("django_mitto.send_message", (message.pk,))
    assert wait_until(lambda: Message.objects.filter(status="sent").count() == 16)
    # The batch went out one task per chunk (chunks of 10 in the worker).
    assert len({tuple(m["body"]["to"]) for m in worker.messages if m["bulk"]}) == 2
