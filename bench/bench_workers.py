"""Time one bulk send with 1 and with 4 worker processes: a batch is shared by its workers.

Usage::

    python bench/bench_workers.py [--count 100000] [--workers 1 4] [--latency 0.02]
        [--chunk-size 500] [--database postgres://postgres@127.0.0.1:5432/mitto_bench_workers]

A sandbox runs in this process with a latency fault (every request waits ``--latency``
seconds, 20 ms by default, as a distant gateway would). For each worker count, the tables are
emptied, that many ``db_worker`` processes of Django's Tasks framework (the ``"tasks"`` task
backend with ``django_tasks_db.DatabaseBackend``: no broker) are started and left to settle,
then ``send_bulk()`` creates a batch of ``--count`` numbers; the time from its commit until
every message is ``sent`` is measured, and each message is checked to have reached the sandbox
exactly once. Prints the time, the rate and the speed-up over the first worker count.

Needs PostgreSQL (the workers and this process share the database; it is created if missing
and its django-mitto tables are emptied: use a database of its own) and the ``tasks`` extra.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import _common

ROOT = _common.ROOT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="numbers in the batch")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per request")
    parser.add_argument("--chunk-size", type=int, default=500, help="MITTO_BULK_CHUNK_SIZE")
    parser.add_argument(
        "--database", default="postgres://postgres@127.0.0.1:5432/mitto_bench_workers"
    )
    args = parser.parse_args()

    from django_mitto.sandbox import Sandbox

    _common.create_database(args.database)
    with Sandbox(api_key="bench-key", keep=max(args.count, 10_000)) as sandbox:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": args.database,
            "MITTO_API_URL": sandbox.url,
            "MITTO_API_KEY": "bench-key",
            "MITTO_TASK_BACKEND": "tasks",
            "MITTO_TEST_TASKS_BACKEND": "django_tasks_db.DatabaseBackend",
            "MITTO_BULK_CHUNK_SIZE": str(args.chunk_size),
            "PYTHONPATH": str(ROOT),
        }
        os.environ.update(env)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        print(
            f"{args.count:,} numbers, chunks of {args.chunk_size}, {args.latency * 1000:g} ms "
            f"per request, PostgreSQL, db_worker processes ({os.cpu_count()} CPUs)"
        )
        results: dict[int, float] = {}
        for workers in args.workers:
            results[workers] = run(workers, args.count, sandbox, env, args.latency)
            base = results[args.workers[0]]
            print(
                f"{workers} worker(s): {results[workers]:.1f} s, "
                f"{args.count / results[workers]:,.0f} SMS/s, "
                f"speed-up {base / results[workers]:.2f}x"
            )


def run(workers: int, count: int, sandbox: Any, env: dict[str, str], latency: float) -> float:
    from django.db import connection
    from django_tasks_db.models import DBTaskResult

    from django_mitto import services
    from django_mitto.models import Batch, Message

    with connection.cursor() as cursor:
        cursor.execute(
            f"TRUNCATE {DBTaskResult._meta.db_table}, {Message._meta.db_table}, "
            f"{Batch._meta.db_table} CASCADE"
        )
    sandbox.reset()
    sandbox.add_fault("latency", seconds=latency)
    command = [sys.executable, "-m", "django", "db_worker", "--interval", "0.05", "--no-reload"]
    processes = [
        subprocess.Popen([*command, "--verbosity", "0"], cwd=ROOT, env=env) for _ in range(workers)
    ]
    try:
        time.sleep(5)  # let every worker start Django and poll
        numbers = [f"+4179{1_000_000 + i}" for i in range(count)]
        created = time.monotonic()
        batch = services.send_bulk(numbers, "Benchmark")
        start = time.monotonic()
        print(f"  batch created in {start - created:.1f} s", flush=True)
        while Message.objects.filter(batch=batch, status__in=["queued", "sending"]).exists():
            time.sleep(0.1)
        elapsed = time.monotonic() - start
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
    sent = Message.objects.filter(batch=batch, status="sent").count()
    per_number = Counter(m["to"] for m in sandbox.messages)
    assert sent == count, f"{sent} of {count} sent"
    assert len(per_number) == count and set(per_number.values()) == {1}, "a number sent twice"
    return elapsed


if __name__ == "__main__":
    main()
