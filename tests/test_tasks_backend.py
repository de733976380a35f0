"""The "tasks" backend: Django's Tasks framework (django.tasks, or the django-tasks backport),
with its database backend and its real ``db_worker`` command."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from django_mitto import services
from django_mitto.admin.batch import BatchProgress
from django_mitto.models import Batch, Message
from tests.conftest import process_env, require_part, skip_without_tasks_support

try:
    from django_tasks_db.models import DBTaskResult
except ImportError:  # the tasks extra is not installed
    DBTaskResult = None

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent
DATABASE_BACKEND = "django_tasks_db.DatabaseBackend"


@pytest.fixture
def tasks_backend(settings, mitto_sandbox):
    skip_without_tasks_support()
    require_part(
        DBTaskResult is not None, 'django-tasks-db is not installed (pip install ".[tasks]")'
    )
    settings.MITTO_TASK_BACKEND = "tasks"
    return mitto_sandbox


@pytest.fixture
def database_queue(settings, tasks_backend):
    """Tasks go to the database; nothing runs until a worker does."""
    settings.TASKS = {"default": {"BACKEND": DATABASE_BACKEND}}
    return tasks_backend


def bulk_requests(received: list[dict[str, Any]]) -> set[tuple[str, ...]]:
    """The recipients of each /smsbulk request the sandbox received."""
    return {tuple(m["body"]["to"]) for m in received if m["bulk"]}


def run_worker() -> None:
    """One pass of the real worker command: run every task that is due, then stop."""
    call_command("db_worker", "--batch", "--no-startup-delay", "--interval", "0", verbosity=0)


def test_immediate_task_backend_sends_at_once(tasks_backend, settings) -> None:
    settings.MITTO_BULK_CHUNK_SIZE = 10
    message = services.send_sms("+41791234567", "Now")
    assert message.status == "sent"
    batch = services.send_bulk([f"+417912345{i:02d}" for i in range(25)], "Sale")
    assert batch.messages.filter(status="sent").count() == 25
    assert sorted(map(len, bulk_requests(tasks_backend.messages))) == [5, 10, 10]


def test_database_worker_sends_what_was_queued(database_queue) -> None:
    message = services.send_sms("+41791234567", "Later")
    assert message.status == "queued"
    (queued,) = DBTaskResult.objects.all()
    assert queued.task_path == "django_mitto.backends.tasks.send_message_task"
    assert database_queue.messages == []
    run_worker()
    message.refresh_from_db()
    assert message.status == "sent"
    assert len(database_queue.messages) == 1


def test_retry_is_deferred_with_run_after(database_queue) -> None:
    database_queue.add_fault("503", times=1)
    message = services.send_sms("+41791234567", "Again")
    run_worker()
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("queued", 1)
    retry = DBTaskResult.objects.filter(status="READY").get()
    assert retry.run_after is not None  # not due yet: this worker pass left it
    time.sleep(0.3)
    run_worker()
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("sent", 2)
    assert len(database_queue.messages) == 1


def test_admin_bulk_send_returns_at_once_and_the_batch_fills_as_the_worker_sends(
    database_queue, admin_client, settings
) -> None:
    from tests.test_admin_batch import SEND_URL, confirm_data, numbers, preview

    settings.MITTO_DEFAULT_REGION = "CH"
    settings.MITTO_BULK_CHUNK_SIZE = 20
    response = preview(admin_client, numbers="\n".join(numbers(45)))
    response = admin_client.post(SEND_URL, confirm_data(response))
    assert response.status_code == 302
    batch = Batch.objects.get()
    assert BatchProgress.load(batch).progressed == 0
    assert database_queue.messages == []
    run_worker()
    assert BatchProgress.load(batch).progressed == 45
    page = admin_client.get(response.url).content.decode()
    assert "100.0%" in page
    assert sorted(map(len, bulk_requests(database_queue.messages))) == [5, 20, 20]


# -- a real worker process on PostgreSQL ---------------------------------------------------------


@pytest.fixture
def worker_processes(database_queue, settings):
    """Start ``count`` ``db_worker`` processes sending to the sandbox (chunks of 100); stop them
    afterwards."""
    settings.MITTO_BULK_CHUNK_SIZE = 100
    env = process_env(
        database_queue.url,
        MITTO_TASK_BACKEND="tasks",
        MITTO_TEST_TASKS_BACKEND=DATABASE_BACKEND,
        MITTO_BULK_CHUNK_SIZE="100",
    )
    processes: list[subprocess.Popen] = []

    command = [sys.executable, "-m", "django", "db_worker", "--interval", "0.05", "--no-reload"]

    def start(count: int) -> None:
        for _ in range(count):
            processes.append(
                subprocess.Popen(
                    [*command, "--verbosity", "0"],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )

    yield start
    # A task that raised is recorded FAILED with its traceback. (The workers' own output is no
    # guide: one stopped while it polls the database may print the interrupted query's
    # traceback on its way out.)
    failed = list(
        DBTaskResult.objects.filter(status="FAILED").values_list("task_path", "traceback")
    )
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
    assert not failed, failed


def wait_until(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


@pytest.mark.postgres
def test_worker_process_sends_a_batch_of_1000_and_100_messages_once_each(
    worker_processes, database_queue, settings
) -> None:
    batch = services.send_bulk([f"+4179{1_000_000 + i}" for i in range(1000)], "Campaign")
    singles = [services.send_sms(f"+4178{1_000_000 + i}", f"Single {i}") for i in range(100)]
    assert Message.objects.exclude(status="queued").count() == 0  # nothing sent in this process
    worker_processes(2)
    assert wait_until(
        lambda: not Message.objects.filter(status__in=["queued", "sending"]).exists(), 180
    )
    assert Message.objects.filter(status="sent").count() == 1100
    # The last chunk's worker marks the batch complete just after writing its rows.
    assert wait_until(lambda: Batch.objects.get(pk=batch.pk).completed_at is not None, 10)
    received = database_queue.messages
    per_recipient = Counter(m["to"] for m in received)
    assert len(received) == 1100
    assert set(per_recipient.values()) == {1}
    ids = {m["id"] for m in received}
    assert set(Message.objects.values_list("provider_id", flat=True)) == ids
    assert sorted(map(len, bulk_requests(received))) == [100] * 10
    assert {m.pk for m in singles} <= set(
        Message.objects.filter(batch=None).values_list("pk", flat=True)
    )
