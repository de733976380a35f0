"""MITTO_RATE_LIMIT and the pause after Mitto's Retry-After, shared by processes through the cache."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches

from django_mitto import services, throttle
from django_mitto.client import parse_timestamp
from django_mitto.models import Message
from tests.conftest import process_env, require_part, say_go, start_ready

ROOT = Path(__file__).resolve().parent.parent
REDIS = os.environ.get("MITTO_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


class FakeTime:
    """A clock that moves only when slept on."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time(settings) -> FakeTime:
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"throttle-{uuid.uuid4()}",
        }
    }
    caches["default"].clear()
    return FakeTime()


def test_no_limit_sends_at_once(fake_time, settings) -> None:
    settings.MITTO_RATE_LIMIT = None
    for _ in range(100):
        throttle.acquire("default", sleep=fake_time.sleep, clock=fake_time.clock)
    assert fake_time.slept == []


def test_a_limit_of_20_a_second_lets_200_messages_through_in_10_seconds(
    fake_time, settings
) -> None:
    settings.MITTO_RATE_LIMIT = 20
    start = fake_time.now
    sent_at = []
    for _ in range(200):
        throttle.acquire("default", sleep=fake_time.sleep, clock=fake_time.clock)
        sent_at.append(fake_time.now)
    assert fake_time.now - start >= 9.9
    # No second holds more than 20 (plus the 2 of a window straddling its start).
    for first in sent_at:
        assert sum(1 for t in sent_at if first <= t < first + 1) <= 22


def test_a_bulk_chunk_counts_one_message_per_recipient(fake_time, settings) -> None:
    settings.MITTO_RATE_LIMIT = 100
    start = fake_time.now
    throttle.acquire("default", 500, sleep=fake_time.sleep, clock=fake_time.clock)
    assert 4.8 <= fake_time.now - start <= 5.1


def test_each_account_has_its_own_limit(fake_time, settings) -> None:
    settings.MITTO_RATE_LIMIT = None
    settings.MITTO_ACCOUNTS = {"marketing": {"API_KEY": "k", "RATE_LIMIT": 10}}
    for _ in range(50):
        throttle.acquire("default", sleep=fake_time.sleep, clock=fake_time.clock)
    assert fake_time.slept == []
    for _ in range(50):
        throttle.acquire("marketing", sleep=fake_time.sleep, clock=fake_time.clock)
    assert sum(fake_time.slept) >= 4.8


def test_a_pause_stops_the_account_until_it_ends(fake_time, settings) -> None:
    settings.MITTO_RATE_LIMIT = None
    settings.MITTO_ACCOUNTS = {"other": {"API_KEY": "k"}}
    throttle.pause("default", 2, clock=fake_time.clock)
    throttle.pause("default", 1, clock=fake_time.clock)  # a shorter one does not shorten it
    assert throttle.paused_for("default", clock=fake_time.clock) == 2
    waited = throttle.acquire("default", sleep=fake_time.sleep, clock=fake_time.clock)
    assert waited == 2
    # Another account is not paused.
    assert throttle.acquire("other", sleep=fake_time.sleep, clock=fake_time.clock) == 0


@pytest.mark.django_db(transaction=True)
def test_a_429_with_retry_after_pauses_the_account_for_every_sender(
    mitto_sandbox, settings
) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"throttle-{uuid.uuid4()}",
        }
    }
    settings.MITTO_MAX_ATTEMPTS = 1
    mitto_sandbox.add_fault("429", times=1, retry_after=2)
    refused = services.send_sms("+41791234567", "First")
    told = time.time()
    assert refused.status == "failed"
    assert 1.5 < throttle.paused_for("default") <= 2
    # The next message, by anyone, waits for the pause to end before it is sent.
    services.send_sms("+41791234568", "Second")
    assert time.time() - told >= 1.9
    assert [m["to"] for m in mitto_sandbox.messages] == ["41791234568"]


def test_checks_name_a_bad_limit_and_a_cache_each_process_keeps(settings) -> None:
    from django_mitto.checks import check_accounts, check_throttle

    settings.MITTO_RATE_LIMIT = "fast"
    assert [m.id for m in check_throttle()] == ["django_mitto.E034"]
    settings.MITTO_RATE_LIMIT = 20
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    (warning,) = check_throttle()
    assert warning.id == "django_mitto.W005"
    assert "default" in warning.msg and "LocMemCache" in warning.msg
    settings.MITTO_RATE_LIMIT_CACHE = "shared"
    assert [m.id for m in check_throttle()] == ["django_mitto.E035"]
    settings.CACHES["shared"] = {"BACKEND": "django.core.cache.backends.redis.RedisCache"}
    assert check_throttle() == []
    # An account's own limit is checked with the other keys of its entry.
    settings.MITTO_ACCOUNTS = {"marketing": {"API_KEY": "k", "RATE_LIMIT": -1}}
    (error,) = [m for m in check_accounts() if m.id == "django_mitto.E032"]
    assert error.msg.startswith('MITTO_ACCOUNTS["marketing"]["RATE_LIMIT"] must be None or')


