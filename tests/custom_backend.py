"""A task backend written in one file, as a project would: it keeps tasks in a list, and
``drain()`` plays the worker. ``MITTO_TASK_BACKEND = "tests.custom_backend.ListBackend"``."""

from __future__ import annotations

from typing import Any

from django_mitto.backends.base import TaskBackend


class ListBackend(TaskBackend):
    """Every task waits in :attr:`pending` until :meth:`drain` runs it."""

    #: (kind, args, delay) of every task scheduled, in order (class-wide: one per test).
    scheduled: list[tuple[str, tuple[Any, ...], float]] = []
    pending: list[tuple[str, tuple[Any, ...]]] = []

    def schedule(self, kind: str, args: tuple[Any, ...], delay: float) -> None:
        self.scheduled.append((kind, args, delay))
        self.pending.append((kind, args))

    def drain(self) -> None:
        """Run the waiting tasks, and those they schedule, until none is left."""
        while self.pending:
            kind, args = self.pending.pop(0)
            self.run(kind, *args)


class EagerBackend(TaskBackend):
    """Runs each task inside :meth:`schedule`, as Celery's eager mode does, without saying so
    (``sends_in_process`` stays False): ``send_sms()`` saves the message, and the task sends it
    when the save commits."""

    def schedule(self, kind: str, args: tuple[Any, ...], delay: float) -> None:
        self.run(kind, *args)


class NotABackend:
    """Has a ``schedule`` method, but is no TaskBackend: the system check refuses it."""

    def schedule(self, kind: str, args: tuple[Any, ...], delay: float) -> None:
        pass
