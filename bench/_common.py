"""What the benchmarks share: a database, a sandbox in a process of its own, Django set up for
them, query and commit counting, and alternating rounds of a baseline and a subject.

Every script prints figures and asserts only that the work it timed was done right (every
message sent once...); none is a test.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

API_KEY = "bench-key"
DEFAULT_DATABASE = "postgres://postgres@127.0.0.1:5432/mitto_bench"


def create_database(url: str) -> None:
    """Create the PostgreSQL database of ``url`` when it does not exist."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SandboxProcess:
    """``python -m django_mitto.sandbox`` in a process of its own (no GIL shared with the
    code measured), driven over its ``/_sandbox`` endpoints."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "django_mitto.sandbox",
                "--port",
                str(self.port),
                "--api-key",
                API_KEY,
                "--quiet",
                *args,
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                self.call("GET", "/_sandbox/faults")
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the sandbox did not start") from None
                time.sleep(0.1)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            raw = answer.read()
        return json.loads(raw) if raw else None

    def reset(self, latency: float = 0.0) -> None:
        self.call("POST", "/_sandbox/reset", {})
        if latency:
            self.call("POST", "/_sandbox/faults", {"kind": "latency", "seconds": latency})

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def setup_django(database: str, **settings: str) -> dict[str, str]:
    """Set up Django with the test settings on ``database``, migrated; ``settings`` are
    environment variables the test settings read (``MITTO_API_URL``...). Returns the
    environment, for worker processes."""
    create_database(database)
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database,
        "MITTO_API_KEY": API_KEY,
        "PYTHONPATH": str(ROOT),
        **settings,
    }
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return {**os.environ, **env}


def empty_tables() -> None:
    """Empty django-mitto's tables (the benchmark database is the benchmark's own)."""
    from django.db import connection

    from django_mitto.models import Batch, DeliveryReport, Message, OptOut

    tables = [m._meta.db_table for m in (DeliveryReport, Message, Batch, OptOut)]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        else:
            for table in tables:
                cursor.execute(f"DELETE FROM {table}")


class Counted:
    """Statements and commits on Django's default connection while active (a commit is a
    transaction that writes: an autocommitted write, or the end of an ``atomic`` block)."""

    def __init__(self) -> None:
        self.queries = 0
        self.commits = 0

    @contextmanager
    def active(self) -> Iterator[Counted]:
        from django.db import connection

        connection.ensure_connection()
        real_commit = connection.commit

        def execute(run: Callable[..., Any], sql: str, params: Any, many: bool, context: Any):
            if sql.strip().upper() == "BEGIN":
                # SQLite's backend opens an atomic block with a BEGIN statement: not a query,
                # and the transaction's commit is counted once, at its end.
                return run(sql, params, many, context)
            self.queries += 1
            if not connection.in_atomic_block and not sql.lstrip().upper().startswith("SELECT"):
                self.commits += 1  # autocommit: a write is a transaction of its own
            return run(sql, params, many, context)

        def commit() -> None:
            self.commits += 1
            real_commit()

        connection.commit = commit  # type: ignore[method-assign]
        try:
            with connection.execute_wrapper(execute):
                yield self
        finally:
            del connection.commit


def alternate(
    rounds: int, runs: dict[str, Callable[[], float]], *, unit: str = "msg/s"
) -> dict[str, float]:
    """Run each of ``runs`` (each returns a rate) once per round, in turn, ``rounds`` times;
    print every figure and return the median of each."""
    figures: dict[str, list[float]] = {name: [] for name in runs}
    for number in range(1, rounds + 1):
        line = []
        for name, run in runs.items():
            figures[name].append(run())
            line.append(f"{name} {figures[name][-1]:,.0f} {unit}")
        print(f"  round {number}: " + "; ".join(line), flush=True)
    return {name: statistics.median(values) for name, values in figures.items()}


def peak_rss_mb() -> float:
    """This process's peak resident memory, in MB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class GunicornProcess:
    """gunicorn (gthread workers) serving ``bench.reports_wsgi`` on 127.0.0.1, with ``env``
    (the database, the settings) as its environment."""

    def __init__(self, env: dict[str, str], *, workers: int = 2, threads: int = 16) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--worker-class",
                "gthread",
                "--workers",
                str(workers),
                "--threads",
                str(threads),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--keep-alive",
                "60",
                "--log-level",
                "warning",
                "bench.reports_wsgi:application",
            ],
            cwd=ROOT,
            env={
                **env,
                "DJANGO_SETTINGS_MODULE": "bench.reports_settings",
                "PYTHONPATH": str(ROOT),
            },
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url + "/bare/0/", timeout=5):
                    pass
            except urllib.error.HTTPError:
                break  # answering (a GET to the bare view fails, that is enough)
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.close()
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.1)
            else:
                break

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:  # pragma: no cover - a stuck worker
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> GunicornProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Posted:
    """What :func:`post_concurrently` measured: seconds, latencies, answers by status, errors."""

    def __init__(self) -> None:
        self.elapsed = 0.0
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.errors: list[str] = []

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def post_concurrently(
    url: str, requests: list[tuple[str, bytes]], concurrency: int, *, timeout: float = 30
) -> Posted:
    """POST each ``(path, JSON body)`` of ``requests`` to ``url`` from ``concurrency`` threads,
    each holding one keep-alive ``http.client`` connection, in the order given (thread ``i``
    takes requests ``i``, ``i + concurrency``...). A non-2xx answer or a failed request is an
    error; a connection that fails is opened again for the next request."""
    import http.client
    import threading

    host = urlsplit(url)
    result = Posted()
    lock = threading.Lock()
    start = threading.Barrier(concurrency + 1)

    def client(share: list[tuple[str, bytes]]) -> None:
        connection = http.client.HTTPConnection(host.hostname, host.port, timeout=timeout)
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        errors: list[str] = []
        start.wait()
        for path, body in share:
            began = time.perf_counter()
            try:
                connection.request(
                    "POST",
                    path,
                    body,
                    {"Content-Type": "application/json", "Connection": "keep-alive"},
                )
                answer = connection.getresponse()
                text = answer.read()
            except (OSError, http.client.HTTPException) as exc:
                errors.append(f"{path}: {exc!r}")
                connection.close()
                connection = http.client.HTTPConnection(host.hostname, host.port, timeout=timeout)
                continue
            latencies.append(time.perf_counter() - began)
            statuses[answer.status] = statuses.get(answer.status, 0) + 1
            if not 200 <= answer.status < 300:
                errors.append(f"{path}: {answer.status} {text[:200]!r}")
        connection.close()
        with lock:
            result.latencies.extend(latencies)
            result.errors.extend(errors)
            for code, count in statuses.items():
                result.statuses[code] = result.statuses.get(code, 0) + count

    threads = [
        threading.Thread(target=client, args=(requests[i::concurrency],))
        for i in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    result.elapsed = time.perf_counter() - began
    return result


def process_cpu(*, parent: int | None = None, cmdline: str | None = None) -> float:
    """CPU seconds (user and system) used so far by the processes whose parent is ``parent``,
    or whose command line contains ``cmdline`` (Linux ``/proc``; 0 elsewhere)."""
    total = 0
    proc = Path("/proc")
    if not proc.is_dir():
        return 0.0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if parent is not None and int(stat[1]) != parent:
                continue
            if cmdline is not None and cmdline not in (entry / "cmdline").read_text():
                continue
        except (OSError, IndexError):
            continue  # gone meanwhile
        total += int(stat[11]) + int(stat[12])
    return total / os.sysconf("SC_CLK_TCK")
