"""Compatibility with earlier versions, and where Celery finds django-mitto's tasks.

The task backends now live in :mod:`django_mitto.backends`. This module keeps the old entry
points (:func:`enqueue_message`, :func:`enqueue_batch`) and, when Celery is installed, the
Celery tasks, so that ``app.autodiscover_tasks()`` registers them and tasks already queued in a
broker under ``django_mitto.send_message`` / ``django_mitto.send_batch`` still run.
"""

from __future__ import annotations

from .backends import get_backend

__all__ = ["enqueue_batch", "enqueue_message"]


def enqueue_message(pk: int) -> None:
    """Have message ``pk`` sent by the configured backend."""
    get_backend().enqueue_message(pk)


def enqueue_batch(pk: int) -> None:
    """Have batch ``pk`` sent by the configured backend."""
    get_backend().enqueue_batch(pk)


try:
    from .backends.celery import send_batch_task, send_chunk_task, send_message_task
except ImportError:  # pragma: no cover - the celery extra is not installed
    pass
else:
    __all__ += ["send_batch_task", "send_chunk_task", "send_message_task"]
