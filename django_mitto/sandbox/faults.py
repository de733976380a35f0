"""Faults the sandbox can inject into its answers to ``/sms`` and ``/smsbulk``.

A fault applies either to every request (``recipient=None``) or only to
requests addressed to one recipient (compared without a leading ``+``; a bulk
request matches when any of its recipients does). ``times=None`` keeps the
fault forever, ``times=N`` applies it to the first N matching requests and
then drops it.

Kinds (canonical name first, accepted aliases after):

``latency``
    Sleep ``seconds`` (default 1.0) before handling the request normally.
    Latency faults add up with each other and combine with one other fault.
``error_500`` (``500``, ``http_500``, ``internal_error``)
    Answer HTTP 500 with ``{"responseCode": 1, "responseText": "Internal error"}``.
``error_503`` (``503``, ``http_503``, ``unavailable``)
    Answer HTTP 503 with a plain-text body, as a load balancer in front of the
    gateway would.
``rate_limit`` (``429``, ``http_429``, ``too_many_requests``)
    Answer HTTP 429 with a ``Retry-After: <retry_after>`` header (default 1)
    and a plain-text body.
``reset``
    Close the connection with an RST (``SO_LINGER`` 0), without answering. A
    fault for every recipient fires before the request body is read; a fault
    for one recipient needs the body to know the recipient, so it fires right
    after reading it.
``timeout``
    Read the whole request and act on it as usual (a valid message is accepted,
    recorded and reported), then wait ``seconds`` (default 10.0) and close the
    connection without answering: the case where Mitto has the message but the
    client never learns it.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ERROR_500",
    "ERROR_503",
    "FAULT_KINDS",
    "LATENCY",
    "RATE_LIMIT",
    "RESET",
    "TIMEOUT",
    "Fault",
    "FaultSet",
    "normalize_kind",
    "normalize_recipient",
]

LATENCY = "latency"
ERROR_500 = "error_500"
ERROR_503 = "error_503"
RATE_LIMIT = "rate_limit"
RESET = "reset"
TIMEOUT = "timeout"

#: Canonical fault kinds.
FAULT_KINDS: tuple[str, ...] = (LATENCY, ERROR_500, ERROR_503, RATE_LIMIT, RESET, TIMEOUT)

_ALIASES: dict[str, str] = {
    "latency": LATENCY,
    "delay": LATENCY,
    "error_500": ERROR_500,
    "500": ERROR_500,
    "http_500": ERROR_500,
    "internal_error": ERROR_500,
    "error_503": ERROR_503,
    "503": ERROR_503,
    "http_503": ERROR_503,
    "unavailable": ERROR_503,
    "rate_limit": RATE_LIMIT,
    "429": RATE_LIMIT,
    "http_429": RATE_LIMIT,
    "too_many_requests": RATE_LIMIT,
    "reset": RESET,
    "connection_reset": RESET,
    "timeout": TIMEOUT,
}

_DEFAULT_SECONDS: dict[str, float] = {LATENCY: 1.0, TIMEOUT: 10.0}


def normalize_kind(kind: str | int) -> str:
    """Return the canonical name of a fault kind, or raise ``ValueError``."""
    key = str(kind).strip().lower().replace("-", "_")
    try:
        return _ALIASES[key]
    except KeyError:
        allowed = ", ".join(FAULT_KINDS)
        raise ValueError(f"Unknown fault kind {kind!r}. Allowed kinds: {allowed}.") from None


def normalize_recipient(value: object) -> str:
    """Return a recipient as compared by faults: stripped, without a leading ``+``."""
    return str(value).strip().lstrip("+")


_ids = itertools.count(1)


@dataclass
class Fault:
    """One fault rule. ``remaining`` is None for a fault that never runs out."""

    kind: str
    recipient: str | None = None
    remaining: int | None = None
    seconds: float = 0.0
    retry_after: int = 1
    hits: int = 0
    id: int = field(default_factory=lambda: next(_ids))

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly description."""
        return {
            "id": self.id,
            "kind": self.kind,
            "recipient": self.recipient,
            "times": self.remaining,
            "seconds": self.seconds,
            "retry_after": self.retry_after,
            "hits": self.hits,
        }


def make_fault(
    kind: str | int,
    *,
    recipient: str | None = None,
    times: int | None = None,
    seconds: float | None = None,
    retry_after: int | float | str | None = None,
) -> Fault:
    """Build and check a :class:`Fault` (raises ``ValueError`` or ``TypeError``)."""
    canonical = normalize_kind(kind)
    if times is not None:
        if isinstance(times, bool) or not isinstance(times, int):
            raise TypeError("times must be an integer or None")
        if times < 1:
            raise ValueError("times must be at least 1 (or None for a permanent fault)")
    if seconds is None:
        seconds = _DEFAULT_SECONDS.get(canonical, 0.0)
    seconds = float(seconds)
    if seconds < 0:
        raise ValueError("seconds must not be negative")
    retry = 1 if retry_after is None else int(retry_after)
    if retry < 0:
        raise ValueError("retry_after must not be negative")
    target = None
    if recipient is not None and str(recipient).strip():
        target = normalize_recipient(recipient)
    return Fault(canonical, target, times, seconds, retry)


class FaultSet:
    """A thread-safe list of faults, consumed as requests match them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        #: True while at least one fault is registered (read without the lock).
        self.active = False

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
            self.active = True
        return fault

    def clear(self) -> int:
        with self._lock:
            count = len(self._faults)
            self._faults.clear()
            self.active = False
        return count

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [fault.as_dict() for fault in self._faults]

    def _consume(self, fault: Fault) -> None:
        fault.hits += 1
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._faults.remove(fault)
                self.active = bool(self._faults)

    def take_early_reset(self) -> Fault | None:
        """Consume and return a ``reset`` fault for every recipient, if any."""
        with self._lock:
            for fault in self._faults:
                if fault.kind == RESET and fault.recipient is None:
                    self._consume(fault)
                    return fault
        return None

    def take(self, recipients: frozenset[str]) -> tuple[float, Fault | None]:
        """Consume the faults matching a request.

        Returns the total latency to add and the first matching fault of any
        other kind (or None).
        """
        latency = 0.0
        action: Fault | None = None
        with self._lock:
            for fault in list(self._faults):
                if fault.recipient is not None and fault.recipient not in recipients:
                    continue
                if fault.kind == LATENCY:
                    latency += fault.seconds
                elif action is None:
                    action = fault
                else:
                    continue
                self._consume(fault)
        return latency, action
