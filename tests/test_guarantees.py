"""The guarantees of the README's *Guarantees* section, one fault at a time.

Each fault is real and on loopback: the sandbox's fault injection (reset, read timeout, 500,
503, 429, a wrong key), a closed port (connection refused), an unresolvable name
(``mitto.invalid``), and the canned server (``tests/canned.py``) for answers the sandbox never
gives (an HTML error page, an empty body, truncated JSON, an unknown ``responseCode``). Every
fault is sent as a single message and as a bulk chunk on the inline backend; a subset runs on the
Celery and Tasks backends with real workers. The last test has eight processes race for the same
5,000 messages.
"""

from __future__ import annotations

import socket
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from django_mitto import sending, services
from django_mitto.backends import inline
from django_mitto.models import Message
from django_mitto.sandbox import Sandbox
from tests.canned import CannedServer, Reply
from tests.conftest import process_env, say_go, start_ready
from tests.test_celery import worker  # noqa: F401  (the real Celery worker fixture)
from tests.test_tasks_backend import (  # noqa: F401  (the real db_worker fixtures)
    database_queue,
    tasks_backend,
    worker_processes,
)

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent
MAY_HAVE_BEEN_SENT = " The message may have been sent: check before sending it again."
NEVER_REACHED = "(the request never reached Mitto). Gave up after 3 attempts."


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Faults:
    """What a fault's setup may use: the sandbox, a canned server, the settings."""

    sandbox: Sandbox
    settings: Any
    canned: CannedServer
    requests: int  # requests a canned fault must answer (one per attempt)

    def reply(self, reply: Reply) -> None:
        self.settings.MITTO_API_URL = self.canned.url
        self.canned.reply(*[reply] * self.requests)


@dataclass(frozen=True)
class Case:
    """One fault and the outcome it must have, for a single send and for a bulk chunk alike."""

    setup: Callable[[Faults], Any]
    status: str
    attempts: int
    #: The message's ``error``, exactly; ``{path}`` is ``/sms`` or ``/smsbulk``.
    error: str
    #: Messages that reached Mitto: the sandbox counts those it accepted, the canned server every
    #: request it answered.
    received: int = 0
    #: The waits between attempts (inline backend: Retry-After, else 0.25 s doubling).
    waits: tuple[float, ...] = ()


def _html(status: int) -> Callable[[Faults], None]:
    page = f"<html><body><h1>{status} Error</h1></body></html>"
    return lambda f: f.reply(Reply(status, page, content_type="text/html"))


