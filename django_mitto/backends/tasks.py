"""The Django Tasks backend: sends run through Django's Tasks framework.

On Django 6.0+ that is ``django.tasks``; before, the ``django-tasks`` backport. With a database
task backend (``django_tasks_db.DatabaseBackend``) and its ``db_worker`` command, sending
happens in the background with no broker. A retry is deferred with ``run_after`` when the task
backend supports it; otherwise it waits here (at most two seconds) before enqueuing.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

try:
    from django.tasks import task
    from django.tasks.base import DEFAULT_TASK_BACKEND_ALIAS, DEFAULT_TASK_QUEUE_NAME
except ImportError:  # Django < 6.0: the backport
    from django_tasks import task  # type: ignore[no-redef,unused-ignore]
    from django_tasks.base import (  # type: ignore[no-redef,unused-ignore]
        DEFAULT_TASK_BACKEND_ALIAS,
        DEFAULT_TASK_QUEUE_NAME,
    )

from .base import BATCH, CHUNK, MESSAGE, TaskBackend

__all__ = ["TasksBackend", "send_batch_task", "send_chunk_task", "send_message_task"]


def _backend() -> TaskBackend:
    # The worker runs the task with the configured backend (a subclass keeps its settings).
    from . import get_backend

    return get_backend()


@task
def send_message_task(pk: int) -> None:
    """Send message ``pk``; reschedule while Mitto certainly did not get it."""
    _backend().run(MESSAGE, pk)


@task
def send_batch_task(pk: int) -> None:
    """Cut batch ``pk`` into chunks, one task each."""
    _backend().run(BATCH, pk)


@task
def send_chunk_task(batch_pk: int, ids: list[int]) -> None:
    """Send one chunk of batch ``batch_pk``; reschedule while Mitto certainly did not get it."""
    _backend().run(CHUNK, batch_pk, ids)


_TASKS: dict[str, Any] = {
    MESSAGE: send_message_task,
    BATCH: send_batch_task,
    CHUNK: send_chunk_task,
}


class TasksBackend(TaskBackend):
    """Enqueue every task with Django's Tasks framework (``pip install "django-mitto[tasks]"``).

    Subclass it to choose the ``TASKS`` alias or the queue the tasks go to.
    """

    #: The ``TASKS`` entry the tasks are enqueued on.
    task_backend: str = DEFAULT_TASK_BACKEND_ALIAS
    #: The queue they are enqueued on (a ``db_worker --queue-name`` must process it).
    queue_name: str = DEFAULT_TASK_QUEUE_NAME
    #: Without ``run_after`` support, a retry waits here this long at most.
    max_blocking_delay: float = 2.0

    def schedule(self, kind: str, args: tuple[Any, ...], delay: float) -> None:
        task_ = _TASKS[kind].using(backend=self.task_backend, queue_name=self.queue_name)
        if delay > 0:
            if task_.get_backend().supports_defer:
                # An aware time whatever USE_TZ says: the Tasks framework requires one.
                when = datetime.now(timezone.utc) + timedelta(seconds=delay)
                task_ = task_.using(run_after=when)
            else:
                time.sleep(min(delay, self.max_blocking_delay))
        task_.enqueue(*args)
