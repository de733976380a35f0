from __future__ import annotations

import contextlib
import math
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import django
import pytest
from django.db import connection
from hypothesis import settings as hypothesis_settings

# Property tests explore new inputs on every local run; under CI they replay a fixed sequence,
# so a submission's result does not depend on the draw (set HYPOTHESIS_PROFILE to choose).
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
hypothesis_settings.register_profile("explore", print_blob=True)
hypothesis_settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "explore")
)

pytest_plugins = ["django_mitto.testing"]

#: Set by CI: a test that would be skipped for a missing part (browser, Redis) fails instead.
REQUIRE_ALL_PARTS = bool(os.environ.get("MITTO_REQUIRE_ALL_PARTS"))


@pytest.fixture(scope="session", autouse=True)
def _empty_module_caches() -> None:
    """Each session starts with the validators' cache of national prefixes empty.

    A mutation run forks each test session from a process that ran the tests once: without
    this, a changed ``_national_prefix`` would answer from what the unchanged one cached there.
    """
    from django_mitto import validators

    validators._prefixes.clear()


#: The Tasks backend's database backend (django-tasks-db) needs Django 5.2 or later: on older
#: Django its tests are skipped for the version, as a version-specific feature, not a missing part.
TASKS_SUPPORTED = django.VERSION >= (5, 2)


def skip_without_tasks_support() -> None:
    if not TASKS_SUPPORTED:
        pytest.skip("the Tasks backend is tested on Django 5.2+ (django-tasks-db needs it)")


def require_part(available: bool, reason: str) -> None:
    """Skip the calling test when a part it needs is missing (fail instead under CI)."""
    if available:
        return
    if REQUIRE_ALL_PARTS:
        pytest.fail(f"missing part: {reason}")
    pytest.skip(reason)


@pytest.fixture
def make_message(settings: Any, db: None) -> Callable[..., Any]:
    """Create a message without sending it, then put it in the given state."""
    from django_mitto.models import Message, Status

    settings.MITTO_SEND_ON_SAVE = False

    def make(*, status: str = Status.SENT, provider_id: str = "", **fields: Any) -> Message:
        message = Message.objects.create(recipient="+41791234567", text="Hello", **fields)
        Message.objects.filter(pk=message.pk).update(status=status, provider_id=provider_id)
        message.refresh_from_db()
        return message

    return make


#: Test database names as configured, by alias (see django_db_modify_db_settings).
_TEST_DB_BASES: dict[str, str] = {}


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    """Give each test process its own database, forked ones included.

    The settings name the SQLite file after the process that imported them; `make mutation`
    runs the tests in processes forked from that one, two at a time, which must not share a
    database. On PostgreSQL, each process that checks a mutant adds its process id to the test
    database's name (tests/mutation.py drops any such database a stopped process left behind).
    """
    from django.conf import settings

    for alias, database in settings.DATABASES.items():
        if database["ENGINE"].endswith("sqlite3"):
            name = f"django-mitto-tests-{os.getpid()}{'' if alias == 'default' else '-' + alias}"
            database["TEST"]["NAME"] = os.path.join(tempfile.gettempdir(), f"{name}.sqlite3")
        elif os.environ.get("MUTANT_UNDER_TEST") and MUTATION_KILLS_LOG:
            # The name as configured, once per alias: a forked process inherits the name its
            # parent's session already suffixed.
            base = _TEST_DB_BASES.setdefault(
                alias, database["TEST"].get("NAME") or f"test_{database['NAME']}"
            )
            database["TEST"]["NAME"] = f"{base}_{os.getpid()}"


@pytest.fixture
def canned() -> Iterator[Any]:
    """An HTTP server on loopback that answers the ``Reply`` objects a test prepares, in order,
    and records each request it got (``tests/canned.py``)."""
    from tests.canned import CannedServer

    with CannedServer() as server:
        yield server


@pytest.fixture
def canned_api(canned: Any, settings: Any) -> Any:
    """``canned`` as the Mitto API of the send service: ``MITTO_API_URL`` points at it."""
    settings.MITTO_API_URL = canned.url
    return canned


def queued_batch(*numbers: str) -> tuple[Any, list[Any]]:
    """A batch whose messages are stored ``queued`` and not handed to the task backend."""
    from django_mitto.models import Batch, Message

    batch = Batch.objects.create(text="Bulk", sender="Shop", total=len(numbers))
    members = [
        Message.objects.create(recipient=n, text="Bulk", sender="Shop", batch=batch)
        for n in numbers
    ]
    return batch, members


