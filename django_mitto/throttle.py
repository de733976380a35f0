"""Throttling: ``MITTO_RATE_LIMIT`` and the pause after Mitto's ``Retry-After``, shared by every
process and worker of a project through Django's cache (``MITTO_RATE_LIMIT_CACHE``).

* **Rate limit.** Time is cut into short windows (a tenth of a second, or longer for a limit
  under 10 a second), each allowed ``limit * window`` messages. A send takes its share of the
  current window with one atomic ``incr``; when the window is full it waits for the next. Over
  any span, an account then sends at most its limit a second, plus one window's worth.
* **Pause.** When Mitto answers 429 (or 503) with ``Retry-After``, the account is paused until
  then: every process checks the pause before it sends.

The cache must be shared by the processes (Redis or Memcached, whose ``incr`` is atomic); a
per-process cache (``LocMemCache``, Django's default) limits each process on its own, which the
system check ``django_mitto.W005`` points out.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from django.core.cache import caches
from django.core.cache.backends.base import BaseCache

from .conf import conf

logger = logging.getLogger("django_mitto")

__all__ = ["acquire", "pause", "paused_for"]

#: The shortest window; a limit of ``n`` a second lets ``n / 10`` messages through each.
WINDOW = 0.1
_PREFIX = "django_mitto:throttle"


def _cache() -> BaseCache:
    return caches[conf.RATE_LIMIT_CACHE]


def _window(limit: float) -> tuple[float, int]:
    """The window length and how many messages each lets through, for ``limit`` a second."""
    per_window = max(1, int(limit * WINDOW))
    return per_window / limit, per_window


def acquire(
    account: str,
    count: int = 1,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> float:
    """Wait until ``account`` may send ``count`` messages (a bulk chunk counts one per
    recipient): its pause is over and its rate limit has room. Returns the seconds waited."""
    limit = conf.account(account).RATE_LIMIT
    cache = _cache()
    waited = 0.0
    remaining = count
    while True:
        now = clock()
        resume = cache.get(f"{_PREFIX}:pause:{account}")
        if resume is not None and resume > now:
            sleep(resume - now)
            waited += resume - now
            continue
        if not limit or remaining <= 0:
            return waited
        length, per_window = _window(limit)
        slot = math.floor(now / length)
        key = f"{_PREFIX}:rate:{account}:{slot}"
        take = min(remaining, per_window)
        cache.add(key, 0, timeout=max(2, math.ceil(length * 4)))
        try:
            used = cache.incr(key, take)
        except ValueError:  # the key expired between add() and incr(): take the next window
            continue
        room = per_window - (used - take)
        if room > 0:
            remaining -= min(take, room)
            if remaining <= 0:
                return waited
        delay = (slot + 1) * length - now
        sleep(delay)
        waited += delay


def pause(account: str, seconds: float, *, clock: Callable[[], float] = time.time) -> None:
    """Stop every process from sending for ``account`` during ``seconds`` (Mitto's
    ``Retry-After``); a longer pause already set is kept."""
    if seconds <= 0:
        return
    cache = _cache()
    key = f"{_PREFIX}:pause:{account}"
    resume = clock() + seconds
    current = cache.get(key)
    if current is not None and current >= resume:
        return
    cache.set(key, resume, timeout=math.ceil(seconds) + 1)
    logger.warning("Mitto asked to wait: account %s paused for %.1f s", account, seconds)


def paused_for(account: str, *, clock: Callable[[], float] = time.time) -> float:
    """Seconds left of the pause of ``account`` (0 when it may send)."""
    resume = _cache().get(f"{_PREFIX}:pause:{account}")
    return max(0.0, resume - clock()) if resume is not None else 0.0
