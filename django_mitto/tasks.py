"""Task backends: where sends run. ``MITTO_TASK_BACKEND`` picks one.

* ``inline`` (default): in the current process, right after the transaction commits. A send
  that Mitto certainly did not receive is retried here a few times with a short pause.
* ``celery``: the send runs in a Celery worker; retries are scheduled with a countdown.

:func:`enqueue_message` and :func:`enqueue_batch` are the one entry point either way.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .conf import conf

logger = logging.getLogger("django_mitto")

#: The inline backend waits at most this long between two attempts (it blocks its caller).
INLINE_MAX_DELAY = 2.0
#: The Celery backend waits at most this long between two attempts.
CELERY_MAX_DELAY = 300.0


def retry_delay(attempts: int, retry_after: float | None, ceiling: float) -> float:
    """Seconds to wait before the next attempt: Mitto's Retry-After, else exponential backoff."""
    if retry_after is not None:
        return min(retry_after, ceiling)
    return min(0.25 * (2 ** max(attempts - 1, 0)), ceiling)


def enqueue_message(pk: int) -> None:
    """Have message ``pk`` sent by the configured backend."""
    if conf.TASK_BACKEND == "celery":
        send_message_task.delay(pk)
    else:
        run_send_message(pk, sleep=time.sleep)


def enqueue_batch(pk: int) -> None:
    """Have batch ``pk`` sent by the configured backend."""
    if conf.TASK_BACKEND == "celery":
        send_batch_task.delay(pk)
    else:
        run_send_batch(pk, sleep=time.sleep)


def run_send_message(pk: int, *, sleep: Any) -> None:
    from .models import Status
    from .services import send_message

    while True:
        message = send_message(pk)
        if message.status != Status.QUEUED or not message.attempts:
            return
        sleep(
            retry_delay(message.attempts, getattr(message, "retry_after", None), INLINE_MAX_DELAY)
        )


def run_send_batch(pk: int, *, sleep: Any) -> None:
    from .models import Message, Status
    from .services import send_batch

    for attempt in range(1, conf.MAX_ATTEMPTS + 1):
        send_batch(pk)
        if not Message.objects.filter(batch_id=pk, status=Status.QUEUED).exists():
            return
        sleep(retry_delay(attempt, None, INLINE_MAX_DELAY))


try:
    from celery import shared_task
except ImportError:  # pragma: no cover - the celery extra is not installed
    shared_task = None


if shared_task is not None:

    @shared_task(bind=True, name="django_mitto.send_message", ignore_result=True)
    def send_message_task(self: Any, pk: int) -> None:
        """Celery task: send message ``pk``; reschedule while Mitto certainly did not get it."""
        from .models import Status
        from .services import send_message

        message = send_message(pk)
        if message.status == Status.QUEUED and message.attempts:
            delay = retry_delay(
                message.attempts, getattr(message, "retry_after", None), CELERY_MAX_DELAY
            )
            send_message_task.apply_async((pk,), countdown=delay)

    @shared_task(bind=True, name="django_mitto.send_batch", ignore_result=True)
    def send_batch_task(self: Any, pk: int, attempt: int = 1) -> None:
        """Celery task: send the queued messages of batch ``pk``."""
        from .models import Message, Status
        from .services import send_batch

        send_batch(pk)
        if (
            attempt < conf.MAX_ATTEMPTS
            and Message.objects.filter(batch_id=pk, status=Status.QUEUED).exists()
        ):
            send_batch_task.apply_async(
                (pk, attempt + 1), countdown=retry_delay(attempt, None, CELERY_MAX_DELAY)
            )

else:  # pragma: no cover

    class _MissingCelery:
        def delay(self, *args: Any) -> None:
            from .exceptions import MittoConfigurationError

            raise MittoConfigurationError(
                'MITTO_TASK_BACKEND is "celery" but Celery is not installed: '
                'pip install "django-mitto[celery]".'
            )

    send_message_task = send_batch_task = _MissingCelery()
