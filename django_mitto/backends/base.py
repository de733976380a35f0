"""The base class of every task backend.

A backend says only *how to run something later*: :meth:`TaskBackend.schedule`. Everything
else is here, written once for all backends: what a message, a batch or a chunk task does, and
the retry decision and backoff taken from the outcome the send returns. A new backend is one
subclass in one file::

    class MyBackend(TaskBackend):
        def schedule(self, kind, args, delay):
            my_queue.put(kind, args, eta=delay)   # later, in a worker: backend.run(kind, *args)

and ``MITTO_TASK_BACKEND = "myproject.sms.MyBackend"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import sending
from ..conf import conf

if TYPE_CHECKING:
    from ..models import Message

__all__ = ["BATCH", "CHUNK", "KINDS", "MESSAGE", "TaskBackend"]

#: Send one message: ``args`` is ``(message_pk,)``.
MESSAGE = "message"
#: Cut a batch into chunks and schedule one task per chunk: ``args`` is ``(batch_pk,)``.
BATCH = "batch"
#: Send one chunk of a batch: ``args`` is ``(batch_pk, [message_pk, ...])``.
CHUNK = "chunk"
KINDS = (MESSAGE, BATCH, CHUNK)


class TaskBackend:
    """Where sends run. Subclasses implement :meth:`schedule`; the rest is shared."""

    #: The longest wait between two attempts, in seconds (Mitto's ``Retry-After`` included).
    max_delay: float = 300.0
    #: The first wait of the exponential backoff, doubled at each attempt.
    base_delay: float = 0.25
    #: True when a task scheduled with no delay runs in the calling process before
    #: :meth:`schedule` returns (the inline backend). ``send_sms()`` outside a transaction
    #: then creates the message already claimed and sends it with :meth:`send_created`.
    sends_in_process: bool = False

    # -- what a subclass provides ----------------------------------------------------------

    def schedule(self, kind: str, args: tuple[Any, ...], delay: float) -> None:
        """Have ``self.run(kind, *args)`` called in ``delay`` seconds (0: as soon as possible).

        ``kind`` is one of :data:`KINDS`; ``args`` holds only ints and lists of ints (JSON-safe).
        """
        raise NotImplementedError

    # -- what the rest of django-mitto calls -----------------------------------------------

    def enqueue_message(self, pk: int) -> None:
        """Have message ``pk`` sent."""
        self.schedule(MESSAGE, (pk,), 0.0)

    def enqueue_batch(self, pk: int) -> None:
        """Have batch ``pk`` sent, one task per chunk."""
        self.schedule(BATCH, (pk,), 0.0)

    # -- what runs later -------------------------------------------------------------------

    def run(self, kind: str, *args: Any) -> None:
        """Run a task scheduled with :meth:`schedule` (a worker calls this)."""
        if kind == MESSAGE:
            self.run_message(*args)
        elif kind == BATCH:
            self.run_batch(*args)
        elif kind == CHUNK:
            self.run_chunk(*args)
        else:
            raise ValueError(f"Unknown django-mitto task kind: {kind!r}")

    def run_message(self, pk: int) -> None:
        outcome = sending.attempt_message(pk, max_attempts=self.max_attempts)
        if outcome.retry:
            self.schedule(MESSAGE, (pk,), self.retry_delay(outcome.attempts, outcome.retry_after))

    def send_created(self, message: Message) -> Message:
        """Send, in this process, a message just created already claimed (``sending``, its
        first attempt, validated); a retry is scheduled as for any message. Returns the
        message as the send left it (as the row is, after a retry)."""
        outcome = sending.attempt_claimed(message, max_attempts=self.max_attempts)
        if not outcome.retry:
            return outcome.message
        self.schedule(
            MESSAGE, (message.pk,), self.retry_delay(outcome.attempts, outcome.retry_after)
        )
        message.refresh_from_db()
        return message

    def run_batch(self, pk: int) -> None:
        for ids in sending.plan_batch(pk):
            self.schedule(CHUNK, (pk, ids), 0.0)

    def run_chunk(self, batch_pk: int, ids: list[int]) -> None:
        outcome = sending.attempt_chunk(batch_pk, ids, max_attempts=self.max_attempts)
        if outcome.retry:
            self.schedule(
                CHUNK,
                (batch_pk, outcome.ids),
                self.retry_delay(outcome.attempts, outcome.retry_after),
            )

    # -- the retry policy ------------------------------------------------------------------

    @property
    def max_attempts(self) -> int:
        """Attempts a send gets when Mitto certainly did not receive it (``MITTO_MAX_ATTEMPTS``)."""
        return conf.MAX_ATTEMPTS

    def retry_delay(self, attempts: int, retry_after: float | None) -> float:
        """Seconds before the next attempt: Mitto's ``Retry-After`` when it gave one, else
        exponential backoff from :attr:`base_delay`; never more than :attr:`max_delay`."""
        if retry_after is not None:
            return max(0.0, min(retry_after, self.max_delay))
        return min(self.base_delay * (2 ** max(attempts - 1, 0)), self.max_delay)
