"""The inline backend (default): sends run in the current process, after the commit.

A retry waits here (at most :attr:`InlineBackend.max_delay` seconds: it blocks its caller).
Tasks scheduled while one runs (a batch's chunks, a retry) are run after it, in order, rather
than nested.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from .. import sending
from .base import CHUNK, TaskBackend

__all__ = ["InlineBackend"]

_local = threading.local()


class InlineBackend(TaskBackend):
    """Run every task at once, in this process."""

    max_delay = 2.0
    sends_in_process = True
    #: Requests to Mitto under way at once while a batch is sent: while Mitto answers one
    #: chunk, the answer to the one before is recorded and the next is claimed (see
    #: :func:`django_mitto.sending.attempt_chunks`). 1 sends chunk after chunk.
    chunks_in_flight = 2

    def run_batch(self, pk: int) -> None:
        chunks = sending.plan_batch(pk)
        outcomes = sending.attempt_chunks(
            pk, chunks, max_attempts=self.max_attempts, in_flight=self.chunks_in_flight
        )
        for outcome in outcomes:
            if outcome.retry:
                self.schedule(
                    CHUNK,
                    (pk, outcome.ids),
                    self.retry_delay(outcome.attempts, outcome.retry_after),
                )

    def schedule(self, kind: str, args: tuple[Any, ...], delay: float) -> None:
        queue: deque[tuple[str, tuple[Any, ...], float]] | None = getattr(_local, "queue", None)
        if queue is not None:
            queue.append((kind, args, delay))
            return
        queue = _local.queue = deque([(kind, args, delay)])
        try:
            while queue:
                kind, args, delay = queue.popleft()
                if delay > 0:
                    time.sleep(delay)
                self.run(kind, *args)
        finally:
            _local.queue = None
