"""The Celery backend: sends run in Celery workers; a retry is scheduled with a countdown.

The Celery task names (``django_mitto.send_message``, ``django_mitto.send_batch``,
``django_mitto.send_chunk``) are stable: messages already in a broker keep working after an
upgrade. Celery finds these tasks through ``django_mitto.tasks`` (``app.autodiscover_tasks()``).
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from .base import BATCH, CHUNK, MESSAGE, TaskBackend

__all__ = ["CeleryBackend", "send_batch_task", "send_chunk_task", "send_message_task"]


def _backend() -> TaskBackend:
    # The worker runs the task with the configured backend, so a retry goes where the
    # settings say (a CeleryBackend subclass keeps its own delays).
    from . import get_backend

    return get_backend()


@shared_task(name="django_mitto.send_message", ignore_result=True)
def send_message_task(pk: int) -> None:
    """Send message ``pk``; reschedule while Mitto certainly did not get it."""
    _backend().run(MESSAGE, pk)


@shared_task(name="django_mitto.send_batch", ignore_result=True)
def send_batch_task(pk: int, attempt: int = 1) -> None:
    """Cut batch ``pk`` into chunks, one task each (``attempt``: accepted from older versions'
    queued tasks, unused)."""
    _backend().run(BATCH, pk)


@shared_task(name="django_mitto.send_chunk", ignore_result=True)
def send_chunk_task(batch_pk: int, ids: list[int]) -> None:
    """Send one chunk of batch ``batch_pk``; reschedule while Mitto certainly did not get it."""
    _backend().run(CHUNK, batch_pk, ids)


_TASKS = {MESSAGE: send_message_task, BATCH: send_batch_task, CHUNK: send_chunk_task}


class CeleryBackend(TaskBackend):
    """Hand every task to Celery (``pip install "django-mitto[celery]"``)."""

    max_delay = 300.0

    def schedule(self, kind: str, args: tuple[Any, ...], delay: float) -> None:
        _TASKS[kind].apply_async(args, countdown=delay if delay > 0 else None)