CASES: dict[str, Case] = {
    "connection_refused": Case(
        lambda f: setattr(f.settings, "MITTO_API_URL", f"http://127.0.0.1:{closed_port()}"),
        "failed",
        3,
        f"POST {{path}}: ConnectionError {NEVER_REACHED}",
        waits=(0.25, 0.5),
    ),
    "dns_failure": Case(
        lambda f: setattr(f.settings, "MITTO_API_URL", "http://mitto.invalid"),
        "failed",
        3,
        f"POST {{path}}: ConnectionError {NEVER_REACHED}",
        waits=(0.25, 0.5),
    ),
    "connection_reset": Case(
        lambda f: f.sandbox.add_fault("reset"),
        "unknown",
        1,
        "POST {path}: ConnectionError (Mitto may have received the request)." + MAY_HAVE_BEEN_SENT,
    ),
    "read_timeout": Case(
        lambda f: (
            setattr(f.settings, "MITTO_TIMEOUT", 0.3),
            f.sandbox.add_fault("timeout", seconds=1.0),
        ),
        "unknown",
        1,
        "POST {path}: ReadTimeout (Mitto may have received the request)." + MAY_HAVE_BEEN_SENT,
        received=1,  # the sandbox accepted it: only the answer was lost
    ),
    "http_500": Case(
        lambda f: f.sandbox.add_fault("500"),
        "unknown",
        1,
        "Mitto failed, perhaps after taking the message: responseCode 1 (Internal error), "
        "HTTP 500." + MAY_HAVE_BEEN_SENT,
    ),
    "http_503_once": Case(
        lambda f: f.sandbox.add_fault("503", times=1), "sent", 2, "", received=1, waits=(0.25,)
    ),
    "http_503_always": Case(
        lambda f: f.sandbox.add_fault("503"),
        "failed",
        3,
        "Mitto answered HTTP 503 with a body that is not valid JSON: 'Service Unavailable' "
        "Gave up after 3 attempts.",
        waits=(0.25, 0.5),
    ),
    "http_429_once": Case(
        lambda f: f.sandbox.add_fault("429", times=1, retry_after=1),
        "sent",
        2,
        "",
        received=1,
        waits=(1.0,),
    ),
    "http_429_always": Case(
        lambda f: f.sandbox.add_fault("429", retry_after=1),
        "failed",
        3,
        "Mitto answered HTTP 429 with a body that is not valid JSON: 'Too Many Requests' "
        "Gave up after 3 attempts.",
        waits=(1.0, 1.0),
    ),
    "http_401": Case(
        lambda f: setattr(f.settings, "MITTO_API_KEY", "wrong-key"),
        "failed",
        1,
        "Mitto refused the API key (HTTP 401) on POST {path}: check MITTO_API_KEY and that this "
        "server's IP address is whitelisted at Mitto.",
    ),
    "html_page_502": Case(
        _html(502),
        "unknown",
        1,
        "Mitto answered HTTP 502 with a body that is not valid JSON: "
        "'<html><body><h1>502 Error</h1></body></html>'" + MAY_HAVE_BEEN_SENT,
        received=1,
    ),
    "html_page_403": Case(
        _html(403),
        "failed",
        1,
        "Mitto answered HTTP 403 with a body that is not valid JSON: "
        "'<html><body><h1>403 Error</h1></body></html>'",
        received=1,
    ),
    "empty_body": Case(
        lambda f: f.reply(Reply(200, "")),
        "unknown",
        1,
        "Mitto answered HTTP 200 with a body that is not valid JSON: ''" + MAY_HAVE_BEEN_SENT,
        received=1,
    ),
    "truncated_json": Case(
        lambda f: f.reply(Reply(200, '{"id": "d88ae721", "responseCode": 0, "respo')),
        "unknown",
        1,
        "Mitto answered HTTP 200 with a body that is not valid JSON: "
        '\'{"id": "d88ae721", "responseCode": 0, "respo\'' + MAY_HAVE_BEEN_SENT,
        received=1,
    ),
    "unknown_response_code": Case(
        lambda f: f.reply(Reply(200, {"responseCode": 99, "responseText": "Something new"})),
        "failed",
        1,
        "Mitto refused the message: responseCode 99 (Something new), HTTP 200.",
        received=1,
    ),
    "unknown_response_code_http_500": Case(
        lambda f: f.reply(Reply(500, {"responseCode": 99, "responseText": "Something new"})),
        "unknown",
        1,
        "Mitto failed, perhaps after taking the message: responseCode 99 (Something new), "
        "HTTP 500." + MAY_HAVE_BEEN_SENT,
        received=1,
    ),
}


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    """The inline backend's waits between attempts, recorded instead of slept."""
    seen: list[float] = []
    monkeypatch.setattr(inline.time, "sleep", seen.append)
    return seen


@pytest.fixture
def faults(mitto_sandbox, settings, request):
    case: Case = CASES[request.param]
    with CannedServer() as canned:
        yield case, Faults(mitto_sandbox, settings, canned, case.attempts)


def received(faults: Faults) -> int:
    """Messages that reached the sandbox or the canned server (see :attr:`Case.received`)."""
    canned = sum(
        len(r["body"]["to"]) if isinstance(r["body"]["to"], list) else 1
        for r in faults.canned.requests
    )
    return len(faults.sandbox.messages) + canned


@pytest.mark.parametrize("faults", list(CASES), indirect=True)
def test_single_send_outcome(faults, waits) -> None:
    case, env = faults
    case.setup(env)
    message = services.send_sms("+41791234567", "Hi")
    assert (message.status, message.attempts, message.error) == (
        case.status,
        case.attempts,
        case.error.replace("{path}", "/sms"),
    )
    assert tuple(waits) == case.waits
    assert received(env) == case.received
    # Whatever the outcome, sending it again sends nothing more.
    again = services.send_message(message.pk)
    assert (again.status, again.attempts) == (case.status, case.attempts)
    assert received(env) == case.received