@contextlib.contextmanager
def announced_failures() -> Iterator[list[tuple[int, str]]]:
    """What ``message_failed`` receivers (connected for ``Message``) are told, as (pk, status)."""
    from django_mitto.models import Message
    from django_mitto.signals import message_failed

    seen: list[tuple[int, str]] = []

    def on_failed(sender: Any, message: Any, **kwargs: Any) -> None:
        seen.append((message.pk, message.status))

    message_failed.connect(on_failed, sender=Message, weak=False)
    try:
        yield seen
    finally:
        message_failed.disconnect(on_failed, sender=Message)


@pytest.fixture
def unsent(settings: Any) -> Iterator[Any]:
    """Messages and batches are handed to a task backend that keeps them (no worker sends)."""
    from tests.custom_backend import ListBackend

    settings.MITTO_TASK_BACKEND = "tests.custom_backend.ListBackend"
    ListBackend.scheduled.clear()
    ListBackend.pending.clear()
    yield ListBackend
    ListBackend.scheduled.clear()
    ListBackend.pending.clear()


@pytest.fixture
def full_backlog_url() -> Iterator[str]:
    """An ``http://127.0.0.1:<port>`` URL where connecting times out (no traffic leaves loopback).

    The port listens but never accepts, and its backlog is already full: the kernel drops the
    next connection attempt, so the client sees a real connect timeout.
    """
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for sock in [*fillers, server]:
            sock.close()


#: ``make mutation`` sets this to a file: each test that fails with a mutant switched on adds a
#: line there (the mutant, the test, the phase, the exception and where it was raised), so a
#: kill can be checked against the test that made it, and a failure that has nothing to do with
#: the mutant (a "false kill") can be told apart.
MUTATION_KILLS_LOG = os.environ.get("MITTO_MUTATION_KILLS_LOG")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    mutant = os.environ.get("MUTANT_UNDER_TEST")
    if not (MUTATION_KILLS_LOG and mutant and report.failed):
        return
    crash = getattr(report.longrepr, "reprcrash", None)  # the exception raised, where it was
    if crash is not None:
        error = f"{crash.message} ({Path(crash.path).name}:{crash.lineno})"
    else:
        lines = [line for line in str(report.longrepr).splitlines() if line.strip()]
        error = lines[-1] if lines else ""
    error = " ".join(error.split())[:300]
    with open(MUTATION_KILLS_LOG, "a", encoding="utf-8") as log:
        log.write(f"{mutant}\t{report.nodeid}\t{report.when}\t{error}\n")


def pytest_report_header(config: pytest.Config) -> str:
    return f"django-mitto tests on {connection.vendor}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # PostgreSQL-only tests (row locking under real concurrency) run in the PostgreSQL pass,
    # SQLite-only ones (an older SQLite simulated) in the SQLite pass.
    other = "sqlite" if connection.vendor == "postgresql" else "postgres"
    keep = [item for item in items if other not in item.keywords]
    dropped = [item for item in items if other in item.keywords]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
    if MUTATION_KILLS_LOG and os.environ.get("MUTANT_UNDER_TEST"):
        _quickest_first(items)


def _quickest_first(items: list[pytest.Item]) -> None:
    """Under ``make mutation``, run a mutant's tests quickest first (mutmut passes them in no
    particular order and stops at the first failure): most mutants are killed by several
    tests, and the quickest of them then decides. The times are those mutmut measured on its
    first pass over the tests (``mutmut-stats.json``, in the folder it runs the tests from)."""
    import json

    try:
        stats = json.loads(Path("mutmut-stats.json").read_text(encoding="utf-8"))
        durations: dict[str, float] = stats["duration_by_test"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    items.sort(key=lambda item: durations.get(item.nodeid, math.inf))


# Browser fixtures (chromium, page) for the admin's browser tests.
from tests.browser import chromium, page  # noqa: E402, F401


def process_env(sandbox_url: str, **settings: str) -> dict[str, str]:
    """The environment of a process a test starts (a worker, a racing sender): the test's own
    database (PostgreSQL: a process of its own cannot share an SQLite test file safely), the
    sandbox at ``sandbox_url``, the test settings, and ``settings`` as environment variables
    that tests/settings.py reads."""
    from django.conf import settings as django_settings

    db = connection.settings_dict
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "MITTO_API_URL": sandbox_url,
        "MITTO_API_KEY": django_settings.MITTO_API_KEY,
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        **settings,
    }


def start_ready(code: str, env: dict[str, str], count: int) -> list[Any]:
    """Start ``count`` processes running ``python -c code`` with ``env``, each of which prints
    "ready" and then waits for :func:`say_go`; return them once every one is ready."""
    import subprocess
    import sys

    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=Path(__file__).resolve().parent.parent,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(count)
    ]
    for process in processes:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line == "ready", line + process.stdout.read()
    return processes


def say_go(processes: list[Any]) -> None:
    """Let the processes of :func:`start_ready` go, all at once."""
    for process in processes:
        process.stdin.write("go\n")
        process.stdin.flush()
