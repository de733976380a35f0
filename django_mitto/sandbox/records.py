"""The sandbox's message records: what it keeps of each accepted message, and for how long.

One accepted request gives one :class:`SharedRequest` (the body, path, format, options and
callback settings every recipient of the request shares, stored once) and one small
:class:`MessageRecord` per recipient (its id, recipient, time, status, callbacks) that refers
to it. :meth:`MessageRecord.as_dict` gives the fields readers see (``sandbox.messages``,
``GET /_sandbox/messages``), the shared ones included.

:class:`MessageLog` keeps the last ``keep`` records (``--keep``, default
:data:`DEFAULT_KEEP`) and drops the oldest beyond that. Every record has a sequence number
``seq`` (1, 2, 3... in the order the sandbox accepted them, never reused, not even after a
reset), which is the cursor of ``GET /_sandbox/messages?since=<seq>&limit=<n>``.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_KEEP",
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "MessageLog",
    "MessageRecord",
    "PageError",
    "SharedRequest",
]

#: Message records (and callback attempts) kept unless ``keep`` says otherwise.
DEFAULT_KEEP = 10_000

#: Records per page of ``GET /_sandbox/messages`` without ``limit``, and the largest ``limit``.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class PageError(ValueError):
    """A bad ``since`` or ``limit`` for a page of messages; ``parameter`` names it."""

    def __init__(self, parameter: str, text: str) -> None:
        super().__init__(text)
        self.parameter = parameter


@dataclass(eq=False, slots=True)
class SharedRequest:
    """What every recipient of one accepted request shares; stored once per request."""

    path: str
    format: str
    bulk: bool
    #: The request body as received (for a bulk request, ``to`` lists every recipient).
    body: dict[str, Any]
    test: bool
    encoding: str
    text_length: int
    message_parts: int
    reference: str
    callback_url: str | None
    callback_method: str | None
    reported: bool


@dataclass(eq=False, slots=True)
class MessageRecord:
    """One accepted message (one recipient of a request)."""

    id: str
    to: str
    received_at: str
    status: str
    errorcode: int
    request: SharedRequest
    seq: int = 0
    #: Callback attempts, oldest first (None until the first one).
    callbacks: list[dict[str, Any]] | None = None
    converted_at: str | None = None
    auto_replied: bool = False

    def add_callback(self, attempt: dict[str, Any]) -> None:
        if self.callbacks is None:
            self.callbacks = []
        self.callbacks.append(attempt)

    def as_dict(self) -> dict[str, Any]:
        """The record as readers see it: its own fields and the shared ones.

        The body is the shared object itself, not a copy; ``callbacks`` is a new list.
        """
        shared = self.request
        data: dict[str, Any] = {
            "id": self.id,
            "seq": self.seq,
            "path": shared.path,
            "format": shared.format,
            "bulk": shared.bulk,
            "to": self.to,
            "body": shared.body,
            "received_at": self.received_at,
            "test": shared.test,
            "encoding": shared.encoding,
            "text_length": shared.text_length,
            "message_parts": shared.message_parts,
            "reference": shared.reference,
            "status": self.status,
            "errorcode": self.errorcode,
            "callback_url": shared.callback_url,
            "callback_method": shared.callback_method,
            "reported": shared.reported,
            "callbacks": list(self.callbacks or ()),
        }
        if self.converted_at is not None:
            data["converted_at"] = self.converted_at
        if self.auto_replied:
            data["auto_replied"] = True
        return data


class MessageLog:
    """The last ``keep`` message records, oldest first, numbered for paging.

    Not thread-safe by itself: the sandbox calls it while holding its lock. The records
    kept always have consecutive sequence numbers, so a position is found by arithmetic.
    """

    def __init__(self, keep: int = DEFAULT_KEEP) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be a positive whole number, not {keep!r}")
        self.keep = keep
        self._records: deque[MessageRecord] = deque(maxlen=keep)
        self._last_seq = 0
        #: Records dropped to stay within ``keep`` since the start (or the last clear()).
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[MessageRecord]:
        return iter(self._records)

    @property
    def last_seq(self) -> int:
        """The sequence number of the newest record ever added (0 before the first)."""
        return self._last_seq

    @property
    def oldest_seq(self) -> int | None:
        """The sequence number of the oldest record kept (None when none is)."""
        return self._records[0].seq if self._records else None

    def add(self, records: list[MessageRecord]) -> None:
        """Number the records and keep them, dropping the oldest beyond ``keep``."""
        for record in records:
            self._last_seq += 1
            record.seq = self._last_seq
        overflow = len(self._records) + len(records) - self.keep
        if overflow > 0:
            self.dropped += overflow
        self._records.extend(records)

    def clear(self) -> None:
        """Forget every record (sequence numbers go on from where they were)."""
        self._records.clear()
        self.dropped = 0

    def find(self, message_id: str) -> MessageRecord | None:
        """The kept record with this id, newest first (None when there is none)."""
        for record in reversed(self._records):
            if record.id == message_id:
                return record
        return None

    def after(self, since: int, limit: int | None = None) -> list[MessageRecord]:
        """The kept records with a sequence number above ``since``, oldest first, at most
        ``limit`` of them."""
        records = self._records
        if not records:
            return []
        size = len(records)
        start = max(0, since - records[0].seq + 1)
        count = size - start
        if limit is not None:
            count = min(count, limit)
        if count <= 0:
            return []
        if start > size // 2:
            # Near the newest end (a poll for what is new): walk from there.
            tail = list(itertools.islice(reversed(records), size - start))
            tail.reverse()
            return tail[:count]
        return list(itertools.islice(records, start, start + count))