@pytest.mark.parametrize("faults", list(CASES), indirect=True)
def test_bulk_chunk_outcome(faults, waits) -> None:
    case, env = faults
    case.setup(env)
    batch = services.send_bulk(["+41791234567", "+41791234568"], "Hi")
    rows = list(batch.messages.order_by("pk").values_list("status", "attempts", "error"))
    expected = (case.status, case.attempts, case.error.replace("{path}", "/smsbulk"))
    assert rows == [expected, expected]
    assert tuple(waits) == case.waits
    assert received(env) == 2 * case.received
    # Whatever the outcome, sending the batch again sends nothing more.
    sending.send_batch(batch.pk)
    assert list(batch.messages.values_list("status", "attempts", "error")) == [expected] * 2
    assert received(env) == 2 * case.received
    batch.refresh_from_db()
    assert batch.completed_at is not None


# -- never reached Mitto, then Mitto is back: the retry sends it --------------------------------


@pytest.mark.parametrize("bulk", [False, True], ids=["single", "bulk"])
def test_connection_refused_then_mitto_comes_up_is_sent_on_the_retry(
    settings, monkeypatch, bulk
) -> None:
    """The first attempt finds the port closed; during the backoff a sandbox starts on it."""
    port = closed_port()
    settings.MITTO_API_URL = f"http://127.0.0.1:{port}"
    settings.MITTO_API_KEY = "sandbox-key"
    sandbox = Sandbox(port=port, report_delay=0)
    seen: list[float] = []

    def wait(seconds: float) -> None:
        seen.append(seconds)
        sandbox.start()

    monkeypatch.setattr(inline.time, "sleep", wait)
    try:
        rows = _send(bulk)
    finally:
        sandbox.stop()
    assert rows == [("sent", 2)] * len(rows)
    assert seen == [0.25]
    assert len(sandbox.messages) == len(rows)


@pytest.mark.parametrize("bulk", [False, True], ids=["single", "bulk"])
def test_dns_failure_then_the_name_resolves_is_sent_on_the_retry(
    mitto_sandbox, settings, monkeypatch, bulk
) -> None:
    """The first attempt names an unresolvable host; during the backoff the setting is pointed
    at the sandbox, standing in for the name resolving again."""
    settings.MITTO_API_URL = "http://mitto.invalid"
    monkeypatch.setattr(
        inline.time, "sleep", lambda s: setattr(settings, "MITTO_API_URL", mitto_sandbox.url)
    )
    rows = _send(bulk)
    assert rows == [("sent", 2)] * len(rows)
    assert len(mitto_sandbox.messages) == len(rows)


def _send(bulk: bool) -> list[tuple[str, int]]:
    if bulk:
        batch = services.send_bulk(["+41791234567", "+41791234568"], "Hi")
        return list(batch.messages.order_by("pk").values_list("status", "attempts"))
    message = services.send_sms("+41791234567", "Hi")
    return [(message.status, message.attempts)]


# -- the same outcomes on every backend ---------------------------------------------------------

#: Recipient(s) -> (the fault added for it, the outcome). Both rows of a batch share theirs.
SINGLES = {
    "+41791110001": ("503 once", ("sent", 2)),
    "+41791110002": ("503 always", ("failed", 3)),
    "+41791110003": ("timeout", ("unknown", 1)),
}
BATCHES = {
    ("+41792220001", "+41792220002"): ("503 once", ("sent", 2)),
    ("+41792220003", "+41792220004"): ("503 always", ("failed", 3)),
    ("+41792220005", "+41792220006"): ("timeout", ("unknown", 1)),
}


def _add_fault(sandbox: Sandbox, recipient: str, fault: str) -> None:
    if fault == "503 once":
        sandbox.add_fault("503", recipient=recipient, times=1)
    elif fault == "503 always":
        sandbox.add_fault("503", recipient=recipient)
    else:
        sandbox.add_fault("timeout", recipient=recipient, seconds=1.5)


