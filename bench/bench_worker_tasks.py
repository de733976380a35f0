"""Single messages through real workers: Celery and Django's Tasks (``db_worker``), 1 and 4
worker processes, at 20 ms per request, next to the latency limit.

Usage::

    python bench/bench_worker_tasks.py [--count 400] [--latency 0.02] [--rounds 3]
        [--backends celery tasks] [--workers 1 4] [--pool prefork] [--db-reuse-max 1000]

The sandbox runs in a process of its own and waits ``--latency`` seconds per request. For each
backend and worker count, ``--count`` messages are created (``send_sms()`` inside one
transaction, so that nothing is sent before every task is queued), then the clock runs from
the commit until every message is ``sent``; each message must have reached the sandbox once.
One worker process can send at most ``1 / latency`` messages a second (50 at 20 ms): the
ratio to that limit is what the worker's own overhead costs. Rounds alternate the worker
counts; prints each round, the medians, the ratio to the limit and the speed-up of 4 over 1.

Celery: one ``celery worker`` per process (``--concurrency 1``, ``--pool``, prefork unless
said), Redis as broker, ``CELERY_DB_REUSE_MAX`` (``--db-reuse-max``) and ``CONN_MAX_AGE`` set,
prefetch 4, ``acks_late``, results ignored (the settings the README recommends). Tasks: ``django_tasks_db.DatabaseBackend`` and one ``db_worker`` per process.
Needs PostgreSQL and Redis.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from typing import Any

import _common

BROKER = "redis://127.0.0.1:6379/13"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=["celery", "tasks"])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--database", default=_common.DEFAULT_DATABASE)
    parser.add_argument(
        "--pool", default="prefork", help="Celery's pool (prefork, solo, threads); one process each"
    )
    parser.add_argument(
        "--db-reuse-max",
        type=int,
        default=1000,
        help="CELERY_DB_REUSE_MAX of the Celery workers (0: Celery's default, a new connection "
        "for every task)",
    )
    args = parser.parse_args()
    queue = f"mitto-bench-{uuid.uuid4().hex[:8]}"
    with _common.SandboxProcess() as sandbox:
        env = _common.setup_django(
            args.database,
            MITTO_API_URL=sandbox.url,
            MITTO_TASK_BACKEND="inline",
            MITTO_TEST_TASKS_BACKEND="django_tasks_db.DatabaseBackend",
            CELERY_BROKER_URL=BROKER,
            MITTO_TEST_CELERY_QUEUE=queue,
        )
        from django.db import connection

        import tests.celery_app  # noqa: F401  (the Celery app the tasks are sent with)

        print(
            f"{args.count} single messages, {args.latency * 1000:g} ms per request, PostgreSQL, "
            f"{os.cpu_count()} CPUs; limit for one process: {1 / args.latency:.0f} msg/s"
        )
        for backend in args.backends:
            figures: dict[int, list[float]] = {n: [] for n in args.workers}
            for number in range(1, args.rounds + 1):
                line = []
                for workers in args.workers:
                    rate = run(backend, workers, args, sandbox, env, connection)
                    figures[workers].append(rate)
                    line.append(f"{workers} worker(s) {rate:,.1f} msg/s")
                print(f"  {backend} round {number}: " + "; ".join(line), flush=True)
            medians = {n: statistics.median(v) for n, v in figures.items()}
            one = medians[args.workers[0]]
            print(
                f"{backend}: "
                + "; ".join(f"{n} worker(s) {m:,.1f} msg/s" for n, m in medians.items())
                + f"; 1 worker = {one * args.latency:.2f} of the limit"
                + "".join(
                    f"; {n} workers = {m / one:.2f}x of 1" for n, m in medians.items() if n > 1
                )
            )


def run(
    backend: str, workers: int, args: argparse.Namespace, sandbox: Any, env: dict, connection: Any
) -> float:
    from django.db import transaction
    from django.test.utils import override_settings

    from django_mitto import services
    from django_mitto.models import Message

    _common.empty_tables()
    if backend == "tasks":
        from django_tasks_db.models import DBTaskResult

        DBTaskResult.objects.all().delete()
    sandbox.reset(args.latency)
    worker_env = {**env, "MITTO_TASK_BACKEND": backend}
    if backend == "celery":
        command = [
            sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker",
            "--concurrency=1", "--loglevel=WARNING", "--without-heartbeat",
            "--without-gossip", "--without-mingle", "--prefetch-multiplier=4",
            f"--pool={args.pool}",
        ]  # fmt: skip
        worker_env["MITTO_TEST_CELERY_ACKS_LATE"] = "1"
        # Celery's Django fixup closes the connection around every task unless this is set
        # (CONN_MAX_AGE alone does not keep it in Celery 5.7).
        worker_env["MITTO_TEST_CELERY_DB_REUSE_MAX"] = str(args.db_reuse_max)
    else:
        command = [sys.executable, "-m", "django", "db_worker", "--interval", "0.02"]
        command += ["--no-reload", "--verbosity", "0"]
    worker_env["MITTO_TEST_CONN_MAX_AGE"] = "60"
    processes = [
        subprocess.Popen(command, cwd=_common.ROOT, env=worker_env) for _ in range(workers)
    ]
    try:
        time.sleep(6)  # every worker up and polling
        with override_settings(MITTO_TASK_BACKEND=backend), transaction.atomic():
            for i in range(args.count):
                services.send_sms(f"+4179{1_000_000 + i}", f"Benchmark {i}")
        start = time.monotonic()
        while Message.objects.filter(status__in=["queued", "sending"]).exists():
            time.sleep(0.05)
        elapsed = time.monotonic() - start
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
    sent = Message.objects.filter(status="sent").count()
    received = Counter(m["to"] for m in sandbox.call("GET", "/_sandbox/messages"))
    assert sent == args.count, f"{sent} of {args.count} sent"
    assert len(received) == args.count and set(received.values()) == {1}, "sent twice"
    return args.count / elapsed


if __name__ == "__main__":
    main()