# -- four processes, one limit -----------------------------------------------------------------


def redis_available() -> bool:
    try:
        import redis
    except ImportError:
        return False
    try:
        return bool(redis.Redis.from_url(REDIS, socket_connect_timeout=1).ping())
    except redis.exceptions.RedisError:
        return False


def throttle_worker(count: int, offset: int) -> None:
    """Run in a process of its own: wait for the start signal, send ``count`` messages."""
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(count):
        message = services.send_sms(f"+4179{2_000_000 + offset + i}", f"Throttled {i}")
        assert message.status == "sent", message.error
    print("done", flush=True)


def refused_worker(number: str) -> None:
    """Run in a process of its own: wait for the start signal, send one message that Mitto
    refuses with 429 (no second attempt), print when that was recorded."""
    from django.conf import settings

    settings.MITTO_MAX_ATTEMPTS = 1
    print("ready", flush=True)
    sys.stdin.readline()
    message = services.send_sms(number, "Refused")
    assert message.status == "failed", message.status
    print(f"refused {time.time()!r}", flush=True)


@pytest.fixture
def processes(mitto_sandbox, settings) -> Iterator[Any]:
    require_part(redis_available(), f"Redis is not reachable at {REDIS}")
    started: list[subprocess.Popen[str]] = []
    prefix = f"mitto-throttle-{uuid.uuid4().hex}"

    def start(
        count: int, rate: float | None, how_many: int = 4, refused: str = ""
    ) -> list[subprocess.Popen[str]]:
        """``how_many`` senders of ``count`` messages each (and, with ``refused``, one more
        process first, which sends that number once), sharing one cache and ``rate``."""
        env = process_env(
            mitto_sandbox.url,
            MITTO_TASK_BACKEND="inline",
            MITTO_RATE_LIMIT=str(rate or ""),
            MITTO_TEST_CACHE_URL=REDIS,
            MITTO_TEST_CACHE_PREFIX=prefix,
        )
        setup = "import django; django.setup(); from tests.test_throttle import "
        if refused:
            started.extend(
                start_ready(f"{setup}refused_worker; refused_worker({refused!r})", env, 1)
            )
        for number in range(how_many):
            code = f"{setup}throttle_worker; throttle_worker({count}, {number * count})"
            started.extend(start_ready(code, env, 1))
        return started

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_four_processes_together_keep_to_the_rate_limit(processes, mitto_sandbox) -> None:
    running = processes(50, 20)
    start = time.monotonic()
    say_go(running)
    outputs = [process.communicate(timeout=120)[0] for process in running]
    elapsed = time.monotonic() - start
    assert all(process.returncode == 0 for process in running), outputs
    assert len(mitto_sandbox.messages) == 200
    assert Message.objects.filter(status="sent").count() == 200
    # 200 messages at 20 a second, all four processes together: ten seconds at the least (the
    # machine may be slower, never faster).
    assert elapsed >= 9.5, elapsed
    print(f"4 processes, 200 messages at MITTO_RATE_LIMIT = 20: {elapsed:.1f} s")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_after_a_429_no_process_of_the_account_sends_before_retry_after(
    processes, mitto_sandbox
) -> None:
    mitto_sandbox.add_fault("429", recipient="41792999999", times=1, retry_after=2)
    refused, *senders = processes(5, None, how_many=3, refused="+41792999999")
    say_go([refused])
    assert refused.stdout is not None
    line = refused.stdout.readline().strip()
    assert line.startswith("refused "), line + refused.stdout.read()
    told = float(line.split()[1])
    # The others start only now, with the pause (kept in the shared cache) already running.
    say_go(senders)
    outputs = [process.communicate(timeout=120)[0] for process in senders]
    assert all(process.returncode == 0 for process in senders), outputs
    accepted = mitto_sandbox.messages
    assert len(accepted) == 15
    received = [parse_timestamp(m["received_at"]) for m in accepted]
    first = min(r.timestamp() for r in received if r is not None)
    # Not one message reached Mitto within the 2 seconds Mitto asked for (less the moment
    # between the pause being recorded and the refused process printing its clock).
    assert first - told >= 1.8, first - told
