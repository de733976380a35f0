"""``send_bulk()`` next to the HTTP it needs, and its memory for a million recipients.

Usage::

    python bench/bench_bulk.py [--count 100000] [--rounds 3] [--latency 0.02]
    python bench/bench_bulk.py --memory 1000000

Speed: the sandbox runs in a process of its own and waits ``--latency`` seconds per request (a
distant gateway). Each round sends ``--count`` numbers with ``send_bulk()`` on the inline
backend (validate, insert, then every chunk: claim, ``POST /smsbulk``, record each id), then
the same chunks as bare ``POST /smsbulk`` requests through one kept-alive ``requests`` session:
the HTTP alone. Prints each round, the medians and the ratio. Every message is checked sent.

Memory (``--memory N``): a fresh process creates a batch of N numbers from a generator with
``send_bulk()`` (validation, opt-out check, insert, deduplication; the sending is left to the
workers of the ``"tasks"`` backend, not started here) and prints its peak RSS.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import _common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per request")
    parser.add_argument("--chunk-size", type=int, default=500, help="MITTO_BULK_CHUNK_SIZE")
    parser.add_argument("--memory", type=int, metavar="N", help="measure the peak RSS for N")
    parser.add_argument("--database", default=_common.DEFAULT_DATABASE)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        memory_child(args)
    elif args.memory:
        memory(args)
    else:
        speed(args)


def speed(args: argparse.Namespace) -> None:
    with _common.SandboxProcess() as sandbox:
        _common.setup_django(
            args.database,
            MITTO_API_URL=sandbox.url,
            MITTO_TASK_BACKEND="inline",
            MITTO_BULK_CHUNK_SIZE=str(args.chunk_size),
        )
        import requests

        from django_mitto import services
        from django_mitto.models import Message

        session = requests.Session()
        headers = {"X-Mitto-API-Key": _common.API_KEY}

        def subject() -> float:
            _common.empty_tables()
            sandbox.reset(args.latency)
            numbers = (f"+4179{1_000_000 + i}" for i in range(args.count))
            start = time.perf_counter()
            batch = services.send_bulk(numbers, "Benchmark")
            elapsed = time.perf_counter() - start
            sent = Message.objects.filter(batch=batch, status="sent").count()
            assert sent == args.count, f"{sent} of {args.count} sent"
            return args.count / elapsed

        def http_alone() -> float:
            sandbox.reset(args.latency)
            start = time.perf_counter()
            for first in range(0, args.count, args.chunk_size):
                last = min(first + args.chunk_size, args.count)
                answer = session.post(
                    sandbox.url + "/smsbulk",
                    json={
                        "from": "DjangoMitto",
                        "to": [f"+4179{1_000_000 + i}" for i in range(first, last)],
                        "text": "Benchmark",
                    },
                    headers=headers,
                    timeout=30,
                )
                assert answer.status_code == 200, answer.text
                json.loads(answer.content)
            return args.count / (time.perf_counter() - start)

        print(
            f"send_bulk() of {args.count:,} numbers vs the HTTP alone: chunks of "
            f"{args.chunk_size}, {args.latency * 1000:g} ms per request, PostgreSQL, inline backend"
        )
        medians = _common.alternate(args.rounds, {"send_bulk": subject, "HTTP alone": http_alone})
        print(
            f"medians: send_bulk {medians['send_bulk']:,.0f} msg/s; HTTP alone "
            f"{medians['HTTP alone']:,.0f} msg/s; ratio {medians['send_bulk'] / medians['HTTP alone']:.2f}"
        )


def memory(args: argparse.Namespace) -> None:
    command = [sys.executable, __file__, "--child", "--memory", str(args.memory)]
    command += ["--database", args.database, "--chunk-size", str(args.chunk_size)]
    subprocess.run(command, check=True)


def memory_child(args: argparse.Namespace) -> None:
    _common.setup_django(
        args.database,
        MITTO_API_URL="http://127.0.0.1:9",
        MITTO_TASK_BACKEND="tasks",
        MITTO_TEST_TASKS_BACKEND="django_tasks_db.DatabaseBackend",
        MITTO_BULK_CHUNK_SIZE=str(args.chunk_size),
    )
    from django_mitto import services
    from django_mitto.models import Message

    _common.empty_tables()
    before = _common.peak_rss_mb()
    start = time.perf_counter()
    batch = services.send_bulk((f"+4179{1_000_000 + i}" for i in range(args.memory)), "Hi")
    elapsed = time.perf_counter() - start
    rows = Message.objects.filter(batch=batch).count()
    assert rows == args.memory == batch.total, (rows, batch.total)
    print(
        f"send_bulk() of {args.memory:,} numbers from a generator: {elapsed:.1f} s "
        f"({args.memory / elapsed:,.0f} rows/s), peak RSS {_common.peak_rss_mb():.0f} MB "
        f"(after Django's setup: {before:.0f} MB)"
    )


if __name__ == "__main__":
    main()