def _wait_until(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


@pytest.mark.parametrize(
    "backend",
    [
        "inline",
        pytest.param("celery", marks=[pytest.mark.postgres, pytest.mark.celery]),
        pytest.param("tasks", marks=pytest.mark.postgres),
    ],
)
def test_every_backend_gives_the_same_outcomes(
    backend, mitto_sandbox, settings, monkeypatch, request
) -> None:
    """A retried fault (503 once), a final failure (503 on every attempt) and an unknown (a read
    timeout), single and bulk, end the same whichever backend runs the send."""
    # The workers read these from their environment (tests/settings.py); so does this process.
    monkeypatch.setenv("MITTO_TIMEOUT", "0.5")
    settings.MITTO_TIMEOUT = 0.5
    for recipient, (fault, _) in SINGLES.items():
        _add_fault(mitto_sandbox, recipient, fault)
    for recipients, (fault, _) in BATCHES.items():
        _add_fault(mitto_sandbox, recipients[0], fault)
    if backend == "celery":
        request.getfixturevalue("worker")
    elif backend == "tasks":
        request.getfixturevalue("worker_processes")(1)
    else:
        settings.MITTO_TASK_BACKEND = "inline"

    singles = {r: services.send_sms(r, "Hi").pk for r in SINGLES}
    batches = {r: services.send_bulk(list(r), "Hi").pk for r in BATCHES}
    assert _wait_until(
        lambda: not Message.objects.filter(status__in=["queued", "sending"]).exists(), 60
    ), list(Message.objects.values_list("recipient", "status", "attempts"))

    outcome = {m.recipient: (m.status, m.attempts) for m in Message.objects.all()}
    for recipient, (_, expected) in SINGLES.items():
        assert outcome[recipient] == expected, recipient
    for recipients, (_, expected) in BATCHES.items():
        assert [outcome[r] for r in recipients] == [expected] * 2, recipients
    failed = Message.objects.filter(status="failed").values_list("error", flat=True)
    assert all(e.endswith("Gave up after 3 attempts.") for e in failed)
    unknown = Message.objects.filter(status="unknown").values_list("error", flat=True)
    assert all(e.endswith(MAY_HAVE_BEEN_SENT) for e in unknown)
    # Mitto received each message it has once: the retried ones and the timed-out ones.
    received = Counter("+" + m["to"] for m in mitto_sandbox.messages)
    reached = [r for r, (_, (status, _)) in SINGLES.items() if status != "failed"]
    reached += [r for rs, (_, (status, _)) in BATCHES.items() if status != "failed" for r in rs]
    assert received == Counter(reached)
    assert len(reached) == 6
    assert set(singles) | {r for rs in batches for r in rs} == set(outcome)


# -- concurrency: eight processes, the same 5,000 messages -------------------------------------

RACE_MESSAGES = 5000
RACE_WORKERS = 8


def race_worker(first: int, last: int) -> None:
    """Run in a process of its own: try to send every message ``first..last``, in order, then
    print how many requests this process made to Mitto. Django is set up by the caller."""
    from django_mitto.clients import get_client

    client = get_client()  # the one client of this process: count its requests
    requests = 0
    post = client.send

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal requests
        requests += 1
        return post(*args, **kwargs)

    client.send = counted  # type: ignore[method-assign]
    print("ready", flush=True)
    sys.stdin.readline()  # the start signal
    for pk in range(first, last + 1):
        sending.attempt_message(pk)
    print(f"requests {requests}", flush=True)


@pytest.mark.postgres
def test_eight_processes_racing_for_5000_messages_send_each_exactly_once(
    mitto_sandbox, settings
) -> None:
    settings.MITTO_SEND_ON_SAVE = False
    Message.objects.bulk_create(
        Message(recipient=f"+4179{1_000_000 + i}", text=f"Race {i}", sender="Shop")
        for i in range(RACE_MESSAGES)
    )
    pks = list(Message.objects.order_by("pk").values_list("pk", flat=True))
    env = process_env(mitto_sandbox.url, MITTO_TASK_BACKEND="inline")
    code = (
        "import django; django.setup(); from tests.test_guarantees import race_worker; "
        f"race_worker({pks[0]}, {pks[-1]})"
    )
    processes = start_ready(code, env, RACE_WORKERS)
    started = time.monotonic()
    say_go(processes)
    outputs = [process.communicate(timeout=600)[0] for process in processes]
    elapsed = time.monotonic() - started
    assert all(process.returncode == 0 for process in processes), outputs
    made = [int(output.split()[-1]) for output in outputs]
    received = mitto_sandbox.messages
    assert len(received) == RACE_MESSAGES
    assert set(Counter(m["to"] for m in received).values()) == {1}
    assert sum(made) == RACE_MESSAGES
    assert list(Message.objects.order_by().values_list("status", "attempts").distinct()) == [
        ("sent", 1)
    ]
    print(f"{RACE_WORKERS} processes, {RACE_MESSAGES} messages: {elapsed:.1f} s, requests {made}")
